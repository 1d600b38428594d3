"""Two small generated shops of the same seed for the monitor's tests: a control and one shifted
from day `DRIFT_FROM` on (generator `drift_from`). Each is ingested as a backfill of everything
before the last three weeks, then three weekly exports, and built to feature sources; the
control's store before its last export is also kept, for a last batch made up by a test.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

SHOP = {"customers": 400, "products": 150, "days": 180, "seed": 5}
DRIFT_FROM = 140  # 2025-05-21
START = pd.Timestamp("2025-01-01", tz="UTC")
END = START + pd.Timedelta(days=SHOP["days"])  # 2025-06-30
WEEKS = 3  # weekly exports after the backfill
NOW = END + pd.Timedelta(hours=6)  # the monitor's clock: the morning after the export
REFERENCE = "2025-04-01:2025-05-15"  # after the 90-day windows filled, before the shift
TIME_COLUMNS = {
    "customers": "updated_at",
    "products": "updated_at",
    "product_collections": "updated_at",
    "orders": "order_ts",
    "events": "event_ts",
    "reviews": "review_ts",
}

_built: dict[str, Path] = {}


def generate(raw: Path, drift_from: int | None) -> Path:
    from shopfeast import generator

    generator.run(out=raw, **SHOP, quiet=True, drift_from=drift_from)
    return raw


def split(raw: Path, cut: pd.Timestamp, first: Path, second: Path) -> None:
    """Rows before `cut` to `first`, the rest to `second` (order lines follow their order)."""
    orders = pq.read_table(raw / "orders.parquet").to_pandas()
    order_ts = orders.set_index("order_id")["order_ts"]
    for d in (first, second):
        d.mkdir(parents=True, exist_ok=True)
    for f in sorted(raw.glob("*.parquet")):
        df = pq.read_table(f).to_pandas()
        name = f.stem
        if name == "order_items":
            when = df["order_id"].map(order_ts)
        else:
            when = df[TIME_COLUMNS[name]]
            if name == "customers":
                when = when.fillna(df["signup_ts"])
            if name == "products":
                when = when.fillna(df["created_at"])
        early = (when < cut).fillna(True).to_numpy()
        df[early].to_parquet(first / f.name, index=False)
        df[~early].to_parquet(second / f.name, index=False)


def ingest(raw: Path, data: Path, now: pd.Timestamp) -> None:
    from pipelines import ingest as run

    with contextlib.redirect_stdout(io.StringIO()):
        code = run.run(raw_dir=raw, data_dir=data, now=now.strftime("%Y-%m-%dT%H:%M:%S"))
    assert code == 0, f"ingest of {raw} exited {code}"


def shop(root_factory: Callable[[str], Path], kind: str) -> Path:
    """The data directory of the `control` or `shifted` shop (built once per session); the
    control's store before its last weekly export is kept at `<root>/before_last_batch`, the
    export itself at `<root>/batch3`."""
    if kind in _built:
        return _built[kind]
    from pipelines import run as features

    root = root_factory(f"monitor_{kind}")
    rest = generate(root / "raw", DRIFT_FROM if kind == "shifted" else None)
    cuts = [END - pd.Timedelta(days=7 * w) for w in range(WEEKS, 0, -1)]
    for i, cut in enumerate(cuts):  # batch0 = the backfill, batch1..3 = the weeks
        split(rest, cut, root / f"batch{i}", root / f"rest{i}")
        rest = root / f"rest{i}"
    shutil.move(rest, root / f"batch{WEEKS}")
    data = root / "data"
    for i, cut in enumerate([*cuts, END]):
        if i == WEEKS and kind == "control":
            shutil.copytree(data, root / "before_last_batch")
        ingest(root / f"batch{i}", data, cut + pd.Timedelta(hours=6))
    with contextlib.redirect_stdout(io.StringIO()):
        features.run(data, mode="historical", echo=False)
    _built[kind] = data
    return data


def drop_half_the_orders(batch: Path, out: Path) -> int:
    """A copy of a raw batch with every second order (and its lines) missing; returns how many
    orders are left."""
    shutil.copytree(batch, out)
    orders = pd.read_parquet(out / "orders.parquet")
    keep = orders.iloc[::2]
    keep.to_parquet(out / "orders.parquet", index=False)
    items = pd.read_parquet(out / "order_items.parquet")
    items[items["order_id"].isin(set(keep["order_id"]))].to_parquet(
        out / "order_items.parquet", index=False
    )
    return len(keep)
