"""Sales channel rules: unique codes, updates."""

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common import audit
from common.errors import Conflict, NotFound
from common.models import SalesChannel
from common.pagination import PageParams, Slice, first, paginate
from sales_service.channels import repository
from sales_service.channels.schemas import ChannelCreate, ChannelUpdate

# What the audit log follows of a channel.
AUDIT_TRAIL = audit.Trail("channel", ("code", "name", "is_active"))


def get_channel(*, session: Session, channel_id: int) -> SalesChannel:
    channel = repository.get(session, channel_id)
    if channel is None:
        raise NotFound(f"Sales channel {channel_id} not found", resource="channel", id=channel_id)
    return channel


def list_channels(
    *, session: Session, include_inactive: bool, page: PageParams, order_by: list[Any]
) -> Slice[SalesChannel]:
    stmt = repository.list_query(include_inactive=include_inactive)
    return paginate(session, stmt, page, [*order_by, SalesChannel.id.asc()]).map(first)


def create_channel(
    *, session: Session, data: ChannelCreate, actor_id: int | None, actor_email: str | None
) -> SalesChannel:
    duplicate = Conflict(f"A channel with code {data.code!r} already exists", field="code")
    if repository.id_for_code(session, data.code) is not None:
        raise duplicate
    channel = SalesChannel(code=data.code, name=data.name, is_active=data.is_active)
    session.add(channel)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise duplicate from exc
    AUDIT_TRAIL.record(
        session, "channel.created", channel, {}, actor_id=actor_id, actor_email=actor_email
    )
    return channel


def update_channel(
    *,
    session: Session,
    channel_id: int,
    data: ChannelUpdate,
    actor_id: int | None,
    actor_email: str | None,
) -> SalesChannel:
    channel = get_channel(session=session, channel_id=channel_id)
    before = AUDIT_TRAIL.snapshot(channel)
    for field, value in data.model_dump(exclude_unset=True).items():
        if value is not None:
            setattr(channel, field, value)
    session.flush()
    AUDIT_TRAIL.record(
        session, "channel.updated", channel, before, actor_id=actor_id, actor_email=actor_email
    )
    return channel
