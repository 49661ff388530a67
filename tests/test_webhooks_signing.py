"""The webhook signature (Standard Webhooks), the retry schedule and the event filters, without
servers: what a receiver checks, and what the worker decides."""

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from common.webhooks import InvalidSignature, generate_secret, verify_signature
from common.webhooks.delivery import RetryPolicy
from common.webhooks.fanout import encode, subscribes
from common.webhooks.signing import secret_key, sign, signed_headers

NOW = 1_800_000_000


def test_signature_matches_the_standard_webhooks_test_vector() -> None:
    # From the Standard Webhooks specification's examples: any library of theirs verifies us.
    signature = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_signed_message_verifies_and_answers_its_body() -> None:
    secret = generate_secret()
    body = encode({"id": "sales-1", "type": "sale.recorded", "data": {"total": "19.90"}}).encode()
    headers = signed_headers([secret], "sales-1", body, timestamp=NOW)
    assert verify_signature(secret, headers, body, now=NOW + 10)["data"] == {"total": "19.90"}
    # header names in any case, as a framework hands them over
    upper = {name.upper(): value for name, value in headers.items()}
    assert verify_signature(secret, upper, body.decode(), now=NOW)["id"] == "sales-1"


def test_a_tampered_body_is_rejected() -> None:
    secret = generate_secret()
    body = encode({"id": "sales-1", "data": {"total": "19.90"}}).encode()
    headers = signed_headers([secret], "sales-1", body, timestamp=NOW)
    tampered = body.replace(b"19.90", b"0.01")
    with pytest.raises(InvalidSignature, match="no signature matches"):
        verify_signature(secret, headers, tampered, now=NOW)


def test_another_message_id_or_timestamp_under_the_same_signature_is_rejected() -> None:
    secret = generate_secret()
    body = b'{"id":"sales-1"}'
    headers = signed_headers([secret], "sales-1", body, timestamp=NOW)
    with pytest.raises(InvalidSignature):
        verify_signature(secret, {**headers, "webhook-id": "sales-2"}, body, now=NOW)
    with pytest.raises(InvalidSignature):
        verify_signature(secret, {**headers, "webhook-timestamp": str(NOW + 1)}, body, now=NOW)


def test_an_old_or_future_timestamp_is_rejected_as_a_replay() -> None:
    secret = generate_secret()
    body = b"{}"
    headers = signed_headers([secret], "products-7", body, timestamp=NOW)
    assert verify_signature(secret, headers, body, now=NOW + 299) == {}
    with pytest.raises(InvalidSignature, match="too far"):
        verify_signature(secret, headers, body, now=NOW + 301)
    with pytest.raises(InvalidSignature, match="too far"):
        verify_signature(secret, headers, body, now=NOW - 301)
    assert verify_signature(secret, headers, body, tolerance_seconds=3600, now=NOW + 3000) == {}


def test_the_wrong_secret_or_missing_headers_are_rejected() -> None:
    body = b"{}"
    headers = signed_headers([generate_secret()], "sales-1", body, timestamp=NOW)
    with pytest.raises(InvalidSignature):
        verify_signature(generate_secret(), headers, body, now=NOW)
    for missing in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        partial = {k: v for k, v in headers.items() if k != missing}
        with pytest.raises(InvalidSignature, match="missing"):
            verify_signature(generate_secret(), partial, body, now=NOW)
    with pytest.raises(InvalidSignature, match="whole number"):
        verify_signature(generate_secret(), {**headers, "webhook-timestamp": "soon"}, body)


def test_during_a_rotation_either_secret_verifies() -> None:
    old, new = generate_secret(), generate_secret()
    body = b'{"id":"products-3"}'
    headers = signed_headers([new, old], "products-3", body, timestamp=NOW)
    assert len(headers["webhook-signature"].split()) == 2
    assert verify_signature(old, headers, body, now=NOW) == {"id": "products-3"}
    assert verify_signature(new, headers, body, now=NOW) == {"id": "products-3"}


def test_secrets_are_whsec_base64_keys() -> None:
    assert len(secret_key(generate_secret())) == 32
    for bad in ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_c2hvcnQ="):
        with pytest.raises(ValueError):
            secret_key(bad)


def test_the_body_is_compact_utf8_json() -> None:
    assert encode({"a": "é", "b": [1, 2]}) == '{"a":"é","b":[1,2]}'
    assert json.loads(encode({"x": 1})) == {"x": 1}


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    policy = RetryPolicy(base_seconds=60, cap_seconds=8 * 3600, max_age_seconds=86400)
    rng = random.Random(7)
    for failures, ceiling in ((1, 60), (2, 120), (5, 960), (10, 8 * 3600), (500, 8 * 3600)):
        waits = [policy.delay(failures, rng) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling * 0.8  # spread over the whole range, not bunched


def test_the_default_schedule_retries_for_at_least_a_day_in_about_a_dozen_tries() -> None:
    policy = RetryPolicy(base_seconds=60, cap_seconds=8 * 3600, max_age_seconds=86400)
    rng = random.Random(12)
    runs = []
    for _ in range(300):
        queued = datetime(2026, 12, 1, tzinfo=UTC)
        now, tries = queued, 0
        while True:
            tries += 1  # a try at `now` fails
            if policy.gives_up(queued, now):
                break
            now += timedelta(seconds=policy.delay(tries, rng))
        runs.append(((now - queued).total_seconds() / 3600, tries))
    spans = [span for span, _ in runs]
    counts = sorted(count for _, count in runs)
    assert min(spans) >= 24  # never gives up before a day of retries
    assert max(spans) <= 24 + 8  # the last wait is at most the cap
    assert 12 <= counts[len(counts) // 2] <= 18, counts[len(counts) // 2]


@pytest.mark.parametrize(
    ("filters", "event_type", "expected"),
    [
        ([], "sale.recorded", True),
        (["sale."], "sale.recorded", True),
        (["sale."], "sale_stock.taken", False),
        (["sale.recorded"], "sale.recorded", True),
        (["sale.recorded"], "sale.recorded_twice", False),
        (["stock.", "product.created"], "product.created", True),
        (["stock."], "stock.health_changed", True),
        (["product.updated"], "product.created", False),
    ],
)
def test_event_type_filters_take_exact_types_and_prefixes(
    filters: list[str], event_type: str, expected: bool
) -> None:
    assert subscribes(filters, event_type) is expected
