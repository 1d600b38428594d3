"""Raw data quality of the latest ingest batch, judged against the batches before it.

Read from what ingest leaves behind: every batch's validation report
(DIR/reports/history/validation_report-<batch>.json) and its clean files
(DIR/clean/<table>/[day=*/]part-<batch>.parquet). Nothing is re-validated.

- volume: rows per day of data (rows in / days the batch's rows cover) against the trailing median
  of the earlier batches' (event-like tables; a change log has no daily volume). A change below
  `volume_drop` or above `volume_rise` is an alert when it is also beyond chance (Poisson,
  p < 0.001 at the expected count), so a table of a few rows a day does not cry wolf;
- nulls: each optional column's null share in the batch's clean rows against the earlier batches'
  (alert when it rises by more than `null_rise` and beyond chance); columns filled in later
  (`refund_ts`) are not judged;
- quarantine: each rule's share of the table's rows against the earlier batches' (alert when it
  rises by more than `quarantine_rise`, at least doubles, and is beyond chance); a first batch is
  warned above `quarantine_first_batch`;
- export freshness: the age of the newest row of orders and events at the batch's ingest clock
  (the `now` ingest ran with) above `export_max_age_hours` (30: a daily export holds yesterday,
  and may arrive the next morning).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from scipy import stats

from pipelines.contract import TABLES
from pipelines.storage import clean_dir, partition_time_column, reports_dir

TRAILING_BATCHES = 7
ALERT_P = 0.001
FRESHNESS_TABLES = ("orders", "events")
# Filled in after the row arrives (a refund comes days after its order): a fresh batch always
# has more nulls there than the older ones, so their null share is not judged.
FILLED_LATER = {("orders", "refund_ts")}


@dataclass(frozen=True)
class QualityThresholds:
    volume_drop: float = -0.20
    volume_rise: float = 1.00
    null_rise: float = 0.05
    quarantine_rise: float = 0.01
    quarantine_first_batch: float = 0.05
    export_max_age_hours: float = 30.0


def batch_reports(data_dir: Path) -> list[dict]:
    """Every batch's validation report, oldest first."""
    history = reports_dir(data_dir) / "history"
    paths = sorted(history.glob("validation_report-*.json")) if history.exists() else []
    return [json.loads(p.read_text()) for p in paths]


def batch_files(data_dir: Path, table: str, batch: str) -> list[Path]:
    root = clean_dir(data_dir, table)
    if not root.exists():
        return []
    if TABLES[table].partitioned:
        return sorted(root.glob(f"day=*/part-{batch}.parquet"))
    return sorted(root.glob(f"part-{batch}.parquet"))


def check(
    data_dir: Path, con: duckdb.DuckDBPyConnection, t: QualityThresholds | None = None
) -> dict:
    t = t or QualityThresholds()
    reports = batch_reports(data_dir)
    if not reports:
        return {"batch": None, "results": []}
    latest, earlier = reports[-1], reports[:-1]
    batch = latest["batch"]
    now = pd.Timestamp(latest["now"])
    results: list[dict] = []
    for table, info in latest["tables"].items():
        if table not in TABLES:
            continue
        files = batch_files(data_dir, table, batch)
        results.append(_volume(data_dir, table, info, files, earlier, t))
        results += _quarantine(table, info, earlier, t)
        results += _nulls(data_dir, con, table, files, earlier, t)
        if table in FRESHNESS_TABLES and files:
            results.append(_export_age(con, table, files, now, t))
    return {
        "batch": batch,
        "ingested_at": latest.get("ingested_at"),
        "ingest_clock": latest.get("now"),
        "earlier_batches": len(earlier),
        "results": results,
    }


def _volume(data_dir, table, info, files, earlier, t) -> dict:
    base = {"check": "volume", "table": table, "rows": int(info["rows_in"])}
    if not TABLES[table].partitioned:
        return base | {"status": "ok", "note": "a change log: no daily volume to judge"}
    days = _days_spanned(files)
    rate = info["rows_in"] / days
    rates = []
    for rep in earlier[-TRAILING_BATCHES:]:
        if table in rep["tables"]:
            n = _days_spanned(batch_files(data_dir, table, rep["batch"]))
            rates.append(rep["tables"][table]["rows_in"] / n)
    base |= {"days": days, "rows_per_day": round(rate, 3)}
    if not rates:
        return base | {"status": "ok", "note": "no earlier batch to compare with"}
    median = float(np.median(rates))
    expected = median * days
    change = rate / median - 1 if median > 0 else (0.0 if rate == 0 else np.inf)
    rows = int(info["rows_in"])
    if change < 0:
        p = float(stats.poisson.cdf(rows, expected))
    else:
        p = float(stats.poisson.sf(rows - 1, expected)) if expected > 0 else 0.0
    breach = (change < t.volume_drop or change > t.volume_rise) and p < ALERT_P
    return base | {
        "trailing_median_per_day": round(median, 3),
        "change": round(float(change), 4),
        "p_value": float(f"{p:.3g}"),
        "thresholds": [t.volume_drop, t.volume_rise],
        "status": "alert" if breach else "ok",
    }


