// Inventory: the low-stock list (health, days of cover, projected stock-out date) per
// warehouse, and one product's stock ledger with a chart of its level over time.

import { products, reference, sales } from "../api.js";
import { categoryOptions } from "../categories.js";
import { stepChart } from "../charts.js";
import {
  badge,
  clear,
  dateTime,
  empty,
  errorState,
  field,
  h,
  hashWith,
  integer,
  loading,
  pager,
  select,
  STOCK_COLUMNS,
  table,
  warehouseLabel,
} from "../ui.js";

const PAGE = 50;
// Days of sales the cover figures measure, per product (sales_service) and per warehouse
// (the low-stock list): one window for both, so the two agree.
const WINDOW_DAYS = 28;
const NO_SALES = "no recent sales";
const MOVEMENT_TYPES = [
  "receipt",
  "sale",
  "adjustment",
  "damage",
  "return",
  "transfer_out",
  "transfer_in",
  "count_correction",
];

export async function render(root, route) {
  if (route.parts[0] === "product" && route.parts[1]) {
    return renderLedger(root, Number(route.parts[1]), Object.fromEntries(route.query));
  }
  return renderLowStock(root, Object.fromEntries(route.query));
}

// --- low stock -------------------------------------------------------------------------

async function renderLowStock(root, q) {
  const state = {
    warehouse_id: q.warehouse_id || "",
    category_id: q.category_id || "",
    threshold: q.threshold || "",
    include_ok: q.include_ok === "true",
    offset: Number(q.offset || 0),
  };
  const write = (changes) => {
    const next = { ...state, offset: 0, ...changes };
    location.hash = hashWith("inventory", {
      ...next,
      include_ok: next.include_ok ? "true" : "",
      offset: next.offset || "",
    });
  };
  const controls = h("form", {
    class: "controls",
    "aria-label": "Low-stock filters",
    onsubmit: (e) => e.preventDefault(),
  });
  const body = h("div", {}, loading());
  clear(
    root,
    h("h1", {}, "Inventory"),
    controls,
    h(
      "section",
      { class: "card", "aria-labelledby": "low-title" },
      h("h2", { id: "low-title" }, "Low stock"),
      body,
    ),
  );

  try {
    const [warehouses, categories] = await Promise.all([
      reference.warehouses(),
      reference.categories(),
    ]);
    clear(
      controls,
      field(
        "Warehouse",
        select(
          "warehouse_id",
          [["", "All warehouses"], ...warehouses.map((w) => [w.id, warehouseLabel(w)])],
          state.warehouse_id,
          {
            onchange: (e) => write({ warehouse_id: e.target.value }),
          },
        ),
      ),
      field(
        "Category",
        select(
          "category_id",
          [["", "All categories"], ...categoryOptions(categories)],
          state.category_id,
          {
            onchange: (e) => write({ category_id: e.target.value }),
          },
        ),
      ),
      field(
        "Threshold",
        h("input", {
          type: "number",
          min: "0",
          name: "threshold",
          value: state.threshold,
          placeholder: "each product's own",
          onchange: (e) => write({ threshold: e.target.value }),
        }),
      ),
      h(
        "label",
        { class: "check" },
        h("input", {
          type: "checkbox",
          name: "include_ok",
          checked: state.include_ok,
          onchange: (e) => write({ include_ok: e.target.checked }),
        }),
        "Include healthy products",
      ),
    );
  } catch (error) {
    if (error.status !== 401) clear(controls, errorState(error));
  }

  const show = async () => {
    clear(body, loading());
    try {
      const page = await products.get("/inventory/low-stock", {
        warehouse_id: state.warehouse_id,
        category_id: state.category_id,
        threshold: state.threshold,
        include_ok: state.include_ok || undefined,
        window_days: WINDOW_DAYS,
        limit: PAGE,
        offset: state.offset,
      });
      const ids = page.items.map((item) => item.product_id);
      const insight = ids.length
        ? await sales.get("/reports/inventory-insight", {
            product_id: ids,
            window_days: WINDOW_DAYS,
            limit: ids.length,
          })
        : { items: [] };
      const cover = new Map(insight.items.map((row) => [row.product_id, row]));
      const perWarehouse = state.warehouse_id ? " (all warehouses)" : "";
      clear(
        body,
        page.items.length
          ? table({
              testid: "low-stock",
              columns: [
                {
                  label: "Product",
                  value: (r) =>
                    h(
                      "a",
                      { href: `#/inventory/product/${r.product_id}` },
                      `${r.name}`,
                      h("span", { class: "muted" }, ` ${r.sku}`),
                    ),
                },
                { label: "Health", value: (r) => badge(r.health) },
                { label: "Available", value: (r) => integer(r.available), numeric: true },
                { label: "By warehouse", value: warehouseSplit },
                { label: "On hand", value: (r) => integer(r.on_hand), numeric: true },
                { label: "Reserved", value: (r) => integer(r.reserved), numeric: true },
                { label: "Threshold", value: (r) => integer(r.applied_threshold), numeric: true },
                {
                  label: "Sold per day",
                  value: (r) => cover.get(r.product_id)?.velocity_per_day ?? "–",
                  numeric: true,
                },
                {
                  label: `Days of cover${perWarehouse}`,
                  value: (r) => cover.get(r.product_id)?.days_of_cover ?? NO_SALES,
                  numeric: true,
                },
                {
                  label: "Projected stock-out",
                  value: (r) => cover.get(r.product_id)?.projected_stockout_date ?? "–",
                },
              ],
              rows: page.items,
            })
          : empty(state.include_ok ? "No products." : "No product is at or below its threshold."),
        page.total > PAGE
          ? pager({ ...page, onPage: (offset) => write({ ...state, offset }) })
          : null,
        insight.parameters
          ? h(
              "p",
              { class: "muted" },
              `Sales velocity over the ${insight.parameters.window_days} days to ${insight.parameters.as_of}; ` +
                "by warehouse, net units taken from its shelf by sales in the same days (UTC).",
            )
          : null,
      );
    } catch (error) {
      if (error.status !== 401) clear(body, errorState(error, show));
    }
  };
  await show();
}

