// Catalog: products with search and filters; register a product (category from the tree,
// opening stock per warehouse), edit, archive and restore; receive, adjust, count and
// transfer stock.

import { forget, newKey, products, reference } from "../api.js";
import { categoryOptions } from "../categories.js";
import { stockActions, transferStep } from "./stock.js";
import {
  badge,
  busy,
  clear,
  confirmDialog,
  dateTime,
  errorState,
  field,
  formError,
  h,
  hashWith,
  integer,
  loading,
  money,
  pager,
  select,
  showFormError,
  STOCK_COLUMNS,
  table,
  toast,
  warehouseLabel,
} from "../ui.js";

const PAGE = 25;
const STATUSES = [
  ["active", "Active"],
  ["draft", "Draft"],
  ["inactive", "Inactive"],
];
const SORTS = [
  ["name", "Name"],
  ["sku", "SKU"],
  ["-created_at", "Newest"],
  ["price", "Price, lowest"],
  ["-price", "Price, highest"],
  ["stock", "Available, lowest"],
  ["-stock", "Available, highest"],
];
const MONEY_PATTERN = "\\d{1,10}(\\.\\d{1,2})?";

export async function render(root, route) {
  if (route.parts[0] === "new") return renderForm(root, route, null);
  if (route.parts[0]) return renderProduct(root, route, Number(route.parts[0]));
  return renderList(root, route);
}

// --- the list ----------------------------------------------------------------------------

async function renderList(root, route) {
  const q = Object.fromEntries(route.query);
  const state = {
    q: q.q || "",
    category_id: q.category_id || "",
    status: q.status || "",
    low_stock_only: q.low_stock_only === "true",
    include_archived: q.include_archived === "true",
    sort: q.sort || "name",
    offset: Number(q.offset || 0),
  };
  const write = (changes) => {
    const next = { ...state, offset: 0, ...changes };
    location.hash = hashWith("catalog", {
      ...next,
      low_stock_only: next.low_stock_only ? "true" : "",
      include_archived: next.include_archived ? "true" : "",
      sort: next.sort === "name" ? "" : next.sort,
      offset: next.offset || "",
    });
  };
  const controls = h(
    "form",
    { class: "controls", role: "search", "aria-label": "Product filters" },
    loading(),
  );
  const body = h("div", {}, loading());
  clear(
    root,
    h(
      "div",
      { class: "toolbar" },
      h("h1", {}, "Catalog"),
      h("span", { class: "spacer" }),
      route.canWrite
        ? h("a", { href: "#/catalog/new", class: "button primary" }, "Register a product")
        : null,
    ),
    controls,
    h("section", { class: "card", "aria-label": "Products" }, body),
  );
  let categories = [];
  try {
    categories = await reference.categories();
  } catch (error) {
    if (error.status === 401) return;
  }
  const search = h("input", {
    type: "search",
    name: "q",
    value: state.q,
    placeholder: "Name or SKU",
  });
  clear(
    controls,
    field("Search", search),
    field(
      "Category",
      select(
        "category_id",
        [["", "All categories"], ...categoryOptions(categories)],
        state.category_id,
        { onchange: (e) => write({ category_id: e.target.value }) },
      ),
    ),
    field(
      "Status",
      select("status", [["", "Any status"], ...STATUSES, ["archived", "Archived"]], state.status, {
        onchange: (e) => write({ status: e.target.value }),
      }),
    ),
    field(
      "Sort",
      select("sort", SORTS, state.sort, { onchange: (e) => write({ sort: e.target.value }) }),
    ),
    h(
      "label",
      { class: "check" },
      h("input", {
        type: "checkbox",
        checked: state.low_stock_only,
        onchange: (e) => write({ low_stock_only: e.target.checked }),
      }),
      "Low stock only",
    ),
    h(
      "label",
      { class: "check" },
      h("input", {
        type: "checkbox",
        checked: state.include_archived,
        onchange: (e) => write({ include_archived: e.target.checked }),
      }),
      "Include archived",
    ),
    h("button", { type: "submit" }, "Search"),
  );
  controls.addEventListener("submit", (e) => {
    e.preventDefault();
    write({ q: search.value.trim() });
  });

  const show = async () => {
    clear(body, loading());
    try {
      const page = await products.get("/products", {
        q: state.q,
        category_id: state.category_id,
        status: state.status,
        low_stock_only: state.low_stock_only || undefined,
        include_archived: state.include_archived || undefined,
        sort: state.sort,
        limit: PAGE,
        offset: state.offset,
      });
      clear(
        body,
        table({
          testid: "products",
          columns: [
            {
              label: "SKU",
              value: (p) => h("a", { href: `#/catalog/${p.id}` }, p.sku),
              class: "mono",
            },
            { label: "Name", value: (p) => p.name },
            { label: "Category", value: (p) => p.category?.name ?? "–" },
            { label: "Price", value: (p) => money(p.price), numeric: true },
            { label: "Cost", value: (p) => money(p.cost_price), numeric: true },
            { label: "Available", value: (p) => integer(p.totals.available), numeric: true },
            {
              label: "Status",
              value: (p) => [
                badge(p.status),
                p.low_stock ? [" ", badge("low")] : null,
              ],
            },
          ],
          rows: page.items,
          empty: state.q ? `No product matches "${state.q}".` : "No products yet.",
        }),
        pager({ ...page, onPage: (offset) => write({ offset }) }),
      );
    } catch (error) {
      if (error.status !== 401) clear(body, errorState(error, show));
    }
  };
  await show();
}

