"""Bulk imports of products_service: the catalog upserted by SKU, and stock counts as count
corrections (the pass, the report and all-or-nothing: common.imports).

Rows are written with the events, audit entries and ledger rows the single routes write,
through the products and inventory services, a batch at a time: one lookup of the batch's
SKUs, then a few multi-row statements (``products.service.save_many``), no object per row.
Importing the same file again changes nothing: a row that matches what is stored (a
product's fields, a level's on-hand count) is counted as unchanged and writes nothing.

Memory: one batch of rows at a time and the category tree, never the file; the keys seen
(to refuse a SKU twice in one file) are kept in a temporary table (common.imports.FirstRows).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from common import audit
from common.contracts import MAX_QUANTITY
from common.delimited import (
    Columns,
    Encoding,
    Problem,
    Record,
    TableFormat,
    looks_like_formula,
    problem,
    unguard_formula,
)
from common.imports import (
    ImportFile,
    ImportRejected,
    ImportReport,
    Progress,
    Tally,
    run_import,
    validation_problems,
)
from common.models import MovementType, StockLevel, Warehouse
from products_service.categories import repository as categories_repository
from products_service.categories import service as categories_service
from products_service.categories.schemas import CategoryCreate, CategoryName
from products_service.imports import repository
from products_service.inventory.ledger import LevelKey, lock_levels
from products_service.inventory.service import correct_counts, count_shortfall
from products_service.products import service as products_service
from products_service.products.schemas import ProductCreate, ProductUpdate, Sku

__all__ = ["ImportRejected", "ImportReport", "Progress"]  # what callers of imports meet

DEFAULT_COUNT_REASON = "stock count import"


@dataclass(frozen=True)
class ImportOptions:
    """How to read the file and what the caller allows."""

    file_name: str | None = None
    encoding: Encoding = Encoding.UTF8
    table_format: TableFormat | None = None  # None: by the file name (.tsv, .txt: tabs)
    dry_run: bool = False
    actor_id: int | None = None
    actor_email: str | None = None
    create_categories: bool = False  # products: create a missing category path
    reason: str = DEFAULT_COUNT_REASON  # stock counts: the ledger's reason

    @property
    def file(self) -> ImportFile:
        return ImportFile(self.file_name, self.encoding, self.table_format, self.dry_run)


# --- products ----------------------------------------------------------------------------

PRODUCT_COLUMNS = Columns(
    required=("sku",),
    optional=(
        "name",
        "description",
        "category",
        "price",
        "cost_price",
        "low_stock_threshold",
        "status",
    ),
    aliases={"cost": "cost_price", "threshold": "low_stock_threshold"},
)
_TEXT_COLUMNS = ("name", "description", "category")
_MONEY_COLUMNS = ("price", "cost_price")
_SKU = TypeAdapter(Sku)
_CATEGORY_NAME = TypeAdapter(CategoryName)
_NEEDED_FOR_NEW = {n for n, f in ProductCreate.model_fields.items() if f.is_required()} - {"sku"}
# The cells of a row, checked as a ProductUpdate's fields are, into a plain dict of the
# fields given (a model, then its dump, cost twice as much a row).
_PRODUCT_CELLS: TypeAdapter[dict[str, Any]] = TypeAdapter(
    TypedDict(  # type: ignore[operator]
        "ProductCells",
        {n: f.rebuild_annotation() for n, f in ProductUpdate.model_fields.items()},
        total=False,
    )
)
CATEGORY_SEPARATOR = "/"


@dataclass(frozen=True)
class _ProductRow:
    row: int
    sku: str
    values: dict[str, Any]  # the cells given, checked (an empty cell leaves a field as it is)
    category: tuple[str, ...] | None
    cells: dict[str, str]


class _CategoryTree:
    """Category paths (``Electronics/Audio``, names in any case) to ids; missing ones are
    planned, and created as the real run meets them when the caller allows it."""

    def __init__(self, session: Session, tally: Tally, options: ImportOptions) -> None:
        self.session = session
        self.tally = tally
        self.options = options
        rows = repository.all_categories(session)
        by_id = {c.id: c for c in rows}
        self.known: dict[tuple[str, ...], tuple[int, bool]] = {}
        self.names: dict[int, str] = {}
        for category in rows:
            chain = [by_id[i] for i in categories_service.path_ids(category.path) if i in by_id]
            self.known[tuple(c.name.casefold() for c in chain)] = (
                category.id,
                category.archived_at is not None,
            )
            self.names[category.id] = CATEGORY_SEPARATOR.join(c.name for c in chain)
        self.slugs = {c.slug for c in rows}
        self.locked: set[int] = set()
        self.found: dict[tuple[str, ...], int] = {}  # paths as written in the file
        self._planned = 0

    def path_of(self, category_id: int | None) -> str | None:
        return None if category_id is None else self.names.get(category_id)

    def resolve(self, segments: tuple[str, ...], row: int, *, write: bool) -> int | Problem:
        """The category's id (negative: one a dry run would create), or why not."""
        # Most rows name a path met before: its id was found (and locked) then.
        found = self.found.get(segments)
        if found is None:
            resolved = self._resolve(segments, row, write=write)
            if isinstance(resolved, Problem):
                return resolved
            found = self.found[segments] = resolved
        return found

    def _resolve(self, segments: tuple[str, ...], row: int, *, write: bool) -> int | Problem:
        path = CATEGORY_SEPARATOR.join(segments)
        key = tuple(s.casefold() for s in segments)
        if key in self.known:
            category_id, archived = self.known[key]
            if archived:
                return problem(
                    "category_archived",
                    f"category {path!r} is archived; restore it first",
                    row=row,
                    column="category",
                    value=path,
                )
            if write and category_id not in self.locked:
                # As a single create or update does: it cannot be archived before we commit.
                categories_repository.get(self.session, category_id, lock="share")
                self.locked.add(category_id)
            return category_id
        if not self.options.create_categories:
            return problem(
                "category_not_found",
                f"no category {path!r}; create it first, or import with create_categories=true",
                row=row,
                column="category",
                value=path,
            )
        parent_id: int | None = None
        for depth in range(1, len(segments) + 1):
            prefix = key[:depth]
            if prefix in self.known:
                parent_id, archived = self.known[prefix]
                if archived:
                    return problem(
                        "category_archived",
                        f"category {CATEGORY_SEPARATOR.join(segments[:depth])!r} is archived; "
                        "restore it first",
                        row=row,
                        column="category",
                        value=path,
                    )
                continue
            made = self._create(segments[:depth], parent_id, row, write=write)
            if isinstance(made, Problem):
                return made
            parent_id = made
        assert parent_id is not None
        return parent_id

    def _create(
        self, segments: tuple[str, ...], parent_id: int | None, row: int, *, write: bool
    ) -> int | Problem:
        path = CATEGORY_SEPARATOR.join(segments)
        try:
            name = _CATEGORY_NAME.validate_python(segments[-1])
        except ValidationError as exc:
            return problem(
                "invalid_value",
                f"category name {segments[-1]!r}: {exc.errors()[0]['msg']}",
                row=row,
                column="category",
                value=path,
            )
        candidates = (
            categories_service.slugify(name),
            categories_service.slugify("-".join(segments)),
        )
        slug = next((s for s in candidates if s and not s.isdigit() and s not in self.slugs), None)
        if slug is None:
            return problem(
                "category_slug_taken",
                f"cannot create category {path!r}: its slug ({candidates[0]!r}) is taken; "
                "create it by hand with a slug of its own",
                row=row,
                column="category",
                value=path,
            )
        if write and parent_id is not None and parent_id < 0:
            raise AssertionError("a real run creates parents before their children")
        if write:
            category = categories_service.create_category(
                session=self.session,
                data=CategoryCreate(name=name, slug=slug, parent_id=parent_id),
                actor_id=self.options.actor_id,
                actor_email=self.options.actor_email,
            )
            category_id = category.id
            self.locked.add(category_id)
        else:
            self._planned += 1
            category_id = -self._planned
        self.slugs.add(slug)
        self.known[tuple(s.casefold() for s in segments)] = (category_id, False)
        self.names[category_id] = path
        self.tally.categories_created.append(path)
        return category_id


