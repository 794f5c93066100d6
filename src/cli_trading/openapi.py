"""The HTTP contract written down: each agent's OpenAPI document declares every status code and
content type its routes answer with, and the JSON error body they share.

FastAPI documents what a route returns on success; the errors come from shared code it cannot
see (the admin guard, `json_body`, the route's own refusals), so they are added here:

- every /admin/* route: 401 (no or wrong token), 403 (outside the allow-list), 429 (locked out);
- every route taking a body (POST/PUT/PATCH/DELETE): 400 (malformed JSON), 422 (a wrong field);
- every route with parameters: 422; with a path parameter: 404 (no such thing);
- the few routes that refuse for the state they find (409) or lose a dependency (503), and the
  bearer-token routes outside /admin (401, 429): listed in `ROUTE_ERRORS`.

The 422 body is ours ({"error", "fields": [{"field", "message"}]}), not FastAPI's default.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
DESCRIPTIONS = {
    400: "Malformed JSON body",
    401: "Missing or invalid credential",
    403: "Client address outside the admin allow-list",
    404: "No such resource",
    409: "Refused in the current state (halted, already decided, ...)",
    422: "Invalid field or parameter",
    429: "Too many failed authentications from this address (see Retry-After)",
    503: "A dependency (Redis, the database) is unavailable",
}
# (method, path) -> the codes a route answers with beyond the general rules above.
ROUTE_ERRORS: dict[tuple[str, str], tuple[int, ...]] = {
    ("GET", "/health"): (503,),
    ("GET", "/admin/streams/pending"): (404,),  # no such stream
    ("GET", "/admin/streams/dlq"): (404,),
    ("POST", "/admin/exchange/accept-balances"): (409,),  # not in live mode
    ("POST", "/admin/exchange/reconcile"): (409,),
    ("POST", "/admin/params/{param_id}/{decision}"): (409,),  # already decided
    ("POST", "/orchestrate/run"): (401, 409, 429, 503),
    ("POST", "/notify"): (401, 429, 503),
    ("POST", "/notify/alertmanager"): (401, 429, 503),
}
BODY_METHODS = {"post", "put", "patch", "delete"}


class FieldError(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """Every error answer: `error` names the problem; some answers add context (`fields` for a
    422, `retryAfter` for a 429, the halt state for a refused run, ...)."""

    model_config = ConfigDict(extra="allow")

    error: str
    fields: list[FieldError] | None = None


def install(app: FastAPI) -> None:
    """Serve the completed document as the app's /openapi.json."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            complete(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise


def complete(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(body.pop("$defs", {}))
    components["ErrorBody"] = body
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            responses = op.setdefault("responses", {})
            for code in sorted(error_codes(method, path, op)):
                responses.setdefault(str(code), {"description": DESCRIPTIONS[code]})
                responses[str(code)]["content"] = {"application/json": {"schema": ERROR_REF}}
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)


def error_codes(method: str, path: str, op: dict[str, Any]) -> set[int]:
    codes = set(ROUTE_ERRORS.get((method.upper(), path), ()))
    if path.startswith("/admin/"):
        codes |= {401, 403, 429}
    if method in BODY_METHODS:
        codes |= {400, 422}
    params = op.get("parameters", [])
    if params or "422" in op.get("responses", {}):
        codes.add(422)
    if any(p.get("in") == "path" for p in params):
        codes.add(404)
    return codes
