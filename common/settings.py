"""Settings shared by both services, read from the environment (prefix ``SHOP_``) or ``.env``."""

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.webhooks.addresses import IPNetwork, parse_networks

REPO_ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER_SECRET = "change-me-dev-only-secret-0123456789abcdef"  # noqa: S105
PLACEHOLDER_ADMIN_PASSWORD = "admin-change-me"  # noqa: S105
# Signing keys anyone can read in this repository or its history: none is ever accepted.
PUBLIC_SECRETS = frozenset(
    {
        PLACEHOLDER_SECRET,
        "test-secret-" + "x" * 40,
        "bench-secret-" + "b" * 40,
    }
)
MIN_SECRET_LENGTH = 32
JWT_SECRET_FILE = "jwt-secret"  # noqa: S105 (a file name)


def default_state_dir() -> Path:
    return REPO_ROOT / "var"


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

    # Unset outside production: a random key generated once into state_dir (see
    # local_jwt_secret), which every process started from this checkout shares.
    jwt_secret: SecretStr = SecretStr("")
    state_dir: Path = Field(default_factory=default_state_dir)
    jwt_algorithm: str = "HS256"
    # Short-lived: a session lives on through its rotating refresh token (refresh_token_days).
    access_token_minutes: int = Field(default=15, gt=0)
    refresh_token_days: float = Field(default=14, gt=0)

    first_admin_email: str = "admin@example.com"
    first_admin_password: SecretStr = SecretStr(PLACEHOLDER_ADMIN_PASSWORD)

    # Failed logins count for this long (see common/auth/throttle.py). Only the pair of one
    # account and one client address is ever refused; the wider limits only slow attempts.
    login_window_seconds: int = Field(default=900, gt=0)
    # One address, one account: after this many failures that address must wait before its
    # next try there, login_pair_wait_seconds, doubling with each further failure.
    login_max_failures_per_pair: int = Field(default=5, gt=0)
    login_pair_wait_seconds: float = Field(default=30, gt=0)
    # One account from every address, and one address on every account: after this many
    # failures each attempt is answered more slowly (doubling, at most login_max_delay_seconds)
    # but the right password still gets in.
    login_max_failures_per_account: int = Field(default=5, gt=0)
    login_max_failures_per_client: int = Field(default=30, gt=0)
    login_max_delay_seconds: float = Field(default=10, ge=0)
    # Addresses (IPs or CIDR networks, comma-separated, "*" for any) of the proxies whose
    # X-Forwarded-For names the client. Empty: the header is ignored, the peer is the client.
    forwarded_allow_ips: str = ""
    # Larger request bodies are refused with 413 (the largest the API takes is a sale or a
    # reservation of 200 lines, a few tens of kilobytes).
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    # The file uploads of /api/v1/imports/ may be this large (spooled to disk as they come in,
    # then read as a stream); larger ones get 413. The CLI imports read files of any size.
    import_max_bytes: int = Field(default=256 * 1_048_576, gt=0)
    # A background import whose progress has not moved this long is taken for dead (its
    # process stopped) and started again from its spooled upload, at most 3 times in all;
    # every process looks for such jobs of its service every import_reap_seconds.
    import_stalled_seconds: float = Field(default=300, gt=0)
    import_reap_seconds: float = Field(default=60, gt=0)

    # Browser origins that may call the API: the dashboard as products_service serves it
    # (http://127.0.0.1:8000/dashboard/ calls sales_service cross-origin), and dev servers.
    cors_origins: list[str] = [
        "http://127.0.0.1:8000",
        "http://localhost:8000",
        "http://localhost:3000",
        "http://localhost:5173",
    ]
    store_timezone: str = "UTC"

    # The general API rate limit (common/ratelimit.py): requests a minute per user, and per
    # client address for callers without a valid token; 0 turns either off. Counted in the
    # Redis at redis_url, shared by every replica of both services; unset, each process
    # counts on its own (right for the single-process local mode).
    redis_url: str | None = None
    rate_limit_per_minute: int = Field(default=600, ge=0)
    rate_limit_anonymous_per_minute: int = Field(default=120, ge=0)
    rate_limit_key_prefix: str = "shop:ratelimit"
    # Served only over HTTPS (TLS ends at a proxy in front): answers carry HSTS.
    behind_https: bool = False
    # GET /metrics: off entirely, or only to `Authorization: Bearer <metrics_token>`.
    # Without a token it is open in development and test, and refused in production.
    metrics_enabled: bool = True
    metrics_token: SecretStr | None = None
    # Event streams (common/streams): how often a process with stream clients reads its
    # outbox, the quiet time after which a stream sends a `: ping`, the reconnection delay
    # it advises, how long a stream token opens streams, streams per process, and how many
    # unsent events a client may lag by before it is disconnected (it resumes by id).
    # (0.5 s: each poll is a write to every client; 0.25 s cost 200 clients' sale rate 17%,
    # 0.5 s 4%, with events still on the stream within 0.75 s at p99: bench/live_stream.py)
    stream_poll_seconds: float = Field(default=0.5, gt=0)
    stream_heartbeat_seconds: float = Field(default=15.0, gt=0)
    stream_retry_ms: int = Field(default=3000, ge=0)
    stream_token_seconds: int = Field(default=60, gt=0, le=3600)
    stream_max_clients: int = Field(default=1000, gt=0)
    stream_client_buffer_events: int = Field(default=5000, gt=0)
    # How long a gap in the outbox ids holds the events after it back (common.streams.feed
    # .GapGuard): a gap fills within milliseconds, unless its transaction rolled back.
    stream_gap_grace_seconds: float = Field(default=1.0, ge=0)
    # sales.today is recomputed (the revenue report, per timezone and filter followed) after
    # the sale events that change it, at most this often.
    stream_today_seconds: float = Field(default=1.0, ge=0)

    # Webhooks (common/webhooks): each process fans its own outbox out to the endpoints and
    # delivers whatever is due, from either service. Off: neither runs in this process.
    webhooks_enabled: bool = True
    webhook_poll_seconds: float = Field(default=0.5, gt=0)
    # One POST, from connecting to the whole answer; longer is a failed try.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    # Endpoints this process delivers to at once (each endpoint one message at a time).
    webhook_max_concurrency: int = Field(default=8, gt=0, le=256)
    # Retries: full jitter, the n-th wait uniform in [0, min(cap, base * 2^(n-1))], until a
    # delivery has been retried for max_age; then it has failed. Defaults: 14 to 18 tries
    # over 24 to 30 hours.
    webhook_retry_base_seconds: float = Field(default=60.0, gt=0)
    webhook_retry_cap_seconds: float = Field(default=8 * 3600.0, gt=0)
    webhook_retry_max_age_seconds: float = Field(default=24 * 3600.0, ge=0)
    # Disable an endpoint when one of its deliveries has finally failed (its later ones wait
    # until it is enabled again); false: skip that delivery and go on with the next.
    webhook_auto_disable: bool = True
    # How long a worker owns an endpoint's queue without renewing it; a worker that died
    # holding one is replaced when it runs out. Must exceed the timeout.
    webhook_lease_seconds: float = Field(default=60.0, gt=0)
    # Webhooks go to public addresses only (common/webhooks/addresses.py); these networks
    # are allowed even so, comma-separated, e.g. "10.20.0.0/16" or "127.0.0.0/8".
    webhook_allowed_networks: str = ""
    # After a secret is rotated, the old one signs too for this long.
    webhook_rotation_grace_seconds: float = Field(default=24 * 3600.0, ge=0)
    # Finished deliveries (and their attempts) older than this are deleted; 0 keeps them.
    webhook_retention_days: float = Field(default=30.0, ge=0)

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)  # ValueError naming the bad one
        return value

    @property
    def webhook_networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.webhook_allowed_networks)

    @model_validator(mode="after")
    def _webhook_lease_outlives_a_post(self) -> "CommonSettings":
        if self.webhook_lease_seconds <= self.webhook_timeout_seconds + 1:
            raise ValueError(
                "SHOP_WEBHOOK_LEASE_SECONDS must exceed SHOP_WEBHOOK_TIMEOUT_SECONDS by more "
                "than a second: another worker would take over a POST still in flight"
            )
        return self

    @field_validator("store_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA timezone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _real_secrets(self) -> "CommonSettings":
        secret = self.jwt_secret.get_secret_value()
        if not secret:
            if self.environment == "production":
                # Every replica must sign and check with the same key: no local file will do.
                raise ValueError("SHOP_JWT_SECRET must be set in production")
            self.jwt_secret = SecretStr(local_jwt_secret(self.state_dir))
        elif secret in PUBLIC_SECRETS:
            raise ValueError(
                "SHOP_JWT_SECRET is a value published in this repository; anyone could sign "
                "tokens with it. Unset it (a random one is generated) or set your own"
            )
        elif len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"SHOP_JWT_SECRET must be at least {MIN_SECRET_LENGTH} characters")
        if (
            self.environment == "production"
            and self.first_admin_password.get_secret_value() == PLACEHOLDER_ADMIN_PASSWORD
        ):
            raise ValueError("SHOP_FIRST_ADMIN_PASSWORD must be changed in production")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def local_jwt_secret(state_dir: Path) -> str:
    """This installation's own signing key: read from ``state_dir/jwt-secret``, or created
    there (random, readable by its owner only) by the first process that needs it. Processes
    that start together agree: the file is created whole or not at all, and a loser of the
    race reads the winner's key."""
    path = state_dir / JWT_SECRET_FILE
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{JWT_SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        draft.write_text(secrets.token_urlsafe(48) + "\n")
        draft.chmod(0o600)
        try:
            os.link(draft, path)  # fails if another process got there first
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    secret = path.read_text().strip()
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(f"{path} holds no usable key; delete it to generate a new one")
    return secret


class ProductsSettings(CommonSettings):
    """products_service: how often this replica sweeps expired reservations."""

    reservation_sweep_seconds: float = Field(default=5.0, gt=0)
    reservation_default_ttl_seconds: int = Field(default=900, gt=0)
    reservation_max_ttl_seconds: int = Field(default=3600, gt=0)
    # How often the stock-alerts consumer looks for new products events once caught up.
    alert_poll_seconds: float = Field(default=0.5, gt=0)
    # The admin dashboard (dashboard/), served by this service at /dashboard/: on or off, and
    # the sales_service base URL its browser code calls (products_service: its own origin).
    dashboard_enabled: bool = True
    dashboard_sales_url: str = "http://127.0.0.1:8001"


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
    # Reports sum the rollups from a copy each process holds in memory (about 60 bytes a
    # rollup row: 73 MiB for a million sales), loaded in the background at start and brought
    # forward as the consumer moves; off, they sum the rollup tables in MySQL/MariaDB.
    reports_in_memory: bool = True


@lru_cache
def get_products_settings() -> ProductsSettings:
    return ProductsSettings()


@lru_cache
def get_sales_settings() -> SalesSettings:
    return SalesSettings()
