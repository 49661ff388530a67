"""The API's conventions, for every route of both services: the one place they are stated.

Each test walks both OpenAPI documents (products_service's and sales_service's), every
operation or every component schema, so a route or model added later is held to the same
rules the day it is added. A test collects every offender and fails listing them all, one
per line, naming the service, operation (or schema) and what is wrong.

The conventions (README, "API conventions", "Time filters"):

1. Operation ids: present, camelCase, unique across both services together; only an
   operation both services mount from ``common`` (same method and path in both) shares its
   id with its twin.
2. Property names of every component schema are snake_case.
3. Names: never ``created_by_id``, ``created_by`` or ``threshold`` (the product's field is
   ``low_stock_threshold``), nor ``user_id`` on a read model; who did something is
   ``actor_id`` and ``actor_email``, together on every read model (a request sales_service
   sends on a person's behalf names only the id); a free-text ``note`` only on a sale
   (``Sale*`` schemas), a change's text elsewhere being its ``reason``; every ``*_at`` is a
   ``date-time`` string (perhaps null).
4. Time filters: the window parameters are ``from``, ``to``, ``timezone``, ``preset`` and
   ``as_of``, no others (``sold_from``, ``created_to``, ``*_after`` ...), but for a
   comparison's own base period, ``against_from`` / ``against_to``; ``from`` comes with
   ``to``.
5. Lists: a page envelope requires ``items``, ``total``, ``limit`` and ``offset``, its
   operation takes ``limit`` and ``offset``; every list also answers ``next_cursor`` (a
   nullable string) and takes ``cursor``. Reports page by offset alone: their rows rank by
   figures each sale changes, so there is no place a cursor could keep.
6. Errors: a 422 in the one error shape wherever there is input, a 401 answering
   ``ErrorBody`` wherever a token is needed, every JSON error body ``{error, detail, ...}``,
   every error response with an example.
7. Names beside ids: a model in any answer (success or error) that refers to a product or a
   warehouse by id also carries its SKU or code, so no client joins by id to show it.

Checked elsewhere, not repeated here: money as decimal strings and the 422 body's own shape
(tests/common/test_openapi.py), an undocumented query parameter refused
(tests/test_query_parameters.py), the token and role each route demands
(tests/test_route_security.py).
"""

import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

Document = dict[str, Any]
Schema = dict[str, Any]

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
CAMEL_CASE = re.compile(r"[a-z]+(?:[A-Z][a-z0-9]*)*")
SNAKE_CASE = re.compile(r"[a-z][a-z0-9_]*")
# Names a model never uses, with what it says instead.
FORBIDDEN_PROPERTIES = {
    "created_by_id": "actor_id + actor_email",
    "created_by": "actor_id + actor_email",
    "threshold": "low_stock_threshold",
}
ACTOR = {"actor_id", "actor_email"}
# A time window is only from / to / timezone / preset / as_of: these are other spellings.
ODD_TIME_PARAMETER = re.compile(
    r".+_(from|to|after|before|since|until)|(sold|created|updated)_.+"
    r"|since|until|after|before|start|end|start_date|end_date|date|tz|time_zone|.+_at"
)
PAGE_FIELDS = ("items", "total", "limit", "offset")
CURSOR_FIELD = "next_cursor"
# The comparison's base period: a second window beside from / to.
BASE_PERIOD = {"against_from", "against_to"}
REPORTS = "/api/v1/reports/"
ERROR_BODIES = {"ErrorBody", "ValidationErrorBody"}


@dataclass(frozen=True)
class Operation:
    service: str
    path: str
    method: str
    spec: dict[str, Any]

    def __str__(self) -> str:
        return f"{self.service} {self.method.upper()} {self.path}"


@pytest.fixture(scope="module")
def documents(products_app: Any, sales_app: Any) -> dict[str, Document]:
    return {"products": products_app.openapi(), "sales": sales_app.openapi()}


def operations(documents: dict[str, Document]) -> Iterator[Operation]:
    for service, document in documents.items():
        for path, item in document["paths"].items():
            for method, spec in item.items():
                if method in HTTP_METHODS:
                    yield Operation(service, path, method, spec)


