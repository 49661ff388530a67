// A client developer's code on the TypeScript types generated from both OpenAPI documents
// (scripts/openapi-client.sh generates them and type-checks this file with them, strict).
// It proves what the types promise: every money field, sent or read, is a decimal string:
// a line marked @ts-expect-error must fail to compile, so the check fails if money ever
// becomes a number, `number | string` or `any` again.
import type { components as ProductSchemas, paths as ProductPaths } from "@shop/products";
import type { components as SalesSchemas, paths as SalesPaths } from "@shop/sales";

type GetProduct = ProductPaths["/api/v1/products/{product_id}"]["get"];
type ListProducts = ProductPaths["/api/v1/products"]["get"];
type RecordSale = SalesPaths["/api/v1/sales"]["post"];
type GetRevenue = SalesPaths["/api/v1/reports/revenue"]["get"];

type ProductDetail = GetProduct["responses"][200]["content"]["application/json"];
type ProductPage = ListProducts["responses"][200]["content"]["application/json"];
type SaleCreate = RecordSale["requestBody"]["content"]["application/json"];
type SaleRead = RecordSale["responses"][201]["content"]["application/json"];
type RevenueSeries = GetRevenue["responses"][200]["content"]["application/json"];
type ErrorBody = SalesSchemas["schemas"]["ErrorBody"];

async function call<T>(url: string, token: string, init: RequestInit = {}): Promise<T> {
  const answer = await fetch(url, {
    ...init,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
  });
  if (!answer.ok) {
    const error = (await answer.json()) as ErrorBody;
    throw new Error(`${error.error}: ${error.detail}`);
  }
  return (await answer.json()) as T;
}

export async function productPrice(base: string, token: string, id: number): Promise<string> {
  const product = await call<ProductDetail>(`${base}/api/v1/products/${id}`, token);
  const cost: string = product.cost_price;
  // @ts-expect-error money is a decimal string, never a number
  const asNumber: number = product.price;
  void asNumber;
  return `${product.sku}: ${product.price} (cost ${cost})`;
}

export async function cheapProducts(base: string, token: string): Promise<string[]> {
  type Query = NonNullable<ListProducts["parameters"]["query"]>;
  const query: Query = { max_price: "9.99" };
  // @ts-expect-error a price filter is a decimal string too
  const byNumber: Query = { max_price: 9.99 };
  void byNumber;
  const url = `${base}/api/v1/products?max_price=${query.max_price ?? ""}`;
  const page = await call<ProductPage>(url, token);
  return page.items.map((item) => item.price);
}

export async function everySku(base: string, token: string): Promise<string[]> {
  // Page by cursor: each page's next_cursor (null on the last) is the next one's cursor.
  type Query = NonNullable<ListProducts["parameters"]["query"]>;
  const skus: string[] = [];
  let cursor: string | null = null;
  do {
    const query: Query = { limit: 500, sort: "sku", ...(cursor === null ? {} : { cursor }) };
    const params = new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)]));
    const page: ProductPage = await call<ProductPage>(`${base}/api/v1/products?${params}`, token);
    skus.push(...page.items.map((item) => item.sku));
    cursor = page.next_cursor;
  } while (cursor !== null);
  return skus;
}

export function newProduct(): ProductSchemas["schemas"]["ProductCreate"] {
  // Fields with a default (description, status, low_stock_threshold) may be left out.
  return { sku: "MUG-1", name: "Mug", price: "12.00", cost_price: "4.50" };
}

export function badProduct(): ProductSchemas["schemas"]["ProductCreate"] {
  // @ts-expect-error a price sent as a JSON number is refused: send "12.00"
  return { sku: "MUG-2", name: "Mug", price: 12, cost_price: "4.50" };
}

export async function recordSale(base: string, token: string): Promise<string> {
  const body: SaleCreate = {
    channel_code: "web-store",
    lines: [{ product_id: 1, quantity: 2, unit_price: "17.50" }],
  };
  const floaty: SaleCreate = {
    channel_code: "web-store",
    // @ts-expect-error a unit price is a decimal string, never a number
    lines: [{ product_id: 1, quantity: 2, unit_price: 17.5 }],
  };
  void floaty;
  const sale = await call<SaleRead>(`${base}/api/v1/sales`, token, {
    method: "POST",
    body: JSON.stringify(body),
  });
  const total: string = sale.total;
  const net: string = sale.net_total;
  const unitPrices: string[] = sale.lines.map((line) => line.unit_price);
  // @ts-expect-error a sale's total is a decimal string, never a number
  const totalNumber: number = sale.total;
  void totalNumber;
  return `${sale.number}: ${total} (net ${net}; ${unitPrices.join(", ")})`;
}

export async function revenue(base: string, token: string): Promise<string[]> {
  const report = await call<RevenueSeries>(`${base}/api/v1/reports/revenue?period=day`, token);
  const totalRevenue: string = report.totals.revenue;
  const margin: string = report.totals.margin;
  // @ts-expect-error a report's revenue is a decimal string, never a number
  const revenueNumber: number = report.totals.revenue;
  void revenueNumber;
  // A bucket with no orders has no average order value.
  const averages: (string | null)[] = report.buckets.map((bucket) => bucket.average_order_value);
  return [totalRevenue, margin, ...averages.map((average) => average ?? "-")];
}
