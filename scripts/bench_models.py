"""`make bench-models`: the churn model and the ranker against their strongest simple baselines.

    python -m scripts.bench_models [--shops demo,cj] [--root data/bench-models] [--out FILE]
        [--churn-services churn_model_v1,churn_model_v2] [--only churn|ranking] [--build-only]

Shops (built under ROOT/<shop> when missing; building is set-up, not measured):
- `demo`: the generator's demo shop (`make demo`'s arguments: 2,000 customers, 300 products, 365
  days, seed 7, 1% corrupt rows): generate, ingest, features;
- `cj`: real data, dunnhumby The Complete Journey (2,469 households, 1.47M lines, 2017):
  `shopfeast import completejourney`, ingest, features;
- `s15k`: issue 18's 75k-row churn shop (15,500 customers, 1,500 products, 365 days, seed 7, 1%
  corrupt rows; `train churn` labels 74,627 rows there): generate, ingest, features, and `feast
  apply` on the embedded profile (what `train churn --data-dir ROOT/s15k` times in
  docs/training.md); `--shops s15k --build-only --root DIR` builds DIR/s15k and stops;
- `bench`: the 100k-customer shop `make bench-pipelines` builds in data/bench (never built here).

Measured, each in its own process (wall, CPU seconds, peak RSS): `shopfeast train churn --split
time` and `--split customer-time` for each of `--churn-services` (default churn_model_v2; pass
churn_model_v1,churn_model_v2 to compare the two side by side on the same store), and `shopfeast
train ranking` (`--only churn|ranking` runs one). Each card's
test figures are printed next to every baseline's, with the 95% paired-bootstrap interval of the
difference (churn: ROC-AUC of the chosen model minus the RFM baseline, customers resampled;
ranking: NDCG@10 of the ranker minus popularity, co-purchase and personal frequency, queries
resampled), as is and, for ranking, with `exclude_purchased`. A result's JSON goes to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SHOPS = ("demo", "cj", "s15k", "bench")
DEMO = ["--customers", "2000", "--products", "300", "--days", "365", "--seed", "7"]
S15K = ["--customers", "15500", "--products", "1500", "--days", "365", "--seed", "7"]
GENERATED = {"demo": DEMO, "s15k": S15K}


def _run(cmd: list[str], env: dict) -> dict:
    """Exit code, wall and CPU seconds, peak RSS (GiB) and the output of one child process."""
    began = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read().decode() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise SystemExit(f"{' '.join(cmd)} failed ({code}):\n{out[-4000:]}")
    return {
        "wall_s": round(time.perf_counter() - began, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "rss_gib": round(usage.ru_maxrss / 2**20, 2),
        "output": out,
    }


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "shopfeast.cli", *args]


def build(shop: str, root: Path, env: dict) -> Path:
    """The shop's data directory with feature sources, built when missing."""
    if shop == "bench":
        data = Path("data/bench").resolve()
        if not (data / "features" / "customer_activity").exists():
            raise SystemExit(f"{data} has no feature sources: run `make bench-pipelines` first")
        return data
    data = root / shop
    if (data / "features" / "customer_activity").exists():
        return data
    raw = root / f"raw_{shop}"
    if shop in GENERATED:
        shape = GENERATED[shop]
        _run(_cli("generate", "--out", str(raw), *shape, "--corrupt-fraction", "0.01"), env)
    else:
        _run(_cli("import", "completejourney", "--out", str(raw)), env)
    _run(_cli("ingest", str(raw), "--data-dir", str(data), "--now", "2030-01-01"), env)
    _run(_cli("features", "--data-dir", str(data)), env)
    # the registry now, so the first timed `train` does not apply it (open_store would)
    _run(_cli("apply", "--profile", "embedded", "--no-plan", "--data-dir", str(data)), env)
    return data


def _card(data: Path, model: str) -> dict:
    pointer = json.loads((data / "models" / model / "latest.json").read_text())
    return json.loads(
        (data / "models" / model / pointer["version"] / "model_card.json").read_text()
    )


def _interval(d: dict) -> str:
    return f"{d['mean']:+.3f} ({d['low']:+.3f} to {d['high']:+.3f})"


