"""Write both services' OpenAPI documents (products.json, sales.json) into a folder, without
starting a server or touching a database: each app is built in-process, as the tests build
it, and asked for ``app.openapi()``.

Run it as a module from the repository root, so that it documents this checkout's code
rather than whatever the venv has installed (scripts/openapi-client.sh does):
``.venv/bin/python -m scripts.openapi_documents OUT_DIR``.
"""

import json
import secrets
import sys
from pathlib import Path
from typing import TypeVar

from pydantic import SecretStr

from common.settings import CommonSettings, ProductsSettings, SalesSettings
from products_service.main import create_app as create_products_app
from sales_service.main import create_app as create_sales_app

SettingsT = TypeVar("SettingsT", bound=CommonSettings)


def offline(settings_class: type[SettingsT]) -> SettingsT:
    """Settings that need nothing: an in-memory SQLite engine is created but never connected
    to (the lifespan, which would, does not run), and a throwaway signing key, so no .env,
    key file or placeholder secret is read or refused."""
    return settings_class(
        _env_file=None,
        environment="test",
        database_url="sqlite://",
        jwt_secret=SecretStr(secrets.token_urlsafe(48)),
    )


def write_documents(out_dir: Path) -> list[Path]:
    """Build each app and write its document as ``<service>.json`` in ``out_dir``."""
    apps = {
        "products": create_products_app(offline(ProductsSettings)),
        "sales": create_sales_app(offline(SalesSettings)),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, app in apps.items():
        path = out_dir / f"{name}.json"
        path.write_text(json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUT_DIR")
    for path in write_documents(Path(sys.argv[1])):
        print(f"wrote {path}")
