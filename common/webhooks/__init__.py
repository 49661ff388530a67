"""Webhooks: admins register endpoints; every matching event of either outbox is POSTed to
them, signed (Standard Webhooks), at least once, in order per endpoint, retried with
exponential backoff and full jitter for a day, with a delivery log.

- ``signing``: the signature scheme, and ``verify_signature`` for receivers.
- ``fanout``: the outbox consumer that queues one delivery per matching endpoint.
- ``delivery``: the runner that sends them (fan-out and delivery threads).
- ``worker``: the process that runs it, and ``run_webhooks`` for a service's lifespan.
- ``router`` / ``service`` / ``repository`` / ``schemas``: the admin API.
"""

from common.webhooks.signing import InvalidSignature, generate_secret, verify_signature

__all__ = ["InvalidSignature", "generate_secret", "verify_signature"]
