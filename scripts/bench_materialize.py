"""`make bench-materialize`: the feature store into Redis, Feast's default engine against
shopfeast's chunked engine, on the same data in the same run. Prints rows/s, wall time, peak RSS
and Redis memory for the whole store and for each daily incremental run. Not a test: run it once,
on a machine as quiet as you can get.

    python -m scripts.bench_materialize [--data-dir data/bench] [--engines ours,feast] [--days 2]

The store is the one `make bench-pipelines` builds (100k customers, 10k products, 365 days) under
--data-dir. "Whole store" materializes every view from the epoch up to `--days` (2) days before
the last snapshot; each "daily incremental" then brings one more day (Feast's
materialize_incremental), the last one ending on the last snapshot. Each
measured step runs in its own process (its own peak RSS), with its own Redis database and
registry, and the two engines' Redis contents are compared key by key on a sample at the end.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import psutil
import redis

from pipelines.sources import sources
from shopconfig.settings import DEFAULT_REDIS_URL, redis_connection_string

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ENGINE = "featurestore.materialize.engine.ChunkedRedisEngine"
KEY_TTL = 259_200  # as in feature_repo/profiles/redis.yaml
LOCK_PREFIX = "shopfeast:test-db-lock:"  # shared with tests/support/feast_support.py
TARGETS = {"full_s": 60.0, "full_rss_gib": 2.0, "daily_s": 10.0}


# --- the child: one engine, one step ----------------------------------------------------------


def build_store(engine: str, redis_url: str, registry: Path, data_dir: Path, state: Path):
    from feast import FeatureStore, RepoConfig

    from featurestore import schema as feast_schema
    from shopconfig.settings import FEATURE_REPO

    batch_engine = (
        "local"
        if engine == "feast"
        else {
            "type": ENGINE,
            "chunk_rows": 50_000,
            "pipeline_commands": 2_000,
            "state_dir": str(state),
            "duckdb_memory_limit": "1GB",
            "duckdb_threads": 2,
        }
    )
    config = RepoConfig(
        project="shopfeast",
        provider="local",
        registry=str(registry),
        online_store={
            "type": "redis",
            "connection_string": redis_connection_string(redis_url),
            "key_ttl_seconds": KEY_TTL,
        },
        offline_store={"type": "duckdb"},
        batch_engine=batch_engine,
        entity_key_serialization_version=3,
        repo_path=FEATURE_REPO,
    )
    store = FeatureStore(config=config)
    present = present_sources(data_dir).values()
    names = sorted({e for source in present for e in source.entities})
    entities = {name: feast_schema.entity(name) for name in names}
    objects: list = list(entities.values())
    for source in present:
        src = feast_schema.file_source(source, data_dir)
        objects += [src, feast_schema.feature_view(source, entities, src)]
    store.apply(objects)
    return store


def child(args: argparse.Namespace) -> None:
    data_dir = Path(args.data_dir)
    os.environ["SHOPFEAST_DATA_DIR"] = str(data_dir)
    client = redis.Redis.from_url(args.redis_url)
    store = build_store(
        args.engine, args.redis_url, Path(args.registry), data_dir, Path(args.state)
    )
    end = datetime.fromisoformat(args.end)
    before = client.info("memory")["used_memory"]
    began = time.perf_counter()
    if args.stage == "full":
        store.materialize(EPOCH, end)
    else:
        store.materialize_incremental(end)
    wall = time.perf_counter() - began
    after = client.info("memory")["used_memory"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    keys = client.dbsize()
    print(
        json.dumps(
            {
                "wall": wall,
                "peak_rss": peak,
                "used_memory_delta": after - before,
                "dataset_bytes": dataset_bytes(client),
                "keys": keys,
            }
        )
    )


def dataset_bytes(client: redis.Redis, sample: int = 2000) -> int:
    """Bytes of this database's keys: MEMORY USAGE of a random sample, scaled to DBSIZE."""
    n = client.dbsize()
    if not n:
        return 0
    keys = [client.randomkey() for _ in range(min(sample, n))]
    sizes = [client.memory_usage(k, samples=0) or 0 for k in keys if k]
    return int(sum(sizes) / max(len(sizes), 1) * n)


# --- the parent: data, engines, report --------------------------------------------------------


def present_sources(data_dir: Path) -> dict:
    return {
        n: s
        for n, s in sources(strict=True).items()
        if glob.glob(str(s.path(data_dir) / "*.parquet"))
    }


