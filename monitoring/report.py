"""The monitor's outputs: report.json, a self-contained report.html, latest.json, a summary table.

The HTML has no external reference (inline CSS, histograms as inline SVG), so it opens from a CI
artifact or an e-mail attachment without a network.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipelines.storage import monitoring_dir, monitoring_latest
from shopconfig.progress import console as results_console

CLASSES = ("quality", "freshness", "drift", "skew", "served", "model")
STATUS_ORDER = {"alert": 0, "warn": 1, "ok": 2}
COLOURS = {"alert": "#c62828", "warn": "#ef6c00", "ok": "#2e7d32", "not_run": "#757575"}


def latest_path(data_dir: Path) -> Path:
    return monitoring_latest(data_dir)


def rank_drift(results: list[dict]) -> list[dict]:
    """Alerts first, then warnings, each by PSI, largest first; unjudged features last."""
    return sorted(
        results,
        key=lambda r: (STATUS_ORDER.get(r["status"], 3), -(r.get("psi") or 0.0), r["view"]),
    )


def _results(out: dict, name: str) -> list[dict]:
    part = out.get(name) or {}
    return part.get("results", []) if isinstance(part, dict) else []


def summarise(out: dict, checks) -> dict:
    summary = {}
    for name in CLASSES:
        part = out.get(name)
        if name not in checks:
            summary[name] = {"status": "not_run", "reason": "not asked for"}
            continue
        if not part or part.get("not_run"):
            summary[name] = {"status": "not_run", "reason": (part or {}).get("not_run")}
            continue
        rs = _results(out, name)
        alerts = [_label(name, r) for r in rs if r.get("status") == "alert"]
        warns = [_label(name, r) for r in rs if r.get("status") == "warn"]
        status = "alert" if alerts else "warn" if warns else "ok"
        summary[name] = {
            "status": status,
            "checked": len(rs),
            "alerts": len(alerts),
            "warnings": len(warns),
            "alerting": alerts,
        }
    return summary


def _label(name: str, r: dict) -> str:
    if name == "quality":
        what = r.get("rule") or r.get("column") or ""
        return f"{r['check']} {r['table']}{'.' + what if what else ''}"
    if name == "freshness":
        return f"{r['check']} {r.get('view') or r.get('entity')}"
    if name == "served":
        return f"{r['model']}.{r['feature']}"
    if name == "model":
        return (
            f"{r['model']} {r['version']} ROC-AUC {r['roc_auc']:.3f} (test {r['test_roc_auc']:.3f})"
        )
    return f"{r['view']}.{r['feature']}"


def write(data_dir: Path, out: dict) -> Path:
    folder = monitoring_dir(data_dir) / out["run_id"]
    folder.mkdir(parents=True, exist_ok=True)
    out["report_json"] = str(folder / "report.json")
    out["report_html"] = str(folder / "report.html")
    body = json.dumps(out, indent=1, default=str) + "\n"
    (folder / "report.json").write_text(body)
    (folder / "report.html").write_text(render_html(out))
    tmp = latest_path(data_dir).with_suffix(".json.tmp")
    tmp.write_text(body)
    os.replace(tmp, latest_path(data_dir))
    return folder


def print_summary(out: dict, console: Console | None = None) -> None:
    console = console or results_console()
    table = Table(title=f"monitor {out['run_id']} (now {out['now'][:19]})")
    for col in ("check", "status", "checked", "alerts", "warnings"):
        table.add_column(col)
    for name, s in out["summary"].items():
        colour = {"alert": "red", "warn": "yellow", "ok": "green"}.get(s["status"], "dim")
        table.add_row(
            name + (" *" if name in out["fail_on"] else ""),
            f"[{colour}]{s['status']}[/{colour}]",
            str(s.get("checked", "")),
            str(s.get("alerts", "")),
            str(s.get("warnings", "")),
        )
    console.print(table)
    if out["fail_on"]:
        console.print("* named in --fail-on")
    for name, s in out["summary"].items():
        alerting = s.get("alerting", [])
        if alerting:
            more = f", +{len(alerting) - 6} more" if len(alerting) > 6 else ""
            console.print(f"{name} alerts: {', '.join(alerting[:6])}{more}", markup=False)
        elif s["status"] == "not_run" and s.get("reason") != "not asked for":
            console.print(f"{name} not run: {s.get('reason')}", markup=False)
    console.print(f"report: {out['report_html']}", markup=False, highlight=False, soft_wrap=True)


# --- HTML ------------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5}.badge{color:#fff;border-radius:4px;padding:1px 8px;font-weight:600}
.grid{display:flex;flex-wrap:wrap;gap:16px}.card{border:1px solid #ddd;padding:8px;width:440px}
.muted{color:#777;font-size:12px}
"""


