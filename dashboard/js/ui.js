// DOM building, formatting and the loading / error / empty states every screen shares.

/** Create an element: h("button", {class: "x", onclick: fn}, "Text", child...). */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      element.className = value;
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (name in element && typeof value !== "string") {
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? "" : value);
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

// --- numbers: money stays a decimal string end to end, never a float ---------------------

/** "1234567.5" -> "1,234,567.50" without passing through a float. */
export function money(value, { sign = false } = {}) {
  if (value === null || value === undefined || value === "") return "–";
  let text = String(value);
  let prefix = "";
  if (text.startsWith("-")) {
    prefix = "−";
    text = text.slice(1);
  } else if (sign && !/^0*(\.0*)?$/.test(text)) {
    prefix = "+";
  }
  const [whole, fraction = ""] = text.split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `${prefix}${grouped}.${fraction.padEnd(2, "0").slice(0, Math.max(2, fraction.length))}`;
}

export function integer(value, { sign = false } = {}) {
  if (value === null || value === undefined) return "–";
  const number = Number(value);
  const text = Math.abs(number).toLocaleString("en-US");
  if (number < 0) return `−${text}`;
  return sign && number > 0 ? `+${text}` : text;
}

/** A decimal string's magnitude rounded half up to ``places`` decimals, on its digits. */
export function roundDecimal(value, places) {
  const [whole, fraction = ""] = String(value).replace(/^[-+]/, "").split(".");
  const digits = BigInt(whole + fraction.padEnd(places + 1, "0").slice(0, places + 1));
  const rounded = ((digits + 5n) / 10n).toString().padStart(places + 1, "0");
  return places ? `${rounded.slice(0, -places)}.${rounded.slice(-places)}` : rounded;
}

/** "12.35" -> "+12.4%" (rounded on the decimal digits: a float would say 12.3). */
export function percent(value) {
  if (value === null || value === undefined) return "n/a";
  const text = `${roundDecimal(value, 1)}%`;
  if (/^0+\.0%$/.test(text)) return text;
  return String(value).startsWith("-") ? `−${text}` : `+${text}`;
}

/** "up", "down" or "flat", for colouring a change. */
export function trend(value) {
  if (value === null || value === undefined) return "flat";
  const number = Number(value);
  return number > 0 ? "up" : number < 0 ? "down" : "flat";
}

export function dateTime(iso, timeZone) {
  if (!iso) return "–";
  const options = { dateStyle: "medium", timeStyle: "short" };
  if (timeZone) options.timeZone = timeZone;
  return new Intl.DateTimeFormat("en-GB", options).format(new Date(iso));
}

// --- dates as calendar days (YYYY-MM-DD), computed in UTC so no local zone leaks in ------

export function today(timeZone) {
  return new Intl.DateTimeFormat("en-CA", {
    timeZone: timeZone || undefined,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
  }).format(new Date());
}

function parseDay(day) {
  const [y, m, d] = day.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d));
}

function formatDay(date) {
  return date.toISOString().slice(0, 10);
}

export function addDays(day, days) {
  const date = parseDay(day);
  date.setUTCDate(date.getUTCDate() + days);
  return formatDay(date);
}

export function startOfMonth(day, monthsBack = 0) {
  const date = parseDay(day);
  return formatDay(new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth() - monthsBack, 1)));
}

export function endOfMonth(day) {
  const date = parseDay(day);
  return formatDay(new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 0)));
}

export function startOfQuarter(day) {
  const date = parseDay(day);
  const month = Math.floor(date.getUTCMonth() / 3) * 3;
  return formatDay(new Date(Date.UTC(date.getUTCFullYear(), month, 1)));
}

export function endOfQuarter(day) {
  const start = parseDay(startOfQuarter(day));
  return formatDay(new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 3, 0)));
}

export function startOfYear(day) {
  return `${day.slice(0, 4)}-01-01`;
}

export function daysBetween(from, to) {
  return Math.round((parseDay(to) - parseDay(from)) / 86400000) + 1;
}

/** A date input's day as an instant at the start of that day in the browser's zone. */
export function dayStartInstant(day) {
  if (!day) return undefined;
  const [y, m, d] = day.split("-").map(Number);
  return new Date(y, m - 1, d).toISOString(); // local midnight, whatever DST does that day
}

// --- states --------------------------------------------------------------------------

export function loading(text = "Loading…") {
  return h("p", { class: "state loading", role: "status" }, text);
}

export function errorState(error, retry) {
  return h(
    "div",
    { class: "state error", role: "alert" },
    h("p", {}, error?.message || String(error)),
    retry ? h("button", { type: "button", onclick: retry }, "Try again") : null,
  );
}

export function empty(text) {
  return h("p", { class: "state empty" }, text);
}

/** Show loading in ``target``, then what ``render`` builds from ``load()``, or the error. */
export async function withStates(target, load, render) {
  clear(target, loading());
  target.setAttribute("aria-busy", "true");
  try {
    const data = await load();
    clear(target, render(data));
  } catch (error) {
    if (error?.status === 401) return;
    clear(
      target,
      errorState(error, () => withStates(target, load, render)),
    );
  } finally {
    target.removeAttribute("aria-busy");
  }
}

