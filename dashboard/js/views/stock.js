// Changing a product's stock: receive, adjust, count and transfer between warehouses (each
// under an Idempotency-Key of its own form, so a double submit changes stock once), and
// completing or cancelling a transfer in transit.

import { forget, newKey, products } from "../api.js";
import {
  busy,
  clear,
  field,
  formError,
  h,
  select,
  showFormError,
  toast,
  warehouseLabel,
} from "../ui.js";

export async function transferStep(transfer, step, reload) {
  try {
    await products.post(`/inventory/transfers/${transfer.id}/${step}`, undefined, {
      key: newKey(),
    });
    toast(step === "complete" ? "Transfer received." : "Transfer cancelled.", "success");
    reload();
  } catch (error) {
    if (error.status !== 401) toast(error.message, "error");
  }
}

const STOCK_ACTIONS = {
  receive: {
    label: "Receive",
    path: "/inventory/receipts",
    fields: [["quantity", "Quantity received", { min: "1" }]],
    reason: "Reason",
  },
  adjust: {
    label: "Adjust",
    path: "/inventory/adjustments",
    fields: [["quantity", "Change (negative removes)", {}]],
    reason: "Reason (required)",
    reasonRequired: true,
  },
  count: {
    label: "Count",
    path: "/inventory/counts",
    fields: [["counted_quantity", "Counted on the shelf", { min: "0" }]],
    reason: "Reason",
  },
  transfer: {
    label: "Transfer",
    path: "/inventory/transfers",
    fields: [["quantity", "Quantity to send", { min: "1" }]],
    reason: "Reason",
    transfer: true,
  },
};

export function stockActions(product, warehouses, reload) {
  const panel = h(
    "section",
    { class: "card", "aria-labelledby": "actions-title" },
    h("h2", { id: "actions-title" }, "Change stock"),
  );
  const tabs = h("div", { class: "toolbar", role: "group", "aria-label": "Stock action" });
  const slot = h("div");
  // The default warehouse first: where stock is received and sold from unless said otherwise.
  const ordered = [...warehouses].sort((a, b) => Number(b.is_default) - Number(a.is_default));
  const options = ordered.map((w) => [w.id, warehouseLabel(w)]);
  const open = (name) => {
    for (const button of tabs.querySelectorAll("button"))
      button.setAttribute("aria-pressed", String(button.dataset.action === name));
    const action = STOCK_ACTIONS[name];
    const error = formError();
    const key = newKey();
    const form = h(
      "form",
      { "aria-label": `${action.label} stock` },
      h(
        "div",
        { class: "form-grid" },
        action.transfer
          ? [
              field("From warehouse", select("from_warehouse_id", options, options[0]?.[0])),
              field(
                "To warehouse",
                select("to_warehouse_id", options, options[1]?.[0] ?? options[0]?.[0]),
              ),
            ]
          : field("Warehouse", select("warehouse_id", options, options[0]?.[0])),
        action.fields.map(([name, label, attrs]) =>
          field(label, h("input", { type: "number", name, required: true, ...attrs })),
        ),
        field(
          action.reason,
          h("input", {
            name: "reason",
            maxlength: "500",
            required: Boolean(action.reasonRequired),
          }),
        ),
        action.transfer
          ? null
          : field(
              "Reference",
              h("input", { name: "reference", maxlength: "200" }),
              "e.g. a purchase order",
            ),
      ),
      error,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "submit", class: "primary" }, action.label),
      ),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      showFormError(error, null);
      const data = new FormData(form);
      const body = { product_id: product.id };
      for (const [name, value] of data.entries()) {
        if (value === "") continue;
        body[name] = /_id$|quantity$/.test(name) ? Number(value) : value;
      }
      await busy(form, async () => {
        try {
          const answer = await products.post(action.path, body, { key });
          if (answer && answer.recorded === false && answer.detail) toast(answer.detail, "info");
          else toast(`${action.label}: done.`, "success");
          forget("products");
          reload();
        } catch (failure) {
          if (failure.status !== 401) showFormError(error, failure);
        }
      });
    });
    clear(slot, form);
  };
  for (const [name, action] of Object.entries(STOCK_ACTIONS)) {
    if (action.transfer && warehouses.length < 2) continue;
    tabs.append(
      h(
        "button",
        {
          type: "button",
          dataset: { action: name },
          "aria-pressed": "false",
          onclick: () => open(name),
        },
        action.label,
      ),
    );
  }
  panel.append(tabs, slot);
  open("receive");
  return panel;
}
