"""scripts.scale_shop: K copies of a shop's customers over one catalog (the 1M-customer shop of
`make bench-spark`). Each copy must be a shop of its own: no id of one copy's customers, orders,
sessions or reviews may meet another's, or per-customer features would merge."""

from __future__ import annotations

import pandas as pd

from pipelines.run import read_source, run
from pipelines.sources import sources
from pipelines.storage import read_clean
from scripts.scale_shop import CATALOG_TABLES, CUSTOMER_SIDE, scale
from tests.support.pipelines_shop import build, write_batch

COPIES = 3


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def test_copies_are_shops_of_their_own_over_one_catalog(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    tables = build(seed=11, customers=12, products=6, days=20)
    write_batch(src, tables, "b1")
    rows = scale(src, dst, COPIES, echo=lambda _: None)

    for name, df in tables.items():
        orig, scaled = read_clean(src, name), read_clean(dst, name)
        if name in CATALOG_TABLES:
            pd.testing.assert_frame_equal(_sorted(scaled), _sorted(orig))
            continue
        assert len(scaled) == rows[name] == COPIES * len(df)
        ids = [c for c in CUSTOMER_SIDE if c in scaled.columns]
        assert ids, name
        for k in range(COPIES):
            prefix = f"k{k}-" if k else ""
            key = scaled[next(c for c in ids if scaled[c].notna().all())].astype("string")
            mine = key.str.startswith(prefix) if k else ~key.str.match(r"^k\d+-")
            part = scaled[mine.to_numpy(bool)].copy()
            for c in ids:  # every customer-side id of the copy carries its prefix (or is null)
                v = part[c].astype("string")
                assert (v.isna() | v.str.startswith(prefix)).all(), (name, c, k)
                part[c] = v.str.removeprefix(prefix).astype(orig[c].dtype)
            pd.testing.assert_frame_equal(_sorted(part), _sorted(orig), check_dtype=False)


def test_each_copys_customers_get_the_sources_features(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_batch(src, build(seed=5, customers=15, products=8, days=40), "b1")
    scale(src, dst, COPIES, echo=lambda _: None)
    source = sources()["customer_activity"]
    run(src, mode="historical", only=[source.name], echo=False)
    run(dst, mode="historical", only=[source.name], echo=False)
    orig, scaled = read_source(src, source), read_source(dst, source)
    assert len(scaled) == COPIES * len(orig) > 0
    for k in range(1, COPIES):
        copy = scaled[scaled["customer_id"].astype("string").str.startswith(f"k{k}-")].copy()
        copy["customer_id"] = copy["customer_id"].str.removeprefix(f"k{k}-")
        pd.testing.assert_frame_equal(
            copy.sort_values(["customer_id", "event_timestamp"]).reset_index(drop=True),
            orig.sort_values(["customer_id", "event_timestamp"]).reset_index(drop=True),
        )
