// Charts through the vendored Chart.js (window.Chart, see vendor/README.md). Every chart
// comes with a table of the same figures for screen readers and keyboard users.

import { h } from "./ui.js";

const live = new Set();

const COLORS = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2"];

/** A canvas in a sized box; ``config`` is a Chart.js configuration. */
export function chart(label, config) {
  const canvas = h("canvas", { role: "img", "aria-label": label });
  const box = h("div", { class: "chart-box" }, canvas);
  if (!window.Chart) {
    box.append(h("p", { class: "state error" }, "The chart library did not load."));
    return box;
  }
  // Drawn once the box is in the document and has a size.
  requestAnimationFrame(() => {
    if (!canvas.isConnected) return;
    const instance = new window.Chart(canvas, {
      ...config,
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        ...config.options,
      },
    });
    live.add(instance);
  });
  return box;
}

export function destroyCharts() {
  for (const instance of live) instance.destroy();
  live.clear();
}

export function barChart(label, labels, values, seriesLabel) {
  return chart(label, {
    type: "bar",
    data: {
      labels,
      datasets: [{ label: seriesLabel, data: values, backgroundColor: COLORS[0] }],
    },
    options: {
      plugins: { legend: { display: false } },
      scales: { y: { beginAtZero: true } },
    },
  });
}

/** Step lines: one dataset per series, ``series`` = [{label, data}]. */
export function stepChart(label, labels, series) {
  return chart(label, {
    type: "line",
    data: {
      labels,
      datasets: series.map((s, i) => ({
        label: s.label,
        data: s.data,
        stepped: true,
        borderColor: COLORS[i % COLORS.length],
        backgroundColor: COLORS[i % COLORS.length],
        pointRadius: 0,
        borderWidth: 2,
      })),
    },
    options: {
      interaction: { mode: "index", intersect: false },
      scales: { y: { beginAtZero: true }, x: { ticks: { maxTicksLimit: 8 } } },
    },
  });
}
