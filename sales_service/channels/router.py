"""Sales channels: where a sale happened (Amazon, Walmart, web store, retail...)."""

from typing import Annotated

from fastapi import APIRouter, Query, status

from common.auth.dependencies import CurrentUser, ManagerUser
from common.db import SessionDep
from common.errors import error_responses
from common.models import SalesChannel
from common.pagination import Page, PageDep, parse_sort, sort_pattern
from sales_service.channels import service
from sales_service.channels.schemas import ChannelCreate, ChannelRead, ChannelUpdate

router = APIRouter(prefix="/channels", tags=["channels"], responses=error_responses(401))

SORTS = {
    "code": SalesChannel.code,
    "name": SalesChannel.name,
    "created_at": SalesChannel.created_at,
    "updated_at": SalesChannel.updated_at,
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a sales channel",
    responses=error_responses(403, 409, 422),
)
def create_channel(body: ChannelCreate, principal: ManagerUser, session: SessionDep) -> ChannelRead:
    """Register a channel; its code is unique and lowercase."""
    return ChannelRead.model_validate(
        service.create_channel(
            session=session, data=body, actor_id=principal.id, actor_email=principal.user.email
        )
    )


@router.get("", summary="List sales channels", responses=error_responses(400))
def list_channels(
    _user: CurrentUser,
    session: SessionDep,
    page: PageDep,
    include_inactive: Annotated[bool, Query()] = False,
    sort: Annotated[
        str | None,
        Query(
            description="e.g. name or -created_at",
            json_schema_extra={"pattern": sort_pattern(SORTS)},
        ),
    ] = None,
) -> Page[ChannelRead]:
    """Channels, active ones only unless include_inactive is true."""
    found = service.list_channels(
        session=session,
        include_inactive=include_inactive,
        page=page,
        order_by=parse_sort(sort, SORTS, "code"),
    )
    return Page.of(found.map(ChannelRead.model_validate))


@router.get("/{channel_id}", summary="Get a sales channel", responses=error_responses(404))
def get_channel(channel_id: int, _user: CurrentUser, session: SessionDep) -> ChannelRead:
    """One channel by id."""
    return ChannelRead.model_validate(service.get_channel(session=session, channel_id=channel_id))


@router.patch(
    "/{channel_id}", summary="Update a sales channel", responses=error_responses(403, 404, 422)
)
def update_channel(
    channel_id: int, body: ChannelUpdate, principal: ManagerUser, session: SessionDep
) -> ChannelRead:
    """Rename or (de)activate a channel; an inactive channel takes no new sales."""
    return ChannelRead.model_validate(
        service.update_channel(
            session=session,
            channel_id=channel_id,
            data=body,
            actor_id=principal.id,
            actor_email=principal.user.email,
        )
    )
