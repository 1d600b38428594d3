"""`shopfeast stream` on a profile whose online store is not Redis: written through Feast's push
API (no version compare-and-set), so more than one consumer is refused with a message."""

from __future__ import annotations

from featurestore.realtime import is_redis
from featurestore.store import PROFILES, serving_config
from shopconfig.settings import Settings
from streaming import run as stream_run


def test_more_than_one_consumer_needs_a_redis_online_store(tmp_path, monkeypatch, capsys) -> None:
    embedded = Settings(data_dir=tmp_path, feast_profile=PROFILES["embedded"])
    assert not is_redis(serving_config(embedded))
    assert is_redis(serving_config(Settings(data_dir=tmp_path, feast_profile=PROFILES["redis"])))
    monkeypatch.setattr(stream_run, "get_settings", lambda: embedded)
    assert stream_run.run(tmp_path, consumers=2) == 2
    assert "--consumers > 1 needs a Redis online store" in capsys.readouterr().err