class _ProductImporter:
    columns = PRODUCT_COLUMNS

    def __init__(self, session: Session, tally: Tally, options: ImportOptions) -> None:
        self.session = session
        self.tally = tally
        self.options = options
        self._tree: _CategoryTree | None = None

    @property
    def tree(self) -> _CategoryTree:
        if self._tree is None:
            self._tree = _CategoryTree(self.session, self.tally, self.options)
        return self._tree

    def check(self, record: Record) -> _ProductRow | list[Problem]:
        row = record.row
        cells = {name: value.strip() for name, value in record.cells.items()}
        problems: list[Problem] = []
        try:
            sku = _SKU.validate_python(cells["sku"])
        except ValidationError as exc:
            reason = "is required" if not cells["sku"] else exc.errors()[0]["msg"]
            return [problem("invalid_value", reason, row=row, column="sku", value=cells["sku"])]
        given: dict[str, Any] = {}
        path = ""
        for name, value in cells.items():
            if name == "sku" or value == "":
                continue
            if name in _TEXT_COLUMNS:
                quoted = unguard_formula(value)
                if quoted is not None:
                    value = quoted  # an export's guarded text: text, not a formula
                elif looks_like_formula(value):
                    problems.append(
                        problem(
                            "formula_refused",
                            "starts like a spreadsheet formula (=, + or @); write it without, "
                            "or quote it as text with a leading '",
                            row=row,
                            column=name,
                            value=value,
                        )
                    )
                    continue
            if name in _MONEY_COLUMNS and value.startswith("-"):
                problems.append(
                    problem(
                        "invalid_value", "must not be negative", row=row, column=name, value=value
                    )
                )
            elif name == "low_stock_threshold":
                if not value.isascii() or not value.isdigit():
                    problems.append(
                        problem(
                            "invalid_value",
                            "must be a whole number, 0 or more",
                            row=row,
                            column=name,
                            value=value,
                        )
                    )
                else:
                    given[name] = int(value)
            elif name == "status":
                given[name] = value.lower()
            elif name == "category":
                path = value
            else:
                given[name] = value
        category = None
        if path:
            category = tuple(s.strip() for s in path.split(CATEGORY_SEPARATOR))
            if not all(category):
                problems.append(
                    problem(
                        "invalid_value",
                        f"a category path names categories separated by "
                        f"'{CATEGORY_SEPARATOR}', e.g. Electronics/Audio",
                        row=row,
                        column="category",
                        value=cells["category"],
                    )
                )
        try:
            values = _PRODUCT_CELLS.validate_python(given)
        except ValidationError as exc:
            problems.extend(validation_problems(exc, row, cells, missing_reason="is required"))
        if problems:
            return problems
        return _ProductRow(row=row, sku=sku, values=values, category=category, cells=cells)

    def finish(self, *, write: bool) -> None:
        """Every batch is settled whole: nothing is held back."""

    def settle(self, rows: list[_ProductRow], *, write: bool) -> None:
        rows = self.tally.without_repeats(
            rows,
            lambda item: (item.sku.casefold(), item.row),
            lambda item, first: problem(
                "duplicate_key",
                f"SKU {item.sku!r} is also in row {first} (SKUs match in any case); a file "
                "names each SKU once",
                row=item.row,
                column="sku",
                value=item.sku,
            ),
        )
        if not rows:
            return
        existing = repository.products_by_skus(self.session, [r.sku for r in rows], lock=write)
        creates: list[ProductCreate] = []
        updates: list[tuple[Mapping[str, Any], dict[str, Any]]] = []
        for item in rows:
            fields = dict(item.values)
            category_id: int | None = None
            if item.category is not None:
                resolved = self.tree.resolve(item.category, item.row, write=write)
                if isinstance(resolved, Problem):
                    self.tally.reject([resolved])
                    continue
                category_id = resolved
            product = existing.get(item.sku.casefold())
            if product is None:
                self._plan_create(item, fields, category_id, creates)
            else:
                if item.category is not None:
                    fields["category_id"] = category_id
                self._plan_update(item, product, fields, updates)
        if write and self.tally.ok and (creates or updates):
            products_service.save_many(
                session=self.session,
                creates=creates,
                updates=updates,
                actor_id=self.options.actor_id,
                actor_email=self.options.actor_email,
            )

    def _plan_create(
        self,
        item: _ProductRow,
        fields: dict[str, Any],
        category_id: int | None,
        creates: list[ProductCreate],
    ) -> None:
        if fields.keys() >= _NEEDED_FOR_NEW:
            # Each value was checked as ProductUpdate checks it, with ProductCreate's types;
            # what a new product adds is only that these are given.
            data = ProductCreate.model_construct(**fields, sku=item.sku)
        else:
            try:
                data = ProductCreate.model_validate({**fields, "sku": item.sku})
            except ValidationError as exc:
                self.tally.reject(
                    validation_problems(
                        exc, item.row, item.cells, missing_reason="is required for a new product"
                    )
                )
                return
        data.category_id = category_id  # checked by the tree (a dry run's may be planned)
        creates.append(data)
        self.tally.change(item.row, "create", item.sku, {})

    def _plan_update(
        self,
        item: _ProductRow,
        product: Mapping[str, Any],
        fields: dict[str, Any],
        updates: list[tuple[Mapping[str, Any], dict[str, Any]]],
    ) -> None:
        changes = {f: v for f, v in fields.items() if product[f] != v}
        if not changes:
            self.tally.unchanged += 1
            return
        shown = audit.diff({f: product[f] for f in changes}, changes)
        if "category_id" in shown:
            shown["category"] = {
                "before": self.tree.path_of(product["category_id"]),
                "after": self.tree.path_of(changes["category_id"]),
            }
            del shown["category_id"]
        updates.append((product, changes))
        self.tally.change(item.row, "update", item.sku, shown)


