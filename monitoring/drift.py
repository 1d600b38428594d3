"""Drift: each stored feature's distribution in the current window against the reference period.

How a feature is compared is declared next to it (`Feature.drift`, pipelines/specs.py), with
defaults by kind:

- `distribution`: the values as of each sampled instant (most features);
- `increment`: the change over the window's length, value(T) - value(T - L), for lifetime counts
  and sums. They only grow, so their level drifts with the shop's age by construction; how fast
  they grow is what a model relies on and what a real change moves;
- `items`: a lifetime list's items only (it fills up as the shop ages, so its length would drift
  by construction);
- `skip`: not compared, with the reason (timestamps: their age grows with the shop's).

Numbers are binned on the reference's quantiles, strings and booleans by the reference's
categories, lists by their length and by their items. A feature is flagged `alert` when its PSI
reaches its alert threshold and the test rejects "no change" at p < 0.01 with the distinct
entities as sample size, `warn` at the warn threshold and p < 0.05.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from monitoring import stats
from monitoring.snapshots import INSTANT, as_of, source_glob
from monitoring.windows import Windows
from pipelines.specs import Drift, Feature, FeatureSource, drift_policy

ALERT_P = 0.01
WARN_P = 0.05


def check(
    data_dir: Path,
    sources: dict[str, FeatureSource],
    windows: Windows,
    sample: int,
    con: duckdb.DuckDBPyConnection,
) -> list[dict]:
    """One result per declared feature of every source with data."""
    out: list[dict] = []
    lag = pd.Timedelta(days=windows.window_days)
    for source in sources.values():
        glob = source_glob(data_dir, source)
        if glob is None:
            continue
        keys = list(source.join_keys)  # an entity made of others: all its keys
        policies = {f.name: drift_policy(f) for f in source.features}
        cols = [f.name for f in source.features if policies[f.name].mode != "skip"]
        cols += sorted({p.grain for p in policies.values() if p.grain} - set(cols))
        incremental = [c for c in cols if policies[c].mode == "increment"]
        ref, cur, ref_before, cur_before = _read(
            con, glob, source, windows, cols, sample, lag if incremental else None
        )
        entities: dict[tuple[str, ...], tuple[int, int]] = {}  # distinct units, once per source
        for f in source.features:
            policy = policies[f.name]
            base = {
                "view": source.name,
                "feature": f.name,
                "dtype": f.dtype,
                "mode": policy.mode,
                "warn": policy.warn,
                "alert": policy.alert,
            }
            if policy.mode == "skip":
                out.append(base | {"status": "skipped", "reason": policy.reason})
                continue
            if policy.mode == "increment":
                r = _increment(ref, ref_before, keys, f.name)
                c = _increment(cur, cur_before, keys, f.name)
            else:
                r, c = ref[f.name], cur[f.name]
            unit = (policy.grain,) if policy.grain else tuple(keys)
            if unit not in entities:
                entities[unit] = (
                    len(ref[list(unit)].drop_duplicates()),
                    len(cur[list(unit)].drop_duplicates()),
                )
            n_ref, n_cur = entities[unit]
            out.append(base | compare(f, policy, r, c, n_ref, n_cur))
    return out


def compare(
    f: Feature, policy: Drift, ref: pd.Series, cur: pd.Series, n_ref: int, n_cur: int
) -> dict:
    """PSI, test and status of one feature; histograms for the report."""
    if len(ref) == 0 or len(cur) == 0:
        return {"status": "no_data", "reason": "no entity in the reference or current window"}
    if not ref.notna().any():
        return {
            "status": "no_reference",
            "reason": "no value in the reference period (the feature did not exist yet)",
        }
    parts: dict[str, stats.Binned] = {}
    if f.dtype in ("string_list", "float_list"):
        if policy.mode != "items":
            parts["length"] = stats.bin_numeric(stats.list_lengths(ref), stats.list_lengths(cur))
        if f.dtype == "string_list":
            parts["items"] = stats.bin_list_items(ref, cur)
    elif f.dtype in ("string", "bool"):
        parts["value"] = stats.bin_categorical(ref, cur)
    else:
        parts["value"] = stats.bin_numeric(_floats(ref), _floats(cur))
    results = {}
    for name, b in parts.items():
        p = stats.p_value(b, n_ref, n_cur)
        results[name] = {
            "psi": round(stats.psi(b.ref, b.cur), 6),
            "p_value": None if p is None else float(f"{p:.3g}"),
            "test": "ks" if b.kind == "numeric" and b.ks_stat is not None else "chi2",
            "bins": b.labels,
            "ref_counts": b.ref.tolist(),
            "cur_counts": b.cur.tolist(),
            **b.extra,
        }
    worst = max(results, key=lambda k: results[k]["psi"])
    w = results[worst]
    status = _status(w["psi"], w["p_value"], policy)
    return {
        "status": status,
        "psi": w["psi"],
        "p_value": w["p_value"],
        "test": w["test"],
        "measure": worst,
        "entities": {"reference": n_ref, "current": n_cur},
        "rows": {"reference": int(len(ref)), "current": int(len(cur))},
        "parts": results,
    }


def _status(psi: float, p: float | None, policy: Drift) -> str:
    if p is None:
        return "no_data"
    if psi >= policy.alert and p < ALERT_P:
        return "alert"
    if psi >= policy.warn and p < WARN_P:
        return "warn"
    return "ok"


def _read(con, glob, source, windows: Windows, cols, sample, lag):
    """Reference and current values in one pass over the source; with `lag`, also the values
    `lag` earlier (for increments), re-stamped at the instant they belong to."""
    ref_at = list(windows.reference_instants)
    cur_at = list(windows.current_instants)
    wanted = set(ref_at) | set(cur_at)
    if lag is not None:
        wanted |= {t - lag for t in ref_at + cur_at}
    frame = as_of(con, glob, source, sorted(wanted), cols, sample)
    at = frame[INSTANT]
    ref = frame[at.isin(ref_at)].reset_index(drop=True)
    cur = frame[at.isin(cur_at)].reset_index(drop=True)
    if lag is None:
        return ref, cur, None, None

    def before(instants):
        part = frame[at.isin([t - lag for t in instants])].copy()
        part[INSTANT] = part[INSTANT] + lag
        return part.reset_index(drop=True)

    return ref, cur, before(ref_at), before(cur_at)


def _increment(now: pd.DataFrame, before: pd.DataFrame, keys: list[str], name: str) -> pd.Series:
    """value(T) - value(T - L); an entity that did not exist at T - L started from 0."""
    on = [INSTANT, *keys]
    merged = now[[*on, name]].merge(
        before[[*on, name]], on=on, how="left", suffixes=("", "_before")
    )
    a = _floats(merged[name])
    b = np.nan_to_num(_floats(merged[f"{name}_before"]), nan=0.0)
    return pd.Series(a - b)


def _floats(s) -> np.ndarray:
    return pd.to_numeric(pd.Series(s), errors="coerce").astype("float64").to_numpy()


def policy_dict(policy: Drift) -> dict:
    return asdict(policy)
