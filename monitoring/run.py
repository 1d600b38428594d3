"""`shopfeast monitor`: one run of every check, a report, and an exit code CI and cron can use.

    DIR/reports/monitoring/<run-id>/report.json   everything measured
    DIR/reports/monitoring/<run-id>/report.html   the same for people (self-contained)
    DIR/reports/monitoring/latest.json            the last run's report (read by /metrics)

Exit 0: no breach in a class named in `fail_on`; 1: at least one; 2: bad usage or missing data
(a class named in `fail_on` that could not run, or nothing to monitor at all), with a message
naming what is missing.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
from rich.console import Console

from featurestore import observe
from featurestore.store import open_store
from monitoring import drift, freshness, model_health, quality, report, served, skew
from monitoring.snapshots import as_of, newest_row, source_glob
from monitoring.windows import MonitorInputError, Windows, resolve
from pipelines.sources import sources as declared_sources
from pipelines.storage import clean_dir, reports_dir
from shopconfig.progress import console as results_console

CLASSES = report.CLASSES
MEMORY_LIMIT = "1GB"
FORMAT = 1


@dataclass
class Options:
    data_dir: Path
    profile: str = "embedded"
    reference: str | None = None
    reference_model: str | None = None
    fail_on: tuple[str, ...] = ()
    checks: tuple[str, ...] = CLASSES
    window_days: int = 7
    now: pd.Timestamp | None = None
    drift_sample: int = 10_000
    skew_entities: int = 1_000
    quality: quality.QualityThresholds = field(default_factory=quality.QualityThresholds)
    freshness: freshness.FreshnessThresholds = field(default_factory=freshness.FreshnessThresholds)
    served: served.ServedThresholds = field(default_factory=served.ServedThresholds)
    health: model_health.HealthThresholds = field(default_factory=model_health.HealthThresholds)


def parse_classes(text: str | None, option: str) -> tuple[str, ...]:
    if not text:
        return ()
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in CLASSES]
    if bad:
        raise MonitorInputError(
            f"{option}: unknown check {', '.join(bad)}; one of {', '.join(CLASSES)}"
        )
    return names


def monitor(opts: Options) -> tuple[int, dict, Path]:
    """Run the checks; returns (exit code, report, report directory)."""
    started, started_cpu = time.perf_counter(), time.process_time()
    data_dir = Path(opts.data_dir).resolve()
    now = _utc(opts.now) if opts.now is not None else pd.Timestamp.now(tz="UTC")
    if opts.window_days < 1:
        raise MonitorInputError("--window must be at least 1 day")
    if not (reports_dir(data_dir) / "history").exists() and not (data_dir / "features").exists():
        raise MonitorInputError(
            f"{data_dir}: nothing to monitor (no ingest reports under reports/history and no "
            "feature sources under features/); run `shopfeast ingest` and `shopfeast features`"
        )
    con = _duckdb(data_dir)
    sources = declared_sources()
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}  # CPU of this process's threads (DuckDB's included)
    out: dict = {
        "format": FORMAT,
        "run_id": now.strftime("%Y%m%dT%H%M%SZ") + f"-{secrets.token_hex(3)}",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "now": now.isoformat(),
        "data_dir": str(data_dir),
        "profile": opts.profile,
        "checks": list(opts.checks),
        "fail_on": list(opts.fail_on),
    }
    windows: Windows | None = None
    newest = {s.name: _newest(con, data_dir, s) for s in sources.values()}

    if "quality" in opts.checks:
        t, c = time.perf_counter(), time.process_time()
        q = quality.check(data_dir, con, opts.quality)
        if q["batch"] is None:
            q = {"not_run": f"no ingest batch report under {reports_dir(data_dir) / 'history'}"}
        out["quality"] = q
        seconds["quality"] = time.perf_counter() - t
        cpu["quality"] = time.process_time() - c

    if "drift" in opts.checks:
        t, c = time.perf_counter(), time.process_time()
        start = _data_start(con, data_dir)
        ends = [freshness.watermark(data_dir, s) or newest[s.name][0] for s in sources.values()]
        ends = [e for e in ends if e is not None]
        if start is None or not ends:
            out["drift"] = {"not_run": f"no clean orders or no feature sources under {data_dir}"}
        else:
            windows = resolve(
                start, max(ends), opts.window_days, data_dir, opts.reference, opts.reference_model
            )
            results = drift.check(data_dir, sources, windows, opts.drift_sample, con)
            out["drift"] = {"windows": windows.to_json(), "results": report.rank_drift(results)}
        seconds["drift"] = time.perf_counter() - t
        cpu["drift"] = time.process_time() - c

    store = None
    store_error = None
    if "freshness" in opts.checks or "skew" in opts.checks:
        store, store_error = _open_store(opts.profile, data_dir)

    if "freshness" in opts.checks:
        t, c = time.perf_counter(), time.process_time()
        results = [
            freshness.offline(data_dir, s, newest[s.name][0], now, opts.freshness)
            for s in sources.values()
            if newest[s.name][0] is not None
        ]
        fr: dict = {"results": results}
        if store is None:
            fr["online_not_run"] = store_error
        else:
            fr["results"] += _online_freshness(store, sources, now, opts, con, data_dir)
        if not results and store is None:
            fr["not_run"] = f"no feature sources and no feature store ({store_error})"
        out["freshness"] = fr
        seconds["freshness"] = time.perf_counter() - t
        cpu["freshness"] = time.process_time() - c

    if "skew" in opts.checks:
        t, c = time.perf_counter(), time.process_time()
        if store is None:
            out["skew"] = {"not_run": store_error}
        else:
            out["skew"] = _skew(store, sources, opts, con, data_dir)
        seconds["skew"] = time.perf_counter() - t
        cpu["skew"] = time.process_time() - c

    if "served" in opts.checks:
        t, c = time.perf_counter(), time.process_time()
        start = now - pd.Timedelta(days=opts.window_days)
        out["served"] = served.check_models(data_dir, start, now, opts.served)
        seconds["served"] = time.perf_counter() - t
        cpu["served"] = time.process_time() - c

    if "model" in opts.checks:
        t, c = time.perf_counter(), time.process_time()
        out["model"] = model_health.check(data_dir, opts.health)
        seconds["model"] = time.perf_counter() - t
        cpu["model"] = time.process_time() - c

    out["summary"] = report.summarise(out, opts.checks)
    code = exit_code(out["summary"], opts.fail_on, opts.checks)
    out["exit_code"] = code
    seconds["total"] = time.perf_counter() - started
    cpu["total"] = time.process_time() - started_cpu
    out["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    out["cpu_seconds"] = {k: round(v, 3) for k, v in cpu.items()}
    folder = report.write(data_dir, out)
    return code, out, folder


def exit_code(summary: dict, fail_on: tuple[str, ...], checks: tuple[str, ...]) -> int:
    if all(summary[c]["status"] == "not_run" for c in checks):
        return 2
    missing = [c for c in fail_on if c in checks and summary[c]["status"] == "not_run"]
    if missing or any(c not in checks for c in fail_on):
        return 2
    return 1 if any(summary[c]["status"] == "alert" for c in fail_on) else 0


def missing_message(out: dict) -> str:
    """What could not be checked, for the exit-2 message."""
    lines = []
    for c in CLASSES:
        if c in out and isinstance(out[c], dict) and out[c].get("not_run"):
            lines.append(f"{c}: {out[c]['not_run']}")
    for c in out["fail_on"]:
        if c not in out["checks"]:
            lines.append(f"{c}: named in --fail-on but not in --checks")
    return "; ".join(lines) or "nothing could be checked"


def _duckdb(data_dir: Path) -> duckdb.DuckDBPyConnection:
    """The monitor's own DuckDB, bounded like Feast's (featurestore.store.bound_duckdb): the
    as-of reads of a 100k-customer store fit in it, spilling to DIR/tmp/duckdb if need be."""
    spill = data_dir / "tmp" / "duckdb"
    spill.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(
        config={"memory_limit": MEMORY_LIMIT, "temp_directory": str(spill), "threads": 2}
    )


def _open_store(profile: str, data_dir: Path):
    # Feast's offline reads (skew) get the same bound unless the operator set one.
    os.environ.setdefault("SHOPFEAST_DUCKDB_MEMORY_LIMIT", MEMORY_LIMIT)
    if profile == "embedded" and not (data_dir / "feast" / "registry.db").exists():
        return (
            None,
            f"no Feast registry at {data_dir / 'feast' / 'registry.db'} (run shopfeast apply)",
        )
    try:
        store = open_store(profile, data_dir)
        views = store.list_feature_views()
    except Exception as exc:  # an unreachable registry or online store: reported, not raised
        return None, f"cannot open the {profile} feature store: {type(exc).__name__}: {exc}"
    if not views:
        return None, "the Feast registry has no feature views (run shopfeast apply)"
    return store, None


def _online_freshness(store, sources, now, opts, con, data_dir) -> list[dict]:
    out = [
        freshness.online(view, until, now, opts.freshness)
        for view, until in sorted(observe.materialized_until(store).items())
    ]
    if observe.online_kind(store) == "redis":
        by_entity = {}
        for s in sources.values():
            by_entity.setdefault(tuple(s.join_keys), s)  # customer, product, customer x product
        for keys, s in sorted(by_entity.items()):
            sample = _sample_keys(con, data_dir, s, now, opts.skew_entities)
            if len(sample):
                if len(keys) == 1:
                    ttls = observe.redis_ttls(store, keys[0], sample[keys[0]].tolist())
                else:
                    ids = list(sample[list(keys)].itertuples(index=False, name=None))
                    ttls = observe.redis_ttls(store, keys, ids)
                out.append(
                    freshness.expiry(s.entity, ttls, opts.freshness, observe.key_ttl_seconds(store))
                )
    return out


def _skew(store, sources, opts, con, data_dir) -> dict:
    ends = [u for u in observe.materialized_until(store).values() if u is not None]
    if not ends:
        return {"not_run": "nothing materialized yet (run shopfeast materialize)"}
    at = pd.Timestamp(max(ends)).tz_convert("UTC").floor("s")
    # Sampled keys: ids of each entity, and pairs that happened for a view keyed by several
    # (random pairs would mostly be ones that never happened: both paths read nothing).
    ids: dict[str, list[str]] = {}
    pairs: dict[tuple[str, ...], pd.DataFrame] = {}
    for s in sources.values():
        keys = tuple(s.join_keys)
        if len(keys) == 1 and s.join_key not in ids:
            ids[s.join_key] = _sample_ids(con, data_dir, s, at, opts.skew_entities)
        elif len(keys) > 1 and tuple(sorted(keys)) not in pairs:
            pairs[tuple(sorted(keys))] = _sample_keys(con, data_dir, s, at, opts.skew_entities)
    join_key_of = {s.name: tuple(s.join_keys) for s in sources.values()}
    results = []
    for group in observe.service_groups(store, join_key_of):
        frame = skew.entity_frame(group, ids, opts.skew_entities, pairs)
        if frame.empty:
            continue
        results += skew.compare_group(store, group, frame, at.to_pydatetime())
    results.sort(key=lambda r: (-r["mismatches"], r["view"], r["feature"]))
    return {
        "instant": at.isoformat(),
        "entities": {k: len(v) for k, v in ids.items()}
        | {" x ".join(k): len(v) for k, v in pairs.items()},
        "results": results,
    }


def _sample_ids(con, data_dir: Path, source, at, n: int) -> list[str]:
    frame = _sample_keys(con, data_dir, source, at, n)
    return [str(v) for v in frame[source.join_key].tolist()] if len(frame) else []


def _sample_keys(con, data_dir: Path, source, at, n: int) -> pd.DataFrame:
    """Up to `n` entities of `source` existing at `at`: its key columns, as strings."""
    glob = source_glob(data_dir, source)
    if glob is None:
        return pd.DataFrame(columns=list(source.join_keys))
    frame = as_of(con, glob, source, [at], [], n)
    return frame[list(source.join_keys)].astype(str).reset_index(drop=True)


def _newest(con, data_dir: Path, source):
    glob = source_glob(data_dir, source)
    return newest_row(con, glob, source) if glob else (None, 0)


def _data_start(con, data_dir: Path) -> pd.Timestamp | None:
    root = clean_dir(data_dir, "orders")
    if not root.exists() or not any(root.rglob("*.parquet")):
        return None
    value = con.execute(
        f"select min(order_ts) from read_parquet('{root}/**/*.parquet')"
    ).fetchall()[0][0]
    return None if value is None else _utc(value)


def _utc(value) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def load_latest(data_dir: Path) -> dict | None:
    path = report.latest_path(Path(data_dir))
    return json.loads(path.read_text()) if path.exists() else None


def main(
    data_dir: Path,
    profile: str = "embedded",
    reference: str | None = None,
    reference_model: str | None = None,
    fail_on: str | None = None,
    checks: str | None = None,
    window: int = 7,
    now: str | None = None,
    skew_entities: int = 1_000,
    console: Console | None = None,
) -> int:
    """The command: run, print the summary, return the exit code (2 with a message on bad
    usage or missing data)."""
    console = console or results_console()
    try:
        if reference and reference_model:
            raise MonitorInputError("give --reference or --reference-model, not both")
        if profile not in ("embedded", "redis"):
            raise MonitorInputError(f"--profile {profile!r}: one of embedded, redis")
        opts = Options(
            data_dir=Path(data_dir),
            profile=profile,
            reference=reference,
            reference_model=reference_model,
            fail_on=parse_classes(fail_on, "--fail-on"),
            checks=parse_classes(checks, "--checks") or CLASSES,
            window_days=window,
            now=_parse_now(now),
            skew_entities=skew_entities,
        )
        code, out, _ = monitor(opts)
    except MonitorInputError as exc:
        console.print(f"error: {exc}", markup=False, highlight=False)
        return 2
    report.print_summary(out, console)
    if code == 2:
        console.print(f"error: {missing_message(out)}", markup=False, highlight=False)
    return code


def _parse_now(text: str | None) -> pd.Timestamp | None:
    if not text:
        return None
    try:
        return _utc(text)
    except ValueError as exc:
        raise MonitorInputError(f"--now {text!r}: not an ISO 8601 timestamp") from exc
