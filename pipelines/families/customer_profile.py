"""customer_profile: the customer's profile as of T, with categorical fields one-hot encoded.

The profile at T is the change-log row with the latest `updated_at < T`. Age is `year(T) -
birth_year`, so every customer with a birth year gets a row on each 1 January.

The one-hot vocabulary is fixed here, at declaration time: the contract's values of each field
plus `other` (a value outside the vocabulary) and `unknown` (missing). A vocabulary learned from
data would make the columns, and with them the Feast schema and every model's feature service,
depend on which data directory was present when `feast apply` ran; a fixed one gives the same
columns in every batch and every shop. It is persisted, with its version and the values the data
actually holds (how many went to `other`), under DIR/state/features/customer_profile.vocabulary.json
the first time a shop is built, and checked on every later run: changing the vocabulary changes
the declaration's fingerprint, which makes the runner rebuild the source rather than mix columns.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.existence import customer_first_day
from pipelines.family import Input
from pipelines.specs import Feature, FeatureSource
from pipelines.storage import state_dir
from pipelines.windows import EntityIndex, Snapshots, as_of, day_of, day_ts, to_day

VOCABULARY_VERSION = "1"
VOCABULARY: dict[str, tuple[str, ...]] = {
    "gender": ("female", "male", "other", "unknown"),
    "location_type": ("urban", "suburban", "rural", "other", "unknown"),
    "loyalty_status": ("none", "silver", "gold", "platinum", "other", "unknown"),
    "preferred_device": ("mobile", "desktop", "tablet", "other", "unknown"),
    "education": (
        "high_school",
        "vocational",
        "bachelor",
        "master",
        "doctorate",
        "other",
        "unknown",
    ),
}
_GENDER_ALIASES = {"f": "female", "woman": "female", "m": "male", "man": "male"}


def _one_hot_features() -> tuple[Feature, ...]:
    return tuple(
        Feature(
            f"{field}_{value}",
            "int64",
            f"1 when {field} as of T is {value!r} "
            + (
                "(a value outside the vocabulary)"
                if value == "other"
                else "(missing)"
                if value == "unknown"
                else ""
            )
            + f"; vocabulary v"
            f"{VOCABULARY_VERSION}",
        )
        for field, values in VOCABULARY.items()
        for value in values
    )


SOURCE = FeatureSource(
    name="customer_profile",
    entity="customer",
    description="The customer's profile as of T (change log), categorical fields one-hot encoded.",
    tags=(("domain", "customer"), ("family", "profile"), ("vocabulary", VOCABULARY_VERSION)),
    features=(
        Feature(
            "customer_age_years",
            "int64",
            "year(T) - birth_year of the profile as of T; null when unknown",
        ),
        Feature("signup_ts", "unix_timestamp", "signup_ts of the profile as of T"),
        Feature("is_premium", "bool", "premium flag of the profile as of T; null when unknown"),
        Feature("email_opt_in", "bool", "e-mail opt-in of the profile as of T; null when unknown"),
        *_one_hot_features(),
    ),
)

INPUTS = (
    Input(
        "customers",
        (
            "customer_id",
            "signup_ts",
            "updated_at",
            "birth_year",
            "gender",
            "location_type",
            "loyalty_status",
            "is_premium",
            "education",
            "preferred_device",
            "email_opt_in",
        ),
    ),
)


SHARD_BY = {"customers": "customer_id"}  # the Spark engine's split (pipelines/spark/features.py)


def normalise(field: str, values: pd.Series) -> pd.Series:
    """Raw profile values mapped into the field's vocabulary (`other`, `unknown` included)."""
    vocab = VOCABULARY[field]
    # Each distinct value is normalised once, then taken per row (no Python loop over rows).
    codes, uniq = pd.factorize(values.astype(object).where(values.notna(), None))
    uniq = pd.Series(uniq, dtype=object)
    text = uniq.astype("string").str.strip().str.lower().str.replace(r"[\s-]+", "_", regex=True)
    if field == "gender":
        text = text.replace(_GENDER_ALIASES)
    mapped = text.where(text.isin(vocab), "other").where(text != "", "unknown")
    table = np.array([*mapped.astype(object), "unknown"], dtype=object)  # code -1: missing
    return pd.Series(table[codes], index=values.index, dtype="string")


