"""Incremental runs over a sequence of ingest batches == one historical run; reruns are no-ops."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipelines import sources
from pipelines.run import read_source, run
from tests.support.pipelines_shop import build, daily_batches, write_batch


@pytest.fixture(scope="module")
def shop() -> dict[str, pd.DataFrame]:
    return build(seed=3, customers=30, products=12, days=60)


@pytest.fixture(scope="module")
def historical(shop, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("historical")
    write_batch(root, shop, "all")
    run(root, "historical", echo=False)
    return root


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted((root / "features").rglob("*.parquet"))
    }


def assert_same_sources(a: Path, b: Path) -> None:
    for name, source in sources.sources().items():
        left, right = read_source(a, source), read_source(b, source)
        assert len(left), name
        pd.testing.assert_frame_equal(left, right, check_exact=True, obj=name)


def test_batches_with_a_late_day_equal_one_historical_run(shop, historical, tmp_path):
    """The first run finds no state (a full build); later ones continue; one day comes late."""
    batches = daily_batches(shop)
    late_day, late = batches[30]  # this day's export arrives after two more weeks
    held = {n: df for n, df in late.items()}
    end = None
    for i, (name, tables) in enumerate(batches):
        if name == late_day:
            continue
        write_batch(tmp_path, tables, name)
        if i in (15, 29, 44):
            outcomes = run(tmp_path, "incremental", echo=False)
            if end is not None:  # on time: only the snapshots after the watermark are computed
                assert {o.start_day for o in outcomes} <= {end + 1, None}
            end = outcomes[0].end_day
        if i == 44:
            write_batch(tmp_path, held, f"{late_day}-late")
    outcomes = run(tmp_path, "incremental", echo=False)
    late_start = (pd.Timestamp(late_day, tz="UTC") + pd.Timedelta(days=1)).date()
    starts = {
        o.source: pd.Timestamp(o.start_day, unit="D").date()
        for o in outcomes
        if o.start_day is not None
    }
    # Sources fed by the late tables restart at the snapshot after the late day.
    assert starts["customer_activity"] == starts["customer_profile"] == late_start
    assert_same_sources(historical, tmp_path)


def test_one_run_per_day_equals_historical_and_weekly_copurchase_reads_nothing_off_monday(
    shop, historical, tmp_path, monkeypatch
):
    """The production cadence: one run per daily batch. product_copurchase (Monday grain) is not
    computed, so reads nothing, on a run without a Monday; every source still equals a
    historical run."""
    from pipelines.families import product_copurchase

    batches = daily_batches(shop)
    for name, tables in batches[:-10]:
        write_batch(tmp_path, tables, name)
    run(tmp_path, "incremental", echo=False)
    computed = []
    real = product_copurchase.compute

    def spy(tables, snapshots, prior):
        computed.append((snapshots.start_day, snapshots.end_day))
        return real(tables, snapshots, prior)

    monkeypatch.setattr(product_copurchase, "compute", spy)
    with_monday, without = [], 0
    for name, tables in batches[-10:]:
        write_batch(tmp_path, tables, name)
        (outcome,) = run(tmp_path, "incremental", only=["product_copurchase"], echo=False)
        days = pd.date_range(
            pd.Timestamp(outcome.start_day, unit="D"), pd.Timestamp(outcome.end_day, unit="D")
        )
        if (days.dayofweek == 0).any():
            with_monday.append((outcome.start_day, outcome.end_day))
        else:
            without += 1
    assert with_monday and without and computed == with_monday
    run(tmp_path, "incremental", echo=False)
    assert_same_sources(historical, tmp_path)


def test_rerun_is_a_no_op(historical):
    before = snapshot(historical)
    outcomes = run(historical, "incremental", echo=False)
    assert all(o.start_day is None for o in outcomes)
    assert snapshot(historical) == before


def test_layout_sorted_declared_and_range_readable(historical):
    for name, source in sources.sources().items():
        files = sorted(source.path(historical).glob("*.parquet"))
        assert files, name
        for f in files:
            table = pq.read_table(f)
            assert table.schema.equals(source.arrow_schema(), check_metadata=False), f
            ts = table.column(source.timestamp_field).to_pandas()
            assert ts.is_monotonic_increasing and (ts.dt.strftime("%Y-%m") == f.stem).all()
            created = table.column(source.created_timestamp_column).to_pandas()
            assert (created == ts).all()
        rows = read_source(historical, source)
        assert not rows.duplicated([*source.join_keys, source.timestamp_field]).any()
        lo, hi = rows[source.timestamp_field].quantile([0.3, 0.6])
        part = read_source(historical, source, start=lo, end=hi)
        expected = rows[(rows[source.timestamp_field] >= lo) & (rows[source.timestamp_field] < hi)]
        assert len(part) == len(expected) > 0


def _realtime_files(root: Path) -> dict[str, int]:
    from pipelines import realtime

    return {
        f"{name}/{p.name}": p.stat().st_mtime_ns
        for name, source in realtime.SOURCES.items()
        for p in sorted(source.path(root).glob("*.parquet"))
    }


def _straddling(shop: dict[str, pd.DataFrame], days: list[pd.Timestamp]) -> dict:
    """The shop plus, before each given midnight, one session of c1 viewing and carting p1 from
    23:00 to 01:00: rows just after the midnight count events of the day before (their lookback)."""
    base = shop["events"].iloc[0]
    extra = [
        {
            **base.to_dict(),
            "event_id": f"x{d:%m%d}_{i}",
            "customer_id": "c1",
            "session_id": f"x{d:%m%d}",
            "event_type": kind,
            "product_id": "p1",
            "event_ts": d + pd.Timedelta(minutes=m),
        }
        for d in days
        for i, (m, kind) in enumerate(
            [
                (-60, "product_view"),
                (-30, "add_to_cart"),
                (-5, "product_view"),
                (20, "add_to_cart"),
                (55, "product_view"),
            ]
        )
    ]
    events = pd.concat([shop["events"], pd.DataFrame(extra).astype(shop["events"].dtypes)])
    return {**shop, "events": events.reset_index(drop=True)}


def test_realtime_sources_continue_from_the_oldest_new_event(shop, tmp_path):
    """The real-time views' sources are not rewritten whole by an incremental run: months before
    the oldest new event keep their files (on time and with a day arriving late), and the rows
    equal one whole computation's, also for rows just after a batch's first midnight, whose
    windows reach into the day before."""
    from pipelines import realtime

    days = [b[0] for b in daily_batches(shop)]
    cuts = [pd.Timestamp(days[i], tz="UTC") for i in (35, 40)]
    shop = _straddling(shop, cuts)
    batches = daily_batches(shop)
    late_day, late = batches[40]
    inc, whole = tmp_path / "inc", tmp_path / "whole"
    for name, tables in batches[:35]:
        write_batch(inc, tables, name)
    run(inc, "incremental", echo=False)
    for step in (batches[35:40] + batches[41:], [(f"{late_day}-late", late)]):
        before = _realtime_files(inc)
        first = min(pd.Timestamp(name[:8], tz="UTC") for name, _ in step)
        for name, tables in step:
            write_batch(inc, tables, name)
        run(inc, "incremental", echo=False)
        after = _realtime_files(inc)
        older = {f for f in before if f.split("/")[1][:7] < f"{first:%Y-%m}"}
        assert older, "the shop spans months before the new events"
        assert {f: after[f] for f in older} == {f: before[f] for f in older}
        assert any(after.get(f) != before.get(f) for f in after)  # the new events' months
    write_batch(whole, shop, "all")
    realtime.write_sources(whole)
    for name, source in realtime.SOURCES.items():
        left, right = read_source(whole, source), read_source(inc, source)
        pd.testing.assert_frame_equal(left, right, check_exact=True, obj=name)
        if name == "customer_session":  # after the midnights: the evening before counts too
            mine = left[left["session_id"].isin([f"x{d:%m%d}" for d in cuts])]
            after = mine.set_index("event_timestamp")["session_events"]
            for d in cuts:
                assert after[d + pd.Timedelta(minutes=20)] == 4
                assert after[d + pd.Timedelta(minutes=55)] == 5
