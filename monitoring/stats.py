"""Drift statistics: PSI on bins fixed by the reference, and a test that knows its sample size.

Pure numpy/scipy, no I/O. A distribution is summarised as counts over bins chosen on the
reference only (quantile edges for numbers, the reference's categories for strings and booleans,
length and top items for lists), with one bin for nulls, so the current window is measured on the
reference's ruler and a null spike is drift too.

PSI = sum((q - p) * ln(q / p)) over bins, with p the reference's shares and q the current's (a
half count is added to every bin so an empty bin does not make it infinite). Its size says how
much moved; with few entities it also moves by chance (about (bins - 1) * (1/n + 1/m) under no
change), so a flag also needs the test to reject "same distribution" at the effective sample size:
the distinct entities behind each side, not the rows (the same customer read on 7 days is one
observation, not 7).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

NUMERIC_BINS = 10
TOP_CATEGORIES = 20
NULL = "(null)"
OTHER = "(other)"


@dataclass
class Binned:
    """Reference and current counts over the same bins."""

    labels: list[str]
    ref: np.ndarray
    cur: np.ndarray
    kind: str  # numeric | categorical
    ks_stat: float | None = None  # numeric only: the two-sample KS statistic on the raw values
    extra: dict = field(default_factory=dict)


def psi(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    ref = np.asarray(ref_counts, dtype=np.float64) + 0.5
    cur = np.asarray(cur_counts, dtype=np.float64) + 0.5
    p, q = ref / ref.sum(), cur / cur.sum()
    return float(np.sum((q - p) * np.log(q / p)))


def numeric_edges(ref: np.ndarray, bins: int = NUMERIC_BINS) -> np.ndarray:
    """Inner edges at the reference's quantiles; ties collapse (a count that is mostly 0 keeps a
    bin of its own for 0)."""
    ref = ref[~np.isnan(ref)]
    if len(ref) == 0:
        return np.array([])
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1], method="lower"))
    return edges[edges > ref.min()]  # the first bin is "below the next edge", never empty


def bin_numeric(ref: np.ndarray, cur: np.ndarray, bins: int = NUMERIC_BINS) -> Binned:
    ref = np.asarray(ref, dtype=np.float64)
    cur = np.asarray(cur, dtype=np.float64)
    edges = numeric_edges(ref, bins)
    n_bins = len(edges) + 1

    def count(x: np.ndarray) -> np.ndarray:
        valid = x[~np.isnan(x)]
        c = np.bincount(np.searchsorted(edges, valid, side="right"), minlength=n_bins)
        return np.append(c, np.isnan(x).sum())

    labels = _edge_labels(edges) + [NULL]
    rv, cv = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    # the statistic only: its p-value comes from p_value at the entities' sample size
    ks = ks_statistic(rv, cv) if len(rv) and len(cv) else None
    extra = {
        "ref_mean": _f(rv.mean()) if len(rv) else None,
        "cur_mean": _f(cv.mean()) if len(cv) else None,
        "ref_median": _f(np.median(rv)) if len(rv) else None,
        "cur_median": _f(np.median(cv)) if len(cv) else None,
    }
    return Binned(labels, count(ref), count(cur), "numeric", ks, extra)


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic, computed as `scipy.stats.ks_2samp` does
    (same steps, same float), without the p-value it would also compute (half of drift's
    statistics time on 10,000-entity samples) and then throw away."""
    a, b = np.sort(a), np.sort(b)
    both = np.concatenate([a, b])
    diff = np.searchsorted(a, both, side="right") / len(a) - (
        np.searchsorted(b, both, side="right") / len(b)
    )
    return float(max(np.clip(-diff.min(), 0, 1), diff.max()))


def _counts(values: pd.Series) -> pd.Series:
    v = pd.Series(values, dtype=object)
    return v.where(v.notna(), NULL).astype(str).value_counts()


def bin_categorical(ref, cur, top: int = TOP_CATEGORIES) -> Binned:
    """Categories seen in the reference (the `top` commonest), the rest as other, nulls apart."""
    ref_c, cur_c = _counts(ref), _counts(cur)
    cats = [c for c in ref_c.index if c != NULL][:top]
    labels = cats + [OTHER, NULL]

    def count(c: pd.Series) -> np.ndarray:
        known = c.reindex(cats).fillna(0).to_numpy(np.int64)
        null = int(c.get(NULL, 0))
        other = int(c.sum()) - int(known.sum()) - null
        return np.concatenate([known, [other, null]]).astype(np.int64)

    return Binned(labels, count(ref_c), count(cur_c), "categorical")


def bin_list_items(ref, cur, top: int = TOP_CATEGORIES) -> Binned:
    """The items of list values (each occurrence counts), top items of the reference, rest other."""
    return bin_categorical(_flatten(ref), _flatten(cur), top)


def list_lengths(values) -> np.ndarray:
    v = pd.Series(values, dtype=object)
    out = np.full(len(v), np.nan)
    ok = v.notna().to_numpy()
    out[ok] = [len(x) for x in v[ok]]
    return out


def p_value(b: Binned, n_ref: int, n_cur: int) -> float | None:
    """Probability of a difference this large by chance, at n_ref and n_cur independent
    observations (distinct entities): KS for numbers, chi-squared on the bins otherwise."""
    if n_ref < 2 or n_cur < 2:
        return None
    if b.kind == "numeric" and b.ks_stat is not None:
        # Kolmogorov's limiting distribution at the effective size: close to the exact
        # two-sample p even for a handful (3 against 3, fully apart: 0.10 exact, 0.10 here).
        en = n_ref * n_cur / (n_ref + n_cur)
        return float(stats.kstwobign.sf(b.ks_stat * np.sqrt(en)))
    ref = b.ref * (n_ref / max(b.ref.sum(), 1))
    cur = b.cur * (n_cur / max(b.cur.sum(), 1))
    keep = (ref + cur) > 0
    if keep.sum() < 2:
        return 1.0
    table = np.vstack([ref[keep], cur[keep]])
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    return float(p)


def _edge_labels(edges: np.ndarray) -> list[str]:
    if len(edges) == 0:
        return ["all"]
    e = [_fmt(x) for x in edges]
    return (
        [f"< {e[0]}"]
        + [f"{a} to < {b}" for a, b in zip(e[:-1], e[1:], strict=True)]
        + [f">= {e[-1]}"]
    )


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _f(x) -> float:
    return float(round(float(x), 6))


def _flatten(values) -> pd.Series:
    v = pd.Series(values, dtype=object)
    return v[v.notna()].explode().dropna()
