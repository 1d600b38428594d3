"""customer_reviews: every (customer, day) recomputed naively from the raw reviews, topics only from
the model's cutoff on, and daily incremental runs equal to one historical run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines import review_nlp
from pipelines.families import customer_reviews
from pipelines.run import read_source, run
from pipelines.topics import TOPIC_COLUMNS
from tests.support.pipelines_shop import DAY, START, build, daily_batches, typed, write_batch

SOURCE = customer_reviews.SOURCE
TEXTS = (
    ("Love it", "I love this lamp, the light is warm and bright."),
    ("Terrible", "Awful kettle, it broke after two days and leaks water."),
    (None, "Good shoes, comfortable for walking but the laces are short."),
    ("Okay", "The garden hose is fine, nothing special."),
    ("Bad", "<p>The <b>charger</b> is bad &amp; gets hot.</p><br/>"),
    (None, "😍😍👍"),
    ("Schlecht", "Schlechte Qualität, leider kaputt."),
    (None, ""),
    ("Great", None),
    ("Nice", "Pretty blanket, soft and warm, the colour is lovely."),
)


def with_reviews(shop: dict[str, pd.DataFrame], seed: int, days: int) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    customers = shop["customers"].drop_duplicates("customer_id")
    rows = []
    for i in range(6 * len(customers)):
        c = customers.iloc[int(rng.integers(len(customers)))]
        t = c["signup_ts"] + pd.to_timedelta(int(rng.integers(0, 45 * 86400)), unit="s")
        if i % 10 == 0:
            t = t.ceil("D")  # exactly at midnight: visible from the next snapshot only
        if t >= START + days * DAY:
            continue
        title, body = TEXTS[i % len(TEXTS)]
        rows.append(
            dict(
                review_id=f"r{i}",
                customer_id=c["customer_id"] if i % 17 else None,
                product_id=f"p{i % 12}",
                rating=float(1 + i % 5),
                title=title,
                body=body,
                review_ts=t,
            )
        )
    return {**shop, "reviews": typed("reviews", rows)}


@pytest.fixture(scope="module")
def shop() -> dict[str, pd.DataFrame]:
    days = 60
    return with_reviews(build(seed=5, customers=30, products=12, days=days), seed=5, days=days)


@pytest.fixture(autouse=True)
def small_topic_threshold(monkeypatch):
    """The shop is tiny: let the topic model train after 40 reviews over 10 days."""
    monkeypatch.setattr(review_nlp, "MIN_TRAIN_REVIEWS", 40)
    monkeypatch.setattr(review_nlp, "MIN_TRAIN_DAYS", 10)


@pytest.fixture(scope="module")
def historical(shop, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reviews_historical")
    write_batch(root, shop, "all")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(review_nlp, "MIN_TRAIN_REVIEWS", 40)
        mp.setattr(review_nlp, "MIN_TRAIN_DAYS", 10)
        run(root, "historical", only=["customer_reviews"], echo=False)
    return root


def _us(ts: pd.Series | pd.Timestamp) -> np.ndarray | np.datetime64:
    """UTC timestamps as naive datetime64[us], for plain numpy comparisons."""
    if isinstance(ts, pd.Timestamp):
        return np.datetime64(ts.tz_convert(None), "us")
    return ts.dt.tz_convert(None).to_numpy("datetime64[us]")


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else np.nan


def expected(mine: dict[str, np.ndarray], t: pd.Timestamp, model_day: pd.Timestamp) -> dict:
    """The contract's definitions, straight from one customer's scored reviews."""
    life = mine["ts"] < _us(t)
    win = life & (mine["ts"] >= _us(t - 90 * DAY))
    felt = mine["sentiment"][win]
    felt = felt[~np.isnan(felt)]
    out = {
        "reviews_90d": int(win.sum()),
        "avg_rating_90d": _nanmean(mine["rating"][win]),
        "avg_sentiment_90d": _nanmean(felt),
        "avg_sentiment_lifetime": _nanmean(mine["sentiment"][life]),
        "negative_review_share_90d": float((felt <= -0.05).mean()) if len(felt) else np.nan,
    }
    read = mine["topics"][life]
    read = read[~np.isnan(read[:, 0])]
    known = len(read) and t >= model_day
    means = read.mean(axis=0) if known else np.full(len(TOPIC_COLUMNS), np.nan)
    out.update(zip(TOPIC_COLUMNS, means, strict=True))
    return out


def test_every_customer_day_matches_a_naive_recomputation(shop, historical):
    rows = read_source(historical, SOURCE).sort_values(["customer_id", "event_timestamp"])
    model = review_nlp.ensure_topic_model(historical, shop["reviews"])
    assert model is not None, "the shop should have enough reviews for a topic model"
    cutoff = model.cutoff
    assert cutoff == review_nlp.topic_cutoff(shop["reviews"]["review_ts"], 40, 10)
    scored = review_nlp.enrich_reviews(shop["reviews"], model)
    signup = shop["customers"].groupby("customer_id")["signup_ts"].min()
    days = pd.date_range(rows["event_timestamp"].min(), rows["event_timestamp"].max(), freq="D")
    names = [
        "reviews_90d",
        "avg_rating_90d",
        "avg_sentiment_90d",
        "avg_sentiment_lifetime",
        "negative_review_share_90d",
        *TOPIC_COLUMNS,
    ]
    checked = 0
    for customer, signed in signup.items():
        mine_rows = rows[rows["customer_id"] == customer]
        stamps = _us(mine_rows["event_timestamp"])
        values = mine_rows[names].to_numpy(float)
        frame = scored[scored["customer_id"] == customer]
        mine = {
            "ts": _us(frame["review_ts"]),
            "rating": frame["rating"].to_numpy(float),
            "sentiment": frame["sentiment"].to_numpy(float),
            "topics": frame[TOPIC_COLUMNS].to_numpy(float),
        }
        for t in days:
            at = np.searchsorted(stamps, _us(t), side="right") - 1
            if t <= signed.floor("D"):  # not a customer yet at T: no value
                assert at < 0, (customer, t)
                continue
            assert at >= 0, (customer, t)
            want = expected(mine, t, cutoff)
            want = np.array([want[n] for n in names], dtype=float)
            np.testing.assert_allclose(
                values[at], want, rtol=0, atol=1e-9, err_msg=f"{customer} at {t}"
            )
            checked += 1
    assert checked > 1000
    # The pairs above include topics before and after the cutoff, and customers without reviews.
    assert rows.loc[rows["event_timestamp"] < cutoff, TOPIC_COLUMNS].isna().all().all()
    assert rows.loc[rows["event_timestamp"] >= cutoff, "topic_0"].notna().any()
    assert (rows["reviews_90d"] == 0).any()


def test_topic_model_saved_with_its_version(historical):
    pointer = review_nlp._pointer(historical)
    assert pointer.exists()
    version = pd.read_json(pointer, typ="series")["version"]
    assert (historical / "models" / "topics" / version / "metadata.json").exists()


def test_daily_incremental_runs_equal_one_historical_run(shop, historical, tmp_path):
    for i, (name, tables) in enumerate(daily_batches(shop)):
        write_batch(tmp_path, tables, name)
        if i % 10 == 9:
            run(tmp_path, "incremental", only=["customer_reviews"], echo=False)
    run(tmp_path, "incremental", only=["customer_reviews"], echo=False)
    pd.testing.assert_frame_equal(
        read_source(tmp_path, SOURCE), read_source(historical, SOURCE), check_exact=True
    )
    # And a rerun is a no-op.
    outcome = run(tmp_path, "incremental", only=["customer_reviews"], echo=False)
    assert outcome[0].start_day is None


def test_compute_without_persist_scores_sentiment_and_leaves_topics_null(shop):
    from pipelines.run import compute_rows
    from pipelines.windows import Snapshots

    snaps = Snapshots.between(START, START + 59 * DAY, historical=True)
    tables = {"customers": shop["customers"], "reviews": shop["reviews"]}
    rows = compute_rows(customer_reviews, tables, snaps)
    assert rows["avg_sentiment_lifetime"].notna().any()
    assert rows[TOPIC_COLUMNS].isna().all().all()
