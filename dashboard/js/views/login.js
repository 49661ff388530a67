// Log in: one token works on both services.

import * as api from "../api.js";
import { busy, clear, field, formError, h, showFormError } from "../ui.js";

export function render(root, { message, onLoggedIn }) {
  const email = h("input", {
    type: "email",
    name: "email",
    autocomplete: "username",
    required: true,
  });
  const password = h("input", {
    type: "password",
    name: "password",
    autocomplete: "current-password",
    required: true,
  });
  const error = formError();
  const form = h(
    "form",
    { class: "card login-card", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Shop dashboard"),
    h("p", { class: "muted" }, "Log in with your shop account."),
    message ? h("p", { class: "notice", role: "status" }, message) : null,
    field("Email", email),
    field("Password", password),
    error,
    h("button", { type: "submit", class: "primary" }, "Log in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showFormError(error, null);
    await busy(form, async () => {
      try {
        await api.login(email.value.trim(), password.value);
        onLoggedIn();
      } catch (failure) {
        const text =
          failure.status === 401 || failure.status === 400
            ? "Wrong email or password."
            : failure.status === 429
              ? `Too many attempts. ${failure.message}`
              : failure.message;
        showFormError(error, new Error(text));
        password.select();
      }
    });
  });
  clear(root, h("div", { class: "login-page" }, form));
  email.focus();
}
