"""The monitor against a real (embedded) Feast store: a materialization 4 days old is a freshness
alert, online equals offline as of the materialization, and one corrupted online value is a skew
alert naming its feature and entity."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from featurestore import store as feast_store
from monitoring import run
from pipelines import realtime
from pipelines.sources import sources
from tests.support import training_shop

END = datetime(2025, 5, 1, tzinfo=UTC)  # the small store's last snapshot (120 days from Jan 1)
NOW = pd.Timestamp(END) + pd.Timedelta(hours=6)
MATERIALIZED = END - pd.Timedelta(days=4)
CORRUPT = ("customer_activity", "orders_90d")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    shared = training_shop.small_store(tmp_path_factory.mktemp)  # applied, never materialized
    copy = tmp_path_factory.mktemp("monitor_feast") / "data"
    shutil.copytree(shared, copy)  # the registry still names the shared sources: read only
    feast_store.materialize("embedded", copy, end=MATERIALIZED)
    return copy


def monitor(data: Path, fail_on: str, checks: str) -> tuple[int, dict]:
    opts = run.Options(
        data_dir=data,
        fail_on=run.parse_classes(fail_on, "--fail-on"),
        checks=run.parse_classes(checks, "--checks"),
        now=NOW,
        skew_entities=1000,
    )
    code, out, _ = run.monitor(opts)
    return code, out


def test_a_materialization_four_days_old_is_a_freshness_alert(data: Path) -> None:
    code, out = monitor(data, "freshness", "freshness,skew")
    assert code == 1
    fr = {(r["check"], r["view"]): r for r in out["freshness"]["results"]}
    for view in sources():
        online = fr[("materialized", view)]
        assert online["status"] == "alert"
        assert online["age_hours"] == pytest.approx(4 * 24 + 6)
        assert fr[("offline", view)]["status"] == "ok"  # the pipelines are not behind
    # as of the materialization, online and offline agree on every feature of every service
    skew = out["skew"]
    assert skew["instant"] == MATERIALIZED.isoformat()
    assert out["summary"]["skew"]["status"] == "ok"
    # every stored view is compared, itself or through an on-demand view reading it (the sparse
    # customer x product view is served through customer_product_affinity, zeros for no pair)
    store = feast_store.open_store("embedded", data)
    odfvs = {v.name: v for v in store.list_on_demand_feature_views()}
    compared = {r["view"] for r in skew["results"]}
    for name in [v for v in compared if v in odfvs]:
        compared |= set(odfvs[name].source_feature_view_projections)
    # of the real-time views only customer_session's lists are served (candidate_session_v1);
    # rows the stream pushed after the instant are not compared (the last test), and the views'
    # agreement with the batch side is tests/streaming's reconciliation test
    assert compared >= set(sources()) - set(realtime.SOURCES)
    pairs = [r for r in skew["results"] if r["view"] == "customer_product_affinity"]
    assert pairs and all(r["status"] == "ok" for r in pairs)
    assert max(r["non_null_offline"] for r in pairs) > 0
    assert skew["entities"]["customer_id x product_id"] > 0  # pairs that happened
    assert sum(r["non_null_offline"] for r in skew["results"]) > 10_000


def test_a_corrupted_online_value_is_a_skew_alert_naming_the_feature(data: Path) -> None:
    view, feature = CORRUPT
    store = feast_store.open_store("embedded", data)
    rows = pd.read_parquet(data / "features" / view)
    rows = rows[rows["event_timestamp"] <= MATERIALIZED]
    row = rows.sort_values("event_timestamp").groupby("customer_id").tail(1).iloc[[7]].copy()
    customer = row["customer_id"].iloc[0]
    row[feature] = row[feature] + 5
    store.write_to_online_store(view, row)

    code, out = monitor(data, "skew", "skew")
    assert code == 1
    bad = [r for r in out["skew"]["results"] if r["status"] == "alert"]
    assert [(r["view"], r["feature"]) for r in bad] == [CORRUPT]
    assert bad[0]["mismatches"] == 1
    assert bad[0]["examples"][0]["customer_id"] == customer
    assert bad[0]["examples"][0]["online"] == bad[0]["examples"][0]["offline"] + 5
    assert "churn_model_v1" in bad[0]["services"]


def test_a_row_the_stream_pushed_after_the_materialization_is_not_skew(data: Path) -> None:
    """customer_session is served (candidate_session_v1) and pushed by `shopfeast stream`: a row
    stamped after the instant the monitor compares at is ahead of the batch side, not skew."""
    store = feast_store.open_store("embedded", data)
    rows = pd.read_parquet(data / "features" / "customer_activity")
    customer = rows.loc[rows["event_timestamp"] <= MATERIALIZED, "customer_id"].iloc[3]
    pushed = MATERIALIZED + pd.Timedelta(hours=1)
    row = {f.name: None for f in realtime.SOURCES["customer_session"].features}
    row.update(
        customer_id=customer,
        event_timestamp=pushed,
        created_timestamp=pushed,
        session_events=1,
        session_views=1,
        session_carts=1,
        last_event_ts=pushed,
        recent_carted_product_ids=["no-such-product"],
        recent_viewed_product_ids=["no-such-product"],
    )
    store.write_to_online_store("customer_session", pd.DataFrame([row]))

    _, out = monitor(data, "skew", "skew")
    session = [r for r in out["skew"]["results"] if r["view"] == "customer_session"]
    assert {r["feature"] for r in session} >= {"recent_carted_product_ids"}
    assert all(r["status"] == "ok" and r["ahead_of_batch"] == 1 for r in session)
    assert all(
        r["ahead_of_batch"] == 0 for r in out["skew"]["results"] if r["view"] != "customer_session"
    )


def test_a_list_in_another_order_online_is_a_skew_alert_naming_the_feature(data: Path) -> None:
    """Lists are compared item by item, in order: the same items reversed online is skew."""
    view, feature = "customer_activity", "recent_product_ids"
    store = feast_store.open_store("embedded", data)
    rows = pd.read_parquet(data / "features" / view)
    rows = rows[rows["event_timestamp"] <= MATERIALIZED]
    latest = rows.sort_values("event_timestamp").groupby("customer_id").tail(1)
    many = latest[latest[feature].map(lambda v: v is not None and len(set(v)) > 1)]
    row = many.iloc[[0]].copy()
    customer = row["customer_id"].iloc[0]
    items = list(row[feature].iloc[0])
    row[feature] = [items[::-1]]
    store.write_to_online_store(view, row)

    _, out = monitor(data, "skew", "skew")
    hit = [r for r in out["skew"]["results"] if (r["view"], r["feature"]) == (view, feature)]
    assert hit and hit[0]["status"] == "alert"
    assert hit[0]["mismatches"] == 1
    example = hit[0]["examples"][0]
    assert example["customer_id"] == customer
    assert example["offline"] == [str(i) for i in items][:5] + (["..."] if len(items) > 5 else [])
    assert example["online"] == [str(i) for i in items[::-1]][:5] + (
        ["..."] if len(items) > 5 else []
    )
