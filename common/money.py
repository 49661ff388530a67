"""Money as the OpenAPI document describes it: a plain decimal string with at most 2 decimal
places, never a JSON number.

Without this, pydantic reads "1e3", " 19.90 " or "1_000" as amounts, and the document shows
an unconstrained string, so a client cannot tell what is accepted. A JSON number is refused:
most clients hold it as a float (0.1 + 0.2 is not 0.30), and a document that said
`number | string` gave generated clients (scripts/openapi-client.sh) a number to send.
"""

import re
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

# Up to 10 digits before the point (Numeric(12, 2)), at most 2 after it.
MONEY_PATTERN = r"^[0-9]{1,10}(\.[0-9]{1,2})?$"
# How an amount is written in answers: always 2 decimal places.
MONEY_OUT_PATTERN = r"^-?[0-9]+\.[0-9]{2}$"


def _plain_decimal(value: Any) -> Any:
    # Decimals pass: the services build these models from their own parsed values too.
    if isinstance(value, int | float):  # bool included
        raise ValueError('must be a decimal string like "19.90", not a JSON number')
    if isinstance(value, str) and not re.fullmatch(MONEY_PATTERN, value):
        raise ValueError("must be a decimal like 19.90: digits, at most 2 after the point")
    return value


class DecimalText:
    """``Annotated[Decimal, Field(...), DecimalText()]``: the input is a string matching
    MONEY_PATTERN (from Python, a Decimal too), and the document says just that. The Field's
    bounds still apply; the pattern itself keeps an amount within the column."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_before_validator_function(_plain_decimal, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        # Pydantic writes a Decimal input as `number (with the Field's bounds) | string`.
        for keyword in ("anyOf", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            json_schema.pop(keyword, None)
        return {**json_schema, "type": "string", "pattern": MONEY_PATTERN}
