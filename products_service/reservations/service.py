"""Reservation rules (to be written)."""

from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker


def expire_due_reservations(*, sessions: sessionmaker[Session], now: datetime | None = None) -> int:
    """Expire active reservations past their TTL, returning their stock; one transaction each."""
    return 0
