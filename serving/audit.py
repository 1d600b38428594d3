"""The audit log: one JSON line per API request, who called which endpoint about how many entities
and when; never ids, feature values, scores or credentials.

The lines are Feast's audit events (featurestore/audit.py) in a size-rotated file
(`SHOPFEAST_AUDIT_LOG`, `..._AUDIT_MAX_BYTES`, `..._AUDIT_BACKUPS`). A handler reports how many
entities its request asked about with `count_entities(n)`; the middleware finds the principal and
the scope that authentication left in the request's state (serving/deps.py).
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass

from featurestore.audit import open_audit_log, request_event

__all__ = ["AuditMiddleware", "count_entities", "open_audit_log"]


@dataclass
class _Request:
    entities: int = 0


_current: contextvars.ContextVar[_Request | None] = contextvars.ContextVar(
    "shopfeast_audit", default=None
)


def count_entities(n: int) -> None:
    """How many entity ids the current request asked about (a batch of 40: 40)."""
    req = _current.get()
    if req is not None:
        req.entities = int(n)


class AuditMiddleware:
    """Pure ASGI: times the request, then writes its line (liveness probes are not audited)."""

    SKIP = frozenset({"/health"})

    def __init__(self, app, audit) -> None:
        self.app, self.audit = app, audit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in self.SKIP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}
        req = _Request()
        token = _current.set(req)

        async def send_wrapper(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            _current.reset(token)
            self._log(scope, status["code"], req.entities, time.perf_counter() - started)

    def _log(self, scope, status: int, entities: int, seconds: float) -> None:
        state = scope.get("state") or {}
        principal = state.get("principal")
        route = scope.get("route")
        client = scope.get("client") or ("", 0)
        self.audit.log(
            request_event(
                who=principal.subject if principal else "",
                scopes=sorted(principal.scopes) if principal else [],
                auth_type=principal.method if principal else "",
                ip=str(client[0]),
                method=scope["method"],
                path=getattr(route, "path", None) or "(unmatched)",
                scope=state.get("scope"),
                status=status,
                entities=entities,
                seconds=seconds,
            )
        )
