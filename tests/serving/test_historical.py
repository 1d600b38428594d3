"""POST /features/historical against Feast's own get_historical_features on the serving store.

The snapshots expected are counted here (every 00:00 UTC in the range), the values are what
`get_historical_features` returns for those (id, snapshot) rows: nothing is taken from the code
under test.
"""

from __future__ import annotations

import math
from datetime import UTC, timedelta

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from featurestore.store import open_store
from serving.app import create_app
from tests.support.serving_support import API_KEY, END, shared_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = {"X-API-Key": API_KEY}
DAY = timedelta(days=1)


@pytest.fixture(scope="session")
def store(request, tmp_path_factory, redis_url, postgres_dsn):
    return shared_store(request, tmp_path_factory, redis_url, postgres_dsn)


@pytest.fixture(scope="module")
def client(store):
    with pytest.MonkeyPatch.context() as mp:
        store.apply_env(mp)
        with TestClient(create_app(store.settings())) as c:
            yield c


@pytest.fixture
def feast_store(store, monkeypatch):
    store.apply_env(monkeypatch)
    return open_store("redis", store.data_dir)


def plain(v):
    """A Feast value as the API's JSON carries it."""
    if isinstance(v, np.ndarray):
        return [plain(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def expected(feast_store, key, ids, days, features) -> dict[tuple[str, str], dict]:
    entity_df = pd.DataFrame(
        [(i, d) for i in ids for d in days], columns=[key, "event_timestamp"]
    ).astype({"event_timestamp": "datetime64[ns, UTC]"})
    df = feast_store.get_historical_features(entity_df=entity_df, features=features).to_df()
    out = {}
    for row in df.to_dict("records"):
        when = pd.Timestamp(row.pop("event_timestamp")).tz_convert(UTC).isoformat()
        out[(row.pop(key), when)] = {k: plain(v) for k, v in row.items()}
    return out


def check(answer: dict, theirs: dict, ids: list[str], days: list) -> int:
    stamps = [pd.Timestamp(d).isoformat() for d in days]
    assert [pd.Timestamp(s).isoformat() for s in answer["snapshots"]] == stamps
    got = [(r["id"], pd.Timestamp(r["snapshot"]).isoformat()) for r in answer["rows"]]
    assert got == [(i, s) for i in ids for s in stamps]  # ids in request order, then time
    compared = 0
    for r in answer["rows"]:
        mine = r["features"]
        want = theirs[(r["id"], pd.Timestamp(r["snapshot"]).isoformat())]
        assert set(mine) == set(answer["features"]) and set(mine) <= set(want)
        for name, value in mine.items():
            assert same(value, want[name]), (r["id"], r["snapshot"], name, value, want[name])
            compared += value is not None
    return compared


def test_customer_service_over_a_week_equals_get_historical_features(client, feast_store, store):
    ids = store.customers[:3]
    # from 03:00 on a day: the first snapshot is the next midnight; the end's midnight counts
    start, end = END - 6 * DAY + timedelta(hours=3), END
    days = [END - k * DAY for k in range(5, -1, -1)]
    r = client.post(
        "/features/historical",
        headers=KEY,
        json={
            "entity": "customer",
            "ids": ids,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "feature_service": "customer_360_v1",
        },
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    service = feast_store.get_feature_service("customer_360_v1")
    theirs = expected(feast_store, "customer_id", ids, days, service)
    assert check(answer, theirs, ids, days) > 0
    assert {"orders_30d", "days_since_last_order"} <= set(answer["features"])  # views and ODFV
    # the values move over the week for someone: a range, not one snapshot repeated
    orders = {(r["id"], r["snapshot"]): r["features"]["orders_90d"] for r in answer["rows"]}
    assert len(set(orders.values())) > 1


def test_product_feature_list(client, feast_store, store) -> None:
    ids = store.products[:4]
    refs = ["product_stats:product_popularity_30d", "product_copurchase:copurchase_product_ids"]
    days = [END - 2 * DAY, END - DAY, END]
    r = client.post(
        "/features/historical",
        headers=KEY,
        json={
            "entity": "product",
            "ids": ids,
            "start": days[0].isoformat(),
            "end": days[-1].isoformat(),
            "features": refs,
        },
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["features"] == ["product_popularity_30d", "copurchase_product_ids"]
    assert check(answer, expected(feast_store, "product_id", ids, days, refs), ids, days) > 0


def test_unknown_ids_are_404(client, store) -> None:
    r = client.post(
        "/features/historical",
        headers=KEY,
        json={
            "entity": "customer",
            "ids": [store.customers[0], "C-NOBODY"],
            "start": (END - DAY).isoformat(),
            "end": END.isoformat(),
            "feature_service": "customer_360_v1",
        },
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert "1 of 2 ids" in r.json()["error"]["message"] and "C-NOBODY" not in r.text


@pytest.mark.parametrize(
    "change, says",
    [
        ({"start": END.isoformat(), "end": (END - DAY).isoformat()}, "end is before start"),
        (  # hours inside one day: no midnight in range
            {
                "start": (END + timedelta(hours=1)).isoformat(),
                "end": (END + timedelta(hours=5)).isoformat(),
            },
            "no snapshot",
        ),
        ({"start": (END - 400 * DAY).isoformat(), "ids_times": 30}, "rows"),
        ({"ids_times": 101}, "at most 100 ids"),
        ({"feature_service": "ranking_model_v1"}, "customer_id"),  # pairs, not customers
        ({"feature_service": "no_such_service"}, "cannot be resolved"),
        ({"features": ["customer_activity:orders_30d"]}, "not both"),
        ({"feature_service": None, "features": ["customer_activity:nope"]}, "cannot be resolved"),
        (
            {"feature_service": None, "features": ["product_stats:product_popularity_30d"]},
            "not by customer_id",
        ),
        ({"start": "yesterday"}, "schema"),
    ],
)
def test_bad_requests_are_422(client, store, change, says) -> None:
    body = {
        "entity": "customer",
        "ids": store.customers[:1],
        "start": (END - DAY).isoformat(),
        "end": END.isoformat(),
        "feature_service": "customer_360_v1",
    }
    if n := change.pop("ids_times", None):
        body["ids"] = [f"C{k:07d}" for k in range(n)]
    body.update(change)
    r = client.post("/features/historical", headers=KEY, json=body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_request" and says in (
        error["message"] + str(error.get("problems"))
    ), error
