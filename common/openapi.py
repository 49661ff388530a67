"""The OpenAPI document, corrected where FastAPI describes answers we never send.

FastAPI documents every 422 as its own ``HTTPValidationError`` (``{"detail": [...]}``), but
our handler answers with the one error shape (``common.errors.ValidationErrorBody``). The
document is built once, on first use, and then served as is.
"""

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from common.errors import ErrorBody, ValidationErrorBody, error_examples

_FASTAPI_422 = "#/components/schemas/HTTPValidationError"
_FASTAPI_COMPONENTS = ("HTTPValidationError", "ValidationError")
_REF_TEMPLATE = "#/components/schemas/{model}"
_DESCRIPTION_422 = "Invalid input; each bad field is listed"


def operation_id(route: APIRoute) -> str:
    """A route's operation id: its function's name in camelCase (``list_sales`` ->
    ``listSales``), what a client generated from the document names its method. FastAPI's
    own (``list_sales_api_v1_sales_get``) makes those names unusable."""
    first, *rest = route.name.split("_")
    return first + "".join(word[:1].upper() + word[1:] for word in rest)


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` describe the validation answers the handlers really send, and
    name each operation after its function (routes included after this)."""
    app.router.generate_unique_id_function = operation_id
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = describe_body_limit(describe_validation_errors(build()))
            app.openapi_schema = describe_error_examples(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def describe_validation_errors(document: dict[str, Any]) -> dict[str, Any]:
    """Point every 422 FastAPI added at ``ValidationErrorBody`` and drop FastAPI's schemas."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    body_schema = ValidationErrorBody.model_json_schema(ref_template=_REF_TEMPLATE)
    components.update(body_schema.pop("$defs", {}))
    components[ValidationErrorBody.__name__] = body_schema
    body_ref = {"$ref": _REF_TEMPLATE.format(model=ValidationErrorBody.__name__)}
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            answer = operation.get("responses", {}).get("422")
            if answer is None:
                continue
            media = answer.get("content", {}).get("application/json", {})
            if media.get("schema", {}).get("$ref") == _FASTAPI_422:
                media["schema"] = dict(body_ref)
                answer["description"] = _DESCRIPTION_422
    for name in _FASTAPI_COMPONENTS:
        components.pop(name, None)
    return document


def describe_body_limit(document: dict[str, Any]) -> dict[str, Any]:
    """Every operation that takes a body may answer 413 (common.bodies.BodyGuard)."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault(
        ErrorBody.__name__, ErrorBody.model_json_schema(ref_template=_REF_TEMPLATE)
    )
    answer = {
        "description": "The request body is larger than SHOP_MAX_BODY_BYTES",
        "content": {
            "application/json": {"schema": {"$ref": _REF_TEMPLATE.format(model=ErrorBody.__name__)}}
        },
    }
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                operation.setdefault("responses", {}).setdefault("413", answer)
    return document


def describe_error_examples(document: dict[str, Any]) -> dict[str, Any]:
    """Every error answer in the one shape (``ErrorBody`` where a route named no schema) with
    an example of it, as the handlers send it."""
    examples = error_examples()
    components = document.get("components", {}).get("schemas", {})
    body_ref = {"$ref": _REF_TEMPLATE.format(model=ErrorBody.__name__)}
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            for code, answer in operation.get("responses", {}).items():
                if code[:1] not in ("4", "5"):
                    continue
                media = answer.setdefault("content", {}).setdefault("application/json", {})
                schema = media.setdefault("schema", dict(body_ref))
                if "example" in media or "examples" in media:
                    continue
                named = schema.get("$ref", "").rsplit("/", 1)[-1]
                own = components.get(named, {}).get("examples")
                media["example"] = own[0] if own else examples.get(int(code), examples[400])
    return document
