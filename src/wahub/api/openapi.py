"""The error statuses of every operation in the OpenAPI document, declared in one place.

A client generated from ``/openapi.json`` must know each status a route can answer and
the shape of its body. Rather than listing them by hand on some seventy routes (and
forgetting some), ``install_error_responses`` derives them from what each route is:

    a request body                       400 (unreadable), 413 (too large), 415 (media type)
    any input (path, query, header, body) 422
    an API key (``current_actor``)       401, and 422 (a feature may refuse what the
                                         stored data does not allow, e.g. no channel
                                         with a chat directory)
    a role check (writer or admin)       403
    a role check and changing state      409 (idempotency, unique values, wrong state)
    an id in its path, query or body     404
    the hub (the database)               503

A status a route declares itself (with its own description) is kept. Every error body
is the ``ErrorOut`` envelope, as JSON, also on routes whose success is plain text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel
from starlette.routing import BaseRoute

from wahub.api import auth
from wahub.api.errors import ErrorOut

ERROR_SCHEMA_REF = "#/components/schemas/ErrorOut"

_DESCRIPTIONS = {
    400: "The body could not be read (malformed or not in its declared encoding)",
    401: "Missing or unknown credentials",
    403: "The key's role (or the chat's assignment) does not allow this",
    404: "No such resource, or not visible to this key",
    409: "Conflicts with the current state (an idempotency key reused with another "
    "body, a unique value taken, a state that does not allow the action)",
    413: "The body is larger than this route accepts",
    415: "The body's media type is not one this route reads",
    422: "A parameter or a body field is invalid: details.errors names each",
    503: "The database cannot be reached right now; retry later",
}
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_AUTHENTICATED = frozenset({auth.current_actor, auth.stream_actor})
_ROLE_CHECKS = frozenset({auth.require_writer, auth.require_admin})
_HUB = auth.hub_dependency


def install_error_responses(app: FastAPI) -> None:
    """Make ``app.openapi()`` declare the error statuses of every operation."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()  # FastAPI caches it on app.openapi_schema
            declare_error_responses(document, app.routes)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def declare_error_responses(document: dict[str, Any], routes: Sequence[BaseRoute]) -> None:
    """Add each operation's error statuses (and the ``ErrorOut`` component) to
    ``document`` in place."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    schema = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components["ErrorOut"] = schema
    for context in iter_route_contexts(list(routes)):
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        path_item = document.get("paths", {}).get(context.path_format or "", {})
        for method in context.methods or ():
            operation = path_item.get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for status in error_statuses(route, method, operation):
                declared = responses.setdefault(str(status), {})
                declared.setdefault("description", _DESCRIPTIONS.get(status, "Error"))
                # The envelope is JSON whatever the route's success media type is.
                declared["content"] = {"application/json": {"schema": {"$ref": ERROR_SCHEMA_REF}}}


def error_statuses(route: APIRoute, method: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses ``route`` can answer to ``method``, by the rules above, plus
    those it declares itself."""
    calls = set(_calls(route.dependant))
    statuses = {int(s) for s in operation.get("responses", {}) if s.isdigit() and int(s) >= 400}
    has_body = bool(route.dependant.body_params) or "requestBody" in operation
    if has_body:
        statuses |= {400, 413, 415}
    authenticated = bool(calls & _AUTHENTICATED)
    if has_body or operation.get("parameters") or authenticated:
        statuses.add(422)
    if authenticated:
        statuses.add(401)
    if calls & _ROLE_CHECKS:
        statuses.add(403)
        # Every write needs a writer or admin key; a POST any key may send reads.
        if method in _WRITE_METHODS:
            statuses.add(409)
    if _names_a_resource(route, operation):
        statuses.add(404)
    if _HUB in calls:
        statuses.add(503)
    return statuses


def _calls(dependant: Dependant) -> Iterable[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def _names_a_resource(route: APIRoute, operation: dict[str, Any]) -> bool:
    """Whether the operation refers to something by id (in its path, query or body),
    which may not exist."""
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "path" or _is_id(parameter.get("name", "")):
            return True
    for body in route.dependant.body_params:
        model = body.field_info.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        if any(_is_id(name) for name in model.model_fields):
            return True
    return False


def _is_id(name: str) -> bool:
    return name.endswith(("_id", "_ids")) or name in ("chat", "to")
