"""When an entity starts to exist, read from its change log as the contract says.

A customer exists at snapshot T when its profile as of T (latest row with `updated_at < T`) exists
and that profile's `signup_ts < T`; a product exists when its row as of T exists. Before that its
features are null (no source row); from its first snapshot on, counts and sums are 0, not null.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.windows import EntityIndex, day_of


def customer_first_day(customers: pd.DataFrame, index: EntityIndex) -> np.ndarray:
    """First snapshot day of each indexed customer (a huge number for one that never exists)."""
    c = customers[["customer_id", "updated_at", "signup_ts"]].copy()
    c["updated_at"] = c["updated_at"].fillna(c["signup_ts"])
    c = c.dropna(subset=["customer_id", "updated_at"]).sort_values(
        ["customer_id", "updated_at"], kind="stable"
    )
    code = index.codes(c["customer_id"])
    valid_from = day_of(c["updated_at"]) + 1
    nxt = np.r_[valid_from[1:], 0]
    same = np.r_[code[1:] == code[:-1], False]
    valid_to = np.where(same, nxt, np.iinfo(np.int64).max)
    signup = c["signup_ts"]
    exists_from = np.where(
        signup.isna().to_numpy(),
        np.iinfo(np.int64).max,
        np.maximum(valid_from, day_of(signup.fillna(c["updated_at"])) + 1),
    )
    ok = (exists_from < valid_to) & (code >= 0)
    first = np.full(len(index), np.iinfo(np.int64).max // 4, np.int64)
    np.minimum.at(first, code[ok], exists_from[ok])
    return first


def product_first_day(products: pd.DataFrame, index: EntityIndex) -> np.ndarray:
    """First snapshot day of each indexed product: the day after its first row took effect."""
    p = products[["product_id", "updated_at", "created_at"]]
    when = p["updated_at"].fillna(p["created_at"])
    code = index.codes(p["product_id"])
    ok = (code >= 0) & when.notna().to_numpy()
    first = np.full(len(index), np.iinfo(np.int64).max // 4, np.int64)
    np.minimum.at(first, code[ok], day_of(when[ok]) + 1)
    return first
