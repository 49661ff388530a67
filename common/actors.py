"""Who did something. Every record a person's action created says so the one way, as
``actor_id`` and ``actor_email`` (both null for the system or another service)."""

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from common.models import User


def actor_emails(session: Session, user_ids: Collection[int | None]) -> dict[int, str]:
    """Emails of these users, in one query (none for no ids)."""
    ids = {i for i in user_ids if i is not None}
    if not ids:
        return {}
    rows = session.execute(select(User.id, User.email).where(User.id.in_(ids)))
    return {user_id: email for user_id, email in rows}
