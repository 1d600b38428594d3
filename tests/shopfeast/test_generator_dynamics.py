"""The generated shop behaves like a shop: funnels in order, daily and weekly rhythm, churners who
fade (with complaints) before they stop, complements bought together, tastes, and review text whose
sentiment follows the stars. Each test measures the data, not the generator's parameters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from shopfeast import generator

DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def shop():
    s = generator.generate(customers=3000, products=300, days=365, seed=8)
    s.frames = {name: t.to_pandas() for name, t in s.tables.items()}
    return s


def test_funnel_steps_come_in_order(shop):
    e = shop.frames["events"].sort_values(["session_id", "event_ts", "event_id"])
    first = e.groupby("session_id").head(1)
    assert (first["event_type"] == "page_view").all()
    gaps = e.groupby("session_id")["event_ts"].diff().dt.total_seconds().dropna()
    assert gaps.min() >= 5.0  # people read pages
    assert e.groupby("session_id").size().max() <= 25
    step = {"product_view": 0, "add_to_cart": 1, "checkout_start": 2, "purchase": 3}
    f = e[e["event_type"].isin(step)]
    when = f.groupby(["session_id", "event_type"])["event_ts"].agg(["min", "max"]).unstack()
    both = when.dropna(subset=[("min", "purchase")])
    assert (both[("max", "add_to_cart")] < both[("min", "checkout_start")]).all()
    assert (both[("min", "checkout_start")] < both[("min", "purchase")]).all()
    # every carted product was viewed first, in the same session
    views = e[e["event_type"] == "product_view"].groupby(["session_id", "product_id"])["event_ts"]
    carts = e[e["event_type"] == "add_to_cart"].set_index(["session_id", "product_id"])["event_ts"]
    assert (views.min().reindex(carts.index).to_numpy() < carts.to_numpy()).all()
    # there is a funnel: fewer sessions at each deeper step
    depth = f.groupby("event_type")["session_id"].nunique()
    assert depth["product_view"] > depth["add_to_cart"] > depth["checkout_start"]
    assert depth["checkout_start"] > depth["purchase"] > 0


def test_purchase_events_are_the_order_lines(shop):
    e, o, i = (shop.frames[t] for t in ("events", "orders", "order_items"))
    bought = e[e["event_type"] == "purchase"]
    placed = bought.groupby("session_id").agg(ts=("event_ts", "min"), n=("product_id", "size"))
    lines = i.groupby("order_id").size()
    assert len(placed) == len(o)
    assert sorted(placed["ts"]) == sorted(o["order_ts"])
    assert sorted(placed["n"]) == sorted(lines)


def test_daily_and_weekly_cycles(shop):
    e = shop.frames["events"]
    starts = e.groupby("session_id")["event_ts"].min()
    by_hour = starts.dt.hour.value_counts().reindex(range(24), fill_value=0)
    assert by_hour.max() > 5 * by_hour.min()
    assert by_hour[19:23].mean() > 2 * by_hour[2:6].mean()
    days = starts.dt.normalize().value_counts()
    per_weekday = days.groupby(days.index.dayofweek).mean()
    assert per_weekday[6] > 1.15 * per_weekday[4]  # Sunday browsing beats Friday


def test_anonymous_visitors_and_guest_orders(shop):
    e, o = shop.frames["events"], shop.frames["orders"]
    anonymous = e.loc[e["customer_id"].isna(), "session_id"].nunique()
    assert 0.05 < anonymous / e["session_id"].nunique() < 0.4
    assert o["customer_id"].isna().sum() > 0


def test_discounts_cancellations_and_refunds(shop):
    o = shop.frames["orders"]
    share = o["status"].value_counts(normalize=True)
    assert 0.01 < share["cancelled"] < 0.1
    assert 0.02 < share["refunded"] < 0.15 and 0.01 < share["partially_refunded"] < 0.1
    refunded = o[o["status"].isin(["refunded", "partially_refunded"])]
    assert (refunded["refund_ts"] > refunded["order_ts"]).all()
    assert (refunded["refunded_amount"] > 0).all()
    partial = o[o["status"] == "partially_refunded"]
    assert (partial["refunded_amount"] < partial["total_amount"]).all()
    full = o[o["status"] == "refunded"]
    assert np.allclose(full["refunded_amount"], full["total_amount"])
    assert o.loc[~o["status"].isin(["refunded", "partially_refunded"]), "refund_ts"].isna().all()
    assert 0.05 < (o["discount_amount"] > 0).mean() < 0.5
    # sales cluster on days: some days almost every order is discounted, most days few are
    by_day = (o["discount_amount"] > 0).groupby(o["order_ts"].dt.normalize()).mean()
    assert (by_day > 0.8).sum() >= 5 and (by_day < 0.2).mean() > 0.5


def _churners(shop) -> pd.DataFrame:
    """Customers whose whole decline, and the 8 weeks before it, lie inside the data."""
    truth = shop.truth["truth_customers"].set_index("customer_id")
    signup = shop.frames["customers"].groupby("customer_id")["signup_ts"].first()
    start = pd.Timestamp(shop.info["start"])
    end = pd.Timestamp(shop.info["end"])
    before = truth["decline_start_ts"] - 56 * DAY
    c = truth[
        (truth["churn_ts"] < end - 30 * DAY)
        & (before > start)
        & (before > signup.reindex(truth.index))
    ]
    assert len(c) > 100
    return c


def test_churners_fade_before_they_stop(shop):
    c = _churners(shop)
    e, o = shop.frames["events"], shop.frames["orders"]
    end = pd.Timestamp(shop.info["end"])
    sess = (
        e[e["customer_id"].isin(c.index)]
        .groupby("session_id")
        .agg(who=("customer_id", "first"), ts=("event_ts", "min"))
    )
    ts = sess["ts"].to_numpy()
    ds = c["decline_start_ts"].reindex(sess["who"]).to_numpy()
    ct = c["churn_ts"].reindex(sess["who"]).to_numpy()
    # visits per customer-day: the 8 weeks before the decline, its second half, after churning
    before = ((ts >= ds - 56 * DAY) & (ts < ds)).sum() / (56 * len(c))
    half = ((c["churn_ts"] - c["decline_start_ts"]) / 2 / DAY).sum()
    late = ((ts >= ds + (ct - ds) / 2) & (ts < ct)).sum() / half
    after = (ts >= ct).sum() / ((end - c["churn_ts"]) / DAY).sum()
    assert late < 0.75 * before, (late, before)
    assert after < 0.15 * before, (after, before)
    # orders fade faster than visits, and stop at the churn day
    mine = o[o["customer_id"].isin(c.index)]
    placed = mine["order_ts"].to_numpy()
    ods = c["decline_start_ts"].reindex(mine["customer_id"]).to_numpy()
    oct_ = c["churn_ts"].reindex(mine["customer_id"]).to_numpy()
    orders_before = ((placed >= ods - 56 * DAY) & (placed < ods)).sum() / (56 * len(c))
    orders_late = ((placed >= ods + (oct_ - ods) / 2) & (placed < oct_)).sum() / half
    assert orders_late < 0.5 * orders_before, (orders_late, orders_before)
    assert (placed >= oct_).sum() == 0


def test_a_decline_comes_with_complaints(shop):
    truth = shop.truth["truth_customers"].set_index("customer_id")
    o = shop.frames["orders"].dropna(subset=["customer_id"])
    ds = truth["decline_start_ts"].reindex(o["customer_id"]).to_numpy()
    ct = truth["churn_ts"].reindex(o["customer_id"]).to_numpy()
    in_decline = (o["order_ts"].to_numpy() >= ds) & (o["order_ts"].to_numpy() < ct)
    returned = o["status"].isin(["refunded", "partially_refunded", "cancelled"]).to_numpy()
    assert in_decline.sum() > 100
    assert returned[in_decline].mean() > 2 * returned[~in_decline].mean()
    r = shop.frames["reviews"]
    rd = truth["decline_start_ts"].reindex(r["customer_id"]).to_numpy()
    declining = r["review_ts"].to_numpy() >= rd
    assert r.loc[declining, "rating"].mean() < r.loc[~declining, "rating"].mean() - 0.5
    # e-mail opt-outs mostly come from customers who are leaving
    c = shop.frames["customers"].sort_values(["customer_id", "updated_at"])
    opted_out = c.groupby("customer_id")["email_opt_in"].agg(lambda s: s.iloc[0] and not s.iloc[-1])
    leaving = truth["at_risk"].reindex(opted_out.index)
    assert opted_out[leaving].mean() > 5 * max(opted_out[~leaving].mean(), 1e-3)


def _features(shop, t: pd.Timestamp) -> pd.DataFrame:
    """A few 90-day features at cutoff t, computed straight from the raw tables."""
    o = shop.frames["orders"].dropna(subset=["customer_id"])
    e = shop.frames["events"].dropna(subset=["customer_id"])
    r = shop.frames["reviews"]
    kept = o[o["status"] != "cancelled"]
    past = kept[kept["order_ts"] < t]
    f = pd.DataFrame({"last": past.groupby("customer_id")["order_ts"].max()})
    f["recency"] = (t - f["last"]) / DAY
    w90 = past[past["order_ts"] >= t - 90 * DAY]
    f["orders_90"] = w90.groupby("customer_id").size()
    f["spend_90"] = (w90["total_amount"] - w90["refunded_amount"]).groupby(w90["customer_id"]).sum()
    e30 = e[(e["event_ts"] < t) & (e["event_ts"] >= t - 30 * DAY)]
    f["sessions_30"] = e30.groupby("customer_id")["session_id"].nunique()
    f["carts_30"] = e30[e30["event_type"] == "add_to_cart"].groupby("customer_id").size()
    o90 = o[(o["order_ts"] < t) & (o["order_ts"] >= t - 90 * DAY)]
    bad = o90["status"] != "completed"
    f["returns_90"] = bad.groupby(o90["customer_id"]).sum()
    r90 = r[(r["review_ts"] < t) & (r["review_ts"] >= t - 90 * DAY)]
    f["low_reviews_90"] = (r90["rating"] <= 2).groupby(r90["customer_id"]).sum()
    c = shop.frames["customers"]
    profile = c[c["updated_at"] < t].sort_values("updated_at").groupby("customer_id").last()
    f["email_opt_in"] = profile["email_opt_in"].reindex(f.index).astype(float)
    future = kept[(kept["order_ts"] >= t) & (kept["order_ts"] < t + 90 * DAY)]
    f["churned"] = (~f.index.isin(future["customer_id"])).astype(int)
    return f.drop(columns="last").fillna(0.0).assign(t=t)


def test_churn_is_learnable_beyond_recency_frequency_and_money(shop):
    start = pd.Timestamp(shop.info["start"])
    cutoffs = [start + k * 30 * DAY for k in range(3, 10)]
    data = pd.concat([_features(shop, t) for t in cutoffs])
    assert 0.15 < data["churned"].mean() < 0.6
    test = data["t"] == cutoffs[-1]
    rfm = ["recency", "orders_90", "spend_90"]
    full = rfm + ["sessions_30", "carts_30", "returns_90", "low_reviews_90", "email_opt_in"]

    def auc(cols: list[str]) -> float:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        model.fit(data.loc[~test, cols], data.loc[~test, "churned"])
        return roc_auc_score(
            data.loc[test, "churned"], model.predict_proba(data.loc[test, cols])[:, 1]
        )

    base, better = auc(rfm), auc(full)
    recency_only = roc_auc_score(data.loc[test, "churned"], data.loc[test, "recency"])
    assert recency_only < 0.9  # not trivial from recency alone
    assert better > 0.8 and better > base + 0.01, (base, better)


def test_complements_are_bought_together(shop):
    i, o = shop.frames["order_items"], shop.frames["orders"]
    truth = shop.truth["truth_products"].set_index("product_id")
    pairs = i.merge(i, on="order_id")
    pairs = pairs[pairs["product_id_x"] != pairs["product_id_y"]]
    comp = truth[["complement_1", "complement_2"]].reindex(pairs["product_id_x"])
    is_comp = (comp.to_numpy() == pairs["product_id_y"].to_numpy()[:, None]).any(axis=1)
    # by chance: two complements among the catalog's products
    share_by_chance = 2 / truth.shape[0]
    assert is_comp.mean() > 10 * share_by_chance
    # and across orders: a customer's next order often holds a complement of the last one
    lines = i.merge(o[["order_id", "customer_id", "order_ts"]], on="order_id")
    lines = lines.dropna(subset=["customer_id"])  # guests; variant_id (contract v1.2) is optional
    lines = lines.sort_values("order_ts")
    nxt = lines.merge(lines, on="customer_id")
    gap = (nxt["order_ts_y"] - nxt["order_ts_x"]) / DAY
    nxt = nxt[(gap > 0) & (gap <= 14)]
    comp = truth[["complement_1", "complement_2"]].reindex(nxt["product_id_x"])
    later = (comp.to_numpy() == nxt["product_id_y"].to_numpy()[:, None]).any(axis=1)
    assert later.mean() > 10 * share_by_chance


def test_customers_buy_to_their_taste(shop):
    truth = shop.truth["truth_customers"].set_index("customer_id")
    i, o, p = (shop.frames[t] for t in ("order_items", "orders", "products"))
    category = p.drop_duplicates("product_id").set_index("product_id")["category"]
    lines = i.merge(o[["order_id", "customer_id"]], on="order_id").dropna(subset=["customer_id"])
    fav = truth["favourite_categories"].reindex(lines["customer_id"]).str.split("|")
    cat = category.reindex(lines["product_id"]).to_numpy()
    in_fav = np.array([c in f for c, f in zip(cat, fav, strict=True)])
    assert in_fav.mean() > 0.6  # three of twelve categories by chance: ~0.3


def test_review_sentiment_follows_the_stars(shop):
    from scipy.stats import spearmanr
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    r = shop.frames["reviews"]
    body = r["body"]
    assert body.isna().any() and (body == "").any()
    assert body.str.contains("<p>", regex=False).any()
    assert body.str.contains("😍|👎|❤️", regex=True).any()
    assert body.str.contains("Qualität|produit|producto", regex=True).any()
    english = r[
        body.str.contains(r"[a-z]{4}", regex=True, na=False)
        & ~body.str.contains(
            "Qualität|Besonderes|zufrieden|produit|Correct|producto|cumple", regex=True, na=False
        )
    ]
    vader = SentimentIntensityAnalyzer()
    score = english["body"].map(lambda s: vader.polarity_scores(s)["compound"])
    by_star = score.groupby(english["rating"]).mean()
    assert list(by_star.index) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert by_star.is_monotonic_increasing, by_star
    assert by_star[1.0] < -0.3 and by_star[5.0] > 0.6
    assert spearmanr(english["rating"], score).statistic > 0.6
    stars = r["rating"].value_counts(normalize=True)
    assert stars[5.0] > stars[1.0]  # reviews lean positive, as they do