def window(data_dir: Path, days: int) -> tuple[list[datetime], dict[str, dict]]:
    """Step ends: the whole store up to `days` days before the last snapshot, then each day;
    and per source the rows and entities each step covers."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    found = present_sources(data_dir)
    last = max(
        con.sql(
            f"SELECT max(event_timestamp) FROM read_parquet('{s.path(data_dir)}/*.parquet')"
        ).fetchall()[0][0]
        for s in found.values()
    ).astimezone(UTC)
    ends = [last - timedelta(days=days - d) for d in range(days + 1)]
    counts: dict[str, dict] = {}
    for name, s in found.items():
        steps = []
        for lo, hi in zip([EPOCH - timedelta(days=1), *ends[:-1]], ends, strict=True):
            q = (
                f"SELECT count(*), count(DISTINCT ({', '.join(s.join_keys)})) "
                f"FROM read_parquet('{s.path(data_dir)}/*.parquet') "
                f"WHERE event_timestamp > $lo AND event_timestamp <= $hi"
            )
            rows, entities = con.sql(q, params={"lo": lo, "hi": hi}).fetchall()[0]
            steps.append({"rows": rows, "entities": entities})
        counts[name] = steps
    return ends, counts


def claim_db(url: str) -> tuple[int, str]:
    admin = redis.Redis.from_url(_with_db(url, 0))
    token = secrets.token_hex(8)
    for db in range(15, 0, -1):
        if admin.set(f"{LOCK_PREFIX}{db}", token, nx=True, ex=7200):
            redis.Redis.from_url(_with_db(url, db)).flushdb()
            return db, token
    raise SystemExit("no free Redis database (1-15)")


def release_db(url: str, db: int, token: str) -> None:
    redis.Redis.from_url(_with_db(url, db)).flushdb()
    admin = redis.Redis.from_url(_with_db(url, 0))
    if admin.get(f"{LOCK_PREFIX}{db}") == token.encode():
        admin.delete(f"{LOCK_PREFIX}{db}")


def _with_db(url: str, db: int) -> str:
    base = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
    return f"{base}/{db}"


def run_child(stage: str, engine: str, url: str, work: Path, args, end: datetime) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "scripts.bench_materialize",
        "--stage",
        stage,
        "--engine",
        engine,
        "--redis-url",
        url,
        "--registry",
        str(work / f"registry_{engine}.db"),
        "--state",
        str(work / f"state_{engine}"),
        "--data-dir",
        str(args.data_dir),
        "--end",
        end.isoformat(),
    ]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        stopped = _watch(proc, args.timeout, args.max_rss_gib * 2**30)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if stopped:
        return {"error": stopped}
    sys.stderr.write(stderr[-4000:] if proc.returncode else "")
    if proc.returncode:
        return {"error": f"exit {proc.returncode}"}
    return json.loads(stdout.strip().splitlines()[-1])


def _watch(proc: subprocess.Popen, timeout: float, max_rss: float) -> str | None:
    """Wait for the child; kill it past `timeout` seconds or `max_rss` bytes of RSS (Feast's
    engine on the 100k store passed 19.7 GB of this machine's 24 GB). Returns why it was
    stopped, or None when it exited by itself."""
    watched, start = psutil.Process(proc.pid), time.monotonic()
    while proc.poll() is None:
        try:
            rss = watched.memory_info().rss
        except psutil.NoSuchProcess:
            break
        why = None
        if rss > max_rss:
            why = f"stopped at {rss / 2**30:.1f} GiB RSS (--max-rss-gib {max_rss / 2**30:g})"
        elif time.monotonic() - start > timeout:
            why = f"stopped after {timeout:g} s (--timeout)"
        if why:
            proc.kill()
            proc.wait()
            return why
        time.sleep(0.5)
    proc.wait()
    return None


def compare(url_a: str, url_b: str, sample: int = 3000) -> tuple[int, int]:
    a, b = redis.Redis.from_url(url_a), redis.Redis.from_url(url_b)
    if a.dbsize() != b.dbsize():
        return 0, sample
    keys = [a.randomkey() for _ in range(sample)]
    same = sum(a.hgetall(k) == b.hgetall(k) for k in keys)
    return same, len(keys)


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def report(engine: str, step: str, r: dict, rows: int, entities: int) -> str:
    if "error" in r:
        return f"| {engine} | {step} | failed ({r['error']}) | | | | |"
    return (
        f"| {engine} | {step} | {r['wall']:.1f} s | {entities / r['wall']:,.0f} | "
        f"{rows / r['wall']:,.0f} | {gib(r['peak_rss'])} | {mib(r['dataset_bytes'])} |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=Path("data/bench"))
    p.add_argument("--engines", default="ours,feast")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL))
    p.add_argument("--days", type=int, default=2, help="daily incremental runs after the load")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument(
        "--max-rss-gib",
        type=float,
        default=16.0,
        help="stop an engine's step past this RSS and report it (the machine must survive)",
    )
    for hidden in ("--stage", "--engine", "--registry", "--state", "--end"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    args = p.parse_args()
    args.data_dir = args.data_dir.resolve()
    if args.stage:
        child(args)
        return
    if not present_sources(args.data_dir):
        raise SystemExit(
            f"no feature sources under {args.data_dir}/features: run "
            "`make bench-pipelines` first (it builds the 100k-customer store)"
        )
    ends, counts = window(args.data_dir, args.days)

    def step_total(i: int, key: str) -> int:
        return sum(c[i][key] for c in counts.values())

    print(f"load average at start: {os.getloadavg()[0]:.1f} (2 cores)")
    print(
        f"store {args.data_dir}: {len(counts)} sources; whole store up to {ends[0]:%Y-%m-%d}: "
        f"{step_total(0, 'rows'):,} change-point rows, {step_total(0, 'entities'):,} entity "
        "rows online; then "
        + ", ".join(
            f"{e:%Y-%m-%d} ({step_total(i, 'entities'):,} entities changed)"
            for i, e in enumerate(ends[1:], start=1)
        )
    )
    lines = [
        "| engine | step | wall | online rows/s | source rows/s | peak RSS | Redis data |",
        "|---|---|---|---|---|---|---|",
    ]
    urls, claims, results = {}, [], {}
    with tempfile.TemporaryDirectory(prefix="bench_materialize_") as tmp:
        try:
            for engine in args.engines.split(","):
                db, token = claim_db(args.redis_url)
                claims.append((db, token))
                urls[engine] = _with_db(args.redis_url, db)
                name = "shopfeast ChunkedRedisEngine" if engine == "ours" else "Feast local"
                results[engine] = []
                for i, end in enumerate(ends):
                    stage = "full" if i == 0 else "incremental"
                    label = "whole store" if i == 0 else f"daily incremental {end:%Y-%m-%d}"
                    print(f"{name}: {label} ...", flush=True)
                    r = run_child(stage, engine, urls[engine], Path(tmp), args, end)
                    r["step"] = label
                    results[engine].append(r)
                    lines.append(
                        report(name, label, r, step_total(i, "rows"), step_total(i, "entities"))
                    )
                    print(lines[-1], flush=True)
            if {"ours", "feast"} <= set(urls):
                same, total = compare(urls["ours"], urls["feast"])
                lines.append("")
                lines.append(
                    f"Same Redis hashes on {same:,} of {total:,} sampled keys "
                    "(the engines' outputs compared after both runs)."
                )
        finally:
            for db, token in claims:
                release_db(args.redis_url, db, token)
    ours = results.get("ours", [])
    if ours and all("error" not in r for r in ours):
        full, days = ours[0], ours[1:]
        lines.append(
            f"Targets: whole store < {TARGETS['full_s']:.0f} s "
            f"({'met' if full['wall'] < TARGETS['full_s'] else 'missed'}), "
            f"< {TARGETS['full_rss_gib']:.0f} GiB RSS "
            f"({'met' if full['peak_rss'] < TARGETS['full_rss_gib'] * 2**30 else 'missed'}), "
            f"daily incremental < {TARGETS['daily_s']:.0f} s ("
            + ", ".join(
                f"{r['step'][-10:]}: {'met' if r['wall'] < TARGETS['daily_s'] else 'missed'}"
                for r in days
            )
            + ")."
        )
    lines.append(f"Load average at the end: {os.getloadavg()[0]:.1f} (2 cores, shared).")
    print("\n".join(lines))
    print(
        json.dumps(
            {
                "counts": counts,
                "results": results,
                "ends": [e.isoformat() for e in ends],
                "at": datetime.now(UTC).isoformat(),
            }
        )
    )


if __name__ == "__main__":
    main()
