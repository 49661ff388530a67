"""Signing webhook messages, and checking a signature as a receiver does (Standard Webhooks,
https://www.standardwebhooks.com, the scheme Svix and others use; Stripe's is the same idea).

Every POST carries:

- ``Webhook-Id``: the message id, also the body's ``"id"`` (e.g. ``sales-1042``). It is the
  same on every try and for every endpoint: a receiver that already processed it drops it.
- ``Webhook-Timestamp``: when this try was sent, in whole seconds since the Unix epoch.
- ``Webhook-Signature``: ``v1,<signature>``, where signature is
  ``base64(HMAC-SHA256(key, f"{webhook_id}.{webhook_timestamp}.{body}"))`` over the exact
  bytes of the body. While an endpoint's previous secret is still valid after a rotation,
  there is one such item per secret, separated by spaces; any one matching is enough.

The secret an admin is shown is ``whsec_`` followed by the base64 of the key (24 to 64
random bytes); the HMAC key is those decoded bytes, not the text. The official
``standardwebhooks`` libraries verify these messages as they are; ``verify_signature`` here
does the same in a few lines. A receiver must refuse a timestamp far from its own clock
(five minutes by default): a captured message replayed later no longer verifies, and one
replayed within the window carries an id the receiver has seen.
"""

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
MIN_KEY_BYTES, MAX_KEY_BYTES = 24, 64
SIGNATURE_VERSION = "v1"
ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER = (
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
)


class InvalidSignature(ValueError):
    """A message that does not verify: a header missing, a stale timestamp, a wrong signature."""


def generate_secret() -> str:
    """A new random secret, ``whsec_`` + base64 of a 32-byte key."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a ``whsec_...`` secret stands for; ValueError if it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a webhook secret is 'whsec_' followed by base64") from exc
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(f"a webhook secret's key is {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes")
    return key


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """One signature item, ``v1,<base64 HMAC-SHA256>``, of this message."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signature_header(secrets_: Iterable[str], message_id: str, timestamp: int, body: bytes) -> str:
    """The ``Webhook-Signature`` value: one item per secret, space-separated."""
    return " ".join(sign(secret, message_id, timestamp, body) for secret in secrets_)


def signed_headers(
    secrets_: Iterable[str], message_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The three headers of one try of a message."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature_header(secrets_, message_id, timestamp, body),
    }


def verify_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    tolerance_seconds: float = 300,
    *,
    now: float | None = None,
) -> Any:
    """Check a received message as its receiver should, and answer its parsed JSON body.

    ``headers`` are the request's (any case); ``body`` its raw bytes, exactly as received
    (parse after verifying, never before). Raises InvalidSignature when a header is missing,
    the timestamp is more than ``tolerance_seconds`` from ``now`` (default: this clock) either
    way, or no signature matches ``secret``.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    message_id = lowered.get(ID_HEADER)
    timestamp_text = lowered.get(TIMESTAMP_HEADER)
    signatures = lowered.get(SIGNATURE_HEADER)
    if not message_id or not timestamp_text or not signatures:
        raise InvalidSignature("missing Webhook-Id, Webhook-Timestamp or Webhook-Signature")
    try:
        timestamp = int(timestamp_text)
    except ValueError as exc:
        raise InvalidSignature("Webhook-Timestamp is not a whole number of seconds") from exc
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise InvalidSignature("Webhook-Timestamp is too far from now (a replay?)")
    raw = body.encode() if isinstance(body, str) else body
    expected = sign(secret, message_id, timestamp, raw).encode()
    for item in signatures.split():
        if hmac.compare_digest(item.encode(), expected):
            return json.loads(raw)
    raise InvalidSignature("no signature matches")
