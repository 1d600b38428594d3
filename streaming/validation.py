"""Stream entries judged by the batch ingest's own rules (pipelines.validate).

A batch of entries becomes a raw `events` table (every field as text, as a CSV would give it) and
goes through `validate` with what the batch side knows: the clean customers and products (and the
hashes of clean events) from DIR/state/ingest, reloaded when an ingest commits a batch, plus the
events this stream accepted in the last days (their markers). So an event gets the rule it would
get in a batch: `unknown_product`, `duplicate_id`, `future_timestamp`, `bot_session` (judged over
the batch's events: as far as one batch of the stream can see a session) ...

The stream adds one requirement: an `event_id` (processing is idempotent by it), missing ->
`missing_required`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.ingest_state import State, ingest_state_dir
from pipelines.readers import RawFile, RawTable
from pipelines.validate import RULE_NAMES, Known, Outcome, Seen, validate
from streaming.landing import raw_rows
from streaming.log import Entry


@dataclass
class Verdict:
    """What became of one batch of entries."""

    entries: list[Entry]
    outcome: Outcome
    rules: list[str | None]  # per entry: None = accepted
    details: list[str | None]

    @property
    def accepted(self) -> list[int]:
        return [i for i, r in enumerate(self.rules) if r is None]

    def reject(self, i: int, rule: str, detail: str) -> None:
        self.rules[i] = rule
        self.details[i] = detail


class BatchContext:
    """What the batch side knows, reloaded when DIR/state/ingest/manifest.json changes."""

    def __init__(self, data_dir: Path, bounds: dict[str, float] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.bounds = bounds  # the contract's upper bounds (None: the defaults)
        self._stamp: float | None = None
        self.known = Known()
        self.seen = Seen()

    def refresh(self) -> None:
        manifest = ingest_state_dir(self.data_dir) / "manifest.json"
        stamp = manifest.stat().st_mtime if manifest.exists() else None
        if stamp == self._stamp:
            return
        state = State.load(self.data_dir)
        self.known = state.known()
        self.seen = state.seen("events")
        self._stamp = stamp


def judge(
    entries: list[Entry],
    context: BatchContext,
    now: pd.Timestamp,
    stream: str,
    earlier: tuple[np.ndarray, np.ndarray],
) -> Verdict:
    """Validate a batch; `earlier`: (row hashes, key hashes) of events other entries accepted."""
    raw = RawTable(RawFile("events", Path(stream), "stream"), raw_rows([e.fields for e in entries]))
    seen = context.seen.with_extra(*earlier)
    outcome = validate(raw, now, context.known, seen, context.bounds)
    rules = [None if c < 0 else RULE_NAMES[c] for c in outcome.code.tolist()]
    details = [None if c < 0 else outcome.details.get(i) for i, c in enumerate(outcome.code)]
    verdict = Verdict(entries, outcome, rules, details)
    for i, e in enumerate(entries):
        if not (e.fields.get("event_id") or "").strip():
            verdict.reject(i, "missing_required", "event_id: missing (required on the stream)")
    return verdict


def typed_rows(verdict: Verdict, rows: list[int]) -> pd.DataFrame:
    """The typed, normalised values of some entries (contract dtypes)."""
    table = verdict.outcome.typed.take(pa.array(rows, pa.int64()))
    return table.to_pandas(
        types_mapper=lambda t: pd.StringDtype() if pa.types.is_string(t) else None
    )
