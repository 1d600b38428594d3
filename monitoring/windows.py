"""The reference period and the current window a monitor run compares, and the instants sampled.

Current window: the last `window_days` daily snapshots up to the newest one the pipelines wrote.
Reference, first that applies: `--reference START:END` (as given); `--reference-model NAME` or, by
default, the training split of the latest churn model card (first to last training cutoff); else
the first 70% of the data; both of these after the longest feature window has filled (a 90-day
window is short of history for the first 90 days of any export, wherever it starts), and ending
before the current window.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipelines.storage import models_dir

REFERENCE_INSTANTS = 8
REFERENCE_SHARE = 0.7
WARM_UP_DAYS = 90


class MonitorInputError(ValueError):
    """Bad usage or missing data: the run exits 2 with this message."""


@dataclass
class Windows:
    reference_start: pd.Timestamp
    reference_end: pd.Timestamp
    reference_from: str
    current_start: pd.Timestamp
    current_end: pd.Timestamp
    window_days: int
    reference_instants: list[pd.Timestamp] = field(default_factory=list)
    current_instants: list[pd.Timestamp] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "reference": {
                "start": self.reference_start.isoformat(),
                "end": self.reference_end.isoformat(),
                "from": self.reference_from,
                "instants": [t.isoformat() for t in self.reference_instants],
            },
            "current": {
                "start": self.current_start.isoformat(),
                "end": self.current_end.isoformat(),
                "days": self.window_days,
                "instants": [t.isoformat() for t in self.current_instants],
            },
        }


def parse_range(text: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    try:
        start, end = text.split(":", 1) if text.count(":") == 1 else text.split("..", 1)
        a, b = _utc(start), _utc(end)
    except (ValueError, TypeError) as exc:
        raise MonitorInputError(
            f"--reference {text!r}: expected START:END as dates, e.g. 2025-03-01:2025-05-31"
        ) from exc
    if b <= a:
        raise MonitorInputError(f"--reference {text!r}: END must be after START")
    return a, b


def resolve(
    data_start: pd.Timestamp,
    data_end: pd.Timestamp,
    window_days: int,
    data_dir: Path,
    reference: str | None = None,
    reference_model: str | None = None,
) -> Windows:
    """`data_start`: the first day of raw activity; `data_end`: the newest snapshot."""
    data_end = data_end.floor("D")
    cur_start = data_end - pd.Timedelta(days=window_days - 1)
    if reference:
        ref_start, ref_end = parse_range(reference)
        origin = "--reference"
    else:
        card = _card(data_dir, reference_model or "churn", required=reference_model is not None)
        if card is not None:
            ref_start, ref_end, origin = card
            warm = data_start.floor("D") + pd.Timedelta(days=WARM_UP_DAYS)
            if ref_start < warm < ref_end:
                ref_start = warm
                origin += f" after the {WARM_UP_DAYS}-day warm-up"
        else:
            ref_start, ref_end = _default(data_start, cur_start)
            origin = f"first {REFERENCE_SHARE:.0%} of the data after a {WARM_UP_DAYS}-day warm-up"
    ref_end = min(ref_end, cur_start)
    if ref_end <= ref_start:
        raise MonitorInputError(
            f"reference {ref_start:%Y-%m-%d}..{ref_end:%Y-%m-%d} is empty before the current "
            f"window (from {cur_start:%Y-%m-%d}); give --reference START:END"
        )
    days = pd.date_range(ref_start.ceil("D"), ref_end.floor("D"), freq="D")
    if len(days) == 0:
        days = pd.DatetimeIndex([ref_end.floor("D")])
    idx = sorted({round(i) for i in _linspace(0, len(days) - 1, REFERENCE_INSTANTS)})
    return Windows(
        reference_start=ref_start,
        reference_end=ref_end,
        reference_from=origin,
        current_start=cur_start,
        current_end=data_end,
        window_days=window_days,
        reference_instants=[days[i] for i in idx],
        current_instants=list(pd.date_range(cur_start, data_end, freq="D")),
    )


def _default(data_start: pd.Timestamp, cur_start: pd.Timestamp):
    start = data_start.floor("D")
    span = cur_start - start
    warm = start + pd.Timedelta(days=WARM_UP_DAYS)
    end = (start + span * REFERENCE_SHARE).floor("D")
    if end <= warm:  # short data: everything after the warm-up, before the current window
        end = cur_start
    return min(warm, cur_start), end


def _card(data_dir: Path, model: str, required: bool):
    pointer = models_dir(data_dir) / model / "latest.json"
    if not pointer.exists():
        if required:
            raise MonitorInputError(f"--reference-model {model}: no model card ({pointer} missing)")
        return None
    card_path = Path(json.loads(pointer.read_text())["card_path"])
    if not card_path.exists():
        raise MonitorInputError(f"model card {card_path} (named by {pointer}) is missing")
    card = json.loads(card_path.read_text())
    window = card.get("training_window", {})
    train = window.get("splits", {}).get("train") or {}
    first = train.get("first_cutoff") or window.get("first_cutoff")
    last = train.get("last_cutoff") or window.get("last_cutoff")
    if not first or not last:
        raise MonitorInputError(f"model card {card_path} records no training window")
    return _utc(first), _utc(last), f"training split of {model} {card.get('version', '?')}"


def _utc(value) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _linspace(a: float, b: float, n: int) -> list[float]:
    if n <= 1 or b <= a:
        return [a]
    return [a + (b - a) * i / (n - 1) for i in range(n)]
