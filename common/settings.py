"""Settings shared by both services, read from the environment (prefix ``SHOP_``) or ``.env``."""

from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER_SECRET = "change-me-dev-only-secret-0123456789abcdef"  # noqa: S105
PLACEHOLDER_ADMIN_PASSWORD = "admin-change-me"  # noqa: S105


def default_database_url() -> str:
    """The embedded default: one SQLite file under var/ that both services open."""
    return f"sqlite:///{REPO_ROOT / 'var' / 'shop.db'}"


class CommonSettings(BaseSettings):
    """What every service needs: database, auth, CORS, timezone."""

    model_config = SettingsConfigDict(
        env_prefix="SHOP_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = Field(default_factory=default_database_url)
    database_pool_size: int = 10
    # Threads that run blocking route code at once, per process (anyio's default). Fewer
    # fight less over the GIL, but a sync route's answer is validated on one of them while
    # its transaction is still open: keep it above the requests that may queue on one row.
    worker_threads: int = Field(default=40, gt=0)
    database_max_overflow: int = 20

    jwt_secret: SecretStr = SecretStr(PLACEHOLDER_SECRET)
    jwt_algorithm: str = "HS256"
    access_token_minutes: int = Field(default=60, gt=0)

    first_admin_email: str = "admin@example.com"
    first_admin_password: SecretStr = SecretStr(PLACEHOLDER_ADMIN_PASSWORD)

    login_window_seconds: int = Field(default=900, gt=0)
    login_max_failures_per_account: int = Field(default=5, gt=0)
    login_max_failures_per_client: int = Field(default=30, gt=0)

    cors_origins: list[str] = ["http://localhost:3000", "http://localhost:5173"]
    store_timezone: str = "UTC"

    @field_validator("store_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA timezone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _no_placeholders_in_production(self) -> "CommonSettings":
        if self.environment == "production":
            if self.jwt_secret.get_secret_value() == PLACEHOLDER_SECRET:
                raise ValueError("SHOP_JWT_SECRET must be set to a real secret in production")
            if len(self.jwt_secret.get_secret_value()) < 32:
                raise ValueError("SHOP_JWT_SECRET must be at least 32 characters in production")
            if self.first_admin_password.get_secret_value() == PLACEHOLDER_ADMIN_PASSWORD:
                raise ValueError("SHOP_FIRST_ADMIN_PASSWORD must be changed in production")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


class ProductsSettings(CommonSettings):
    """products_service: how often this replica sweeps expired reservations."""

    reservation_sweep_seconds: float = Field(default=5.0, gt=0)
    reservation_default_ttl_seconds: int = Field(default=900, gt=0)
    reservation_max_ttl_seconds: int = Field(default=3600, gt=0)


class SalesSettings(CommonSettings):
    """sales_service: where products_service answers, and how patiently to call it."""

    products_service_url: str = "http://127.0.0.1:8000"
    products_timeout_seconds: float = Field(default=5.0, gt=0)
    products_retries: int = Field(default=2, ge=0, le=5)
    stock_sync_seconds: float = Field(default=5.0, gt=0)
    # The sale path's routes end their transactions in their own thread, so fewer threads
    # are safe here, and they fight less over the GIL: at 32 clients a sale cost about half
    # the CPU with 8 than with 40 (bench/sale_path.py).
    worker_threads: int = Field(default=8, gt=0)
    # A stock take no sale claimed this long after it is given back (see sales/reconciler.py).
    stock_reconcile_grace_seconds: float = Field(default=10.0, gt=0)
    rollup_poll_seconds: float = Field(default=0.5, gt=0)


@lru_cache
def get_products_settings() -> ProductsSettings:
    return ProductsSettings()


@lru_cache
def get_sales_settings() -> SalesSettings:
    return SalesSettings()
