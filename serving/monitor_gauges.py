"""Gauges of the store's health for `/metrics`: per-view freshness from the registry, and the last
monitor run's results from DIR/reports/monitoring/latest.json (the file, not the monitor's code:
`shopfeast monitor` runs in its own job and serving only reads what it left).

Built at scrape time in a registry of their own, so a view or feature that disappears from the
report disappears from the page. The report is re-read only when its file changes.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from pipelines.storage import monitoring_latest

STATUS_VALUE = {"ok": 0, "warn": 1, "alert": 2, "not_run": -1}

_cache: dict[Path, tuple[float, dict | None]] = {}


def latest_report(data_dir: Path) -> dict | None:
    path = monitoring_latest(data_dir)
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    hit = _cache.get(path)
    if hit and hit[0] == mtime:
        return hit[1]
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):  # being replaced: the previous one stays
        return hit[1] if hit else None
    _cache[path] = (mtime, report)
    return report


def render(data_dir: Path, materialized: dict[str, datetime | None], now: datetime) -> bytes:
    reg = CollectorRegistry(auto_describe=True)
    fresh = Gauge(
        "shopfeast_feature_view_freshness_seconds",
        "Seconds since the view's materialized-up-to time in the registry.",
        ["view"],
        registry=reg,
    )
    for view, end in sorted(materialized.items()):
        if end is not None:
            fresh.labels(view).set(max((now - end).total_seconds(), 0.0))
    report = latest_report(data_dir)
    if report:
        _report_gauges(report, reg)
    return generate_latest(reg)


def _report_gauges(report: dict, reg: CollectorRegistry) -> None:
    Gauge(
        "shopfeast_monitor_last_run_timestamp_seconds",
        "When the last monitor run's clock (its --now) stood.",
        registry=reg,
    ).set(pd.Timestamp(report["now"]).timestamp())
    status = Gauge(
        "shopfeast_monitor_check_status",
        "Last monitor run per check class: 0 ok, 1 warn, 2 alert, -1 not run.",
        ["check"],
        registry=reg,
    )
    alerts = Gauge(
        "shopfeast_monitor_check_alerts",
        "Alerts per check class in the last monitor run.",
        ["check"],
        registry=reg,
    )
    for check, s in report.get("summary", {}).items():
        status.labels(check).set(STATUS_VALUE.get(s.get("status"), -1))
        alerts.labels(check).set(s.get("alerts", 0) or 0)
    drift = report.get("drift") or {}
    if drift.get("results"):
        psi = Gauge(
            "shopfeast_monitor_drift_psi",
            "PSI of each judged feature, current window against the reference (last run).",
            ["view", "feature"],
            registry=reg,
        )
        flag = Gauge(
            "shopfeast_monitor_drift_alert",
            "1 when the feature's drift is an alert in the last run.",
            ["view", "feature"],
            registry=reg,
        )
        for r in drift["results"]:
            if r.get("psi") is not None:
                psi.labels(r["view"], r["feature"]).set(r["psi"])
                flag.labels(r["view"], r["feature"]).set(1 if r["status"] == "alert" else 0)
    skew = report.get("skew") or {}
    if skew.get("results"):
        mism = Gauge(
            "shopfeast_monitor_skew_mismatches",
            "Sampled entities whose online value differs from the offline one (last run).",
            ["view", "feature"],
            registry=reg,
        )
        for r in skew["results"]:
            mism.labels(r["view"], r["feature"]).set(r["mismatches"])
    served = report.get("served") or {}
    if served.get("results"):
        spsi = Gauge(
            "shopfeast_monitor_served_psi",
            "PSI of each model input and the score, served (API log) against the test set.",
            ["model", "feature"],
            registry=reg,
        )
        for r in served["results"]:
            spsi.labels(r["model"], r["feature"]).set(r["psi"])
    health = report.get("model") or {}
    if health.get("results"):
        auc = Gauge(
            "shopfeast_monitor_model_roc_auc",
            "Realised ROC-AUC of matured churn predictions (kind=realised) and the card's test "
            "figure (kind=test).",
            ["model", "version", "kind"],
            registry=reg,
        )
        for r in health["results"]:
            auc.labels(r["model"], r["version"], "realised").set(r["roc_auc"])
            auc.labels(r["model"], r["version"], "test").set(r["test_roc_auc"])