// --- tables --------------------------------------------------------------------------

/**
 * columns: [{label, value: row => text|Node, class?, numeric?}]
 */
export function table({ caption, columns, rows, empty: emptyText = "Nothing to show.", testid }) {
  if (!rows.length) return empty(emptyText);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { dataset: testid ? { testid } : undefined },
      caption ? h("caption", {}, caption) : null,
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          columns.map((c) =>
            h("th", { scope: "col", class: c.numeric ? "num" : c.class }, c.label),
          ),
        ),
      ),
      h(
        "tbody",
        {},
        rows.map((row) =>
          h(
            "tr",
            {},
            columns.map((c, index) => {
              const cell = c.value(row);
              const cls = c.numeric ? "num" : c.class;
              return index === 0 && c.header !== false
                ? h("th", { scope: "row", class: cls }, cell)
                : h("td", { class: cls }, cell);
            }),
          ),
        ),
      ),
    ),
  );
}

export function pager({ total, limit, offset, onPage }) {
  const last = Math.min(offset + limit, total);
  return h(
    "nav",
    { class: "pager", "aria-label": "Pages" },
    h(
      "button",
      { type: "button", disabled: offset <= 0, onclick: () => onPage(Math.max(0, offset - limit)) },
      "Previous",
    ),
    h("span", { class: "pager-info" }, total ? `${offset + 1}–${last} of ${integer(total)}` : "0"),
    h(
      "button",
      { type: "button", disabled: last >= total, onclick: () => onPage(offset + limit) },
      "Next",
    ),
  );
}

/** A warehouse as every screen names it: "Main warehouse (MAIN)". */
export function warehouseLabel(warehouse) {
  return `${warehouse.name} (${warehouse.code})`;
}

/** The columns of a product's stock per warehouse (the rows of its detail's `stock`). */
export const STOCK_COLUMNS = [
  {
    label: "Warehouse",
    value: (s) => warehouseLabel({ name: s.warehouse_name, code: s.warehouse_code }),
  },
  { label: "Available", value: (s) => integer(s.available), numeric: true },
  { label: "On hand", value: (s) => integer(s.on_hand), numeric: true },
  { label: "Reserved", value: (s) => integer(s.reserved), numeric: true },
];

export function badge(text, kind) {
  return h("span", { class: `badge badge-${kind || text}` }, text);
}

// --- forms ---------------------------------------------------------------------------

let fieldCount = 0;

/** A labelled control: field("Price", h("input", {...})). */
export function field(label, control, hint) {
  const id = control.id || `f${++fieldCount}`;
  control.id = id;
  const hintId = hint ? `${id}-hint` : null;
  if (hintId) control.setAttribute("aria-describedby", hintId);
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    control,
    hint ? h("small", { id: hintId, class: "hint" }, hint) : null,
  );
}

export function select(name, options, selected, attrs = {}) {
  return h(
    "select",
    { name, ...attrs },
    options.map(([value, label]) =>
      h(
        "option",
        { value: String(value), selected: String(value) === String(selected ?? "") },
        label,
      ),
    ),
  );
}

export function formError() {
  return h("p", { class: "form-error", role: "alert", hidden: true });
}

export function showFormError(element, error) {
  element.textContent = error ? error.message || String(error) : "";
  element.hidden = !error;
}

/** Disable a form's submit button while ``work`` runs. */
export async function busy(form, work) {
  const buttons = form.querySelectorAll("button");
  buttons.forEach((b) => (b.disabled = true));
  form.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    buttons.forEach((b) => (b.disabled = false));
    form.removeAttribute("aria-busy");
  }
}

export function toast(text, kind = "info") {
  const box = document.querySelector(".toasts");
  const item = h("div", { class: `toast toast-${kind}` }, text);
  box.append(item);
  setTimeout(() => item.remove(), 5000);
}

/** A modal dialog (native <dialog>: focus trapped, Escape closes); resolves true on OK. */
export function confirmDialog(title, text, okLabel = "Confirm") {
  return new Promise((resolve) => {
    const dialog = h(
      "dialog",
      { class: "dialog", "aria-labelledby": "dialog-title" },
      h(
        "form",
        { method: "dialog" },
        h("h2", { id: "dialog-title" }, title),
        h("p", {}, text),
        h(
          "div",
          { class: "actions" },
          h("button", { value: "cancel", type: "submit" }, "Keep it"),
          h("button", { value: "ok", type: "submit", class: "danger" }, okLabel),
        ),
      ),
    );
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** The hash route's query, and a way to write it back (which re-renders the screen). */
export function readQuery(query) {
  return Object.fromEntries(new URLSearchParams(query));
}

export function hashWith(path, params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    // A list is the parameter repeated (?category_id=3&category_id=7), as the API takes it.
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item !== undefined && item !== null && item !== "") search.append(name, item);
    }
  }
  const text = search.toString();
  return `#/${path}${text ? `?${text}` : ""}`;
}

export function timeZones() {
  try {
    return Intl.supportedValuesOf("timeZone");
  } catch {
    return ["UTC", "Europe/London", "Europe/Berlin", "America/New_York", "Asia/Tokyo"];
  }
}