def component_schemas(documents: dict[str, Document]) -> Iterator[tuple[str, str, Schema]]:
    """(service, name, schema) of every component schema."""
    for service, document in documents.items():
        for name, schema in document.get("components", {}).get("schemas", {}).items():
            yield service, name, schema


def properties(schema: Schema) -> Iterator[tuple[str, Schema]]:
    """(name, schema) of every property of the schema and of the objects written inline in
    it; a $ref is not followed (that component is walked as itself)."""
    for name, subschema in schema.get("properties", {}).items():
        yield name, subschema
        yield from properties(subschema)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from properties(schema[key])
    for key in ("anyOf", "oneOf", "allOf"):
        for subschema in schema.get(key, []):
            yield from properties(subschema)


def ref_name(schema: Schema) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def resolve(document: Document, schema: Schema) -> Schema:
    name = ref_name(schema)
    if name is None:
        return schema
    found: Schema = document["components"]["schemas"][name]
    return found


def refs_in(schema: Any) -> Iterator[str]:
    """The component names a schema refers to, anywhere in it."""
    if isinstance(schema, dict):
        name = ref_name(schema)
        if name is not None:
            yield name
        for value in schema.values():
            yield from refs_in(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from refs_in(value)


def json_schema(response: dict[str, Any]) -> Schema | None:
    media = response.get("content", {}).get("application/json")
    return None if media is None else media.get("schema", {})


def query_names(operation: Operation) -> set[str]:
    return {p["name"] for p in operation.spec.get("parameters", []) if p["in"] == "query"}


def error_responses(operation: Operation) -> Iterator[tuple[str, dict[str, Any]]]:
    for code, response in operation.spec.get("responses", {}).items():
        if code[:1] in {"4", "5"}:
            yield code, response


def is_nullable_string(schema: Schema) -> bool:
    if "anyOf" in schema:
        kinds = [s.get("type") for s in schema["anyOf"]]
        return sorted(kinds) == ["null", "string"]
    return schema.get("type") == ["string", "null"] or schema.get("type") == ["null", "string"]


def is_date_time(schema: Schema) -> bool:
    """A date-time string, or one or null."""
    if "anyOf" in schema:
        present = [s for s in schema["anyOf"] if s.get("type") != "null"]
        return bool(present) and all(is_date_time(s) for s in present)
    return schema.get("type") == "string" and schema.get("format") == "date-time"


def read_models(
    documents: dict[str, Document], *, errors_too: bool = False
) -> set[tuple[str, str]]:
    """(service, name) of every component some 2xx answer (with ``errors_too``, any answer)
    holds, directly or nested."""
    found: set[tuple[str, str]] = set()
    for operation in operations(documents):
        document = documents[operation.service]
        todo = [
            name
            for code, response in operation.spec.get("responses", {}).items()
            if errors_too or code.startswith("2")
            for name in refs_in(response)
        ]
        while todo:
            name = todo.pop()
            if (operation.service, name) not in found:
                found.add((operation.service, name))
                todo.extend(refs_in(document["components"]["schemas"][name]))
    return found


def assert_none(offenders: list[str], rule: str) -> None:
    """Fail listing every offender, one a line, under the rule they break."""
    if offenders:
        pytest.fail(f"{len(offenders)} offender(s) of: {rule}\n" + "\n".join(offenders), False)


# --- 1. operation ids ------------------------------------------------------------------


def operation_id_offenders(documents: dict[str, Document]) -> list[str]:
    offenders = []
    by_id: dict[str, list[Operation]] = defaultdict(list)
    for operation in operations(documents):
        operation_id = operation.spec.get("operationId")
        if not operation_id:
            offenders.append(f"{operation}: no operationId")
            continue
        if not CAMEL_CASE.fullmatch(operation_id):
            offenders.append(f"{operation}: operationId {operation_id!r} is not camelCase")
        by_id[operation_id].append(operation)
    for operation_id, holders in by_id.items():
        services = [o.service for o in holders]
        shared = len({(o.method, o.path) for o in holders}) == 1 and len(set(services)) == len(
            services
        )
        if len(holders) > 1 and not shared:
            named = ", ".join(str(o) for o in holders)
            offenders.append(f"operationId {operation_id!r} is used by {named}")
    return offenders


def test_operation_ids_are_camel_case_and_unique_across_both_services(
    documents: dict[str, Document],
) -> None:
    assert_none(
        operation_id_offenders(documents),
        "an operationId, camelCase, unique across both services but for a shared route",
    )


def test_the_docs_list_their_groups_in_the_order_a_reader_meets_them(
    documents: dict[str, Document],
) -> None:
    """products_service matches its sale-stock routes first (called on every sale), so its
    document orders the groups itself: catalog first, every group listed (one left out
    would fall to the end)."""
    declared = [tag["name"] for tag in documents["products"].get("tags", [])]
    used = {tag for o in operations(documents) if o.service == "products" for tag in o.spec["tags"]}
    assert declared[:5] == ["health", "auth", "users", "categories", "products"]
    assert set(declared) == used and len(declared) == len(used)


# --- 2, 3. property names ----------------------------------------------------------------


def snake_case_offenders(documents: dict[str, Document]) -> list[str]:
    return [
        f"{service} {name}.{prop}: not snake_case"
        for service, name, schema in component_schemas(documents)
        for prop, _ in properties(schema)
        if not SNAKE_CASE.fullmatch(prop)
    ]


def test_property_names_are_snake_case(documents: dict[str, Document]) -> None:
    assert_none(snake_case_offenders(documents), "property names match ^[a-z][a-z0-9_]*$")


def forbidden_name_offenders(documents: dict[str, Document]) -> list[str]:
    offenders = []
    reads = read_models(documents)
    for service, name, schema in component_schemas(documents):
        for prop, _ in properties(schema):
            if prop in FORBIDDEN_PROPERTIES:
                instead = FORBIDDEN_PROPERTIES[prop]
                offenders.append(f"{service} {name}.{prop}: say {instead}")
            elif prop == "user_id" and (service, name) in reads:
                offenders.append(f"{service} {name}.user_id: a read model says actor_id")
    return offenders


def test_no_property_uses_a_name_the_api_spells_otherwise(
    documents: dict[str, Document],
) -> None:
    assert_none(
        forbidden_name_offenders(documents),
        "no created_by_id / created_by / threshold anywhere, no user_id on a read model",
    )


def actor_offenders(documents: dict[str, Document]) -> list[str]:
    offenders = []
    reads = read_models(documents)
    for service, name, schema in component_schemas(documents):
        if (service, name) not in reads:
            continue
        held = ACTOR & {prop for prop, _ in properties(schema)}
        if held and held != ACTOR:
            (missing,) = ACTOR - held
            offenders.append(f"{service} {name}: has {held.pop()} without {missing}")
    return offenders


def test_who_did_something_is_actor_id_with_actor_email(documents: dict[str, Document]) -> None:
    assert_none(actor_offenders(documents), "actor_id and actor_email appear together")


def note_offenders(documents: dict[str, Document]) -> list[str]:
    return [
        f"{service} {name}.note: not a sale's schema, say reason"
        for service, name, schema in component_schemas(documents)
        if not name.startswith("Sale")
        for prop, _ in properties(schema)
        if prop == "note"
    ]


def test_a_note_is_a_sales_and_any_other_changes_text_is_its_reason(
    documents: dict[str, Document],
) -> None:
    assert_none(note_offenders(documents), "note only in Sale* schemas, reason elsewhere")


def timestamp_offenders(documents: dict[str, Document]) -> list[str]:
    return [
        f"{service} {name}.{prop}: not a date-time string"
        for service, name, schema in component_schemas(documents)
        for prop, subschema in properties(schema)
        if prop.endswith("_at") and not is_date_time(subschema)
    ]


def test_every_at_property_is_a_date_time(documents: dict[str, Document]) -> None:
    assert_none(timestamp_offenders(documents), "*_at is a string of format date-time")


# --- 4. time filters ---------------------------------------------------------------------


def time_filter_offenders(documents: dict[str, Document]) -> list[str]:
    offenders = []
    for operation in operations(documents):
        names = query_names(operation)
        for name in sorted(names - BASE_PERIOD):
            if ODD_TIME_PARAMETER.fullmatch(name):
                offenders.append(
                    f"{operation}: query {name!r}; a time window is from/to/timezone/preset/as_of"
                )
        for one, other in (("from", "to"), ("to", "from")):
            if one in names and other not in names:
                offenders.append(f"{operation}: takes {one!r} without {other!r}")
    return offenders


def test_time_windows_are_from_to_timezone_preset_as_of_only(
    documents: dict[str, Document],
) -> None:
    assert_none(time_filter_offenders(documents), "one time-filter grammar, from with to")


# --- 5. lists ----------------------------------------------------------------------------


def page_envelope(documents: dict[str, Document], operation: Operation) -> tuple[str, Schema]:
    """(name, schema) of the operation's 200 answer if it is a page envelope, else ("", {})."""
    answer = operation.spec.get("responses", {}).get("200", {})
    schema = json_schema(answer)
    if schema is None:
        return "", {}
    resolved = resolve(documents[operation.service], schema)
    if resolved.get("properties", {}).get("items", {}).get("type") != "array":
        return "", {}
    return ref_name(schema) or "(inline)", resolved


def page_offenders(documents: dict[str, Document]) -> list[str]:
    offenders = []
    for operation in operations(documents):
        name, envelope = page_envelope(documents, operation)
        if not envelope:
            continue
        fields = PAGE_FIELDS if operation.path.startswith(REPORTS) else (*PAGE_FIELDS, CURSOR_FIELD)
        missing = [f for f in fields if f not in envelope.get("required", [])]
        if missing:
            offenders.append(f"{operation}: {name} does not require {', '.join(missing)}")
        next_cursor = envelope.get("properties", {}).get("next_cursor")
        if next_cursor is not None and not is_nullable_string(next_cursor):
            offenders.append(f"{operation}: {name}.next_cursor is not a nullable string")
        absent = {"limit", "offset"} - query_names(operation)
        if absent:
            offenders.append(f"{operation}: a list without {', '.join(sorted(absent))}")
    return offenders


def test_every_list_answers_the_page_envelope_and_takes_limit_and_offset(
    documents: dict[str, Document],
) -> None:
    assert_none(
        page_offenders(documents),
        "a page envelope requires items, total, limit, offset, next_cursor (nullable string);"
        " its operation takes limit and offset",
    )


def cursor_offenders(documents: dict[str, Document]) -> list[str]:
    offenders = []
    for operation in operations(documents):
        listed = bool(page_envelope(documents, operation)[1])
        takes = "cursor" in query_names(operation)
        if listed and not takes and not operation.path.startswith(REPORTS):
            offenders.append(f"{operation}: a list that takes no 'cursor'")
        if takes and not listed:
            offenders.append(f"{operation}: takes 'cursor' but answers no page envelope")
    return offenders


def test_every_list_but_a_report_takes_a_cursor(documents: dict[str, Document]) -> None:
    assert_none(cursor_offenders(documents), "every list takes a cursor query parameter")


# --- 6. errors ---------------------------------------------------------------------------


def validation_error_offenders(documents: dict[str, Document]) -> list[str]:
    offenders = []
    for operation in operations(documents):
        if not operation.spec.get("parameters") and "requestBody" not in operation.spec:
            continue
        answer = operation.spec.get("responses", {}).get("422")
        if answer is None:
            offenders.append(f"{operation}: takes input but declares no 422")
            continue
        schema = json_schema(answer)
        if schema is None or ref_name(schema) not in ERROR_BODIES:
            body = "no JSON body" if schema is None else ref_name(schema) or "an inline schema"
            offenders.append(f"{operation}: 422 answers {body}, not the one error shape")
    return offenders


def test_every_operation_with_input_declares_its_422_in_the_one_error_shape(
    documents: dict[str, Document],
) -> None:
    """``ValidationErrorBody`` where only the schema check answers 422, ``ErrorBody`` (whose
    ``fields`` it is) where the route's own rules may too."""
    assert_none(
        validation_error_offenders(documents),
        "an operation with a parameter or body declares 422 as ValidationErrorBody or ErrorBody",
    )


def unauthorized_offenders(documents: dict[str, Document]) -> list[str]:
    offenders = []
    for operation in operations(documents):
        if not operation.spec.get("security"):
            continue
        answer = operation.spec.get("responses", {}).get("401")
        schema = None if answer is None else json_schema(answer)
        if answer is None:
            offenders.append(f"{operation}: needs a token but declares no 401")
        elif schema is None or ref_name(schema) != "ErrorBody":
            body = "no JSON body" if schema is None else ref_name(schema) or "an inline schema"
            offenders.append(f"{operation}: 401 answers {body}, not ErrorBody")
    return offenders


def test_every_operation_needing_a_token_declares_its_401_as_error_body(
    documents: dict[str, Document],
) -> None:
    assert_none(
        unauthorized_offenders(documents), "an operation with security declares 401 ErrorBody"
    )


def not_error_bodies(document: Document, schema: Schema) -> list[str]:
    """The schemas, of this one or of each of its alternatives, that are not an error body:
    ErrorBody, ValidationErrorBody or a schema requiring error and detail."""
    choices = schema.get("anyOf") or schema.get("oneOf")
    if choices:
        return [name for choice in choices for name in not_error_bodies(document, choice)]
    if ref_name(schema) in ERROR_BODIES:
        return []
    if {"error", "detail"} <= set(resolve(document, schema).get("required", [])):
        return []
    return [ref_name(schema) or "an inline schema"]


def error_shape_offenders(documents: dict[str, Document]) -> list[str]:
    offenders = []
    for operation in operations(documents):
        document = documents[operation.service]
        for code, response in error_responses(operation):
            schema = json_schema(response)
            wrong = [] if schema is None else not_error_bodies(document, schema)
            if wrong:
                offenders.append(
                    f"{operation} {code}: {', '.join(wrong)} does not require error and detail"
                )
    return offenders


def test_every_json_error_answer_is_the_one_error_shape(documents: dict[str, Document]) -> None:
    assert_none(error_shape_offenders(documents), "every 4xx/5xx JSON body is {error, detail}")


def has_example(response: dict[str, Any]) -> bool:
    media = response.get("content", {}).get("application/json", {})
    return media.get("example") is not None or bool(media.get("examples"))


def example_offenders(documents: dict[str, Document]) -> list[str]:
    """One line per operation, naming its error responses without an example."""
    offenders = []
    for operation in operations(documents):
        bare = [code for code, response in error_responses(operation) if not has_example(response)]
        if bare:
            offenders.append(f"{operation}: no example for {', '.join(sorted(bare))}")
    return offenders


def test_every_error_response_has_an_example(documents: dict[str, Document]) -> None:
    assert_none(example_offenders(documents), "every 4xx/5xx response has an example")


# --- 7. names beside ids ------------------------------------------------------------------

# An id a person would otherwise have to look up, and the property that names it beside it.
NAMED_BY = {
    "product_id": {"sku"},
    "category_id": {"category_name", "category_path", "category"},
    "warehouse_id": {"warehouse_code"},
    "from_warehouse_id": {"from_warehouse_code"},
    "to_warehouse_id": {"to_warehouse_code"},
}


def unnamed_id_offenders(documents: dict[str, Document]) -> list[str]:
    offenders = []
    answers = read_models(documents, errors_too=True)
    for service, name, schema in component_schemas(documents):
        if (service, name) not in answers:
            continue
        held = set(schema.get("properties", {}))
        for id_name, names in NAMED_BY.items():
            if id_name in held and not names & held:
                offenders.append(f"{service} {name}.{id_name}: no {' or '.join(sorted(names))}")
    return offenders


def test_an_id_in_an_answer_comes_with_the_name_a_person_reads(
    documents: dict[str, Document],
) -> None:
    assert_none(unnamed_id_offenders(documents), "names beside ids")