def import_products(
    *,
    session: Session,
    binary: IO[bytes],
    options: ImportOptions,
    progress: Progress | None = None,
) -> ImportReport:
    """Upsert products by SKU from a CSV/TSV file (columns: ``PRODUCT_COLUMNS``); see
    common.imports for the pass. The caller commits the session when it returns."""
    return run_import(
        binary,
        session=session,
        kind="products",
        factory=lambda tally: _ProductImporter(session, tally, options),
        file=options.file,
        progress=progress,
    )


# --- stock counts ------------------------------------------------------------------------

COUNT_COLUMNS = Columns(
    required=("sku", "warehouse", "counted_quantity"),
    aliases={
        "warehouse_code": "warehouse",
        "quantity": "counted_quantity",
        "counted": "counted_quantity",
    },
)
REFERENCE_LENGTH = 120  # stock_movements.reference


@dataclass(frozen=True)
class _CountRow:
    row: int
    sku: str
    warehouse: str
    counted: int
    cells: dict[str, str]


class _CountImporter:
    columns = COUNT_COLUMNS

    def __init__(self, session: Session, tally: Tally, options: ImportOptions) -> None:
        self.session = session
        self.tally = tally
        self.options = options
        self.warehouses: dict[str, Warehouse] = repository.all_warehouses(session)
        self.reference = (options.file_name or "stock count import")[:REFERENCE_LENGTH]

    def check(self, record: Record) -> _CountRow | list[Problem]:
        row = record.row
        cells = {name: value.strip() for name, value in record.cells.items()}
        problems = [
            problem("missing_value", "is required", row=row, column=name)
            for name in ("sku", "warehouse")
            if not cells[name]
        ]
        counted = cells["counted_quantity"]
        if not counted.isascii() or not counted.isdigit() or int(counted) > MAX_QUANTITY:
            problems.append(
                problem(
                    "invalid_value",
                    f"must be a whole number from 0 to {MAX_QUANTITY}",
                    row=row,
                    column="counted_quantity",
                    value=counted,
                )
            )
        if problems:
            return problems
        return _CountRow(
            row=row,
            sku=cells["sku"],
            warehouse=cells["warehouse"],
            counted=int(counted),
            cells=cells,
        )

    def finish(self, *, write: bool) -> None:
        """Every batch is settled whole: nothing is held back."""

    def settle(self, rows: list[_CountRow], *, write: bool) -> None:
        rows = self.tally.without_repeats(
            rows,
            lambda item: (f"{item.sku.casefold()}\x1f{item.warehouse.casefold()}", item.row),
            lambda item, first: problem(
                "duplicate_key",
                f"SKU {item.sku!r} in warehouse {item.warehouse!r} is also counted in row "
                f"{first}; a file counts each shelf once",
                row=item.row,
                column="sku",
                value=item.sku,
            ),
        )
        if not rows:
            return
        products = repository.products_by_skus(self.session, {r.sku for r in rows}, lock=False)
        found: list[tuple[_CountRow, LevelKey]] = []
        for item in rows:
            product = products.get(item.sku.casefold())
            warehouse = self.warehouses.get(item.warehouse.casefold())
            problems = []
            if product is None:
                problems.append(
                    problem(
                        "unknown_sku",
                        "no product has this SKU",
                        row=item.row,
                        column="sku",
                        value=item.sku,
                    )
                )
            if warehouse is None:
                problems.append(
                    problem(
                        "unknown_warehouse",
                        "no warehouse has this code",
                        row=item.row,
                        column="warehouse",
                        value=item.warehouse,
                    )
                )
            if product is None or warehouse is None:
                self.tally.reject(problems)
                continue
            found.append((item, (product["id"], warehouse.id)))
        keys = [key for _, key in found]
        writing = write and self.tally.ok
        levels = (
            lock_levels(self.session, keys) if writing else repository.levels(self.session, keys)
        )
        corrections: list[tuple[StockLevel, int]] = []
        for item, key in found:
            level = levels.get(key) or StockLevel(
                product_id=key[0], warehouse_id=key[1], on_hand=0, reserved=0
            )
            shortfall = count_shortfall(level, item.counted)
            if shortfall is not None:
                self.tally.reject(
                    [
                        problem(
                            "insufficient_stock",
                            f"counted {item.counted}, but {level.reserved} are reserved on "
                            "this shelf; release or commit those reservations first",
                            row=item.row,
                            column="counted_quantity",
                            value=item.cells["counted_quantity"],
                        )
                    ]
                )
                continue
            if item.counted == level.on_hand:
                self.tally.unchanged += 1
                continue
            self.tally.change(
                item.row,
                "update",
                f"{item.sku}@{item.warehouse}",
                {
                    "on_hand": {"before": level.on_hand, "after": item.counted},
                    MovementType.COUNT_CORRECTION.value: {
                        "before": None,
                        "after": item.counted - level.on_hand,
                    },
                },
            )
            corrections.append((level, item.counted))
        if writing and self.tally.ok and corrections:
            correct_counts(
                self.session,
                corrections,
                reason=self.options.reason,
                reference=self.reference,
                actor_id=self.options.actor_id,
            )


def import_stock_counts(
    *,
    session: Session,
    binary: IO[bytes],
    options: ImportOptions,
    progress: Progress | None = None,
) -> ImportReport:
    """Set each counted shelf's on-hand stock (columns: sku, warehouse code,
    counted_quantity) with `count_correction` ledger movements naming the file; a shelf that
    already matches records nothing. The caller commits the session when it returns."""
    return run_import(
        binary,
        session=session,
        kind="stock_counts",
        factory=lambda tally: _CountImporter(session, tally, options),
        file=options.file,
        progress=progress,
    )
