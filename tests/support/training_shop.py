"""A small generated shop built all the way to an applied embedded Feast store, for training tests.

generate -> ingest -> features (historical) -> `feast apply` (embedded profile). Built once per
test session and per set of arguments (the training tests and the notebook test share it).
`shift_order` edits a raw order in place before building, for the leakage test.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path

import pandas as pd

SMALL = {"customers": 500, "products": 60, "days": 120, "seed": 3}
# Three monthly cutoffs need the horizon to fit in the data: 120 days and a 30-day horizon.
SMALL_HORIZON_DAYS = 30

_built: dict[tuple, Path] = {}


def generate_raw(root: Path, customers: int, products: int, days: int, seed: int) -> Path:
    from shopfeast import generator

    raw = root / "raw"
    generator.run(
        out=raw,
        customers=customers,
        products=products,
        days=days,
        seed=seed,
        corrupt_fraction=0.0,
        start="2025-01-01",
        fmt="parquet",
        quiet=True,
    )
    return raw


def build(raw: Path, data: Path) -> Path:
    """Ingest, build features and apply the embedded Feast repo over `data`.

    `feast apply` runs in this process (tests/support/feast_support.py: Feast's own CLI command):
    a subprocess paid ~10 s of CPU per build for Python's start and Feast's import, against ~2 s.
    `shopfeast apply`'s own subprocess is what tests/shopfeast/test_demo.py runs."""
    from featurestore import store as feast_store
    from pipelines import ingest
    from pipelines import run as features
    from shopconfig.settings import profile_env
    from tests.support.feast_support import run_feast_cli

    with contextlib.redirect_stdout(io.StringIO()):
        code = ingest.run(raw_dir=raw, data_dir=data, now=None)
        assert code == 0, f"ingest exited {code}"
        features.run(data, mode="historical", echo=False)
    code, out = run_feast_cli(
        feast_store.PROFILES["embedded"], ["apply"], profile_env("embedded", data)
    )
    assert code == 0, out
    return data


def small_store(root_factory: Callable[[str], Path], **overrides) -> Path:
    """The shared small store (built on first use in this session)."""
    args = {**SMALL, **overrides}
    key = tuple(sorted(args.items()))
    if key not in _built:
        root = root_factory("training_shop")
        raw = generate_raw(root, **args)
        _built[key] = build(raw, root / "data")
    return _built[key]


def shift_order(raw: Path, order_id: str, to: pd.Timestamp) -> None:
    """Move one raw order (and nothing else) to another instant."""
    path = raw / "orders.parquet"
    orders = pd.read_parquet(path)
    hit = orders["order_id"].astype(str) == order_id
    assert hit.sum() == 1, f"order {order_id} not found once in {path}"
    col = orders["order_ts"]
    if pd.api.types.is_datetime64_any_dtype(col):
        orders.loc[hit, "order_ts"] = (
            to.tz_convert(col.dt.tz) if col.dt.tz else to.tz_localize(None)
        )
    else:
        orders.loc[hit, "order_ts"] = to.isoformat()
    orders.to_parquet(path, index=False)
