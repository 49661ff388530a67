// Compare two periods: this month against last month (calendar months), this quarter
// against the same quarter a year earlier, or any two ranges; overall and per category,
// channel or product.

import { getConfig, sales } from "../api.js";
import {
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
  table,
  timeZones,
  today,
  trend,
} from "../ui.js";

const PRESETS = [
  ["month", "This month vs last month"],
  ["quarter-year", "This quarter vs the same quarter last year"],
  ["month-year", "This month vs the same month last year"],
  ["custom", "Custom periods"],
];
// The API's calendar comparison each preset is (whole months and quarters stay whole).
const AGAINST = {
  month: "previous_month",
  "quarter-year": "previous_year",
  "month-year": "previous_year",
};
const GROUPS = [
  ["", "Overall only"],
  ["category", "Per category"],
  ["channel", "Per channel"],
  ["product", "Per product"],
];

function yearBefore(day) {
  return `${Number(day.slice(0, 4)) - 1}${day.slice(4)}`;
}

/** {from, to, against_from, against_to} of a preset, as calendar days in ``timeZone``. */
export function presetPeriods(name, timeZone) {
  const now = today(timeZone);
  if (name === "quarter-year") {
    const from = startOfQuarter(now);
    const to = endOfQuarter(now);
    return { from, to, against_from: yearBefore(from), against_to: endOfQuarter(yearBefore(from)) };
  }
  if (name === "month-year") {
    const from = startOfMonth(now);
    return {
      from,
      to: endOfMonth(now),
      against_from: yearBefore(from),
      against_to: endOfMonth(yearBefore(from)),
    };
  }
  const last = startOfMonth(now, 1);
  return {
    from: startOfMonth(now),
    to: endOfMonth(now),
    against_from: last,
    against_to: endOfMonth(last),
  };
}

function changeCell(change, format) {
  return h(
    "span",
    { class: `change-${trend(change.difference)}` },
    `${format(change.difference, { sign: true })} (${percent(change.percent_change)})`,
  );
}

const METRICS = [
  ["revenue", "Revenue", money],
  ["orders", "Orders", integer],
  ["units", "Units", integer],
  ["average_order_value", "Average order value", money],
  ["margin", "Margin", money],
];

export async function render(root, route) {
  const q = Object.fromEntries(route.query);
  const tz = q.tz || getConfig().store_timezone || "UTC";
  const preset = q.preset || "month";
  const periods =
    preset === "custom" && q.from && q.to && q.against_from && q.against_to
      ? { from: q.from, to: q.to, against_from: q.against_from, against_to: q.against_to }
      : presetPeriods(preset, tz);
  const group = q.group_by || "category";
  const write = (changes) => {
    const next = { preset, tz, group_by: group, ...periods, ...changes };
    if (next.preset !== "custom") {
      for (const name of ["from", "to", "against_from", "against_to"]) delete next[name];
    }
    location.hash = hashWith("compare", next);
  };
  const dateInput = (name) =>
    h("input", {
      type: "date",
      name,
      value: periods[name],
      onchange: (e) => e.target.value && write({ preset: "custom", [name]: e.target.value }),
    });
  const controls = h(
    "form",
    { class: "controls", "aria-label": "Periods to compare", onsubmit: (e) => e.preventDefault() },
    field(
      "Compare",
      select("preset", PRESETS, preset, { onchange: (e) => write({ preset: e.target.value }) }),
    ),
    field("Period from", dateInput("from")),
    field("Period to", dateInput("to")),
    field("Against from", dateInput("against_from")),
    field("Against to", dateInput("against_to")),
    field(
      "Time zone",
      h("input", {
        name: "tz",
        list: "compare-zones",
        value: tz,
        autocomplete: "off",
        onchange: (e) => e.target.value.trim() && write({ tz: e.target.value.trim() }),
      }),
    ),
    h(
      "datalist",
      { id: "compare-zones" },
      timeZones().map((zone) => h("option", { value: zone })),
    ),
    field(
      "Break down",
      select("group_by", GROUPS, group, { onchange: (e) => write({ group_by: e.target.value }) }),
    ),
  );
  const body = h("div", {}, loading());
  clear(root, h("h1", {}, "Compare"), controls, body);

  const show = async () => {
    clear(body, loading());
    try {
      // A preset names its base by the API's calendar rule (the answer's `base` gives the
      // dates); custom periods send their own.
      const rule = AGAINST[preset];
      const report = await sales.get("/reports/compare", {
        from: periods.from,
        to: periods.to,
        against: rule || "custom",
        against_from: rule ? undefined : periods.against_from,
        against_to: rule ? undefined : periods.against_to,
        timezone: tz,
        group_by: group || undefined,
        limit: 50,
      });
      const overall = report.overall;
      clear(
        body,
        h(
          "section",
          { class: "card", "aria-labelledby": "overall-title" },
          h(
            "h2",
            { id: "overall-title" },
            `${report.current.from} – ${report.current.to} against ${report.base.from} – ${report.base.to}`,
          ),
          table({
            testid: "compare-overall",
            columns: [
              { label: "Figure", value: ([, label]) => label },
              {
                label: "This period",
                value: ([key, , fmt]) => fmt(overall[key].current),
                numeric: true,
              },
              { label: "Against", value: ([key, , fmt]) => fmt(overall[key].base), numeric: true },
              {
                label: "Change",
                value: ([key, , fmt]) => changeCell(overall[key], fmt),
                numeric: true,
              },
            ],
            rows: METRICS,
          }),
        ),
        group
          ? h(
              "section",
              { class: "card", "aria-labelledby": "groups-title" },
              h("h2", { id: "groups-title" }, `Per ${group} (${integer(report.group_count)})`),
              table({
                testid: "compare-groups",
                columns: [
                  {
                    label: group[0].toUpperCase() + group.slice(1),
                    value: (g) => (g.sku ? `${g.name} (${g.sku})` : g.name),
                  },
                  { label: "Revenue", value: (g) => money(g.revenue.current), numeric: true },
                  { label: "Against", value: (g) => money(g.revenue.base), numeric: true },
                  { label: "Change", value: (g) => changeCell(g.revenue, money), numeric: true },
                  { label: "Units", value: (g) => integer(g.units.current), numeric: true },
                  {
                    label: "Units change",
                    value: (g) => changeCell(g.units, integer),
                    numeric: true,
                  },
                  { label: "Margin", value: (g) => money(g.margin.current), numeric: true },
                ],
                rows: report.groups,
                empty: "No sales in either period.",
              }),
            )
          : null,
      );
    } catch (error) {
      if (error.status !== 401) clear(body, errorState(error, show));
    }
  };
  await show();
}
