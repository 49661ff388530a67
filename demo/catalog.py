"""The demo shop's catalog: a two-level category tree and about a hundred products.

Names and list prices are fixed; everything drawn at random (margins, popularity, price
changes, supplier lead times, which products end up short) comes from the seed alone, so a
seed gives the same catalog whatever the number of sales.
"""

import random
from dataclasses import dataclass, replace
from typing import Literal

# Demand of a top-level category by calendar month (Jan..Dec), relative to its own average:
# it shifts the product mix; the shop-wide seasonal curve lives with the sales calendar.
_FLAT = (1.0,) * 12

Ending = Literal["normal", "low", "out"]


@dataclass(frozen=True)
class CategorySpec:
    slug: str
    name: str
    description: str
    parent_slug: str | None
    season: tuple[float, ...] = _FLAT


@dataclass(frozen=True)
class ProductSpec:
    sku: str
    name: str
    description: str
    category_slug: str
    top_slug: str
    price_cents: int
    cost_cents: int
    # Before ``price_change_at`` (a fraction of the simulated period) the product sold at
    # the old price and cost; None when its price never changed.
    old_price_cents: int
    old_cost_cents: int
    price_change_at: float | None
    popularity: float
    lead_days: int
    pack_size: int
    quantity_weights: tuple[float, ...]
    # "low"/"out": the supplier stops delivering near the end, so it ends low or sold out.
    ending: Ending


@dataclass(frozen=True)
class Catalog:
    categories: list[CategorySpec]  # parents before children
    products: list[ProductSpec]


# (top slug, name, description, season)
_TOPS: list[tuple[str, str, str, tuple[float, ...]]] = [
    (
        "electronics",
        "Electronics",
        "Audio, phone and computer accessories, smart home.",
        (0.9, 0.85, 0.9, 0.9, 0.95, 0.95, 1.05, 0.95, 1.0, 1.0, 1.3, 1.45),
    ),
    (
        "home-kitchen",
        "Home & Kitchen",
        "Cookware, coffee and tea, storage.",
        (1.0, 0.95, 1.0, 1.0, 1.05, 1.0, 0.95, 0.95, 1.0, 1.05, 1.1, 1.2),
    ),
    (
        "sports-outdoors",
        "Sports & Outdoors",
        "Fitness, camping and cycling gear.",
        (1.4, 1.1, 1.05, 1.15, 1.3, 1.35, 1.3, 1.2, 1.0, 0.85, 0.8, 0.85),
    ),
    (
        "toys-games",
        "Toys & Games",
        "Board games, building sets and puzzles.",
        (0.7, 0.7, 0.75, 0.8, 0.8, 0.8, 0.85, 0.85, 0.9, 1.0, 1.6, 2.4),
    ),
    (
        "beauty",
        "Beauty & Personal Care",
        "Skin care and hair care.",
        (0.95, 1.2, 1.0, 1.0, 1.1, 1.0, 1.0, 1.0, 0.95, 1.0, 1.1, 1.3),
    ),
]

