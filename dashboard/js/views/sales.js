// Sales: the list with every filter the API has, paging and CSV export; recording a sale;
// a sale's detail with its refunds, refund and cancel.

import { call, forget, newKey, reference, sales } from "../api.js";
import { categoryOptions } from "../categories.js";
import {
  addDays,
  badge,
  busy,
  clear,
  confirmDialog,
  dateTime,
  dayStartInstant,
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
  table,
  toast,
} from "../ui.js";

const PAGE = 25;
const STATUSES = ["completed", "partially_refunded", "refunded", "cancelled"];
const SORTS = [
  ["-sold_at", "Newest first"],
  ["sold_at", "Oldest first"],
  ["-total", "Largest total"],
  ["total", "Smallest total"],
  ["-number", "Number, descending"],
  ["number", "Number, ascending"],
];
// One value each in the address; category_id may be repeated (any of several categories).
const FILTERS = ["q", "from", "to", "channel_id", "status", "stock_sync", "product_id", "sort"];

export async function render(root, route) {
  if (route.parts[0] === "new") return renderRecord(root, route);
  if (route.parts[0]) return renderDetail(root, Number(route.parts[0]), route);
  return renderList(root, route);
}

/** The API's query for the screen's filters (dates are days in the browser's time zone). */
function apiFilters(state) {
  return {
    from: dayStartInstant(state.from),
    // "to" is a day included; as an instant the API's `to` is excluded, so the next day's start.
    to: state.to ? dayStartInstant(addDays(state.to, 1)) : undefined,
    channel_id: state.channel_id,
    status: state.status,
    stock_sync: state.stock_sync,
    category_id: state.category_id, // a list: the API takes the parameter repeated
    product_id: state.product_id,
    q: state.q,
    sort: state.sort || "-sold_at",
  };
}

/**
 * The categories to filter by: a disclosure of checkboxes in tree order, applied (with the
 * search box) by the filter form's submit, Apply here included. Closing it unapplied puts the
 * boxes back as the list is filtered; Escape closes it.
 */
function categoryPicker(categories, chosen) {
  const options = categoryOptions(categories);
  const names = new Map(options.map(([id, label]) => [String(id), label.trim()]));
  const boxes = options.map(([id]) =>
    h("input", { type: "checkbox", name: "category_id", value: String(id) }),
  );
  const check = (chosenIds) =>
    boxes.forEach((box) => (box.checked = chosenIds.includes(box.value)));
  check(chosen);
  const shown =
    chosen.length === 0
      ? "All"
      : chosen.length === 1
        ? (names.get(chosen[0]) ?? "1 chosen")
        : `${chosen.length} chosen`;
  // (named, so that focus comes back to it when the screen renders again: see main.js)
  const summary = h(
    "summary",
    { name: "categories", "aria-labelledby": "sales-categories-label sales-categories-shown" },
    h("span", { id: "sales-categories-shown" }, shown),
  );
  const picker = h(
    "details",
    { class: "picker" },
    summary,
    h(
      "fieldset",
      { class: "picker-panel" },
      h("legend", {}, "Sales with a line in any of these (subcategories included)"),
      h(
        "div",
        { class: "picker-options" },
        options.map(([, label], index) => h("label", { class: "check" }, boxes[index], label)),
      ),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", onclick: () => check([]) }, "Clear"),
        h("button", { type: "submit", class: "primary" }, "Apply"),
      ),
    ),
  );
  picker.addEventListener("toggle", () => {
    if (!picker.open) check(chosen);
  });
  picker.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || !picker.open) return;
    event.preventDefault();
    picker.open = false;
    summary.focus();
  });
  return h(
    "div",
    { class: "field" },
    h("span", { class: "label", id: "sales-categories-label" }, "Categories"),
    picker,
  );
}