// --- register / edit ---------------------------------------------------------------------

async function renderForm(root, route, product) {
  const title = product ? `Edit ${product.name}` : "Register a product";
  const box = h("div", {}, loading());
  clear(
    root,
    h("p", {}, h("a", { href: product ? `#/catalog/${product.id}` : "#/catalog" }, "← Back")),
    h("h1", {}, title),
    box,
  );
  if (!route.canWrite) {
    clear(box, errorState(new Error("Your role may not change the catalog.")));
    return;
  }
  let categories;
  let warehouses;
  try {
    [categories, warehouses] = await Promise.all([reference.categories(), reference.warehouses()]);
  } catch (error) {
    if (error.status !== 401) clear(box, errorState(error));
    return;
  }
  const value = (name, fallback = "") => (product ? String(product[name] ?? fallback) : fallback);
  const error = formError();
  const active = warehouses.filter((w) => w.is_active);
  const form = h(
    "form",
    { class: "card", "aria-label": title },
    h(
      "div",
      { class: "form-grid" },
      field(
        "SKU",
        h("input", {
          name: "sku",
          required: true,
          maxlength: "64",
          value: value("sku"),
          autocomplete: "off",
        }),
      ),
      field(
        "Name",
        h("input", { name: "name", required: true, maxlength: "200", value: value("name") }),
      ),
      field(
        "Category",
        select(
          "category_id",
          [["", "No category"], ...categoryOptions(categories)],
          product?.category_id ?? "",
        ),
      ),
      field(
        "Price",
        h("input", {
          name: "price",
          required: true,
          inputmode: "decimal",
          pattern: MONEY_PATTERN,
          value: value("price"),
        }),
        "e.g. 19.90",
      ),
      field(
        "Cost price",
        h("input", {
          name: "cost_price",
          required: true,
          inputmode: "decimal",
          pattern: MONEY_PATTERN,
          value: value("cost_price"),
        }),
      ),
      // An archived product's stored status is not shown; leave it as it is (restore it).
      product?.status === "archived"
        ? null
        : field("Status", select("status", STATUSES, product?.status ?? "active")),
      field(
        "Low-stock threshold",
        h("input", {
          name: "low_stock_threshold",
          type: "number",
          min: "0",
          required: true,
          value: value("low_stock_threshold", "10"),
        }),
      ),
      h(
        "div",
        { class: "wide" },
        field(
          "Description",
          h("textarea", { name: "description", maxlength: "2000" }, value("description")),
        ),
      ),
    ),
    product
      ? null
      : h(
          "fieldset",
          { class: "line" },
          h("legend", {}, "Opening stock"),
          h(
            "div",
            { class: "form-grid" },
            active.map((w) =>
              field(
                warehouseLabel(w),
                h("input", {
                  type: "number",
                  min: "0",
                  value: "0",
                  name: `opening-${w.id}`,
                  dataset: { warehouseId: String(w.id) },
                }),
              ),
            ),
          ),
        ),
    error,
    h(
      "div",
      { class: "actions" },
      h(
        "button",
        { type: "submit", class: "primary" },
        product ? "Save changes" : "Register product",
      ),
    ),
  );
  const key = newKey();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showFormError(error, null);
    const data = new FormData(form);
    const body = {
      sku: data.get("sku").trim(),
      name: data.get("name").trim(),
      description: data.get("description"),
      category_id: data.get("category_id") ? Number(data.get("category_id")) : null,
      price: data.get("price").trim(),
      cost_price: data.get("cost_price").trim(),
      status: data.get("status") ?? undefined,
      low_stock_threshold: Number(data.get("low_stock_threshold")),
    };
    await busy(form, async () => {
      try {
        if (product) {
          await products.patch(`/products/${product.id}`, body);
          forget("products");
          toast("Saved.", "success");
          location.hash = `#/catalog/${product.id}`;
          return;
        }
        const created = await products.post("/products", body);
        forget("products");
        // Opening stock: one receipt per warehouse, each under a key of its own.
        const failures = [];
        for (const input of form.querySelectorAll("[data-warehouse-id]")) {
          const quantity = Number(input.value);
          if (!quantity) continue;
          try {
            await products.post(
              "/inventory/receipts",
              {
                product_id: created.id,
                warehouse_id: Number(input.dataset.warehouseId),
                quantity,
                reason: "opening stock",
              },
              { key: `${key}-${input.dataset.warehouseId}` },
            );
          } catch (failure) {
            if (failure.status === 401) return;
            failures.push(failure.message);
          }
        }
        if (failures.length)
          toast(
            `Product registered, but some opening stock was not: ${failures.join("; ")}`,
            "error",
          );
        else toast(`${created.name} registered.`, "success");
        location.hash = `#/catalog/${created.id}`;
      } catch (failure) {
        if (failure.status !== 401) showFormError(error, failure);
      }
    });
  });
  clear(box, form);
}