# (top slug, sub slug, sub name, SKU prefix, [(product name, list price)])
_SUBS: list[tuple[str, str, str, str, list[tuple[str, str]]]] = [
    (
        "electronics",
        "audio",
        "Audio",
        "AUD",
        [
            ("Wireless Earbuds", "59.99"),
            ("Noise-Cancelling Headphones", "199.00"),
            ("Bluetooth Speaker", "49.99"),
            ("Portable Party Speaker", "129.00"),
            ("Studio Monitor Headphones", "99.00"),
            ("Compact Soundbar", "249.00"),
            ("Memory Foam Ear Tips 3-Pack", "9.99"),
        ],
    ),
    (
        "electronics",
        "phone-accessories",
        "Phone Accessories",
        "PHN",
        [
            ("USB-C Fast Charger 30W", "24.99"),
            ("Braided USB-C Cable 2m", "12.99"),
            ("Magnetic Power Bank 10000mAh", "44.99"),
            ("Clear Phone Case", "14.99"),
            ("Tempered Glass Screen Protector 2-Pack", "9.99"),
            ("Car Phone Mount", "19.99"),
            ("Wireless Charging Pad", "29.99"),
        ],
    ),
    (
        "electronics",
        "computer-accessories",
        "Computer Accessories",
        "CMP",
        [
            ("Mechanical Keyboard", "89.00"),
            ("Wireless Mouse", "29.99"),
            ("USB-C Hub 7-in-1", "39.99"),
            ("Monitor Arm", "69.00"),
            ("Aluminium Laptop Stand", "34.99"),
            ("1080p Webcam", "54.99"),
            ("Portable SSD 1TB", "109.00"),
        ],
    ),
    (
        "electronics",
        "smart-home",
        "Smart Home",
        "SMH",
        [
            ("Smart Plug 2-Pack", "24.99"),
            ("Smart LED Bulb 4-Pack", "39.99"),
            ("Video Doorbell", "119.00"),
            ("Indoor Security Camera", "49.99"),
            ("Smart Thermostat", "179.00"),
            ("Motion Sensor", "19.99"),
            ("Smart Speaker with Display", "89.00"),
        ],
    ),
    (
        "home-kitchen",
        "cookware",
        "Cookware",
        "COK",
        [
            ("Cast Iron Skillet 26cm", "34.99"),
            ("Nonstick Frying Pan Set", "49.99"),
            ("Stainless Steel Saucepan", "39.99"),
            ("Enamelled Dutch Oven 5.5L", "79.00"),
            ("Chef's Knife 20cm", "59.00"),
            ("Bamboo Cutting Board", "24.99"),
            ("Silicone Utensil Set", "19.99"),
        ],
    ),
    (
        "home-kitchen",
        "coffee-tea",
        "Coffee & Tea",
        "COF",
        [
            ("Pour-Over Coffee Dripper", "22.00"),
            ("Burr Coffee Grinder", "89.00"),
            ("French Press 1L", "29.99"),
            ("Gooseneck Electric Kettle", "64.99"),
            ("Insulated Travel Mug", "24.99"),
            ("Loose Leaf Tea Sampler", "18.50"),
            ("Espresso Cups Set of 4", "21.99"),
        ],
    ),
    (
        "home-kitchen",
        "storage",
        "Storage & Organisation",
        "STO",
        [
            ("Glass Food Containers 10-Pack", "39.99"),
            ("Pantry Storage Jars Set", "29.99"),
            ("Drawer Organiser Set", "17.99"),
            ("Under-Bed Storage Bags 2-Pack", "22.99"),
            ("Rotating Spice Rack", "34.99"),
            ("Vacuum Storage Bags 6-Pack", "19.99"),
        ],
    ),
    (
        "sports-outdoors",
        "fitness",
        "Fitness",
        "FIT",
        [
            ("Yoga Mat 6mm", "29.99"),
            ("Adjustable Dumbbells Pair", "249.00"),
            ("Resistance Bands Set", "19.99"),
            ("Foam Roller", "24.99"),
            ("Kettlebell 12kg", "54.99"),
            ("Speed Jump Rope", "12.99"),
            ("Fitness Tracker Band", "79.00"),
        ],
    ),
    (
        "sports-outdoors",
        "camping",
        "Camping & Hiking",
        "CAM",
        [
            ("Two-Person Tent", "139.00"),
            ("Three-Season Sleeping Bag", "79.00"),
            ("Headlamp 300lm", "24.99"),
            ("Insulated Water Bottle 1L", "29.99"),
            ("Compact Camping Stove", "49.99"),
            ("Trekking Poles Pair", "59.00"),
            ("Daypack 25L", "69.00"),
        ],
    ),
    (
        "sports-outdoors",
        "cycling",
        "Cycling",
        "CYC",
        [
            ("Bike Helmet", "59.99"),
            ("Rechargeable Bike Light Set", "34.99"),
            ("Hardened U-Lock", "44.99"),
            ("Cycling Gloves", "22.99"),
            ("Mini Pump", "19.99"),
            ("Bike Repair Kit", "27.99"),
        ],
    ),
    (
        "toys-games",
        "board-games",
        "Board Games",
        "BRD",
        [
            ("Strategy Board Game", "44.99"),
            ("Family Party Game", "24.99"),
            ("Cooperative Adventure Game", "59.99"),
            ("Classic Wooden Chess Set", "34.99"),
            ("Card Game Bundle", "19.99"),
            ("Trivia Night Game", "29.99"),
        ],
    ),
    (
        "toys-games",
        "building-sets",
        "Building Sets",
        "BLD",
        [
            ("Space Shuttle Building Set", "79.99"),
            ("City Fire Station Set", "99.99"),
            ("Creative Brick Box 500pc", "34.99"),
            ("Robotics Starter Kit", "129.00"),
            ("Marble Run Set", "49.99"),
            ("Magnetic Tiles 60pc", "64.99"),
        ],
    ),
    (
        "toys-games",
        "puzzles",
        "Puzzles",
        "PZL",
        [
            ("1000-Piece Landscape Puzzle", "19.99"),
            ("3D Wooden Puzzle", "29.99"),
            ("Kids Floor Puzzle", "14.99"),
            ("Puzzle Roll-Up Mat", "24.99"),
            ("Brain Teaser Set", "16.99"),
            ("500-Piece Art Puzzle", "15.99"),
        ],
    ),
    (
        "beauty",
        "skin-care",
        "Skin Care",
        "SKN",
        [
            ("Daily Moisturiser SPF30", "24.00"),
            ("Vitamin C Serum", "32.00"),
            ("Gentle Foaming Cleanser", "14.50"),
            ("Hydrating Sheet Masks 5-Pack", "18.00"),
            ("Lip Balm Trio", "9.50"),
            ("Night Repair Cream", "38.00"),
            ("Sunscreen Lotion SPF50", "16.00"),
        ],
    ),
    (
        "beauty",
        "hair-care",
        "Hair Care",
        "HAR",
        [
            ("Argan Oil Shampoo", "16.00"),
            ("Repair Conditioner", "16.00"),
            ("Ionic Hair Dryer", "89.00"),
            ("Ceramic Straightener", "69.00"),
            ("Wide-Tooth Comb Set", "9.00"),
            ("Hair Ties 30-Pack", "7.50"),
            ("Leave-In Conditioning Spray", "14.00"),
        ],
    ),
]