def compute(
    tables: dict[str, pd.DataFrame], snapshots: Snapshots, prior: pd.DataFrame
) -> pd.DataFrame:
    customers = tables["customers"]
    index = EntityIndex(customers["customer_id"])
    first_day = customer_first_day(customers, index)
    log = customers.assign(updated_at=customers["updated_at"].fillna(customers["signup_ts"]))
    log = log.dropna(subset=["updated_at"])
    log = log.assign(c=index.codes(log["customer_id"]), valid=day_of(log["updated_at"]) + 1)
    log = log[log["c"] >= 0].sort_values(["c", "updated_at"], kind="stable")
    # The row as of a day is the last one with valid <= day: same-day versions keep the latest.
    log = log.drop_duplicates(["c", "valid"], keep="last").reset_index(drop=True)

    for field, values in VOCABULARY.items():  # once per version, not per output row
        log[f"_{field}"] = pd.Categorical(normalise(field, log[field]), categories=values).codes
    c = log["c"].to_numpy()
    cand_c = [c, np.arange(len(index))]
    cand_d = [np.maximum(log["valid"].to_numpy(), first_day[c]), first_day]
    known_age = log.loc[log["birth_year"].notna(), "c"].unique()
    for year in range(_year(snapshots.start_day), _year(snapshots.end_day) + 1):
        jan1 = to_day(pd.Timestamp(year=year, month=1, day=1, tz="UTC"))
        cand_c.append(known_age)
        cand_d.append(np.full(len(known_age), jan1, np.int64))
    cand = pd.DataFrame({"c": np.concatenate(cand_c), "day": np.concatenate(cand_d)})
    cand = cand[
        (cand["day"] >= first_day[cand["c"].to_numpy()])
        & (cand["day"] >= snapshots.start_day)
        & (cand["day"] <= snapshots.end_day)
    ]
    cand = cand.drop_duplicates().sort_values(["c", "day"], kind="stable")
    entity, day = cand["c"].to_numpy(), cand["day"].to_numpy()
    pos = as_of(entity, day, c, log["valid"].to_numpy())
    row = log.iloc[pos].reset_index(drop=True)  # every candidate has a version (day >= first)

    ts = day_ts(day)
    out = pd.DataFrame({"customer_id": index.lookup(entity), "event_timestamp": ts})
    out["customer_age_years"] = pd.Series(ts.dt.year.to_numpy(), dtype="Int64") - row[
        "birth_year"
    ].astype("Int64")
    out["signup_ts"] = row["signup_ts"]
    out["is_premium"] = row["is_premium"].astype("boolean")
    out["email_opt_in"] = row["email_opt_in"].astype("boolean")
    for field, values in VOCABULARY.items():
        code = row[f"_{field}"].to_numpy()
        for j, value in enumerate(values):
            out[f"{field}_{value}"] = (code == j).astype(np.int64)
    return out


def persist(data_dir: Path, tables: dict[str, pd.DataFrame]) -> None:
    """Record the vocabulary once per shop, and refuse to mix it with a different version."""
    path = state_dir(data_dir) / "features" / "customer_profile.vocabulary.json"
    if path.exists():
        stored = json.loads(path.read_text())
        if stored.get("vocabulary") == {k: list(v) for k, v in VOCABULARY.items()}:
            return
    seen = {}
    for field in VOCABULARY:
        raw = tables["customers"][field].astype("string").fillna("<missing>")
        counts = raw.value_counts().head(50)
        seen[field] = {str(k): int(n) for k, n in counts.items()}
    body = {
        "version": VOCABULARY_VERSION,
        "vocabulary": {k: list(v) for k, v in VOCABULARY.items()},
        "values_seen_at_first_build": seen,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=1, sort_keys=True))


def _year(day: int) -> int:
    return int(day_ts(day).iloc[0].year)
