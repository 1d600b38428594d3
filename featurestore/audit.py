"""Feast's audit logger as the sink of the API's audit log (serving/audit.py says what is logged).

Feast 0.67's feature server writes JSON-line audit events (`feast.audit.audit_logger`, the schema
of feast-dev/feast#6452: event_type, timestamp, request_id, principal, source, action, resource,
outcome, duration_ms, detail) through a sink. shopfeast writes the same events, with two fields
added (`status`, `entities`), through Feast's `AuditLogger` and its logging sink, into a
size-rotated file: a SIEM that reads Feast's audit log reads ours.
"""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler
from pathlib import Path

from feast.audit.audit_logger import (
    AuditAction,
    AuditEvent,
    AuditLogger,
    AuditPrincipal,
    AuditResource,
    AuditSource,
    LoggerAuditSink,
)

LOGGER = "shopfeast.audit"


class RequestAuditEvent(AuditEvent):
    status: int = 0
    entities: int = 0


def open_audit_log(path: Path, max_bytes: int, backups: int) -> AuditLogger:
    """Feast's AuditLogger writing JSON lines to `path`, rotated at `max_bytes`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(f"{LOGGER}.{path}")
    logger.setLevel(logging.INFO)
    logger.propagate = False  # audit lines go to the file only, never to the console log
    if not logger.handlers:
        handler = RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    return AuditLogger(LoggerAuditSink(logger.name))


def request_event(
    *,
    who: str,
    scopes: list[str],
    auth_type: str,
    ip: str,
    method: str,
    path: str,
    scope: str | None,
    status: int,
    entities: int,
    seconds: float,
) -> RequestAuditEvent:
    """One request as Feast's `http.request` event (path: the route template, never raw)."""
    outcome = "success" if status < 400 else "denied" if status in (401, 403) else "failure"
    return RequestAuditEvent(
        event_type="http.request",
        principal=AuditPrincipal(username=who, roles=scopes, auth_type=auth_type),
        source=AuditSource(ip=ip, transport="http"),
        action=AuditAction(path=path),
        resource=AuditResource(type="endpoint", name=path, actions=[scope] if scope else []),
        outcome=outcome,
        duration_ms=round(seconds * 1000, 3),
        detail=f"{method} {path} -> {status}",
        status=status,
        entities=entities,
    )
