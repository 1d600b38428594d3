"""Random clickstream events for the real-time feature tests (pipelines, featurestore)."""

from __future__ import annotations

import numpy as np
import pandas as pd

T0 = pd.Timestamp("2025-02-01T10:00:00Z")


def random_events(seed: int = 1, n: int = 400) -> pd.DataFrame:
    """Random events with the awkward cases: ties at one instant, windows' exact edges, anonymous
    visitors, events without products, sessions interleaved, a session longer than six hours."""
    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.integers(0, 10 * 3600, n)).astype("int64") * 1_000_000
    offsets[5] = offsets[4]  # a tie
    offsets[9] = offsets[8] + 3_600_000_000  # exactly one hour later
    offsets[13] = offsets[12] + 6 * 3_600_000_000  # exactly six hours later
    types = rng.choice(
        ["page_view", "product_view", "add_to_cart", "purchase", "search", "remove_from_cart"],
        n,
        p=[0.2, 0.4, 0.15, 0.1, 0.1, 0.05],
    )
    products = [f"p{int(k)}" for k in rng.integers(0, 30, n)]
    needs = np.isin(types, ["product_view", "add_to_cart", "purchase", "remove_from_cart"])
    customers = [None if rng.random() < 0.1 else f"c{int(k)}" for k in rng.integers(0, 8, n)]
    return pd.DataFrame(
        {
            "event_id": [f"e{i:04d}" for i in rng.permutation(n)],
            "customer_id": pd.array(customers, dtype="string"),
            "session_id": pd.array([f"s{int(k)}" for k in rng.integers(0, 12, n)], dtype="string"),
            "event_type": pd.array(types, dtype="string"),
            "event_ts": T0 + pd.to_timedelta(offsets, unit="us"),
            "product_id": pd.array(
                [p if w else None for p, w in zip(products, needs, strict=True)], dtype="string"
            ),
        }
    )
