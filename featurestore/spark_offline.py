"""The spark profile's offline store: Feast's SparkOfflineStore, unchanged, behind a config class
that takes the `requires:` line every other profile has (featurestore/repo_env.py).

Feast validates the offline store's config while it reads the yaml, before it opens the registry;
its own SparkOfflineStoreConfig has no field for `requires:` and no hook, so a plain `feast -f
profiles/spark.yaml ...` with REDIS_CONNECTION_STRING unset went on with the literal `${...}` text
and died later in SQLAlchemy or redis-py. This subclass adds the check and nothing else: the store
class is Feast's (its `isinstance(config.offline_store, SparkOfflineStoreConfig)` asserts hold for
the subclass). It also stops when `SHOPFEAST_SOURCE_FORMAT` is not `spark` (`shopfeast --profile
spark` and `open_store("spark")` set it): the definitions would build file sources, which the
Spark store does not read.
"""

from __future__ import annotations

import os
from typing import Any

from feast.infra.offline_stores.contrib.spark_offline_store.spark import (
    SparkOfflineStore as FeastSparkOfflineStore,
)
from feast.infra.offline_stores.contrib.spark_offline_store.spark import (
    SparkOfflineStoreConfig as FeastSparkOfflineStoreConfig,
)
from pydantic import StrictStr, model_validator

from featurestore import repo_env
from shopconfig.settings import SOURCE_FORMAT_ENV


class SparkOfflineStoreConfig(FeastSparkOfflineStoreConfig):
    """`offline_store: {type: featurestore.spark_offline.SparkOfflineStore, requires: ...}`."""

    type: StrictStr = "featurestore.spark_offline.SparkOfflineStore"

    @model_validator(mode="before")
    @classmethod
    def _variables_are_set(cls, data: Any) -> Any:
        """`requires: ${A} ${B}`: the profile's variables, checked before Feast opens anything;
        and the definitions must build Spark sources."""
        data = repo_env.variables_are_set(data, profile="spark")
        if os.environ.get(SOURCE_FORMAT_ENV) != "spark":
            repo_env.stop_wrong_value(SOURCE_FORMAT_ENV, "spark", "the Spark offline store")
        return data


class SparkOfflineStore(FeastSparkOfflineStore):
    """Feast's Spark offline store as it is (the config above only adds the checks)."""