def _badge(status: str) -> str:
    colour = COLOURS.get(status, "#757575")
    return f'<span class="badge" style="background:{colour}">{html.escape(status)}</span>'


def _e(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape("" if v is None else str(v))


def _table(rows: list[dict], cols: list[str]) -> str:
    if not rows:
        return '<p class="muted">nothing to show</p>'
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append(f"<td>{_badge(v) if c == 'status' else _e(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def histogram_svg(labels: list[str], ref: list[float], cur: list[float], w=420, h=170) -> str:
    """Reference (grey) and current (blue) shares per bin, side by side, inline SVG."""
    n = max(len(labels), 1)
    rs, cs = sum(ref) or 1, sum(cur) or 1
    p = [x / rs for x in ref]
    q = [x / cs for x in cur]
    top = max(p + q + [1e-9])
    pad, base = 4, h - 40
    slot = (w - 2 * pad) / n
    bar = max(slot / 2 - 1, 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}">']
    for i, label in enumerate(labels):
        x = pad + i * slot
        for j, (share, colour) in enumerate(((p[i], "#9e9e9e"), (q[i], "#1e88e5"))):
            bh = (base - 10) * share / top
            parts.append(
                f'<rect x="{x + j * bar:.1f}" y="{base - bh:.1f}" width="{bar:.1f}" '
                f'height="{bh:.1f}" fill="{colour}"><title>{html.escape(label)}: '
                f"{'reference' if j == 0 else 'current'} {share:.1%}</title></rect>"
            )
        short = html.escape(label if len(label) <= 10 else label[:9] + "…")
        parts.append(
            f'<text x="{x + slot / 2:.1f}" y="{base + 12}" font-size="9" text-anchor="end" '
            f'transform="rotate(-35 {x + slot / 2:.1f} {base + 12})">{short}</text>'
        )
    parts.append(
        f'<text x="{w - 150}" y="12" font-size="10" fill="#9e9e9e">■ reference</text>'
        f'<text x="{w - 75}" y="12" font-size="10" fill="#1e88e5">■ current</text></svg>'
    )
    return "".join(parts)


def render_html(out: dict) -> str:
    s = out["summary"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>shopfeast monitor {html.escape(out['run_id'])}</title><style>{CSS}</style>",
        "</head><body>",
        f"<h1>shopfeast monitor {html.escape(out['run_id'])}</h1>",
        f"<p class='muted'>now {_e(out['now'])} · data {_e(out['data_dir'])} · profile "
        f"{_e(out['profile'])} · --fail-on {_e(','.join(out['fail_on']) or 'none')} · exit "
        f"{_e(out.get('exit_code'))}</p>",
        _table(
            [
                {
                    "check": k,
                    "status": v["status"],
                    "alerts": v.get("alerts"),
                    "warnings": v.get("warnings"),
                    "checked": v.get("checked"),
                    "alerting": ", ".join(v.get("alerting", [])[:8]) or v.get("reason"),
                }
                for k, v in s.items()
            ],
            ["check", "status", "alerts", "warnings", "checked", "alerting"],
        ),
    ]
    parts += _drift_html(out)
    parts += _quality_html(out)
    parts += _freshness_html(out)
    parts += _skew_html(out)
    parts += _served_html(out)
    parts += _model_html(out)
    parts.append("</body></html>")
    return "\n".join(parts)


def _not_run(out: dict, name: str) -> list[str] | None:
    part = out.get(name)
    if part is None:
        return [f"<h2>{name}</h2><p class='muted'>not asked for</p>"]
    if part.get("not_run"):
        return [f"<h2>{name}</h2><p>{_badge('not_run')} {_e(part['not_run'])}</p>"]
    return None


def _drift_html(out: dict) -> list[str]:
    skip = _not_run(out, "drift")
    if skip:
        return skip
    d = out["drift"]
    w = d["windows"]
    parts = [
        "<h2>drift</h2>",
        f"<p class='muted'>reference {_e(w['reference']['start'][:10])} .. "
        f"{_e(w['reference']['end'][:10])} ({_e(w['reference']['from'])}), "
        f"{len(w['reference']['instants'])} instants; current {_e(w['current']['start'][:10])} .. "
        f"{_e(w['current']['end'][:10])}, {len(w['current']['instants'])} daily instants. "
        "PSI on bins fixed by the reference; flagged when PSI reaches the feature's threshold and "
        "the test (KS or chi-squared, distinct entities as sample size) rejects no change.</p>",
    ]
    flagged = [r for r in d["results"] if r["status"] in ("alert", "warn")]
    parts.append("<div class='grid'>")
    for r in flagged:
        part = r["parts"][r["measure"]]
        parts.append(
            f"<div class='card'><b>{_e(r['view'])}.{_e(r['feature'])}</b> {_badge(r['status'])}"
            f"<div class='muted'>{_e(r['mode'])} · {_e(r['measure'])} · PSI {r['psi']:.3f} "
            f"(warn {r['warn']}, alert {r['alert']}) · {r['test']} p {_e(r['p_value'])} · "
            f"entities {r['entities']['reference']} / {r['entities']['current']}</div>"
            + histogram_svg(part["bins"], part["ref_counts"], part["cur_counts"])
            + "</div>"
        )
    parts.append("</div>")
    rows = [
        {
            "view": r["view"],
            "feature": r["feature"],
            "mode": r["mode"],
            "status": r["status"],
            "psi": r.get("psi"),
            "p_value": r.get("p_value"),
            "note": r.get("reason") or r.get("measure"),
        }
        for r in d["results"]
    ]
    parts.append(_table(rows, ["view", "feature", "mode", "status", "psi", "p_value", "note"]))
    return parts


def _quality_html(out: dict) -> list[str]:
    skip = _not_run(out, "quality")
    if skip:
        return skip
    q = out["quality"]
    rs = q["results"]
    parts = [
        "<h2>raw data quality</h2>",
        f"<p class='muted'>batch {_e(q['batch'])} ingested {_e(q.get('ingested_at'))} "
        f"(ingest clock {_e(q.get('ingest_clock'))}); {q['earlier_batches']} earlier batches</p>",
    ]
    for check, cols in (
        (
            "volume",
            [
                "table",
                "status",
                "rows",
                "days",
                "rows_per_day",
                "trailing_median_per_day",
                "change",
                "p_value",
                "note",
            ],
        ),
        ("export_freshness", ["table", "status", "newest_row", "age_hours", "threshold_hours"]),
        (
            "quarantine",
            ["table", "rule", "status", "rows", "rate", "reference_rate", "p_value", "note"],
        ),
        ("nulls", ["table", "column", "status", "null_share", "reference_share", "p_value"]),
    ):
        sel = [r for r in rs if r["check"] == check]
        if check == "nulls":
            sel = [r for r in sel if r["status"] != "ok" or r["null_share"] > 0]
        parts.append(f"<h3>{check}</h3>" + _table(sel, cols))
    return parts


def _freshness_html(out: dict) -> list[str]:
    skip = _not_run(out, "freshness")
    if skip:
        return skip
    f = out["freshness"]
    rs = f["results"]
    parts = ["<h2>feature freshness</h2>"]
    if f.get("online_not_run"):
        parts.append(f"<p>{_badge('not_run')} online: {_e(f['online_not_run'])}</p>")
    parts.append(
        _table(
            [r for r in rs if r["check"] in ("offline", "materialized")],
            [
                "check",
                "view",
                "status",
                "computed_up_to",
                "newest_row",
                "materialized_up_to",
                "age_hours",
                "note",
            ],
        )
    )
    keys = [r for r in rs if r["check"] == "key_expiry"]
    if keys:
        parts.append(
            _table(
                keys,
                [
                    "entity",
                    "status",
                    "sampled",
                    "missing",
                    "near_expiry",
                    "min_ttl_hours",
                    "profile_ttl_hours",
                ],
            )
        )
    return parts


def _skew_html(out: dict) -> list[str]:
    skip = _not_run(out, "skew")
    if skip:
        return skip
    k = out["skew"]
    rows = [
        r | {"services": ", ".join(r["services"]), "examples": json.dumps(r["examples"])[:300]}
        for r in k["results"]
    ]
    return [
        "<h2>training/serving skew</h2>",
        f"<p class='muted'>online vs offline as of {_e(k['instant'])}; sampled entities "
        f"{_e(k['entities'])}</p>",
        _table(
            rows,
            [
                "view",
                "feature",
                "status",
                "mismatches",
                "rows",
                "non_null_offline",
                "services",
                "examples",
            ],
        ),
    ]


def _served_html(out: dict) -> list[str]:
    skip = _not_run(out, "served")
    if skip:
        return skip
    v = out["served"]
    parts = [
        "<h2>served against the test set</h2>",
        f"<p class='muted'>what the API scored in {_e(v['window']['start'][:10])} .. "
        f"{_e(v['window']['end'][:10])} (its bounded log) against the model's test rows: each "
        "input column as the model saw it, and the score. PSI on the test set's quantile bins, KS "
        f"at the distinct entities. {_e('; '.join(f'{m}: {n}' for m, n in v['models'].items()))}"
        "</p>",
        "<div class='grid'>",
    ]
    for r in v["results"]:
        if r["status"] in ("alert", "warn") or r["feature"] == "score":
            part = r["parts"]["value"]
            parts.append(
                f"<div class='card'><b>{_e(r['model'])}.{_e(r['feature'])}</b> "
                f"{_badge(r['status'])}<div class='muted'>PSI {r['psi']:.3f} · ks p "
                f"{_e(r['p_value'])} · test {r['entities']['reference']} / served "
                f"{r['entities']['served']}</div>"
                + histogram_svg(part["bins"], part["ref_counts"], part["cur_counts"])
                + "</div>"
            )
    parts.append("</div>")
    cols = ["model", "feature", "status", "psi", "p_value", "ref_mean", "cur_mean"]
    parts.append(_table(v["results"], cols))
    return parts


def _model_html(out: dict) -> list[str]:
    skip = _not_run(out, "model")
    if skip:
        return skip
    m = out["model"]
    rows = [r | {"matured": r["predictions"]["labelled"]} for r in m["results"]]
    return [
        "<h2>model health (matured labels)</h2>",
        f"<p class='muted'>churn predictions served at t, labelled at t + horizon from the clean "
        f"orders (data end {_e(m['data_end'][:10])}); realised ROC-AUC against the card's test "
        f"figure. {_e('; '.join(f'{v}: {n}' for v, n in m['versions'].items()))}</p>",
        _table(
            rows,
            [
                "model",
                "version",
                "status",
                "matured",
                "roc_auc",
                "test_roc_auc",
                "drop",
                "z",
                "positive_rate",
                "test_positive_rate",
            ],
        ),
    ]
