"""SQL for sales channels."""

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from common.models import SalesChannel


def get(session: Session, channel_id: int) -> SalesChannel | None:
    return session.get(SalesChannel, channel_id)


def id_for_code(session: Session, code: str) -> int | None:
    return session.scalar(select(SalesChannel.id).where(SalesChannel.code == code))


def list_query(*, include_inactive: bool) -> Select[SalesChannel]:
    stmt = select(SalesChannel)
    if not include_inactive:
        stmt = stmt.where(SalesChannel.is_active.is_(True))
    return stmt
