"""What a long command's progress looks like off a terminal (shopconfig/progress.py, plain mode):
`[label] done/total unit (pct%) elapsed, ETA ...: note` per step, then `[label] done: N ...`."""

from __future__ import annotations

import re

LINE = re.compile(r"^\[(?P<label>[^\]]+)\] (?P<done>\d+)/(?P<total>\d+) (?P<unit>\w+) \(\d+%\) ")


def assert_progress(err: str, label: str, unit: str) -> int:
    """Steps counted up to the total (which may grow as work is found) with an ETA, then the
    done line; returns the total.
    Run with SHOPFEAST_PROGRESS=plain and SHOPFEAST_PROGRESS_INTERVAL_S=0 (a line per step)."""
    lines = [x for x in err.splitlines() if x.startswith(f"[{label}] ")]
    assert lines, f"no [{label}] progress in:\n{err[-2000:]}"
    counted = [LINE.match(x) for x in lines[:-1]]
    assert counted and all(counted), lines
    done = [int(m["done"]) for m in counted]
    total = int(counted[-1]["total"])
    assert done == sorted(done) and done[0] <= 1 and done[-1] == total, lines  # grown totals
    assert {m["unit"] for m in counted} == {unit}, lines
    assert any("ETA" in x for x in lines), lines
    assert lines[-1].startswith(f"[{label}] done: {total} {unit} in "), lines
    return total