async function renderList(root, route) {
  const q = Object.fromEntries(route.query);
  const state = Object.fromEntries(FILTERS.map((name) => [name, q[name] || ""]));
  state.category_id = [...new Set(route.query.getAll("category_id").filter(Boolean))];
  state.offset = Number(q.offset || 0);
  const write = (changes) => {
    const next = { ...state, offset: 0, ...changes };
    location.hash = hashWith("sales", { ...next, offset: next.offset || "" });
  };
  const controls = h(
    "form",
    { class: "controls", role: "search", "aria-label": "Sales filters" },
    loading(),
  );
  // The search box and the categories apply together (Enter, Search or Apply); the other
  // filters apply as they change.
  controls.addEventListener("submit", (event) => {
    event.preventDefault();
    const picker = controls.querySelector("details.picker");
    if (picker?.contains(document.activeElement)) picker.querySelector("summary").focus();
    const data = new FormData(controls);
    write({ q: String(data.get("q") || "").trim(), category_id: data.getAll("category_id") });
  });
  const exportButton = h("button", { type: "button" }, "Export CSV");
  const body = h("div", {}, loading());
  clear(
    root,
    h(
      "div",
      { class: "toolbar" },
      h("h1", {}, "Sales"),
      h("span", { class: "spacer" }),
      exportButton,
      route.canWrite
        ? h("a", { href: "#/sales/new", class: "button primary" }, "Record a sale")
        : null,
    ),
    controls,
    h("section", { class: "card", "aria-label": "Sales list" }, body),
  );

  exportButton.addEventListener("click", async () => {
    exportButton.disabled = true;
    try {
      const response = await call("sales", "GET", "/sales/export.csv", {
        params: apiFilters(state),
        raw: true,
        accept: "text/csv",
      });
      const blob = await response.blob();
      // The service names the file (Content-Disposition, exposed to the page by CORS).
      const named = /filename="?([^";]+)"?/.exec(response.headers.get("Content-Disposition") || "");
      const link = h("a", {
        href: URL.createObjectURL(blob),
        download: named ? named[1] : `sales-${new Date().toISOString().slice(0, 10)}.csv`,
      });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    } catch (error) {
      if (error.status !== 401) toast(`Export failed: ${error.message}`, "error");
    } finally {
      exportButton.disabled = false;
    }
  });

  try {
    const [channels, categories, productList] = await Promise.all([
      reference.channels(),
      reference.categories(),
      reference.products(),
    ]);
    const onchange = (name) => (e) => write({ [name]: e.target.value });
    clear(
      controls,
      field(
        "Search",
        h("input", {
          type: "search",
          name: "q",
          value: state.q,
          maxlength: "100",
          placeholder: "Sale number, order id or SKU",
        }),
      ),
      h("button", { type: "submit", name: "search" }, "Search"),
      field(
        "Sold from",
        h("input", { type: "date", name: "from", value: state.from, onchange: onchange("from") }),
      ),
      field(
        "Sold to",
        h("input", { type: "date", name: "to", value: state.to, onchange: onchange("to") }),
      ),
      field(
        "Channel",
        select(
          "channel_id",
          [["", "All channels"], ...channels.map((c) => [c.id, c.name])],
          state.channel_id,
          { onchange: onchange("channel_id") },
        ),
      ),
      field(
        "Status",
        select(
          "status",
          [["", "Any status"], ...STATUSES.map((s) => [s, s.replace("_", " ")])],
          state.status,
          { onchange: onchange("status") },
        ),
      ),
      field(
        "Stock",
        select(
          "stock_sync",
          [
            ["", "Any"],
            ["done", "taken"],
            ["pending", "pending"],
            ["failed", "failed"],
          ],
          state.stock_sync,
          { onchange: onchange("stock_sync") },
        ),
      ),
      categoryPicker(categories, state.category_id),
      field(
        "Product",
        select(
          "product_id",
          [["", "All products"], ...productList.map((p) => [p.id, `${p.name} (${p.sku})`])],
          state.product_id,
          { onchange: onchange("product_id") },
        ),
      ),
      field(
        "Sort",
        select("sort", SORTS, state.sort || "-sold_at", { onchange: onchange("sort") }),
      ),
    );
  } catch (error) {
    if (error.status !== 401) clear(controls, errorState(error));
  }

  const show = async () => {
    clear(body, loading());
    try {
      const page = await sales.get("/sales", {
        ...apiFilters(state),
        limit: PAGE,
        offset: state.offset,
      });
      clear(
        body,
        table({
          testid: "sales",
          columns: [
            { label: "Number", value: (s) => h("a", { href: `#/sales/${s.id}` }, s.number) },
            { label: "Sold", value: (s) => dateTime(s.sold_at) },
            { label: "Channel", value: (s) => s.channel.name },
            { label: "Status", value: (s) => badge(s.status.replace("_", " "), s.status) },
            { label: "Units", value: (s) => integer(s.units), numeric: true },
            { label: "Total", value: (s) => money(s.total), numeric: true },
            { label: "Net", value: (s) => money(s.net_total), numeric: true },
            {
              label: "Stock",
              value: (s) => (s.stock_sync === "done" ? "taken" : badge(s.stock_sync)),
            },
          ],
          rows: page.items,
          empty: "No sales match these filters.",
        }),
        pager({ ...page, onPage: (offset) => write({ offset }) }),
      );
    } catch (error) {
      if (error.status !== 401) clear(body, errorState(error, show));
    }
  };
  await show();
}

// --- record a sale -----------------------------------------------------------------------

