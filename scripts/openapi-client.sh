#!/usr/bin/env bash
# A TypeScript client generated from both services' OpenAPI documents compiles, with money as
# decimal strings: writes the documents (apps built in-process, no server, no database),
# generates products.d.ts and sales.d.ts with openapi-typescript into var/openapi-client/
# (not committed), refuses `any` and `number | string` fields in them, then type-checks
# tests/openapi_client/usage.ts (a client's calls, with @ts-expect-error lines) against them
# with `tsc --strict`. Tools: the exact versions dashboard/package-lock.json pins.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
OUT=var/openapi-client

# Same install step as scripts/lint-js.sh: only when missing or when the lock has changed.
if ! cmp -s dashboard/package-lock.json dashboard/node_modules/.installed-lock.json; then
  npm ci --prefix dashboard --no-audit --no-fund --loglevel=error
  cp dashboard/package-lock.json dashboard/node_modules/.installed-lock.json
fi
BIN=dashboard/node_modules/.bin

rm -rf "$OUT"
"$VENV/bin/python" -m scripts.openapi_documents "$OUT" >/dev/null
# --default-non-nullable false: a field with a default is optional to send (answers list
# every field they always carry as required, so those stay required). Both at once.
pids=()
for service in products sales; do
  "$BIN/openapi-typescript" "$OUT/$service.json" -o "$OUT/$service.d.ts" \
    --default-non-nullable false >/dev/null &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done

# Generated code, not comments: `any` lets anything through; `number | string` hands a client
# a float to send (money is a decimal string: common/money.py). Each finding names its
# schema (or operation) and field.
bad=0
for service in products sales; do
  if ! awk -v file="$OUT/$service.d.ts" '
    /^[[:space:]]*(\/\*\*|\*|\/\/)/ { next }
    /^export (interface|type) / { section = $3; owner = "" }
    section == "components" && /^        [A-Za-z_$][A-Za-z0-9_$]*: \{$/ { owner = $1 }
    section == "operations" && /^    [A-Za-z_$][A-Za-z0-9_$]*: \{$/ { owner = $1 }
    function report(what) {
      field = $1; sub(/\??:$/, "", field); gsub(/"/, "", field); sub(/:$/, "", owner)
      printf "openapi-client: %s:%d: %s.%s is %s\n", file, NR, owner, field, what > "/dev/stderr"
      bad = 1
    }
    /(^|[^A-Za-z0-9_$"])any([^A-Za-z0-9_$"]|$)/ {
      report("`any`: give it a schema (a model, or a typed dict/list)")
    }
    /number \| string|string \| number/ {
      report("`number | string`: money is a decimal string (common.money.DecimalText)")
    }
    END { exit bad }
  ' "$OUT/$service.d.ts"; then
    bad=1
  fi
done
[[ $bad == 0 ]] || exit 1

# A client's own code against the types, as strict as tsc gets; @shop/<service> is its
# generated file.
ABS=$(pwd)
cat >"$OUT/tsconfig.json" <<EOF
{
  "compilerOptions": {
    "strict": true,
    "noEmit": true,
    "target": "ES2022",
    "lib": ["ES2022", "DOM"],
    "module": "ESNext",
    "moduleResolution": "Bundler",
    "types": [],
    "paths": {
      "@shop/products": ["$ABS/$OUT/products.d.ts"],
      "@shop/sales": ["$ABS/$OUT/sales.d.ts"]
    }
  },
  "files": ["$ABS/tests/openapi_client/usage.ts"]
}
EOF
"$BIN/tsc" -p "$OUT/tsconfig.json" --noEmit --strict
echo "openapi-client: products.d.ts and sales.d.ts compile, with no any and money as strings"
