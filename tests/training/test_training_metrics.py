"""Ranking and classification measures against hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.evaluation import (
    ap_at_k,
    classification_metrics,
    ndcg_at_k,
    paired_auc_difference,
    paired_difference,
    ranking_metrics,
    recall_at_k,
    weighted_auc,
)


def test_ranking_measures_on_a_worked_example() -> None:
    ranked = ["a", "x", "b", "y"]
    rel = {"a", "b", "c"}
    assert recall_at_k(ranked, rel, 3) == pytest.approx(2 / 3)
    dcg = 1 + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranked, rel, 3) == pytest.approx(dcg / idcg)
    assert ap_at_k(ranked, rel, 3) == pytest.approx((1 + 2 / 3) / 3)
    assert ndcg_at_k(["a", "b"], {"a", "b"}, 10) == pytest.approx(1.0)
    assert ap_at_k(["q", "a"], {"a"}, 10) == pytest.approx(0.5)


def test_queries_without_relevant_items_are_skipped() -> None:
    m = ranking_metrics([(["a"], {"a"}), (["b"], set())], k=10)
    assert m["queries"] == 1 and m["ndcg@10"] == pytest.approx(1.0)


def test_classification_metrics() -> None:
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.1, 0.2, 0.8, 0.7, 0.3, 0.4])
    m = classification_metrics(y, p)
    assert m["roc_auc"] == pytest.approx(8 / 9)
    assert m["positive_rate"] == pytest.approx(0.5)
    assert m["log_loss"] > 0


def test_paired_difference_by_hand_and_its_interval() -> None:
    rel = {"x"}
    better = [(["x"], rel), (["x"], rel), (["y", "x"], rel), (["y"], set())]  # last: skipped
    worse = [(["y", "x"], rel), (["y"], rel), (["y", "x"], rel), (["x"], set())]
    d = paired_difference(better, worse, k=10, resamples=500, seed=1)
    half = 1.0 - 1.0 / np.log2(3)  # rank 1 against rank 2
    assert d["queries"] == 3
    assert d["mean"] == pytest.approx((half + 1.0 + 0.0) / 3)
    assert 0.0 <= d["low"] <= d["mean"] <= d["high"] <= 1.0
    same = paired_difference(better, better, k=10, resamples=100)
    assert same["mean"] == same["low"] == same["high"] == 0.0


def test_weighted_auc_matches_sklearn_with_ties_and_weights() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    p = np.round(rng.random(400) + 0.4 * y, 1)  # many ties
    w = rng.integers(0, 4, 400).astype(float)
    rank = np.unique(p, return_inverse=True)[1]
    assert weighted_auc(y.astype(float), rank, w) == pytest.approx(
        roc_auc_score(y, p, sample_weight=w)
    )


def test_paired_auc_difference_point_interval_and_customer_draws() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 600)
    good = rng.random(600) + 0.8 * y
    weak = rng.random(600) + 0.2 * y
    customers = rng.integers(0, 150, 600)
    d = paired_auc_difference(y, good, weak, groups=customers, resamples=400, seed=2)
    assert d["mean"] == pytest.approx(roc_auc_score(y, good) - roc_auc_score(y, weak))
    assert 0 < d["low"] < d["mean"] < d["high"]
    assert d["groups"] == len(set(customers))
    same = paired_auc_difference(y, good, good, resamples=50)
    assert same["mean"] == same["low"] == same["high"] == 0.0
    # a weaker model's difference is negative and its interval says so
    assert paired_auc_difference(y, weak, good, resamples=200)["high"] < 0
