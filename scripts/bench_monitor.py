"""`make bench-monitor`: one full `shopfeast monitor` run over the 100k-customer bench store.

    python -m scripts.bench_monitor [--data-dir data/bench] [--before-tree DIR]

The store is the one `make bench-pipelines` builds (100k customers, 10k products, 365 days, two
ingest batches). Set-up, not measured: the redis profile applied into a fresh PostgreSQL database
and materialized into a Redis database of its own (both dropped afterwards). Measured: `shopfeast
monitor --profile redis` with every check (quality, freshness with Redis key expiry, drift over
every stored feature, skew on 1,000 customers and 1,000 products for every feature of every
service), in its own process: wall time, peak RSS, the seconds of each check. Target (issue 11):
< 60 s and < 2 GiB. With `--before-tree DIR` (e.g. a worktree of an older commit) the same run is
first measured with that tree's code (run from DIR) on the same set-up, then with this tree's:
before and after side by side, one set-up.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import duckdb

from pipelines.sources import sources
from scripts.bench_materialize import claim_db, release_db
from shopconfig.settings import DEFAULT_POSTGRES_DSN, DEFAULT_REDIS_URL, redis_connection_string

TARGETS = {"wall_s": 60.0, "rss_gib": 2.0}
ROOT = Path(__file__).resolve().parents[1]


def _shopfeast(args: list[str], env: dict) -> None:
    cmd = [sys.executable, "-m", "shopfeast.cli", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(
            f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )


def _measure(cmd: list[str], env: dict, cwd: Path) -> tuple[int, float, float, int, str]:
    """Exit code, wall seconds, CPU seconds (all threads), peak RSS (bytes) and output of one
    child process, run from `cwd` (whose packages `python -m` imports first)."""
    began = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read().decode() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return proc.returncode, time.perf_counter() - began, cpu, usage.ru_maxrss * 1024, out


def _print(wall: float, cpu: float, rss: int, report: dict) -> None:
    print(f"  wall        {wall:8.1f} s   (target < {TARGETS['wall_s']:.0f} s)")
    print(f"  CPU         {cpu:8.1f} s   (all threads; wall on a shared machine is CPU / share)")
    print(f"  peak RSS    {rss / 2**30:8.2f} GiB (target < {TARGETS['rss_gib']:.0f} GiB)")
    for k, v in report["seconds"].items():
        print(f"  {k:<11} {v:8.1f} s wall, {report['cpu_seconds'][k]:6.1f} s CPU")
    for k, s in report["summary"].items():
        print(f"  {k:<11} {s['status']:<8} checked {s.get('checked', '-')}, "
              f"alerts {s.get('alerts', '-')}, warnings {s.get('warnings', '-')}")  # fmt: skip
    print(f"  skew: {report['skew'].get('entities')} entities at {report['skew'].get('instant')}")


def _last_snapshot(data_dir: Path) -> str:
    con = duckdb.connect()
    newest = max(
        con.execute(
            f"select max(event_timestamp) from read_parquet('{s.path(data_dir)}/*.parquet')"
        ).fetchall()[0][0]
        for s in sources().values()
    )
    return newest.strftime("%Y-%m-%dT%H:%M:%S")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=Path("data/bench"))
    p.add_argument("--before-tree", type=Path, help="measure that tree's code first (before)")
    args = p.parse_args()
    data_dir = args.data_dir.resolve()
    if not (data_dir / "features" / "customer_activity").exists():
        raise SystemExit(f"{data_dir} has no feature sources: run `make bench-pipelines` first")
    import psycopg

    redis_url = os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)
    dsn = os.environ.get("POSTGRES_DSN", DEFAULT_POSTGRES_DSN)
    db, token = claim_db(redis_url)
    name = f"shopfeast_bench_monitor_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    u = urlparse(dsn)
    env = {
        **os.environ,
        "SHOPFEAST_DATA_DIR": str(data_dir),
        "REDIS_CONNECTION_STRING": redis_connection_string(redis_url.rsplit("/", 1)[0] + f"/{db}"),
        "SHOPFEAST_REGISTRY_URL": urlunparse(
            u._replace(scheme="postgresql+psycopg", path=f"/{name}")
        ),
        "COLUMNS": "160",
        "PYTHONPATH": str(ROOT),
    }
    try:
        last = _last_snapshot(data_dir)
        now = last.replace("T00:00:00", "T06:00:00")
        t = time.perf_counter()
        print(f"set-up (not measured): apply + materialize the redis profile up to {now} ...")
        _shopfeast(["apply", "--profile", "redis", "--no-plan", "--data-dir", str(data_dir)], env)
        _shopfeast(
            ["materialize", "--profile", "redis", "--data-dir", str(data_dir), "--end", now], env
        )
        print(f"  done in {time.perf_counter() - t:.1f}s")
        cmd = [
            sys.executable, "-m", "shopfeast.cli", "monitor", "--profile", "redis",
            "--data-dir", str(data_dir), "--now", now,
        ]  # fmt: skip
        trees = [("before", args.before_tree.resolve())] if args.before_tree else []
        trees.append(("after" if trees else "this tree", ROOT))
        rows = []
        for label, tree in trees:
            commit = subprocess.run(
                ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                capture_output=True, text=True, check=False,
            ).stdout.strip()  # fmt: skip
            # PYTHONPATH too: subprocesses started elsewhere (Feast's, from feature_repo/) would
            # import the installed tree's packages
            tree_env = {**env, "PYTHONPATH": str(tree)}
            code, wall, cpu, rss, out = _measure(cmd, tree_env, tree)
            report = json.loads((data_dir / "reports" / "monitoring" / "latest.json").read_text())
            load = os.getloadavg()[0]
            print(f"== {label}: {tree} at {commit or '?'}")
            print(out)
            print(f"monitor exit {code}; load average {load:.1f}")
            _print(wall, cpu, rss, report)
            rows.append((label, commit, wall, cpu, rss, report))
        if len(rows) > 1:
            print("\nside by side:")
            print(f"  {'':<11}" + "".join(f"{r[0] + ' ' + r[1]:>22}" for r in rows))
            print(f"  {'wall s':<11}" + "".join(f"{r[2]:>22.1f}" for r in rows))
            print(f"  {'CPU s':<11}" + "".join(f"{r[3]:>22.1f}" for r in rows))
            print(f"  {'peak GiB':<11}" + "".join(f"{r[4] / 2**30:>22.2f}" for r in rows))
            for k in rows[-1][5]["seconds"]:
                print(
                    f"  {k + ' s':<11}"
                    + "".join(f"{r[5]['seconds'].get(k, float('nan')):>22.1f}" for r in rows)
                )
            for check in ("drift", "skew", "quality", "freshness"):
                same = all(r[5].get(check, {}).get("results") == rows[0][5].get(check, {}).get(
                    "results") for r in rows)  # fmt: skip
                print(f"  {check} results {'equal' if same else 'DIFFER'} across trees")
    finally:
        release_db(redis_url, db, token)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
