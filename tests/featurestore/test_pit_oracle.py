"""The point-in-time contract, checked by an independent oracle (tests/support/oracle.py).

Every named contract feature is recomputed from the clean tables at a few hundred (entity, t) pairs
- random instants, window-exit days, cancelled orders, refunds, guests, customers who never do
anything, customers before their signup, products before their creation, price and profile changes,
the year boundary - and compared with the value shopfeast's offline store (featurestore.offline,
what training reads) serves at t, itself checked against the source row the contract says it
serves (the latest with `event_timestamp <= t`). Two shops: a hand-made one written straight into
the clean layout (always), and a generated one that goes through the generator and the ingest
(when they exist).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines import run as pipeline_run
from pipelines import sources
from tests.support import feast_support, oracle, oracle_shop

SEED = 20240917
AS_OF = "2025-03-15T00:00:00Z"


def _build_handmade(root: Path) -> Path:
    data_dir = root / "handmade"
    oracle_shop.write_clean(data_dir, oracle_shop.build(seed=SEED % 1000))
    pipeline_run.run(data_dir, mode="historical", echo=False)
    return data_dir


def _build_generated(root: Path) -> Path:
    for module in ("shopfeast.generator", "pipelines.ingest"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not there yet: the generated shop cannot be built")
    from pipelines import ingest
    from shopfeast import generator

    raw, data_dir = root / "raw", root / "generated"
    generator.run(
        out=raw,
        customers=250,
        products=50,
        days=120,
        seed=5,
        corrupt_fraction=0.0,
        start="2024-11-01",
        fmt="parquet",
    )
    # The export is declared complete two weeks after its last row: windows empty out online.
    code = ingest.run(raw_dir=raw, data_dir=data_dir, now="2025-03-15T00:00:00Z", as_of=AS_OF)
    assert code == 0
    pipeline_run.run(data_dir, mode="historical", echo=False)
    return data_dir


@pytest.fixture(scope="module", params=["handmade", "generated"])
def store(request, tmp_path_factory) -> tuple[Path, oracle.RawShop]:
    root = tmp_path_factory.mktemp(f"pit_{request.param}")
    build = _build_handmade if request.param == "handmade" else _build_generated
    data_dir = build(root)
    return data_dir, oracle.RawShop.load(data_dir)


@pytest.fixture(scope="module")
def offline(store, tmp_path_factory):
    """shopfeast's offline store (featurestore.offline) over the shop's sources: what training
    reads through `get_historical_features`."""
    data_dir, _ = store
    return feast_support.declared_store(data_dir, tmp_path_factory.mktemp("registry"))


def _sources(data_dir: Path, views: list[str]) -> dict[str, pd.DataFrame]:
    present = sources.families()
    missing = [v for v in views if v not in present]
    if missing:
        pytest.skip(f"families not registered yet: {missing}")
    return {v: oracle.read_source(data_dir, v) for v in views}


def _split(sources: dict[str, pd.DataFrame]) -> dict[str, dict[str, pd.DataFrame]]:
    return {v: oracle.by_entity(f, oracle.ENTITY_KEY[v]) for v, f in sources.items()}


def _served(offline, pairs, key: str, views: list[str]) -> list[dict]:
    """The named features of `views` at every (entity, t) pair, in one historical retrieval."""
    entity = pd.DataFrame({key: [e for e, _ in pairs], "event_timestamp": [t for _, t in pairs]})
    refs = [f"{v}:{name}" for v in views for name in oracle.NAMED[v]]
    out = offline.get_historical_features(
        entity_df=entity, features=refs, full_feature_names=True
    ).to_df()
    assert len(out) == len(entity)  # one row per entity row, in order
    assert out[key].tolist() == entity[key].tolist()
    assert (out["event_timestamp"] == entity["event_timestamp"]).all()
    return out.to_dict("records")


def _check(pairs, sources, key: str, expected_fn, shop, views, offline) -> tuple[int, list[str]]:
    """The oracle's value of every named feature at every pair against the value the offline
    store serves, and that against the source row the contract says is served (the latest with
    `event_timestamp <= t`), so that a failure tells which side is wrong."""
    sources = _split(sources)
    served = _served(offline, pairs, key, views)
    checked, problems = 0, []
    for (entity, t), row in zip(pairs, served, strict=True):
        expected = expected_fn(shop, entity, t)
        for view in views:
            actual = {name: row[f"{view}__{name}"] for name in oracle.NAMED[view]}
            for name, e, a in oracle.compare(expected, actual, oracle.NAMED[view]):
                problems.append(f"{view}:{name} {key}={entity} t={t}: oracle {e!r}, store {a!r}")
            source_row = oracle.lookup(sources[view], entity, t)
            for name, e, a in oracle.compare(source_row, actual, oracle.NAMED[view]):
                problems.append(f"{view}:{name} {key}={entity} t={t}: row {e!r}, served {a!r}")
            checked += len(oracle.NAMED[view])
    return checked, problems


def test_customer_features_match_the_oracle(store, offline):
    data_dir, shop = store
    views = ["customer_activity", "customer_profile", "customer_reviews"]
    sources = _sources(data_dir, views)
    pairs = oracle.customer_pairs(shop, np.random.default_rng(SEED))
    assert len(pairs) >= 300
    checked, problems = _check(
        pairs, sources, "customer_id", oracle.customer_features, shop, views, offline
    )
    assert not problems, f"{len(problems)} of {checked} values differ:\n" + "\n".join(problems[:25])


def test_product_features_match_the_oracle(store, offline):
    data_dir, shop = store
    sources = _sources(data_dir, ["product_stats"])
    pairs = oracle.product_pairs(shop, np.random.default_rng(SEED + 1))
    assert len(pairs) >= 200
    checked, problems = _check(
        pairs, sources, "product_id", oracle.product_features, shop, ["product_stats"], offline
    )
    assert not problems, f"{len(problems)} of {checked} values differ:\n" + "\n".join(problems[:25])


def test_recency_from_stored_timestamps_matches_the_oracle(store):
    """customer_recency is on demand: (t - last_order_ts) and (t - signup_ts) in days, from the
    stored timestamps as of t. Checked through its inputs at arbitrary instants (exact), and through
    the on-demand view's own function when it is there (Feast carries timestamps online in whole
    seconds, so that function floors both sides to the second: within one second of the oracle)."""
    data_dir, shop = store
    sources = _split(_sources(data_dir, ["customer_activity", "customer_profile"]))
    odfv = (
        importlib.import_module("featurestore.odfv")
        if importlib.util.find_spec("featurestore.odfv")
        else None
    )
    second = 1 / 86_400 + 1e-9
    problems = []
    for c, t in oracle.customer_pairs(shop, np.random.default_rng(SEED + 2), n_edges=4):
        expected = oracle.customer_features(shop, c, t)
        activity = oracle.lookup(sources["customer_activity"], c, t) or {}
        profile = oracle.lookup(sources["customer_profile"], c, t) or {}
        actual = oracle.recency(t, activity.get("last_order_ts"), profile.get("signup_ts"))
        problems += [
            f"{n} {c} {t}: {e!r} vs {a!r}"
            for n, e, a in oracle.compare(expected, actual, oracle.RECENCY)
        ]
        if odfv is None:
            continue
        served = odfv.customer_recency(
            {
                "event_timestamp": [t],
                "last_order_ts": [activity.get("last_order_ts")],
                "signup_ts": [profile.get("signup_ts")],
            }
        )
        for name in oracle.RECENCY:
            e = None if expected is None else expected[name]
            a = served[name][0]
            a = None if a is None or a != a else a  # NaN is the function's null
            if (e is None) != (a is None) or (e is not None and abs(a - e) > second):
                problems.append(f"odfv {name} {c} {t}: oracle {e!r}, on demand {a!r}")
    assert not problems, "\n".join(problems[:25])


def test_sources_have_one_row_per_entity_and_snapshot(store):
    """Feast's as-of join needs unique (entity, event_timestamp); rows sit on 00:00 UTC; no row
    belongs to a null entity (guests, anonymous visitors)."""
    data_dir, _ = store
    sources = _sources(data_dir, list(oracle.NAMED))
    for view, frame in sources.items():
        key = oracle.ENTITY_KEY[view]
        assert len(frame), view
        assert frame[key].notna().all(), f"{view}: rows without {key}"
        assert not frame.duplicated([key, "event_timestamp"]).any(), view
        ts = pd.DatetimeIndex(frame["event_timestamp"])
        assert (ts == ts.floor("D")).all(), f"{view}: a row off the daily grain"
        assert (pd.DatetimeIndex(frame["created_timestamp"]) >= ts).all(), view


def test_the_oracle_sees_what_it_should():
    """The oracle itself, on a three-row shop worked out by hand (so a bug in it cannot pass
    silently as agreement)."""
    utc = "UTC"
    shop = oracle.RawShop(
        customers=pd.DataFrame(
            {
                "customer_id": ["a"],
                "signup_ts": [pd.Timestamp("2025-01-01 10:00", tz=utc)],
                "updated_at": [pd.Timestamp("2025-01-01 10:00", tz=utc)],
                "birth_year": pd.array([1990], dtype="Int64"),
            }
        ),
        products=pd.DataFrame(
            {
                "product_id": ["p", "p"],
                "price": [10.0, 12.0],
                "created_at": [pd.Timestamp("2025-01-01", tz=utc)] * 2,
                "updated_at": [
                    pd.Timestamp("2025-01-01", tz=utc),
                    pd.Timestamp("2025-01-05", tz=utc),
                ],
            }
        ),
        orders=pd.DataFrame(
            {
                "order_id": ["o1", "o2", "o3"],
                "customer_id": ["a", "a", None],
                "order_ts": [
                    pd.Timestamp("2025-01-02 08:00", tz=utc),
                    pd.Timestamp("2025-01-03 08:00", tz=utc),
                    pd.Timestamp("2025-01-03 09:00", tz=utc),
                ],
                "status": ["refunded", "cancelled", "completed"],
                "total_amount": [50.0, 20.0, 30.0],
                "refunded_amount": [50.0, 0.0, 0.0],
                "refund_ts": [pd.Timestamp("2025-01-04 12:00", tz=utc), pd.NaT, pd.NaT],
            }
        ),
        order_items=pd.DataFrame(
            {
                "order_id": ["o1", "o2", "o3"],
                "product_id": ["p", "p", "p"],
                "quantity": pd.array([1, 5, 2], dtype="Int64"),
            }
        ),
        events=pd.DataFrame(
            {
                "customer_id": ["a", "a", None],
                "session_id": ["s1", "s1", "s2"],
                "event_type": ["product_view", "add_to_cart", "product_view"],
                "event_ts": [pd.Timestamp("2025-01-02 07:00", tz=utc)] * 3,
                "product_id": ["p", "p", "p"],
            }
        ),
        reviews=pd.DataFrame(
            {
                "customer_id": ["a"],
                "rating": [4.0],
                "review_ts": [pd.Timestamp("2025-01-02 09:00", tz=utc)],
            }
        ),
    )
    at = lambda s: pd.Timestamp(s, tz=utc)  # noqa: E731
    assert oracle.customer_features(shop, "a", at("2025-01-01 23:59")) is None  # before T
    c = oracle.customer_features(shop, "a", at("2025-01-04 13:00"))  # refund not yet known
    assert (c["orders_7d"], c["spend_30d"], c["events_30d"], c["sessions_30d"]) == (1, 50.0, 2, 1)
    assert (c["customer_age_years"], c["reviews_90d"], c["avg_rating_90d"]) == (35, 1, 4.0)
    assert c["last_order_ts"] == at("2025-01-02 08:00")
    c = oracle.customer_features(shop, "a", at("2025-01-05"))  # refund known: spend 0
    assert (c["orders_7d"], c["spend_30d"], c["avg_order_value_90d"]) == (1, 0.0, 0.0)
    c = oracle.customer_features(shop, "a", at("2025-01-10"))  # o1 left the 7-day window
    assert (c["orders_7d"], c["orders_30d"]) == (0, 1)
    p = oracle.product_features(shop, "p", at("2025-01-04"))
    assert p == {"product_views_7d": 2, "product_units_sold_30d": 3, "product_price": 10.0}
    # a change log row takes effect at the first snapshot strictly after its updated_at
    assert oracle.product_features(shop, "p", at("2025-01-05 23:00"))["product_price"] == 10.0
    assert oracle.product_features(shop, "p", at("2025-01-06"))["product_price"] == 12.0
    assert oracle.product_features(shop, "p", at("2025-01-01 12:00")) is None


def test_windows_empty_out_after_the_last_row(store, offline):
    """Up to the export's --as-of instant the store follows the oracle past the newest row:
    windows empty out on days without rows instead of serving the last snapshot forever."""
    data_dir, shop = store
    if shop.as_of is None:
        pytest.skip("the hand-made shop has no ingest manifest")
    sources = _sources(data_dir, ["customer_activity"])
    last_order = shop.orders["order_ts"].max()
    assert oracle.last_snapshot(shop) == pd.Timestamp(AS_OF) > last_order
    late = shop.orders[shop.orders["order_ts"] >= last_order - pd.Timedelta(days=10)]
    ids = sorted(late["customer_id"].dropna().unique())[:25]
    assert ids
    at = pd.Timestamp(AS_OF)
    pairs = [(c, at) for c in ids]
    checked, problems = _check(
        pairs,
        sources,
        "customer_id",
        oracle.customer_features,
        shop,
        ["customer_activity"],
        offline,
    )
    assert not problems, "\n".join(problems[:25])
    split = _split(sources)["customer_activity"]
    values = [oracle.lookup(split, c, at)["orders_7d"] for c in ids]
    assert values == [0] * len(ids)  # the last orders left the 7-day window by then
