// Start-up and hash routing: #/screen[/id][?query]. Each screen module exports
// render(root, route) and may return a cleanup function, called when the screen is left.

import * as api from "./api.js";
import { destroyCharts } from "./charts.js";
import { clear, errorState, h, toast } from "./ui.js";
import * as catalog from "./views/catalog.js";
import * as compare from "./views/compare.js";
import * as inventory from "./views/inventory.js";
import * as live from "./views/live.js";
import * as loginView from "./views/login.js";
import * as overview from "./views/overview.js";
import * as salesView from "./views/sales.js";

const SCREENS = {
  overview: { module: overview, title: "Overview" },
  compare: { module: compare, title: "Compare" },
  inventory: { module: inventory, title: "Inventory" },
  sales: { module: salesView, title: "Sales" },
  catalog: { module: catalog, title: "Catalog" },
  live: { module: live, title: "Live" },
};

const main = document.getElementById("main");
const topbar = document.querySelector(".topbar");
let cleanup = null;
let shownScreen = null;
let routing = 0;
let returnTo = null;
let endedMessage = null;

export function parseHash(hash) {
  const text = hash.replace(/^#\/?/, "");
  const [path, query = ""] = text.split("?");
  const parts = path.split("/").filter(Boolean);
  return { screen: parts[0] || "", parts: parts.slice(1), query: new URLSearchParams(query) };
}

/** Show ``hash``: a new hash routes through hashchange, the current one is rendered again. */
function go(hash) {
  if (location.hash === hash) route();
  else location.replace(hash);
}

function leaveScreen() {
  if (typeof cleanup === "function") {
    try {
      cleanup();
    } catch (error) {
      console.error(error);
    }
  }
  cleanup = null;
  destroyCharts();
}

function showChrome(user) {
  topbar.hidden = !user;
  if (user) {
    topbar.querySelector(".who").textContent = `${user.email} (${user.role})`;
    document.body.dataset.role = user.role;
  } else {
    delete document.body.dataset.role;
  }
}

function markCurrent(screen) {
  for (const link of topbar.querySelectorAll("nav a")) {
    if (link.getAttribute("href") === `#/${screen}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function route() {
  // A filter changed re-renders its screen: keep the keyboard where it was.
  const focused = main.contains(document.activeElement)
    ? document.activeElement.getAttribute("name")
    : null;
  leaveScreen();
  const generation = ++routing;
  const current = parseHash(location.hash);
  const user = api.currentUser();
  if (!user) {
    if (current.screen !== "login") {
      returnTo = location.hash && location.hash !== "#/login" ? location.hash : null;
      location.replace("#/login");
      return;
    }
    showChrome(null);
    document.title = "Log in · Shop dashboard";
    loginView.render(main, {
      message: endedMessage,
      onLoggedIn: () => {
        endedMessage = null;
        location.hash = returnTo || "#/overview";
        returnTo = null;
      },
    });
    return;
  }
  if (current.screen === "login" || !SCREENS[current.screen]) {
    location.replace("#/overview");
    return;
  }
  showChrome(user);
  markCurrent(current.screen);
  const screen = SCREENS[current.screen];
  document.title = `${screen.title} · Shop dashboard`;
  // Each visit renders into a container of its own: a screen still loading when it is left
  // writes into a detached one, never over the next screen.
  const view = h("div", { class: "view" });
  clear(main, view);
  try {
    const done = await screen.module.render(view, { ...current, user, canWrite: api.canWrite() });
    if (generation !== routing) {
      // Left while it loaded: its cleanup (a live stream) must still run.
      if (typeof done === "function") done();
      return;
    }
    cleanup = done;
    const again = shownScreen === location.hash.split("?")[0];
    shownScreen = location.hash.split("?")[0];
    const control = again && focused ? main.querySelector(`[name="${CSS.escape(focused)}"]`) : null;
    if (control) control.focus();
    else if (!again && !main.contains(document.activeElement)) main.focus({ preventScroll: true });
  } catch (error) {
    console.error(error);
    if (generation === routing) clear(view, errorState(error, route));
  }
}

function wireChrome() {
  const toggle = topbar.querySelector(".nav-toggle");
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    topbar.classList.toggle("nav-open", open);
  });
  topbar.querySelector("nav").addEventListener("click", (event) => {
    if (event.target.closest("a")) {
      toggle.setAttribute("aria-expanded", "false");
      topbar.classList.remove("nav-open");
    }
  });
  topbar.querySelector("[data-action=logout]").addEventListener("click", async () => {
    await api.logout();
    api.forget();
    go("#/login");
  });
}

async function start() {
  wireChrome();
  try {
    await api.loadConfig();
  } catch (error) {
    clear(
      main,
      errorState(new Error(`The dashboard's configuration did not load: ${error.message}`)),
    );
    return;
  }
  api.onSessionEnd((reason) => {
    api.forget();
    if (reason === "expired") {
      endedMessage = "Your session has expired. Please log in again.";
      toast(endedMessage, "error");
    }
    returnTo = location.hash && !location.hash.startsWith("#/login") ? location.hash : returnTo;
    go("#/login");
  });
  window.addEventListener("hashchange", route);
  await route();
}

start();
