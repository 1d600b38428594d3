"""The spark profile (feature_repo/profiles/spark.yaml): `get_historical_features` through Feast's
Spark offline store equals the embedded profile's (DuckDB) on the point-in-time oracle's
(entity, t) pairs, row for row, with no entity row dropped; then materialization on the profile
(shopfeast's chunked engine reading the same parquet) serves what the embedded store serves."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from featurestore import store as feast_store
from pipelines import run as pipeline_run
from pipelines.sources import sources
from shopconfig.settings import redis_connection_string
from tests.support import oracle, oracle_shop
from tests.support.feast_support import claimed_redis_db, scratch_postgres_db

# heavy: make test-heavy runs it (a Spark JVM, Feast's Spark offline store, about a minute)
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.spark, pytest.mark.heavy]

SEED = 20240917
VIEWS = {
    "customer_id": ["customer_activity", "customer_profile", "customer_reviews"],
    "product_id": ["product_stats", "product_copurchase"],
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("spark_profile") / "data"
    oracle_shop.write_clean(data_dir, oracle_shop.build(seed=SEED % 1000))
    pipeline_run.run(data_dir, mode="historical", echo=False)
    return data_dir, oracle.RawShop.load(data_dir)


def _entity_frame(pairs, key: str) -> pd.DataFrame:
    frame = pd.DataFrame(pairs, columns=[key, "event_timestamp"])
    ts = pd.to_datetime(frame["event_timestamp"], utc=True).dt.floor("us")
    return frame.assign(event_timestamp=ts.astype("datetime64[us, UTC]"), row=np.arange(len(frame)))


def _normalised(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Sorted by the entity row; Spark hands timestamps back naive (in the session's UTC)."""
    out = frame.sort_values("row").reset_index(drop=True)[columns]
    for c in columns:
        if pd.api.types.is_datetime64_any_dtype(out[c]):
            s = pd.to_datetime(out[c])
            out[c] = (
                s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
            ).astype("datetime64[us, UTC]")
    return out


def test_spark_profile_equals_embedded_on_the_oracle_pairs(
    spark, shop, redis_url, postgres_dsn, monkeypatch
):
    data_dir, raw = shop
    pairs = {
        "customer_id": oracle.customer_pairs(raw, np.random.default_rng(SEED)),
        "product_id": oracle.product_pairs(raw, np.random.default_rng(SEED + 1)),
    }
    declared = sources()
    with claimed_redis_db(redis_url) as redis_db, scratch_postgres_db(postgres_dsn) as registry:
        monkeypatch.setenv("REDIS_CONNECTION_STRING", redis_connection_string(redis_db))
        monkeypatch.setenv("SHOPFEAST_REGISTRY_URL", registry)
        assert feast_store.apply("spark", data_dir, plan=False) == 0
        embedded = feast_store.open_store("embedded", data_dir)
        on_spark = feast_store.open_store("spark", data_dir)
        for key, views in VIEWS.items():
            entity_df = _entity_frame(pairs[key], key)
            refs = [f"{v}:{f.name}" for v in views for f in declared[v].features]
            want = embedded.get_historical_features(entity_df, refs).to_df()
            got = on_spark.get_historical_features(entity_df, refs).to_df()
            assert len(got) == len(want) == len(entity_df), key
            assert sorted(got["row"]) == list(range(len(entity_df))), "an entity row was dropped"
            columns = [key, "event_timestamp", *(r.split(":")[1] for r in refs)]
            pd.testing.assert_frame_equal(
                _normalised(got, columns), _normalised(want, columns), check_dtype=False, obj=key
            )

        # materialization on the profile: Redis serves each entity's latest offline value
        feast_store.materialize("spark", data_dir, end=datetime.now(UTC))
        ids = sorted({c for c, _ in pairs["customer_id"]})[:25]
        refs = [f"customer_activity:{f.name}" for f in declared["customer_activity"].features]
        online = on_spark.get_online_features(refs, [{"customer_id": c} for c in ids]).to_df()
        now = pd.Timestamp.now(tz="UTC").floor("us")
        latest = embedded.get_historical_features(
            _entity_frame([(c, now) for c in ids], "customer_id"), refs
        ).to_df()
        columns = ["customer_id", *(r.split(":")[1] for r in refs)]
        pd.testing.assert_frame_equal(
            _seconds(online.sort_values("customer_id").reset_index(drop=True)[columns]),
            _seconds(latest.sort_values("customer_id").reset_index(drop=True)[columns]),
            check_dtype=False,
        )


def _seconds(frame: pd.DataFrame) -> pd.DataFrame:
    """Timestamps to whole UTC seconds: the online store keeps Unix seconds (Feast's protos)."""
    out = frame.copy()
    for c in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[c]):
            s = pd.to_datetime(out[c], utc=True)
            out[c] = s.dt.floor("s").astype("datetime64[s, UTC]")
    return out
