"""Stock returns through products_service's inventory API (used by refunds and cancellations).

The body and answer are products_service's own models, so a change on that side breaks a
test here rather than production. The call is idempotent on its Idempotency-Key: a retry
(ours after a timeout, or another replica's) returns the first answer and moves stock once.
"""

from products_service.inventory.schemas import ReturnCreate, StockChangeRead
from sales_service.clients.products import ProductsClient

RETURNS_PATH = "/api/v1/inventory/returns"


def return_stock(
    client: ProductsClient,
    *,
    product_id: int,
    warehouse_id: int,
    quantity: int,
    reference: str,
    reason: str,
    key: str,
    token: str,
    request_id: str = "",
) -> StockChangeRead:
    """Put units back on a warehouse's shelf as one ledger `return` movement, once per key."""
    body = ReturnCreate(
        product_id=product_id,
        warehouse_id=warehouse_id,
        quantity=quantity,
        reference=reference,
        reason=reason,
    )
    answer = client._call(
        "POST",
        RETURNS_PATH,
        token,
        request_id,
        json=body.model_dump(mode="json"),
        headers={"Idempotency-Key": key},
    )
    return StockChangeRead.model_validate(answer)
