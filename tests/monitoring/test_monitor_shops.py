"""The monitor on generated shops: a known shift is flagged on the shifted features only, its
unshifted control (same seed) raises nothing, a half-empty batch is a volume alert, and the exit
codes follow --fail-on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from monitoring import run
from tests.support import monitor_shops as shops

# What the shift (prices x1.5, half the sessions and orders, one category collapsing) must show.
MUST_ALERT = {
    "product_stats.product_price",
    "product_stats.product_views_30d",
    "customer_activity.sessions_30d",
    "customer_activity.events_30d",
    "customer_activity.orders_30d",
}
# Features the shift cannot move: who the customers are, what the products are, what reviews say,
# and ratios whose numerator and denominator the shift scales alike.
UNSHIFTED_VIEWS = {"customer_profile", "customer_reviews"}
UNSHIFTED = {
    "product_stats.category",
    "product_stats.subcategory",
    "product_stats.brand",
    "product_stats.product_is_active",
    "product_stats.product_price_pct_in_category",
    "product_stats.category_product_count",
    "product_stats.product_review_count",
    "product_stats.product_avg_rating",
    "product_stats.product_avg_sentiment",
    "product_stats.product_refund_rate_90d",
    "customer_activity.refund_rate_90d",
    "customer_activity.avg_session_length_30d",
    "customer_activity.cart_abandonment_rate_30d",
}


@pytest.fixture(scope="module")
def control(tmp_path_factory) -> Path:
    return shops.shop(tmp_path_factory.mktemp, "control")


@pytest.fixture(scope="module")
def shifted(tmp_path_factory) -> Path:
    return shops.shop(tmp_path_factory.mktemp, "shifted")


def monitor(data: Path, fail_on: str, **kw) -> tuple[int, dict]:
    opts = run.Options(
        data_dir=data,
        reference=kw.pop("reference", shops.REFERENCE),
        fail_on=run.parse_classes(fail_on, "--fail-on"),
        checks=run.parse_classes(kw.pop("checks", "quality,drift"), "--checks"),
        now=shops.NOW,
        **kw,
    )
    code, out, folder = run.monitor(opts)
    assert json.loads((folder / "report.json").read_text())["exit_code"] == code
    assert (
        "<svg" in (folder / "report.html").read_text()
        or out["summary"]["drift"].get("alerts", 0) == 0
    )
    return code, out


def alerts(out: dict, check: str) -> set[str]:
    return {f"{r['view']}.{r['feature']}" for r in out[check]["results"] if r["status"] == "alert"}


def test_the_shifted_shop_is_flagged_on_the_shifted_features_only(shifted: Path) -> None:
    code, out = monitor(shifted, "quality,drift")
    flagged = alerts(out, "drift")
    assert code == 1
    assert flagged >= MUST_ALERT, f"missed: {sorted(MUST_ALERT - flagged)}"
    wrong = {f for f in flagged if f in UNSHIFTED or f.split(".")[0] in UNSHIFTED_VIEWS}
    assert not wrong, f"flagged although the shift cannot move them: {sorted(wrong)}"
    # ranked: alerts first, largest PSI first; each alert has its two histograms
    ranked = [r for r in out["drift"]["results"] if r["status"] == "alert"]
    assert [r["psi"] for r in ranked] == sorted((r["psi"] for r in ranked), reverse=True)
    part = ranked[0]["parts"][ranked[0]["measure"]]
    assert len(part["ref_counts"]) == len(part["cur_counts"]) == len(part["bins"])


def test_the_unshifted_control_of_the_same_seed_raises_no_alert(control: Path) -> None:
    code, out = monitor(control, "quality,drift")
    assert code == 0, out["summary"]
    assert out["summary"]["quality"]["alerts"] == 0
    assert out["summary"]["drift"].get("alerts", 0) == 0
    modes = {f"{r['view']}.{r['feature']}": r["mode"] for r in out["drift"]["results"]}
    assert modes["customer_activity.lifetime_orders"] == "increment"  # grows with age: its rate
    assert modes["customer_profile.signup_ts"] == "skip"  # tenure = the shop's age
    # the last weekly export was judged against the batches before it, table by table
    assert out["quality"]["earlier_batches"] == shops.WEEKS
    volume = {r["table"]: r for r in out["quality"]["results"] if r["check"] == "volume"}
    assert volume["orders"]["days"] == 7 and "trailing_median_per_day" in volume["orders"]


def test_half_the_orders_missing_is_a_volume_alert(control: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(control.parent / "before_last_batch", data)
    last = control.parent / f"batch{shops.WEEKS}"
    full = len(pd.read_parquet(last / "orders.parquet"))
    left = shops.drop_half_the_orders(last, tmp_path / "half")
    shops.ingest(tmp_path / "half", data, shops.NOW)
    code, out = monitor(data, "quality", checks="quality")
    volume = {r["table"]: r for r in out["quality"]["results"] if r["check"] == "volume"}
    assert code == 1
    assert volume["orders"]["status"] == "alert"
    assert volume["orders"]["rows"] == left < full
    assert volume["orders"]["change"] < -0.2
    assert volume["events"]["status"] == "ok"  # only what went missing


def test_exit_codes(control: Path, tmp_path: Path) -> None:
    # a breach outside --fail-on does not fail the run; inside it does
    code, _ = monitor(control, "", reference="2025-01-01:2025-01-20")
    assert code == 0
    code, out = monitor(control, "drift", reference="2025-01-01:2025-01-20")
    assert out["summary"]["drift"]["alerts"] > 0 and code == 1  # warm-up vs a full window
    # missing data and bad usage: 2, naming what is missing
    assert run.main(tmp_path / "nothing") == 2
    assert run.main(control, fail_on="skew", checks="skew") == 2  # no registry here
    assert run.main(control, fail_on="latency") == 2
    assert run.main(control, reference="2025-05-01:2025-04-01") == 2
    assert run.main(control, reference_model="churn") == 2  # no model card in this store
