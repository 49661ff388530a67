"""Login throttling that slows guessing without handing anyone a lockout.

Every attempt is recorded in ``login_attempts`` before its password is checked, and deleted
(with the rest of its pair's) when the password is right; what remains are failures, and
attempts in flight. Three counts over ``login_window_seconds``:

- **the pair** (one account from one client address): after ``login_max_failures_per_pair``
  failures, that address must wait ``login_pair_wait_seconds`` after its last failure,
  doubling with each further one, before it may try that account again (429 with
  Retry-After). This is the only refusal, and it falls on the guesser's own address.
- **the account** (from every address) and **the client** (on every account): past their
  limits, every attempt is answered later (doubling, at most ``login_max_delay_seconds``),
  but still answered: the right password always gets in, so a stranger can slow an account
  but never lock its owner out.

The attempt row is committed before the pair is counted, and the count is a locking read:
requests sent at once cannot all slip under the limit together, each one sees every
attempt that was recorded before it.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, func, or_, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from common.db import retry_lock_conflicts, utcnow
from common.errors import TooManyRequests
from common.models import LoginAttempt
from common.settings import CommonSettings


@dataclass(frozen=True)
class Admission:
    """An attempt allowed to check its password: its row, and how long to wait first."""

    attempt_id: int
    account: str
    client: str
    delay_seconds: float


def _slowdown(failures: int, limit: int, settings: CommonSettings) -> float:
    if failures < limit:
        return 0.0
    return min(settings.login_max_delay_seconds, 0.25 * 2 ** min(failures - limit, 16))


def _pair_failures(
    session: Session, account: str, client: str, earlier: Any, since: datetime
) -> tuple[int, datetime | None]:
    """The pair's attempts recorded before this one, in a transaction of its own (its
    shared locks end at once). A locking read waits for attempts still being recorded, so
    it sees every earlier one."""

    def count() -> tuple[int, datetime | None]:
        failures, last = session.execute(
            select(func.count(), func.max(LoginAttempt.attempted_at))
            .where(
                LoginAttempt.account == account,
                LoginAttempt.client == client,
                earlier,
                LoginAttempt.attempted_at >= since,
            )
            .with_for_update(read=True)
        ).one()
        session.commit()
        return int(failures), last

    return retry_lock_conflicts(count, session=session)


def _record(session: Session, account: str, client: str, now: datetime) -> int:
    def insert() -> int:
        attempt = LoginAttempt(account=account, client=client, attempted_at=now)
        session.add(attempt)
        session.flush()
        attempt_id = attempt.id
        session.commit()
        return attempt_id

    return retry_lock_conflicts(insert, session=session)


def _forget(session: Session, which: Any) -> None:
    """Delete attempts, best effort: one that meets a lock stays (as a failure, erring on
    the safe side) until the window drops it."""
    try:
        session.execute(delete(LoginAttempt).where(which))
        session.commit()
    except OperationalError:
        session.rollback()


def admit(
    sessions: sessionmaker[Session], *, account: str, client: str, settings: CommonSettings
) -> Admission:
    """Record this attempt, or refuse it (429) when its pair must still wait."""
    now = utcnow()
    since = now - timedelta(seconds=settings.login_window_seconds)
    with sessions() as session:
        attempt_id = _record(session, account, client, now)
        earlier = LoginAttempt.id < attempt_id
        failures, last_failure = _pair_failures(session, account, client, earlier, since)
        if failures >= settings.login_max_failures_per_pair and last_failure is not None:
            doublings = min(failures - settings.login_max_failures_per_pair, 16)
            wait = min(
                settings.login_pair_wait_seconds * 2**doublings, settings.login_window_seconds
            )
            retry = (last_failure + timedelta(seconds=wait) - now).total_seconds()
            if retry > 0:
                # A refused attempt is no guess: it does not lengthen the wait.
                _forget(session, LoginAttempt.id == attempt_id)
                seconds = int(retry) + 1
                raise TooManyRequests(
                    "Too many failed logins to this account from this address; "
                    f"try again in {seconds} seconds",
                    retry_after=seconds,
                )
        by_account, by_client = session.execute(
            select(
                func.coalesce(func.sum(case((LoginAttempt.account == account, 1), else_=0)), 0),
                func.coalesce(func.sum(case((LoginAttempt.client == client, 1), else_=0)), 0),
            ).where(
                or_(LoginAttempt.account == account, LoginAttempt.client == client),
                earlier,
                LoginAttempt.attempted_at >= since,
            )
        ).one()
        session.commit()
        _forget(session, (LoginAttempt.account == account) & (LoginAttempt.attempted_at < since))
    delay = max(
        _slowdown(int(by_account), settings.login_max_failures_per_account, settings),
        _slowdown(int(by_client), settings.login_max_failures_per_client, settings),
    )
    return Admission(attempt_id, account, client, delay)


def succeeded(session: Session, admission: Admission) -> None:
    """The password was right: this pair's failures no longer count (the account's and
    the client's others still do, so an attacker elsewhere gains nothing from it)."""
    session.execute(
        delete(LoginAttempt).where(
            LoginAttempt.account == admission.account,
            LoginAttempt.client == admission.client,
            LoginAttempt.id <= admission.attempt_id,
        )
    )
