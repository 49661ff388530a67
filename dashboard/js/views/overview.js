// Overview: KPIs for a range against the previous period and the same range a year earlier,
// revenue by day / week / month / quarter / year in a chosen IANA time zone, top products,
// categories and channels.

import { getConfig, reference, sales } from "../api.js";
import { categoryOptions } from "../categories.js";
import { barChart } from "../charts.js";
import {
  addDays,
  clear,
  endOfMonth,
  endOfQuarter,
  errorState,
  field,
  h,
  hashWith,
  integer,
  loading,
  money,
  percent,
  select,
  startOfMonth,
  startOfQuarter,
  startOfYear,
  table,
  timeZones,
  today,
  trend,
} from "../ui.js";

export const RANGES = [
  ["7d", "Last 7 days"],
  ["30d", "Last 30 days"],
  ["90d", "Last 90 days"],
  ["mtd", "This month"],
  ["last-month", "Last month"],
  ["qtd", "This quarter"],
  ["ytd", "This year"],
  ["12m", "Last 12 months"],
  ["custom", "Custom"],
];

const PERIODS = [
  ["day", "Day"],
  ["week", "Week"],
  ["month", "Month"],
  ["quarter", "Quarter"],
  ["year", "Year"],
];

/** [from, to] of a named range, both included, as calendar days in ``timeZone``. */
export function rangeDates(name, timeZone) {
  const now = today(timeZone);
  switch (name) {
    case "7d":
      return [addDays(now, -6), now];
    case "90d":
      return [addDays(now, -89), now];
    case "mtd":
      return [startOfMonth(now), endOfMonth(now)];
    case "last-month":
      return [startOfMonth(now, 1), endOfMonth(startOfMonth(now, 1))];
    case "qtd":
      return [startOfQuarter(now), endOfQuarter(now)];
    case "ytd":
      return [startOfYear(now), `${now.slice(0, 4)}-12-31`];
    case "12m":
      return [startOfMonth(now, 11), now];
    default:
      return [addDays(now, -29), now];
  }
}

function defaultPeriod(from, to) {
  const days = (Date.parse(to) - Date.parse(from)) / 86400000 + 1;
  if (days <= 62) return "day";
  if (days <= 190) return "week";
  return "month";
}

/** The screen's settings from the hash, with defaults filled in. */
export function readSettings(query, screen = "overview") {
  const q = Object.fromEntries(query);
  const tz = q.tz || getConfig().store_timezone || "UTC";
  const range = q.range || (q.from && q.to ? "custom" : "30d");
  const [from, to] = range === "custom" && q.from && q.to ? [q.from, q.to] : rangeDates(range, tz);
  const period = q.period || defaultPeriod(from, to);
  const filters = { channel_id: q.channel_id || "", category_id: q.category_id || "" };
  return { screen, tz, range, from, to, period, ...filters };
}

/** Replace a <select>'s options once its list has loaded. */
function fill(control, options, selected) {
  control.replaceChildren(
    ...options.map(([value, label]) =>
      h("option", { value: String(value), selected: String(value) === String(selected) }, label),
    ),
  );
}

export function rangeControls(settings, { withPeriod = true } = {}) {
  const write = (changes) => {
    const next = { ...settings, ...changes };
    location.hash = hashWith(settings.screen, {
      range: next.range,
      from: next.range === "custom" ? next.from : undefined,
      to: next.range === "custom" ? next.to : undefined,
      tz: next.tz,
      period: withPeriod ? next.period : undefined,
      channel_id: next.channel_id,
      category_id: next.category_id,
    });
  };
  // The lists arrive after the screen has started loading its figures.
  const channel = select("channel_id", [["", "All channels"]], "", {
    onchange: (e) => write({ channel_id: e.target.value }),
  });
  const category = select("category_id", [["", "All categories"]], "", {
    onchange: (e) => write({ category_id: e.target.value }),
  });
  reference
    .channels()
    .then((list) =>
      fill(
        channel,
        [["", "All channels"], ...list.map((c) => [c.id, c.name])],
        settings.channel_id,
      ),
    )
    .catch(() => {});
  reference
    .categories()
    .then((list) =>
      fill(category, [["", "All categories"], ...categoryOptions(list)], settings.category_id),
    )
    .catch(() => {});
  const range = select("range", RANGES, settings.range, {
    onchange: (e) => write({ range: e.target.value, period: undefined }),
  });
  const from = h("input", {
    type: "date",
    name: "from",
    value: settings.from,
    onchange: (e) => e.target.value && write({ range: "custom", from: e.target.value }),
  });
  const to = h("input", {
    type: "date",
    name: "to",
    value: settings.to,
    onchange: (e) => e.target.value && write({ range: "custom", to: e.target.value }),
  });
  const zones = h(
    "datalist",
    { id: "time-zones" },
    timeZones().map((zone) => h("option", { value: zone })),
  );
  const tz = h("input", {
    name: "tz",
    list: "time-zones",
    value: settings.tz,
    autocomplete: "off",
    spellcheck: "false",
    onchange: (e) => {
      const value = e.target.value.trim();
      if (value) write({ tz: value });
    },
  });
  const period = withPeriod
    ? select("period", PERIODS, settings.period, {
        onchange: (e) => write({ period: e.target.value }),
      })
    : null;
  return h(
    "form",
    { class: "controls", "aria-label": "Report settings", onsubmit: (e) => e.preventDefault() },
    field("Range", range),
    field("From", from),
    field("To", to),
    field("Time zone", tz),
    zones,
    field("Channel", channel),
    field("Category", category),
    period ? field("Chart by", period) : null,
  );
}

