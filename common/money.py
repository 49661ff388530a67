"""Money as the OpenAPI document describes it: a plain decimal string (or JSON number) with at
most 2 decimal places.

Without this, pydantic reads "1e3", " 19.90 " or "1_000" as amounts, and the document shows
an unconstrained string, so a client cannot tell what is accepted.
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
    if isinstance(value, str) and not re.fullmatch(MONEY_PATTERN, value):
        raise ValueError("must be a decimal like 19.90: digits, at most 2 after the point")
    return value


class DecimalText:
    """``Annotated[Decimal, Field(...), DecimalText()]``: a string must match MONEY_PATTERN,
    and the document says so. Place it after the Field, whose bounds pydantic would
    otherwise leave out of the document."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_before_validator_function(_plain_decimal, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        for branch in json_schema.get("anyOf", [json_schema]):
            if branch.get("type") == "string":
                branch["pattern"] = MONEY_PATTERN
        return json_schema
