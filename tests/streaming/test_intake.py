"""POST /events' row check: the ingest's row rules, the column named, never the value."""

from __future__ import annotations

import pandas as pd

from streaming.intake import check_rows

NOW = pd.Timestamp("2025-03-01", tz="UTC")


def test_row_rules_name_rule_and_column():
    good = {
        "event_id": "e1",
        "customer_id": "c1",
        "session_id": "s1",
        "event_type": "page_view",
        "event_ts": "2025-02-28T10:00:00Z",
    }
    events = [
        good,
        {**good, "event_id": "e2", "event_type": "hover"},
        {**good, "event_id": "e3", "event_ts": "yesterday"},
        {**good, "event_id": "e4", "event_ts": "2031-01-01T00:00:00Z"},
        {**good, "event_id": "e5", "event_type": "product_view"},  # no product
        {k: v for k, v in good.items() if k != "event_id"},
        {**good, "event_id": "e7", "customer_id": "c-unknown"},  # references: the worker's job
    ]
    accepted, rejected = check_rows(events, NOW)
    assert [a["event_id"] for a in accepted] == ["e1", "e7"]
    assert [(r.index, r.rule, r.column) for r in rejected] == [
        (1, "invalid_value", "event_type"),
        (2, "unparseable", "event_ts"),
        (3, "future_timestamp", "event_ts"),
        (4, "missing_required", "product_id"),
        (5, "missing_required", "event_id"),
    ]
