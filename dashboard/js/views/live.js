// Live: new sales, refunds and low-stock alerts as they happen, and today's running figures,
// from the two services' event streams (Server-Sent Events). A browser's EventSource cannot
// send a header, so each stream opens with a short-lived stream token from
// POST /events/stream-token; when a stream drops, a fresh token reopens it after the last
// event seen (last_event_id), so nothing is missed or shown twice.

import { getConfig, products, reference, sales, url } from "../api.js";
import { badge, clear, h, integer, money } from "../ui.js";

const MAX_ITEMS = 100;

class Stream {
  constructor({ service, client, params, onEvent, onState }) {
    Object.assign(this, { service, client, params, onEvent, onState });
    this.lastId = null;
    this.source = null;
    this.closed = false;
    this.retry = null;
  }

  async open() {
    if (this.closed) return;
    this.onState("connecting");
    try {
      const issued = await this.client.post("/events/stream-token");
      if (this.closed) return;
      const target = url(this.service, "/events/stream", {
        ...this.params,
        stream_token: issued.stream_token,
        last_event_id: this.lastId ?? undefined,
      });
      const source = new EventSource(target);
      this.source = source;
      source.onopen = () => this.onState("live");
      source.onerror = () => {
        // EventSource retries by itself with the same URL, whose token may have expired:
        // close it and reopen with a fresh token from where it stopped.
        source.close();
        this.onState("reconnecting");
        this.schedule();
      };
      const handle = (event) => {
        if (event.lastEventId) this.lastId = event.lastEventId;
        this.onEvent(event.type, JSON.parse(event.data));
      };
      for (const type of [
        "sale.recorded",
        "sale.refunded",
        "sale.cancelled",
        "sales.today",
        "stock.health_changed",
        "reset",
      ]) {
        source.addEventListener(type, handle);
      }
    } catch (error) {
      if (error.status === 401) return;
      this.onState("reconnecting");
      this.schedule();
    }
  }

  schedule() {
    if (this.closed) return;
    clearTimeout(this.retry);
    this.retry = setTimeout(() => this.open(), 3000);
  }

  close() {
    this.closed = true;
    clearTimeout(this.retry);
    this.source?.close();
  }
}

export async function render(root) {
  const tz = getConfig().store_timezone || "UTC";
  const todayBox = h(
    "div",
    { class: "kpis", dataset: { testid: "live-today" } },
    h("p", { class: "muted" }, "Waiting for today's figures…"),
  );
  const salesFeed = h("ul", {
    class: "feed",
    dataset: { testid: "live-sales" },
    "aria-live": "polite",
  });
  const alertFeed = h("ul", {
    class: "feed",
    dataset: { testid: "live-alerts" },
    "aria-live": "polite",
  });
  const salesState = h("span", { class: "stream-state muted" }, "connecting");
  const stockState = h("span", { class: "stream-state muted" }, "connecting");
  clear(
    root,
    h("h1", {}, "Live"),
    h("section", { "aria-label": `Today so far (${tz})` }, todayBox),
    h(
      "div",
      { class: "grid-2" },
      h(
        "section",
        { class: "card", "aria-labelledby": "live-sales-title" },
        h("h2", { id: "live-sales-title" }, "Sales ", salesState),
        salesFeed,
        h(
          "p",
          { class: "muted empty-note" },
          "New sales, refunds and cancellations appear here as they happen.",
        ),
      ),
      h(
        "section",
        { class: "card", "aria-labelledby": "live-alerts-title" },
        h("h2", { id: "live-alerts-title" }, "Stock alerts ", stockState),
        alertFeed,
        h(
          "p",
          { class: "muted empty-note" },
          "Products going low, critical or out of stock (and back) appear here.",
        ),
      ),
    ),
  );
  const channels = new Map((await reference.channels().catch(() => [])).map((c) => [c.id, c.name]));
  const push = (feed, item) => {
    feed.prepend(item);
    feed.parentElement.querySelector(".empty-note")?.remove();
    while (feed.children.length > MAX_ITEMS) feed.lastElementChild.remove();
  };
  const now = () => h("time", {}, new Date().toLocaleTimeString());
  const onSalesEvent = (type, data) => {
    if (type === "sales.today") {
      const card = (name, label, value) =>
        h(
          "div",
          { class: "kpi", dataset: { testid: `today-${name}` } },
          h("div", { class: "kpi-label" }, label),
          h("div", { class: "kpi-value" }, value),
        );
      clear(
        todayBox,
        card("revenue", `Revenue today (${data.date})`, money(data.revenue)),
        card("orders", "Orders today", integer(data.orders)),
        card("units", "Units today", integer(data.units)),
        card("aov", "Average order value", money(data.average_order_value)),
      );
      return;
    }
    if (type === "reset") return;
    const p = data.payload;
    const what =
      type === "sale.recorded" ? "New sale" : type === "sale.refunded" ? "Refund" : "Cancelled";
    const amount = type === "sale.recorded" ? money(p.total) : money(p.amount);
    push(
      salesFeed,
      h(
        "li",
        {},
        now(),
        h(
          "span",
          {},
          `${what} `,
          h("a", { href: `#/sales/${p.sale_id}` }, p.number),
          ` · ${channels.get(p.channel_id) ?? "channel " + p.channel_id} · ${integer(type === "sale.recorded" ? p.units : p.refund_units)} units · ${amount}`,
        ),
      ),
    );
  };
  const onStockEvent = (type, data) => {
    if (type !== "stock.health_changed") return;
    const p = data.payload;
    push(
      alertFeed,
      h(
        "li",
        {},
        now(),
        badge(p.to),
        h(
          "span",
          {},
          h("a", { href: `#/inventory/product/${p.product_id}` }, p.name),
          ` (${p.sku}) ${p.from} → ${p.to}: ${integer(p.available)} available, threshold ${p.threshold}`,
        ),
      ),
    );
  };
  const streams = [
    new Stream({
      service: "sales",
      client: sales,
      params: { type: ["sale.", "sales.today"], timezone: tz },
      onEvent: onSalesEvent,
      onState: (state) => (salesState.textContent = `(${state})`),
    }),
    new Stream({
      service: "products",
      client: products,
      params: { type: "stock.health_changed" },
      onEvent: onStockEvent,
      onState: (state) => (stockState.textContent = `(${state})`),
    }),
  ];
  streams.forEach((stream) => stream.open());
  return () => streams.forEach((stream) => stream.close());
}
