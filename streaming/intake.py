"""Events sent over HTTP (`POST /events`): judged by the contract's row rules, then appended.

The API checks what one row shows on its own, with the ingest's code (`pipelines.validate`, rules
`missing_required` .. `future_timestamp`, plus the stream's `event_id`); references, duplicates and
bot sessions need the shop's state and are judged by the worker, which quarantines what fails them.
A rejection names the rule and the column, never the value (it may hold anything the caller sent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipelines.readers import RawFile, RawTable
from pipelines.validate import RULE_NAMES, Known, Seen, upper_bounds, validate
from streaming.landing import raw_rows
from streaming.log import encode


@dataclass(frozen=True)
class Rejection:
    index: int  # position in the request
    rule: str
    column: str | None


def check_rows(
    events: Sequence[Mapping[str, object]],
    now: pd.Timestamp | None = None,
    bounds: dict[str, float] | None = None,
) -> tuple[list[dict[str, str]], list[Rejection]]:
    """The events that pass the row rules (as log fields) and a rejection for each other one.
    `bounds` override the contract's upper bounds, as SHOPFEAST_VALUE_BOUNDS does for ingest."""
    fields = [encode(e) for e in events]
    if not fields:
        return [], []
    raw = RawTable(RawFile("events", Path("POST /events"), "json"), raw_rows(fields))
    now = now or pd.Timestamp.now(tz="UTC")
    outcome = validate(raw, now, Known(), Seen(), upper_bounds(bounds or {}), rows_only=True)
    accepted, rejected = [], []
    for i, code in enumerate(outcome.code.tolist()):
        if not (fields[i].get("event_id") or "").strip():
            rejected.append(Rejection(i, "missing_required", "event_id"))
        elif code >= 0:
            rejected.append(Rejection(i, RULE_NAMES[code], _column(outcome.details.get(i))))
        else:
            accepted.append(fields[i])
    return accepted, rejected


def _column(detail: str | None) -> str | None:
    """The column a rule's detail starts with (`total_amount='12,50': ...` -> total_amount)."""
    if not detail:
        return None
    head = detail.split("=", 1)[0].split(":", 1)[0].strip()
    return head if head.isidentifier() else None