// Each warehouse's stock of a low-stock row, and how long it lasts there at the pace sales
// took it: a small table of its own, with headers, so each figure is read with its name.
function warehouseSplit(row) {
  if (!row.warehouses.length) return "none stocked";
  return h(
    "table",
    { class: "split", "aria-label": `${row.sku} by warehouse` },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col" }, "Warehouse"),
        h("th", { scope: "col", class: "num" }, "Available"),
        h("th", { scope: "col", class: "num" }, "Days of cover"),
        h("th", { scope: "col" }, "Stock-out"),
      ),
    ),
    h(
      "tbody",
      {},
      row.warehouses.map((w) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, w.warehouse_code),
          h("td", { class: "num" }, integer(w.available)),
          h("td", { class: "num" }, w.days_of_cover ?? NO_SALES),
          h("td", {}, w.projected_stockout_date ?? "none projected"),
        ),
      ),
    ),
  );
}

// --- one product's ledger ----------------------------------------------------------------

async function renderLedger(root, productId, q) {
  const state = {
    warehouse_id: q.warehouse_id || "",
    type: q.type || "",
    offset: Number(q.offset || 0),
  };
  const write = (changes) => {
    const next = { ...state, offset: 0, ...changes };
    location.hash = hashWith(`inventory/product/${productId}`, {
      ...next,
      offset: next.offset || "",
    });
  };
  const head = h("div", {}, loading());
  const chartCard = h(
    "section",
    { class: "card", "aria-labelledby": "level-title" },
    h("h2", { id: "level-title" }, "Stock level over time"),
    loading(),
  );
  const movements = h("div", {}, loading());
  clear(
    root,
    h("p", {}, h("a", { href: "#/inventory" }, "← Low stock")),
    head,
    chartCard,
    h(
      "section",
      { class: "card", "aria-labelledby": "ledger-title" },
      h("h2", { id: "ledger-title" }, "Ledger"),
      movements,
    ),
  );

  let product;
  let warehouses;
  try {
    [product, warehouses] = await Promise.all([
      products.get(`/products/${productId}`),
      reference.warehouses(),
    ]);
  } catch (error) {
    if (error.status !== 401) clear(head, errorState(error));
    clear(chartCard);
    clear(movements);
    return;
  }
  const warehouseName = new Map(warehouses.map((w) => [w.id, w.code]));
  clear(
    head,
    h("h1", {}, `${product.name} `, h("span", { class: "muted" }, product.sku)),
    h(
      "div",
      { class: "toolbar" },
      product.low_stock ? badge("low", "low") : badge("ok"),
      h(
        "span",
        {},
        `Available ${integer(product.totals.available)} · on hand ${integer(product.totals.on_hand)} · reserved ${integer(product.totals.reserved)} · threshold ${product.low_stock_threshold}`,
      ),
      h("span", { class: "spacer" }),
      h("a", { href: `#/catalog/${product.id}` }, "Product in catalog"),
    ),
    h(
      "section",
      { class: "card", "aria-label": "Stock per warehouse" },
      table({
        caption: "Stock per warehouse",
        testid: "product-stock",
        columns: STOCK_COLUMNS,
        rows: product.stock,
        empty: "No stock in any warehouse yet.",
      }),
    ),
  );

  // The chart: the latest 500 movements, oldest first, one step line per warehouse.
  products
    .get(`/inventory/products/${productId}/movements`, { sort: "-created_at,-id", limit: 500 })
    .then((page) => {
      const rows = [...page.items].reverse();
      if (!rows.length) {
        clear(
          chartCard,
          h("h2", { id: "level-title" }, "Stock level over time"),
          empty("No movements yet."),
        );
        return;
      }
      const ids = [...new Set(rows.map((m) => m.warehouse_id))];
      const level = new Map();
      const series = new Map(ids.map((id) => [id, []]));
      const total = [];
      for (const m of rows) {
        if (!level.has(m.warehouse_id)) level.set(m.warehouse_id, m.on_hand_after - m.quantity);
        level.set(m.warehouse_id, m.on_hand_after);
        for (const id of ids) series.get(id).push(level.has(id) ? level.get(id) : null);
        total.push([...level.values()].reduce((a, b) => a + b, 0));
      }
      const labels = rows.map((m) => dateTime(m.created_at));
      const lines = ids.map((id) => ({
        label: `On hand, ${warehouseName.get(id) ?? id}`,
        data: series.get(id),
      }));
      if (ids.length > 1) lines.push({ label: "On hand, these warehouses", data: total });
      clear(
        chartCard,
        h("h2", { id: "level-title" }, "Stock level over time"),
        stepChart(
          `On hand of ${product.name} after each of its last ${rows.length} movements`,
          labels,
          lines,
        ),
        page.total > rows.length
          ? h(
              "p",
              { class: "muted" },
              `The last ${rows.length} of ${integer(page.total)} movements.`,
            )
          : null,
      );
    })
    .catch((error) => {
      if (error.status !== 401) clear(chartCard, errorState(error));
    });

  const filters = h(
    "form",
    { class: "controls", "aria-label": "Ledger filters", onsubmit: (e) => e.preventDefault() },
    field(
      "Warehouse",
      select(
        "warehouse_id",
        [["", "All warehouses"], ...warehouses.map((w) => [w.id, warehouseLabel(w)])],
        state.warehouse_id,
        {
          onchange: (e) => write({ warehouse_id: e.target.value }),
        },
      ),
    ),
    field(
      "Movement",
      select(
        "type",
        [["", "All movements"], ...MOVEMENT_TYPES.map((t) => [t, t.replace("_", " ")])],
        state.type,
        {
          onchange: (e) => write({ type: e.target.value }),
        },
      ),
    ),
  );
  const list = h("div", {}, loading());
  clear(movements, filters, list);
  const show = async () => {
    clear(list, loading());
    try {
      const page = await products.get(`/inventory/products/${productId}/movements`, {
        warehouse_id: state.warehouse_id,
        type: state.type,
        sort: "-created_at,-id",
        limit: PAGE,
        offset: state.offset,
      });
      clear(
        list,
        table({
          testid: "ledger",
          columns: [
            { label: "When", value: (m) => dateTime(m.created_at) },
            { label: "Movement", value: (m) => m.type.replace("_", " ") },
            {
              label: "Warehouse",
              value: (m) => warehouseName.get(m.warehouse_id) ?? m.warehouse_id,
            },
            { label: "Quantity", value: (m) => integer(m.quantity, { sign: true }), numeric: true },
            { label: "On hand after", value: (m) => integer(m.on_hand_after), numeric: true },
            { label: "Reason", value: (m) => m.reason || "–" },
            { label: "Reference", value: (m) => m.reference || "–", class: "mono" },
            { label: "By", value: (m) => m.actor_email || "system" },
          ],
          rows: page.items,
          empty: "No movements match.",
        }),
        pager({ ...page, onPage: (offset) => write({ ...state, offset }) }),
      );
    } catch (error) {
      if (error.status !== 401) clear(list, errorState(error, show));
    }
  };
  await show();
}