function change(label, value, kind) {
  return h(
    "span",
    { class: `change change-${trend(value)}`, dataset: { kind } },
    `${percent(value)} ${label}`,
  );
}

function kpi(name, label, value, previous, lastYear) {
  return h(
    "div",
    { class: "kpi", dataset: { testid: `kpi-${name}` } },
    h("div", { class: "kpi-label" }, label),
    h("div", { class: "kpi-value" }, value),
    h(
      "div",
      { class: "kpi-changes" },
      change("vs previous period", previous, "previous"),
      change("vs last year", lastYear, "year"),
    ),
  );
}

function kpis(summary, yearAgo) {
  const k = summary.kpis;
  const y = yearAgo.overall;
  return h(
    "section",
    { class: "kpis", "aria-label": "Key figures" },
    kpi(
      "revenue",
      "Revenue",
      money(k.revenue.current),
      k.revenue.percent_change,
      y.revenue.percent_change,
    ),
    kpi(
      "orders",
      "Orders",
      integer(k.orders.current),
      k.orders.percent_change,
      y.orders.percent_change,
    ),
    kpi("units", "Units", integer(k.units.current), k.units.percent_change, y.units.percent_change),
    kpi(
      "aov",
      "Average order value",
      money(k.average_order_value.current),
      k.average_order_value.percent_change,
      y.average_order_value.percent_change,
    ),
    kpi(
      "margin",
      `Margin (${k.margin_percent.current ?? "–"}%)`,
      money(k.margin.current),
      k.margin.percent_change,
      y.margin.percent_change,
    ),
  );
}

function revenueSection(series, settings) {
  const buckets = series.buckets;
  const hasSales = buckets.some((b) => b.orders > 0);
  return h(
    "section",
    { class: "card", "aria-labelledby": "revenue-title" },
    h(
      "h2",
      { id: "revenue-title" },
      `Revenue by ${settings.period} (${series.parameters.timezone})`,
    ),
    hasSales
      ? barChart(
          `Revenue by ${settings.period}, ${settings.from} to ${settings.to}`,
          buckets.map((b) => b.label),
          buckets.map((b) => Number(b.revenue)),
          "Revenue",
        )
      : h("p", { class: "state empty" }, "No sales in this range."),
    h(
      "details",
      { class: "chart-data" },
      h("summary", {}, "Figures by period"),
      table({
        testid: "revenue-buckets",
        columns: [
          { label: "Period", value: (b) => b.label },
          { label: "Starts", value: (b) => b.start, class: "mono" },
          { label: "Revenue", value: (b) => money(b.revenue), numeric: true },
          { label: "Orders", value: (b) => integer(b.orders), numeric: true },
          { label: "Units", value: (b) => integer(b.units), numeric: true },
          { label: "Margin", value: (b) => money(b.margin), numeric: true },
        ],
        rows: buckets,
      }),
    ),
  );
}

function top(title, report, withSku) {
  return h(
    "section",
    { class: "card", "aria-label": title },
    h("h2", {}, title),
    table({
      columns: [
        { label: "Name", value: (r) => (withSku && r.sku ? `${r.name} (${r.sku})` : r.name) },
        { label: "Revenue", value: (r) => money(r.revenue), numeric: true },
        { label: "Units", value: (r) => integer(r.units), numeric: true },
        { label: "Margin", value: (r) => money(r.margin), numeric: true },
      ],
      rows: report.groups,
      empty: "No sales in this range.",
    }),
  );
}

export async function render(root, route) {
  const settings = readSettings(route.query);
  const params = {
    from: settings.from,
    to: settings.to,
    timezone: settings.tz,
    channel_id: settings.channel_id,
    category_id: settings.category_id,
  };
  const body = h("div", { class: "overview-body" }, loading());
  clear(root, h("h1", {}, "Overview"), rangeControls(settings), body);
  const breakdown = (by) =>
    sales.get("/reports/breakdown", { ...params, by, limit: 5, sort: "-revenue" });
  const load = () =>
    Promise.all([
      sales.get("/reports/summary", params),
      sales.get("/reports/compare", { ...params, against: "previous_year" }),
      sales.get("/reports/revenue", { ...params, period: settings.period }),
      breakdown("product"),
      breakdown("category"),
      breakdown("channel"),
    ]);
  const show = async () => {
    clear(body, loading());
    body.setAttribute("aria-busy", "true");
    try {
      const [summary, yearAgo, series, products, categories, channels] = await load();
      clear(
        body,
        h(
          "p",
          { class: "muted period-line" },
          `${summary.current.from} to ${summary.current.to} (${summary.current.days} days, ${summary.parameters.timezone}) against ${summary.base.from} to ${summary.base.to}`,
        ),
        kpis(summary, yearAgo),
        revenueSection(series, settings),
        h(
          "div",
          { class: "grid-3" },
          top("Top products", products, true),
          top("Top categories", categories),
          top("Top channels", channels),
        ),
      );
      body.dataset.loaded = "true";
    } catch (error) {
      if (error.status !== 401) clear(body, errorState(error, show));
    } finally {
      body.removeAttribute("aria-busy");
    }
  };
  await show();
}