// --- one product: details, archive, stock actions --------------------------------------

async function renderProduct(root, route, productId) {
  if (route.parts[1] === "edit") {
    const box = h("div", {}, loading());
    clear(root, box);
    try {
      const product = await products.get(`/products/${productId}`);
      return renderForm(root, route, product);
    } catch (error) {
      if (error.status !== 401) clear(box, errorState(error));
      return;
    }
  }
  const box = h("div", {}, loading());
  clear(root, h("p", {}, h("a", { href: "#/catalog" }, "← Catalog")), box);
  let product;
  let warehouses;
  let transfers;
  try {
    [product, warehouses, transfers] = await Promise.all([
      products.get(`/products/${productId}`),
      reference.warehouses(),
      products.get("/inventory/transfers", {
        product_id: productId,
        status: "in_transit",
        limit: 50,
      }),
    ]);
  } catch (error) {
    if (error.status !== 401) clear(box, errorState(error));
    return;
  }
  const reload = () => renderProduct(root, route, productId);
  const archived = Boolean(product.archived_at);
  const writeActions = route.canWrite
    ? h(
        "div",
        { class: "row-actions" },
        h("a", { href: `#/catalog/${product.id}/edit`, class: "button" }, "Edit"),
        h(
          "button",
          {
            type: "button",
            class: archived ? "" : "danger",
            onclick: async () => {
              if (
                !archived &&
                !(await confirmDialog(
                  `Archive ${product.name}?`,
                  "An archived product can no longer be sold; it can be restored.",
                  "Archive",
                ))
              )
                return;
              try {
                await products.post(`/products/${product.id}/${archived ? "restore" : "archive"}`);
                forget("products");
                toast(archived ? "Restored." : "Archived.", "success");
                reload();
              } catch (error) {
                if (error.status !== 401) toast(error.message, "error");
              }
            },
          },
          archived ? "Restore" : "Archive",
        ),
      )
    : null;
  const warehouseName = new Map(warehouses.map((w) => [w.id, warehouseLabel(w)]));
  clear(
    box,
    h(
      "div",
      { class: "toolbar" },
      h("h1", {}, product.name),
      badge(product.status),
      h("span", { class: "spacer" }),
      writeActions,
    ),
    h(
      "div",
      { class: "grid-2" },
      h(
        "section",
        { class: "card", "aria-label": "Product" },
        h(
          "dl",
          { class: "facts", dataset: { testid: "product-facts" } },
          h("dt", {}, "SKU"),
          h("dd", { class: "mono" }, product.sku),
          h("dt", {}, "Category"),
          h("dd", {}, product.category?.name ?? "–"),
          h("dt", {}, "Price"),
          h("dd", {}, money(product.price)),
          h("dt", {}, "Cost price"),
          h("dd", {}, money(product.cost_price)),
          h("dt", {}, "Low-stock threshold"),
          h("dd", {}, String(product.low_stock_threshold)),
          h("dt", {}, "Available"),
          h("dd", { dataset: { testid: "available" } }, integer(product.totals.available)),
          h("dt", {}, "Created"),
          h("dd", {}, dateTime(product.created_at)),
          product.description
            ? [h("dt", {}, "Description"), h("dd", {}, product.description)]
            : null,
        ),
        h(
          "p",
          {},
          h("a", { href: `#/inventory/product/${product.id}` }, "Stock ledger and level chart"),
        ),
      ),
      h(
        "section",
        { class: "card", "aria-labelledby": "stock-title" },
        h("h2", { id: "stock-title" }, "Stock per warehouse"),
        table({
          testid: "product-stock",
          columns: STOCK_COLUMNS,
          rows: product.stock,
          empty: "No stock yet.",
        }),
        transfers.items.length
          ? table({
              caption: "In transit",
              columns: [
                { label: "Transfer", value: (t) => `#${t.id}` },
                { label: "From", value: (t) => warehouseName.get(t.from_warehouse_id) },
                { label: "To", value: (t) => warehouseName.get(t.to_warehouse_id) },
                { label: "Quantity", value: (t) => integer(t.quantity), numeric: true },
                {
                  label: "Actions",
                  value: (t) =>
                    route.canWrite
                      ? h(
                          "div",
                          { class: "row-actions" },
                          h(
                            "button",
                            {
                              type: "button",
                              class: "small",
                              onclick: () => transferStep(t, "complete", reload),
                            },
                            "Received",
                          ),
                          h(
                            "button",
                            {
                              type: "button",
                              class: "small",
                              onclick: () => transferStep(t, "cancel", reload),
                            },
                            "Cancel",
                          ),
                        )
                      : t.status,
                },
              ],
              rows: transfers.items,
            })
          : null,
      ),
    ),
    route.canWrite && !archived
      ? stockActions(
          product,
          warehouses.filter((w) => w.is_active),
          reload,
        )
      : null,
  );
}
