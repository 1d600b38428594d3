"""Model-card plots as PNG.

Figures are built with matplotlib's object API (`Figure`, saved through its own Agg canvas), never
through pyplot: no screen is needed and the process's backend is left alone, so a notebook that
imports the trainers keeps its inline plots (a `matplotlib.use("Agg")` here switched them off).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve


def roc_pr(y: np.ndarray, scores: dict[str, np.ndarray], out: Path) -> list[Path]:
    """ROC and precision-recall curves of several models on the same rows."""
    paths = []
    for kind in ("roc", "pr"):
        fig = Figure(figsize=(5, 4.5))
        ax = fig.subplots()
        for name, p in scores.items():
            if kind == "roc":
                x, yv, _ = roc_curve(y, p)
            else:
                yv, x, _ = precision_recall_curve(y, p)
            ax.plot(x, yv, label=name)
        if kind == "roc":
            ax.plot([0, 1], [0, 1], ls=":", c="grey")
            ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)")
        else:
            ax.axhline(float(np.mean(y)), ls=":", c="grey")
            ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test)")
        ax.legend(fontsize=8)
        paths.append(_save(fig, out / f"{kind}.png"))
    return paths


def calibration(curves: dict[str, dict[str, list[float]]], out: Path) -> Path:
    fig = Figure(figsize=(5, 4.5))
    ax = fig.subplots()
    for name, c in curves.items():
        ax.plot(c["mean_predicted"], c["observed_rate"], marker="o", label=name)
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(xlabel="mean predicted probability", ylabel="observed rate", title="Calibration (test)")
    ax.legend(fontsize=8)
    return _save(fig, out / "calibration.png")


def importance(values: pd.Series, out: Path, title: str, top: int = 20) -> Path:
    """Horizontal bars of the largest importances."""
    v = values.sort_values(ascending=False).head(top)[::-1]
    fig = Figure(figsize=(6, 0.3 * len(v) + 1.2))
    ax = fig.subplots()
    ax.barh(v.index, v.to_numpy())
    ax.set(title=title)
    ax.tick_params(axis="y", labelsize=7)
    return _save(fig, out / "feature_importance.png")


def bars(
    values: dict[str, dict[str, float]], metric_names: list[str], out: Path, name: str, title: str
) -> Path:
    """Grouped bars: one group per metric, one bar per model (ranking comparison)."""
    frame = pd.DataFrame(values).T[metric_names]
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    frame.T.plot.bar(ax=ax, rot=0)
    ax.set(title=title)
    ax.legend(fontsize=8)
    return _save(fig, out / name)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
