// ESLint's flat config for the dashboard: its recommended rules, on browser ES modules as
// they are served (no build step). Run by scripts/test.sh; by hand: `npx eslint .` here.
import js from "@eslint/js";
import globals from "globals";

export default [
  { ignores: ["vendor/", "node_modules/"] },
  js.configs.recommended,
  {
    files: ["js/**/*.js"],
    languageOptions: {
      ecmaVersion: "latest",
      sourceType: "module",
      globals: globals.browser,
    },
  },
  {
    files: ["eslint.config.js"],
    languageOptions: { globals: globals.node },
  },
];