_TOP_CODES = {
    "electronics": "EL",
    "home-kitchen": "HK",
    "sports-outdoors": "SO",
    "toys-games": "TG",
    "beauty": "BE",
}

_PITCHES = [
    "Built to last and backed by a two-year warranty.",
    "A customer favourite, rated 4.6 out of 5.",
    "Thoughtfully designed for everyday use.",
    "Ships in recyclable, plastic-free packaging.",
    "Tested by our team before it made the catalog.",
    "Great value without cutting corners.",
]

# Units per line: cheap things are often bought several at a time, expensive ones singly.
_QTY_CHEAP = (0.55, 0.25, 0.12, 0.08)
_QTY_MID = (0.85, 0.12, 0.03)
_QTY_DEAR = (0.97, 0.03)

# How many products the supplier stops delivering near the end of the period.
_ENDING_OUT = 3
_ENDING_LOW = 3


def _cents(price: str) -> int:
    units, _, cents = price.partition(".")
    return int(units) * 100 + int(cents.ljust(2, "0"))


def build_catalog(seed: int) -> Catalog:
    """The catalog for this seed: categories parent-first, products in SKU order."""
    rng = random.Random(f"demo-catalog:{seed}")  # noqa: S311 - seeded so a seed repeats
    categories: list[CategorySpec] = []
    for slug, name, description, season in _TOPS:
        categories.append(CategorySpec(slug, name, description, None, season))
    for top, slug, name, _prefix, _items in _SUBS:
        parent = next(c for c in categories if c.slug == top)
        categories.append(CategorySpec(slug, name, f"{name} in {parent.name}.", top, parent.season))

    drafts: list[ProductSpec] = []
    for top, sub_slug, sub_name, prefix, items in _SUBS:
        for n, (name, list_price) in enumerate(items, start=1):
            price = _cents(list_price)
            margin = rng.uniform(0.22, 0.58)
            cost = round(price * (1 - margin))
            changed = rng.random() < 0.25
            if changed:
                # The list price went up during the period; cost went up a little less.
                uplift = rng.uniform(0.05, 0.12)
                old_price = round(price / (1 + uplift))
                old_margin = max(0.21, margin - rng.uniform(0.0, 0.03))
                old_cost = round(old_price * (1 - old_margin))
                change_at: float | None = rng.uniform(0.3, 0.8)
            else:
                old_price, old_cost, change_at = price, cost, None
            qty: tuple[float, ...]
            if price < 2000:
                qty = _QTY_CHEAP
            elif price < 15000:
                qty = _QTY_MID
            else:
                qty = _QTY_DEAR
            drafts.append(
                ProductSpec(
                    sku=f"{_TOP_CODES[top]}-{prefix}-{n:03d}",
                    name=name,
                    description=f"{name}. {rng.choice(_PITCHES)} Part of our {sub_name} range.",
                    category_slug=sub_slug,
                    top_slug=top,
                    price_cents=price,
                    cost_cents=cost,
                    old_price_cents=old_price,
                    old_cost_cents=old_cost,
                    price_change_at=change_at,
                    popularity=0.0,
                    lead_days=rng.randint(3, 10),
                    pack_size=6 if price < 2000 else (4 if price < 8000 else 2),
                    quantity_weights=qty,
                    ending="normal",
                )
            )

    # Long-tail popularity: a Zipf-like weight over a seeded ranking.
    ranks = list(range(len(drafts)))
    rng.shuffle(ranks)
    popularity = [1.0 / (rank + 1) ** 0.95 for rank in ranks]
    # Products that run short at the end: mid-popularity ones, so they sell enough to matter.
    middling = sorted(range(len(drafts)), key=lambda i: ranks[i])[10:60]
    short = rng.sample(middling, _ENDING_OUT + _ENDING_LOW)
    endings: dict[int, Ending] = {i: "out" for i in short[:_ENDING_OUT]}
    endings.update({i: "low" for i in short[_ENDING_OUT:]})

    products = [
        replace(draft, popularity=popularity[i], ending=endings.get(i, "normal"))
        for i, draft in enumerate(drafts)
    ]
    products.sort(key=lambda p: p.sku)
    return Catalog(categories=categories, products=products)