def _days_spanned(files: list[Path]) -> int:
    """Days from the batch's first day partition to its last (a day without rows counts)."""
    days = sorted(pd.Timestamp(f.parent.name.split("=", 1)[1]) for f in files)
    return (days[-1] - days[0]).days + 1 if days else 1


def _quarantine(table, info, earlier, t) -> list[dict]:
    rows = int(info["rows_in"])
    if rows == 0:
        return []
    ref_rows = sum(r["tables"][table]["rows_in"] for r in earlier if table in r["tables"])
    rules = set(info.get("by_rule", {}))
    for r in earlier:
        rules |= set(r["tables"].get(table, {}).get("by_rule", {}))
    out = []
    for rule in sorted(rules):
        n = int(info.get("by_rule", {}).get(rule, 0))
        rate = n / rows
        base = {"check": "quarantine", "table": table, "rule": rule, "rows": n, "rate": rate}
        if ref_rows == 0:
            status = "warn" if rate > t.quarantine_first_batch else "ok"
            out.append(base | {"status": status, "note": "first batch: no reference"})
            continue
        ref_n = sum(
            r["tables"][table].get("by_rule", {}).get(rule, 0)
            for r in earlier
            if table in r["tables"]
        )
        ref_rate = ref_n / ref_rows
        p = float(stats.binom.sf(n - 1, rows, max(ref_rate, 1e-6))) if n else 1.0
        spike = rate - ref_rate > t.quarantine_rise and rate > 2 * ref_rate and p < ALERT_P
        out.append(
            base
            | {
                "reference_rate": ref_rate,
                "p_value": float(f"{p:.3g}"),
                "status": "alert" if spike else "ok",
            }
        )
    return out


def _nulls(data_dir, con, table, files, earlier, t) -> list[dict]:
    if not files:
        return []
    spec = TABLES[table]
    cols = [c.name for c in spec.columns if not c.required and (table, c.name) not in FILLED_LATER]
    if not cols:
        return []
    cur = _null_counts(con, files, cols)
    ref_files = [f for r in earlier for f in batch_files(data_dir, table, r["batch"])]
    ref = _null_counts(con, ref_files, cols) if ref_files else None
    out = []
    for c in cols:
        n, nulls = cur["rows"], cur[c]
        share = nulls / n if n else 0.0
        base = {"check": "nulls", "table": table, "column": c, "null_share": round(share, 6)}
        if ref is None or ref["rows"] == 0:
            out.append(base | {"status": "ok", "note": "no earlier batch to compare with"})
            continue
        ref_share = ref[c] / ref["rows"]
        p = float(stats.binom.sf(nulls - 1, n, max(ref_share, 1e-6))) if nulls else 1.0
        breach = share - ref_share > t.null_rise and p < ALERT_P
        out.append(
            base
            | {
                "reference_share": round(ref_share, 6),
                "p_value": float(f"{p:.3g}"),
                "status": "alert" if breach else "ok",
            }
        )
    return out


def _null_counts(con, files: list[Path], cols: list[str]) -> dict:
    paths = ", ".join(f"'{f}'" for f in files)
    exprs = ", ".join(f'count(*) - count("{c}")' for c in cols)
    row = con.execute(
        f"select count(*), {exprs} from read_parquet([{paths}], union_by_name = true)"
    ).fetchall()[0]
    return {"rows": int(row[0]), **{c: int(v) for c, v in zip(cols, row[1:], strict=True)}}


def _export_age(con, table, files, now: pd.Timestamp, t) -> dict:
    col = partition_time_column(TABLES[table])
    paths = ", ".join(f"'{f}'" for f in files)
    newest = con.execute(f'select max("{col}") from read_parquet([{paths}])').fetchall()[0][0]
    newest = pd.Timestamp(newest)
    newest = newest.tz_localize("UTC") if newest.tzinfo is None else newest
    hours = (now - newest).total_seconds() / 3600
    return {
        "check": "export_freshness",
        "table": table,
        "newest_row": newest.isoformat(),
        "ingest_clock": now.isoformat(),
        "age_hours": round(hours, 2),
        "threshold_hours": t.export_max_age_hours,
        "status": "alert" if hours > t.export_max_age_hours else "ok",
    }
