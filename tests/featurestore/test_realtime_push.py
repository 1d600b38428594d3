"""The stream worker's rows are Feast's: RowEncoder's keys, fields and bytes equal what
`FeatureStore.push` writes for the same rows, and plain `get_online_features` reads them."""

from __future__ import annotations

import pytest
import redis
from feast import FeatureStore
from feast.repo_config import RepoConfig

from featurestore.realtime import layouts, push_source_name, realtime_views
from featurestore.schema import entity
from pipelines.realtime import SOURCES, compute
from shopconfig.settings import redis_connection_string as feast_redis_connection_string
from tests.support.feast_support import claimed_redis_db
from tests.support.realtime_events import random_events

pytestmark = pytest.mark.integration


def test_encoded_rows_equal_feast_push(redis_url, tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPFEAST_DATA_DIR", str(tmp_path))
    with claimed_redis_db(redis_url) as url:
        config = RepoConfig(
            project="shopfeast",
            provider="local",
            registry={"registry_type": "file", "path": str(tmp_path / "registry.db")},
            online_store={"type": "redis", "connection_string": feast_redis_connection_string(url)},
            offline_store={"type": "duckdb"},
            entity_key_serialization_version=3,
            repo_path=str(tmp_path),
        )
        store = FeatureStore(config=config)
        views = realtime_views(tmp_path)
        store.apply(
            [
                entity("customer"),
                entity("product"),
                *views.values(),
                *(v.stream_source for v in views.values()),
            ]
        )
        client = redis.Redis.from_url(url)
        encoders = layouts(config, views.values())
        events = random_events(4, 300)
        for name, source in SOURCES.items():
            rows = compute(name, events, latest_only=True)
            assert len(rows) > 5
            store.push(
                push_source_name(name), rows.assign(created_timestamp=rows["event_timestamp"])
            )
            for row in encoders[name].encode(rows):
                stored = client.hgetall(row.key)
                mine = dict(zip(row.fields[::2], row.fields[1::2], strict=True))
                assert {k: stored.get(k) for k in mine} == mine
            served = store.get_online_features(
                [f"{name}:{f}" for f in source.feature_names],
                [{source.join_key: k} for k in rows[source.join_key]],
            ).to_df()
            assert served[source.feature_names[0]].notna().all()