def churn_lines(card: dict) -> list[str]:
    t, base = card["metrics"]["test"], card["baseline"]
    chosen = card["chosen"]
    d = card["metrics"]["test_minus_baseline"][chosen]
    rows = card["rows"]
    bg = card.get("btyd")
    return [
        f"  churn {card['feature_service']['name']}, split {rows['split']}: "
        f"train {rows['train']['rows']:,} / test "
        f"{rows['test']['rows']:,} rows; folds validate "
        f"{sum(f['validation_rows'] for f in rows['folds']):,} rows; chosen {chosen}",
        f"    test ROC-AUC {chosen} {t[chosen]['roc_auc']:.3f}, {base} {t[base]['roc_auc']:.3f}: "
        f"difference {_interval(d)}; PR-AUC {t[chosen]['pr_auc']:.3f} vs {t[base]['pr_auc']:.3f}",
        "    every model: " + ", ".join(f"{n} {m['roc_auc']:.3f}" for n, m in t.items()),
        *(
            [
                f"    BG/NBD on {bg['fit_rows']:,} training rows: r {bg['r']:.3f}, alpha "
                f"{bg['alpha']:.3f}, a {bg['a']:.3f}, b {bg['b']:.3f} (weeks)"
            ]
            if bg
            else []
        ),
    ]


def ranking_lines(card: dict) -> list[str]:
    m = card["metrics"]["test"]
    out = [
        f"  ranking: {card['rows']['train']['queries']:,} training queries, "
        f"{m['ranker']['queries']:,} test queries, candidates hold "
        f"{m['candidates']['recall_of_candidates']:.1%} of what was bought "
        f"({m['candidates']['mean_candidates']:.0f} per query)"
    ]
    for label, block in (("as is", m), ("exclude_purchased", m.get("exclude_purchased"))):
        if not block:
            continue
        out.append(
            f"    {label}: NDCG@10 ranker {block['ranker']['ndcg@10']:.3f}; "
            + "; ".join(
                f"{n} {block[n]['ndcg@10']:.3f}, ranker - it {_interval(block['ranker_minus'][n])}"
                for n in card["metrics"]["baselines"]
            )
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shops", default="demo,cj", help=f"comma-separated, of {', '.join(SHOPS)}")
    p.add_argument("--root", type=Path, default=Path("data/bench-models"))
    p.add_argument("--out", type=Path, default=None)
    p.add_argument(
        "--churn-services",
        default="churn_model_v2",
        help="comma-separated churn services, each trained with both splits (churn_model_v1 "
        "to compare v2 with what it adds to, side by side on the same store)",
    )
    p.add_argument("--only", choices=("churn", "ranking"), default=None, help="one model only")
    p.add_argument("--build-only", action="store_true", help="build the shops, train nothing")
    args = p.parse_args()
    shops = [s.strip() for s in args.shops.split(",") if s.strip()]
    unknown = set(shops) - set(SHOPS)
    if unknown:
        raise SystemExit(f"unknown shop(s) {sorted(unknown)}: choose from {SHOPS}")
    root = args.root.resolve()
    env = {**os.environ, "SHOPFEAST_PROGRESS": "off"}
    results = {}
    for shop in shops:
        data = build(shop, root, env)
        if args.build_only:
            print(f"{shop}: {data}")
            continue
        runs = {}
        jobs = []
        if args.only != "ranking":
            for service in args.churn_services.split(","):
                for split in ("time", "customer-time"):
                    cmd = _cli("train", "churn", "--data-dir", str(data), "--split", split)
                    jobs.append((f"churn {service} {split}", [*cmd, "--service", service]))
        if args.only != "churn":
            jobs.append(("ranking", _cli("train", "ranking", "--data-dir", str(data))))
        for name, cmd in jobs:
            r = _run(cmd, env)
            card = _card(data, "ranking" if name == "ranking" else "churn")
            runs[name] = {k: v for k, v in r.items() if k != "output"} | {"card": card}
        results[shop] = runs
        print(f"{shop} ({data}):")
        for name, r in runs.items():
            lines = ranking_lines(r["card"]) if name == "ranking" else churn_lines(r["card"])
            print("\n".join(lines))
            print(f"    {r['wall_s']:.0f} s wall, {r['cpu_s']:.0f} s CPU, {r['rss_gib']:.2f} GiB")
        sys.stdout.flush()
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