async function renderRecord(root, route) {
  if (!route.canWrite) {
    clear(
      root,
      h("h1", {}, "Record a sale"),
      errorState(new Error("Your role may not record sales.")),
    );
    return;
  }
  const box = h("div", {}, loading());
  clear(
    root,
    h("p", {}, h("a", { href: "#/sales" }, "← Sales")),
    h("h1", {}, "Record a sale"),
    box,
  );
  let channels;
  let productList;
  try {
    [channels, productList] = await Promise.all([reference.channels(), reference.products()]);
  } catch (error) {
    if (error.status !== 401) clear(box, errorState(error));
    return;
  }
  const sellable = productList.filter((p) => p.status === "active" && !p.archived_at);
  const options = sellable.map((p) => [
    p.id,
    `${p.name} (${p.sku}) · ${money(p.price)} · ${p.totals.available} available`,
  ]);
  const lines = h("div", { class: "lines" });
  let count = 0;
  const addLine = () => {
    count += 1;
    const row = h(
      "fieldset",
      { class: "form-grid line" },
      h("legend", {}, `Line ${count}`),
      field("Product", select("product_id", options, "", { required: true })),
      field(
        "Quantity",
        h("input", { type: "number", name: "quantity", min: "1", value: "1", required: true }),
      ),
      field(
        "Unit price",
        h("input", {
          name: "unit_price",
          inputmode: "decimal",
          pattern: "\\d+(\\.\\d{1,2})?",
          placeholder: "current price",
        }),
      ),
    );
    lines.append(row);
  };
  addLine();
  const error = formError();
  const key = newKey();
  const form = h(
    "form",
    { class: "card", "aria-label": "New sale" },
    h(
      "div",
      { class: "form-grid" },
      field(
        "Channel",
        select(
          "channel_id",
          channels.filter((c) => c.is_active).map((c) => [c.id, c.name]),
          "",
          { required: true },
        ),
      ),
      field("Note", h("input", { name: "note", maxlength: "500" })),
    ),
    lines,
    h(
      "div",
      { class: "actions" },
      h("button", { type: "button", onclick: addLine }, "Add a line"),
      h("button", { type: "submit", class: "primary" }, "Record sale"),
    ),
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showFormError(error, null);
    const data = new FormData(form);
    const body = {
      channel_id: Number(data.get("channel_id")),
      note: data.get("note") || "",
      lines: [...lines.querySelectorAll("fieldset")].map((row) => {
        const price = row.querySelector("[name=unit_price]").value.trim();
        return {
          product_id: Number(row.querySelector("[name=product_id]").value),
          quantity: Number(row.querySelector("[name=quantity]").value),
          ...(price ? { unit_price: price } : {}),
        };
      }),
    };
    await busy(form, async () => {
      try {
        // One key for this form: a double submit or a retry records one sale.
        const sale = await sales.post("/sales", body, { key });
        forget("products"); // their available stock changed
        toast(`Sale ${sale.number} recorded.`, "success");
        location.hash = `#/sales/${sale.id}`;
      } catch (failure) {
        if (failure.status !== 401) showFormError(error, failure);
      }
    });
  });
  clear(box, form);
}

// --- one sale ----------------------------------------------------------------------------

