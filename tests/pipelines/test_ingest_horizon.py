"""`ingest --as-of`: an export declares the instant it is complete up to, and the features'
snapshots run to it (the point-in-time oracle checks the values there:
tests/featurestore/test_pit_oracle.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines import run as pipeline_run
from pipelines.ingest import ingest, parse_as_of, parse_now
from pipelines.ingest_state import horizon
from pipelines.readers import IngestError
from pipelines.sources import sources
from tests.support.ingest_support import shop, write_raw

NOW = parse_now("2025-06-01")


def day(text: str) -> int:
    return int(pd.Timestamp(text).value // 86_400_000_000_000)


def test_as_of_runs_snapshots_to_it_and_advances_without_new_rows(tmp_path) -> None:
    raw, data = write_raw(tmp_path / "raw", shop()), tmp_path / "data"
    ingest(raw, data, NOW, as_of=parse_as_of("2025-04-01T06:00:00Z", NOW))
    assert horizon(data) == pd.Timestamp("2025-04-01T06:00:00Z")
    out = pipeline_run.run(data, mode="historical", echo=False)
    assert {o.end_day for o in out} == {day("2025-04-01")}  # not the day after the newest row
    stored = pd.read_parquet(sources(strict=True)["customer_activity"].path(data))
    assert stored["event_timestamp"].max() < pd.Timestamp("2025-04-01", tz="UTC")
    # The same files again, declared complete a month later: no batch, the horizon moves on.
    assert ingest(raw, data, NOW, as_of=parse_as_of("2025-05-01", NOW)) is None
    assert horizon(data) == pd.Timestamp("2025-05-01", tz="UTC")
    out = pipeline_run.run(data, mode="incremental", echo=False)
    assert {o.end_day for o in out} == {day("2025-05-01")}
    assert ingest(raw, data, NOW, as_of=parse_as_of("2025-04-15", NOW)) is None  # never back
    assert horizon(data) == pd.Timestamp("2025-05-01", tz="UTC")


def test_as_of_after_the_clock_is_refused() -> None:
    with pytest.raises(IngestError, match="--as-of"):
        parse_as_of("2025-06-03", NOW)
    with pytest.raises(IngestError, match="--as-of"):
        parse_as_of("next week", NOW)
