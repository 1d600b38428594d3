"""When open_store(ensure_applied=True) re-applies the embedded registry: the definitions are
newer than it."""

from __future__ import annotations

import os
import time

from featurestore.store import _definitions_changed_since


def test_a_registry_older_than_the_definitions_is_stale(tmp_path) -> None:
    registry = tmp_path / "registry.db"
    registry.write_bytes(b"")
    future = time.time() + 3600
    os.utime(registry, (future, future))
    assert not _definitions_changed_since(registry)  # built after every definition
    os.utime(registry, (0, 0))
    assert _definitions_changed_since(registry)  # built before them (an upgrade since)