async function renderDetail(root, saleId, route) {
  const box = h("div", {}, loading());
  clear(root, h("p", {}, h("a", { href: "#/sales" }, "← Sales")), box);
  let sale;
  let refunds;
  try {
    [sale, refunds] = await Promise.all([
      sales.get(`/sales/${saleId}`),
      sales.get(`/sales/${saleId}/refunds`, { limit: 100 }),
    ]);
  } catch (error) {
    if (error.status !== 401) clear(box, errorState(error));
    return;
  }
  const refundable =
    sale.lines.some((l) => l.quantity > l.refunded_quantity) && sale.status !== "cancelled";
  clear(
    box,
    h(
      "div",
      { class: "toolbar" },
      h("h1", {}, `Sale ${sale.number}`),
      badge(sale.status.replace("_", " "), sale.status),
    ),
    h(
      "section",
      { class: "card", "aria-label": "Sale" },
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Sold"),
        h("dd", {}, dateTime(sale.sold_at)),
        h("dt", {}, "Channel"),
        h("dd", {}, sale.channel.name),
        h("dt", {}, "Units"),
        h("dd", {}, integer(sale.units)),
        h("dt", {}, "Total"),
        h("dd", {}, money(sale.total)),
        h("dt", {}, "Refunded"),
        h("dd", {}, `${money(sale.refunded_total)} (${integer(sale.refunded_units)} units)`),
        h("dt", {}, "Net"),
        h("dd", {}, money(sale.net_total)),
        h("dt", {}, "Stock"),
        h("dd", {}, sale.stock_sync === "done" ? "taken" : sale.stock_sync),
        sale.note ? [h("dt", {}, "Note"), h("dd", {}, sale.note)] : null,
      ),
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "lines-title" },
      h("h2", { id: "lines-title" }, "Lines"),
      table({
        testid: "sale-lines",
        columns: [
          { label: "#", value: (l) => l.line_no },
          {
            label: "Product",
            value: (l) =>
              h(
                "a",
                { href: `#/inventory/product/${l.product_id}` },
                `${l.product_name} (${l.sku})`,
              ),
          },
          { label: "Category", value: (l) => l.category_name ?? "—" },
          { label: "Quantity", value: (l) => integer(l.quantity), numeric: true },
          { label: "Unit price", value: (l) => money(l.unit_price), numeric: true },
          { label: "Line total", value: (l) => money(l.line_total), numeric: true },
          {
            label: "Refunded",
            value: (l) => `${integer(l.refunded_quantity)} · ${money(l.refunded_total)}`,
            numeric: true,
          },
        ],
        rows: sale.lines,
      }),
    ),
    route.canWrite && refundable ? refundForm(sale, () => renderDetail(root, saleId, route)) : null,
    refunds.items.length
      ? h(
          "section",
          { class: "card", "aria-labelledby": "refunds-title" },
          h("h2", { id: "refunds-title" }, "Refunds and cancellation"),
          table({
            columns: [
              { label: "When", value: (r) => dateTime(r.created_at) },
              { label: "Kind", value: (r) => r.kind },
              { label: "Units", value: (r) => integer(r.units), numeric: true },
              { label: "Amount", value: (r) => money(r.amount), numeric: true },
              { label: "Reason", value: (r) => r.reason || "–" },
              {
                label: "Stock back",
                value: (r) => (r.stock_sync === "done" ? "yes" : r.stock_sync),
              },
            ],
            rows: refunds.items,
          }),
        )
      : null,
  );
}

function refundForm(sale, reload) {
  const error = formError();
  const key = newKey();
  const reason = h("input", { name: "reason", maxlength: "500" });
  const open = sale.lines.filter((l) => l.quantity > l.refunded_quantity);
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "refund-title" },
    h("h2", { id: "refund-title" }, "Refund or cancel"),
    h(
      "div",
      { class: "form-grid" },
      open.map((l) =>
        field(
          `Refund units of line ${l.line_no} (${l.sku})`,
          h("input", {
            type: "number",
            min: "0",
            max: String(l.quantity - l.refunded_quantity),
            value: "0",
            dataset: { lineId: String(l.id) },
          }),
          `up to ${l.quantity - l.refunded_quantity}`,
        ),
      ),
      h("div", { class: "wide" }, field("Reason", reason)),
    ),
    error,
    h(
      "div",
      { class: "actions" },
      sale.refunded_units === 0
        ? h(
            "button",
            { type: "button", class: "danger", dataset: { action: "cancel" } },
            "Cancel sale",
          )
        : null,
      h("button", { type: "button", dataset: { action: "refund-all" } }, "Refund everything"),
      h("button", { type: "submit", class: "primary" }, "Refund these units"),
    ),
  );
  const done = (text) => {
    forget("products");
    toast(text, "success");
    reload();
  };
  const run = (work) =>
    busy(form, async () => {
      showFormError(error, null);
      try {
        await work();
      } catch (failure) {
        if (failure.status !== 401) showFormError(error, failure);
      }
    });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const lines = [...form.querySelectorAll("[data-line-id]")]
      .map((input) => ({ line_id: Number(input.dataset.lineId), quantity: Number(input.value) }))
      .filter((line) => line.quantity > 0);
    if (!lines.length) {
      showFormError(error, new Error("Enter the units to refund on at least one line."));
      return;
    }
    run(async () => {
      await sales.post(`/sales/${sale.id}/refunds`, { lines, reason: reason.value }, { key });
      done("Refund recorded; the units are back in stock.");
    });
  });
  form.querySelector("[data-action=refund-all]").addEventListener("click", async () => {
    if (
      !(await confirmDialog(
        "Refund everything?",
        `Every unit of sale ${sale.number} still sold is refunded and returned to stock.`,
        "Refund everything",
      ))
    )
      return;
    run(async () => {
      await sales.post(`/sales/${sale.id}/refunds`, { reason: reason.value }, { key: newKey() });
      done("Sale refunded.");
    });
  });
  form.querySelector("[data-action=cancel]")?.addEventListener("click", async () => {
    if (
      !(await confirmDialog(
        "Cancel this sale?",
        `Sale ${sale.number} is cancelled and its units return to stock.`,
        "Cancel sale",
      ))
    )
      return;
    run(async () => {
      await sales.post(`/sales/${sale.id}/cancel`, { reason: reason.value }, { key: newKey() });
      done("Sale cancelled.");
    });
  });
  return form;
}
