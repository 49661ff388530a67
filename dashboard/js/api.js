// The dashboard's one client of both services, used as any third party would: the public
// /api/v1 routes, a bearer token, CORS to sales_service. A 401 trades the refresh token for a
// new pair once (refresh tokens work once, so concurrent 401s share one refresh); if that
// fails too, the session ends and the app returns to the login screen.

const SESSION_KEY = "shop.dashboard.session";
const API = "/api/v1";

let config = { products_url: "", sales_url: "http://127.0.0.1:8001", store_timezone: "UTC" };
let session = readSession();
let refreshing = null;
const sessionEndListeners = new Set();

export class ApiError extends Error {
  constructor(status, body, service) {
    super(describe(status, body, service));
    this.status = status;
    this.code = body?.error ?? null;
    this.body = body ?? null;
  }
}

function describe(status, body, service) {
  if (status === 0) return `Cannot reach ${service}_service. Is it running?`;
  // (the detail names the fields at fault too, e.g. "Invalid input: body.price: ...")
  return body?.detail || `${service}_service answered ${status}`;
}

export async function loadConfig() {
  const response = await fetch("config.json", { cache: "no-cache" });
  if (!response.ok) throw new Error(`config.json answered ${response.status}`);
  config = { ...config, ...(await response.json()) };
  return config;
}

export function getConfig() {
  return config;
}

function readSession() {
  try {
    return JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
  } catch {
    return null;
  }
}

function saveSession(value) {
  session = value;
  if (value) sessionStorage.setItem(SESSION_KEY, JSON.stringify(value));
  else sessionStorage.removeItem(SESSION_KEY);
}

export function currentUser() {
  return session?.user ?? null;
}

export function canWrite() {
  const role = session?.user?.role;
  return role === "admin" || role === "manager";
}

export function onSessionEnd(listener) {
  sessionEndListeners.add(listener);
}

function endSession(reason) {
  const had = Boolean(session);
  saveSession(null);
  if (had) sessionEndListeners.forEach((listener) => listener(reason));
}

export function url(service, path, params) {
  const root = service === "sales" ? config.sales_url : config.products_url;
  const target = new URL(`${root}${API}${path}`, location.href);
  for (const [name, value] of Object.entries(params || {})) {
    if (value === undefined || value === null || value === "") continue;
    for (const item of Array.isArray(value) ? value : [value]) {
      target.searchParams.append(name, String(item));
    }
  }
  return target;
}

/** A fresh Idempotency-Key (crypto.randomUUID needs a secure context; this does not). */
export function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function send(service, method, path, { params, body, key, accept } = {}) {
  const headers = { Accept: accept || "application/json" };
  if (session?.access_token) headers.Authorization = `Bearer ${session.access_token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (key) headers["Idempotency-Key"] = key;
  try {
    return await fetch(url(service, path, params), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, null, service);
  }
}

async function refresh() {
  if (!session?.refresh_token) return false;
  if (!refreshing) {
    const token = session.refresh_token;
    refreshing = (async () => {
      const response = await send("products", "POST", "/auth/refresh", {
        body: { refresh_token: token },
      }).catch(() => null);
      if (!response || !response.ok) return false;
      const pair = await response.json();
      saveSession({ ...session, ...pair, user: pair.user ?? session.user });
      return true;
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

/**
 * One API call. ``service`` is "products" or "sales"; ``options.raw`` returns the Response
 * (for CSV); otherwise the parsed JSON. Errors are ApiError with the API's error shape.
 */
export async function call(service, method, path, options = {}) {
  let response = await send(service, method, path, options);
  if (response.status === 401 && !path.startsWith("/auth/login")) {
    if (await refresh()) response = await send(service, method, path, options);
    if (response.status === 401) {
      endSession("expired");
      throw new ApiError(
        401,
        { detail: "Your session has expired. Please log in again." },
        service,
      );
    }
  }
  if (!response.ok) {
    const body = await response.json().catch(() => null); // an error without a JSON body
    throw new ApiError(response.status, body, service);
  }
  if (options.raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

export const products = {
  get: (path, params) => call("products", "GET", path, { params }),
  post: (path, body, options = {}) => call("products", "POST", path, { body, ...options }),
  patch: (path, body) => call("products", "PATCH", path, { body }),
};

export const sales = {
  get: (path, params) => call("sales", "GET", path, { params }),
  post: (path, body, options = {}) => call("sales", "POST", path, { body, ...options }),
};

export async function login(email, password) {
  saveSession(null);
  const pair = await call("products", "POST", "/auth/login", { body: { email, password } });
  saveSession({
    access_token: pair.access_token,
    refresh_token: pair.refresh_token,
    user: pair.user,
  });
  return pair.user;
}

export async function logout() {
  try {
    // Not through call(): a session the server already ended needs no refresh to end.
    if (session) await send("products", "POST", "/auth/logout");
  } catch {
    // The session ends here whatever the server said.
  }
  saveSession(null);
}

/** Every item of a list route (for small lists: categories, warehouses, channels). */
export async function listAll(service, path, params = {}) {
  const items = [];
  for (let offset = 0; ; offset += 500) {
    const page = await call(service, "GET", path, { params: { ...params, limit: 500, offset } });
    items.push(...page.items);
    if (items.length >= page.total || page.items.length === 0) return items;
  }
}

// Reference lists change rarely: fetched once per session, forgotten after a write.
const cache = new Map();
export function cached(name, load) {
  if (!cache.has(name)) {
    cache.set(
      name,
      load().catch((error) => {
        cache.delete(name);
        throw error;
      }),
    );
  }
  return cache.get(name);
}
export function forget(name) {
  if (name) cache.delete(name);
  else cache.clear();
}

export const reference = {
  categories: () =>
    cached("categories", () => listAll("products", "/categories", { sort: "name" })),
  warehouses: () => cached("warehouses", () => listAll("products", "/warehouses")),
  channels: () => cached("channels", () => listAll("sales", "/channels")),
  products: () => cached("products", () => listAll("products", "/products", { sort: "name" })),
};
