"""Stock for a sale in one call: the route sales_service takes (and gives back) stock by.

Only a service identity may call it: no person's token, an admin's included, can turn
stock into ``sale`` movements. The contract is in ``common.contracts``.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from common.auth.dependencies import SalesServiceCaller
from common.contracts import InsufficientStockBody, SaleStockRead, SaleStockTake, StockKey
from common.db import SessionDep
from common.errors import ErrorBody, NotFound, error_responses
from products_service.sale_stock import service

router = APIRouter(prefix="/sale-stock", tags=["sale stock"], responses=error_responses(401, 403))

TAKE_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {
        "model": InsufficientStockBody | ErrorBody,
        "description": (
            "`insufficient_stock`: some line cannot be served, each short line listed with "
            "what is available (nothing was taken); `invalid_state`: the key was voided"
        ),
    }
}
KeyPath = Annotated[str, Path(description="The sale attempt's stock key"), StockKey]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Take the stock of a sale, all lines or none",
    operation_id="takeSaleStock",
    responses={
        200: {"model": SaleStockRead, "description": "A retry: the first take"},
        **error_responses(422),
        **TAKE_CONFLICT,
    },
)
async def take(
    body: SaleStockTake, _service: SalesServiceCaller, session: SessionDep, response: Response
) -> SaleStockRead:
    """Write one `sale` ledger movement per allocation and answer with each line's product
    snapshot. A retry with the same key and lines answers 200 with the first take."""
    # One worker-thread hop takes the locks and commits: a transaction holding a hot row's
    # lock must never wait for a thread behind requests that wait for that lock.
    answer, created = await run_in_threadpool(_take_and_commit, session, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return answer


def _take_and_commit(session: Session, body: SaleStockTake) -> tuple[SaleStockRead, bool]:
    taken = service.take_stock(session=session, data=body)
    session.commit()
    return taken


@router.post(
    "/{key}/return",
    summary="Give a sale's stock back (or void its key)",
    operation_id="returnSaleStock",
)
def give_back(key: KeyPath, _service: SalesServiceCaller, session: SessionDep) -> SaleStockRead:
    """For a sale that was not recorded: its stock goes back as `return` movements. With no
    take under the key yet, the key is voided so a late take is refused. Idempotent."""
    return service.return_stock(session=session, key=key)


@router.get(
    "/{key}",
    summary="Get a sale stock take",
    operation_id="getSaleStock",
    responses=error_responses(404),
)
def get(key: KeyPath, _service: SalesServiceCaller, session: SessionDep) -> SaleStockRead:
    """What was taken under the key, and whether it was given back."""
    found = service.get_take(session=session, key=key)
    if found is None:
        raise NotFound(f"No sale stock taken under key {key!r}", key=key)
    return found
