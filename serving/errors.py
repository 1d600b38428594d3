"""Every failure leaves as a small JSON body `{"error": {"code", "message"}}`, never a traceback.

Handlers are registered by `install(app)`; anything unexpected becomes a 500 with a generic
message, and the detail goes to the log only.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from featurestore.errors import StoreUnavailable as OnlineStoreUnavailable

log = logging.getLogger("serving")


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """What every failure answers: `{"error": {"code", "message"}}`."""

    error: ErrorDetail


_MEANING = {
    400: "the Host header is not one of SHOPFEAST_TRUSTED_HOSTS",
    401: "missing or invalid credentials (X-API-Key or a bearer JWT)",
    403: "the credential lacks this endpoint group's scope",
    404: "unknown entity",
    413: "request body over the size limit",
    422: "the request does not match the schema, or asks for more than the server allows",
    503: "the online store or the registry did not answer in time (Retry-After: 1)",
}


def declared(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI `responses` for the error statuses a route group can answer."""
    return {s: {"model": ErrorBody, "description": _MEANING[s]} for s in statuses}


class ServingError(Exception):
    """An error the API answers on purpose, with its status and a stable code."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


class NotFound(ServingError):
    status, code = 404, "not_found"


class InvalidRequest(ServingError):
    """Well-formed JSON that asks for more than the server allows (k, batch size)."""

    status, code = 422, "invalid_request"


class StoreUnavailable(ServingError, OnlineStoreUnavailable):
    """The online store (Redis) or the registry did not answer in time."""

    status, code = 503, "store_unavailable"


class StreamUnavailable(ServingError):
    """The event stream's Redis did not take the events."""

    status, code = 503, "stream_unavailable"


class Unauthorized(ServingError):
    status, code = 401, "unauthorized"


class Forbidden(ServingError):
    """Authenticated, but without the scope the endpoint group needs."""

    status, code = 403, "forbidden"


class StartupError(RuntimeError):
    """Start-up cannot go on (a missing model file, an unreadable profile); the message says why."""


def body(code: str, message: str, **extra: object) -> dict:
    return {"error": {"code": code, "message": message, **extra}}


def _serving_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServingError)
    headers = {"Retry-After": "1"} if exc.status == 503 else exc.headers
    return JSONResponse(body(exc.code, exc.message), status_code=exc.status, headers=headers)


def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Location and message only: echoing the input back could carry whatever the caller sent.
    problems = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", "")} for e in exc.errors()
    ]
    return JSONResponse(
        body("invalid_request", "request does not match the schema", problems=problems),
        status_code=422,
    )


def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:  # FastAPI's "error parsing the body" (not UTF-8, say): a bad body
        return JSONResponse(body("invalid_request", "request body is not valid JSON"), 422)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(
        body(code, str(exc.detail)),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(body("internal_error", "internal error"), status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ServingError, _serving_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
