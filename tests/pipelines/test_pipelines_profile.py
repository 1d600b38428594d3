"""customer_profile: the change log read as of T, one-hot columns from a fixed vocabulary."""

from __future__ import annotations

import json

import pandas as pd

from pipelines.families import customer_profile as cp
from pipelines.run import compute_rows
from pipelines.windows import Snapshots, to_day
from tests.support.pipelines_shop import typed


def T(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz="UTC")


def log() -> pd.DataFrame:
    return typed(
        "customers",
        [
            dict(
                customer_id="a",
                signup_ts=T("2024-12-30 09:00"),
                updated_at=T("2024-12-30 09:00"),
                birth_year=1990,
                gender="F",
                location_type="Urban",
                loyalty_status="none",
                is_premium=False,
                education="phd",
                preferred_device="mobile",
                email_opt_in=None,
            ),
            # A change that takes effect at midnight exactly: visible from the next day's snapshot.
            dict(
                customer_id="a",
                signup_ts=T("2024-12-30 09:00"),
                updated_at=T("2025-01-05 00:00"),
                birth_year=1990,
                gender="female",
                location_type="rural",
                loyalty_status="gold",
                is_premium=True,
                education="master",
                preferred_device="desktop",
                email_opt_in=True,
            ),
            dict(
                customer_id="b",
                signup_ts=T("2025-01-02 10:00"),
                updated_at=T("2025-01-02 10:00"),
                birth_year=None,
                gender=None,
                location_type=None,
                loyalty_status="diamond",
            ),
        ],
    )


def rows(start: str = "2024-12-01", end: str = "2025-02-01") -> pd.DataFrame:
    snap = Snapshots(to_day(T(start)), to_day(T(end)), historical=True)
    return compute_rows(cp, {"customers": log()}, snap)


def test_versions_as_of_and_age_on_new_year():
    a = rows().query("customer_id == 'a'").reset_index(drop=True)
    assert a["event_timestamp"].tolist() == [T("2024-12-31"), T("2025-01-01"), T("2025-01-06")]
    assert a["customer_age_years"].tolist() == [34, 35, 35]
    assert a["signup_ts"].tolist() == [T("2024-12-30 09:00")] * 3
    assert a["is_premium"].tolist() == [False, False, True]
    assert a["email_opt_in"].isna().tolist() == [True, True, False]
    assert a["loyalty_status_gold"].tolist() == [0, 0, 1]
    assert a["location_type_urban"].tolist() == [1, 1, 0]  # case and spacing normalised


def test_one_hot_other_unknown_and_nulls():
    b = rows().query("customer_id == 'b'").reset_index(drop=True)
    assert b["event_timestamp"].tolist() == [T("2025-01-03")]  # nothing before it exists
    row = b.iloc[0]
    assert pd.isna(row["customer_age_years"])
    assert row["gender_unknown"] == 1 and row["location_type_unknown"] == 1
    assert row["loyalty_status_other"] == 1  # "diamond" is outside the vocabulary
    for field, values in cp.VOCABULARY.items():
        assert sum(int(row[f"{field}_{v}"]) for v in values) == 1, field
    a = rows().query("customer_id == 'a'").iloc[0]
    assert a["gender_female"] == 1 and a["education_other"] == 1


def test_same_columns_whatever_the_data(tmp_path):
    few = compute_rows(
        cp,
        {"customers": log().iloc[[2]]},
        Snapshots(to_day(T("2025-01-01")), to_day(T("2025-01-10")), True),
    )
    assert list(few.columns) == cp.SOURCE.columns == list(rows().columns)
    cp.persist(tmp_path, {"customers": log()})
    stored = json.loads((tmp_path / "state/features/customer_profile.vocabulary.json").read_text())
    assert stored["version"] == cp.VOCABULARY_VERSION
    assert stored["values_seen_at_first_build"]["loyalty_status"]["diamond"] == 1


def test_profile_from_a_later_start_continues_the_prior():
    full = rows()
    start = T("2025-01-04")
    prior = (
        full[full["event_timestamp"] < start]
        .sort_values("event_timestamp")
        .drop_duplicates("customer_id", keep="last")
    )
    snap = Snapshots(to_day(start), to_day(T("2025-02-01")), historical=False)
    part = compute_rows(cp, {"customers": log()}, snap, prior)
    pd.testing.assert_frame_equal(
        part.reset_index(drop=True), full[full["event_timestamp"] >= start].reset_index(drop=True)
    )
