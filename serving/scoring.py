"""Churn predictions and recommendations: online features in, model outputs out.

Each model reads exactly the feature service named on its card (the one it was trained on), and
its matrix is built from the card's input columns, so serving cannot feed a model columns in an
order or a meaning it did not see in training.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from featurestore.odfv import CANDIDATE_COPURCHASE
from featurestore.online import OnlineFeatures, OnlineResult
from serving import prometheus
from serving.candidate_matrix import CandidateMatrix
from serving.catalog import CatalogKeeper
from serving.errors import NotFound
from training.artifacts import LoadedModel
from training.candidates import (
    API_CONFIG,
    CUSTOMER_SERVICE,
    FAVOURITE,
    FREQUENT,
    NEIGHBOUR_IDS,
    NEIGHBOUR_SCORES,
    PRODUCT_SERVICE,
    PURCHASED,
    RECENT,
    SESSION_CARTED,
    SESSION_SERVICE,
    SESSION_VIEWED,
    category_or_none,
    copurchase_scores,
    generate_rows,
    id_list,
    neighbours_from_arrays,
    session_products,
)
from training.matrix import to_matrix
from training.served_log import ServedLog

log = logging.getLogger("serving.scoring")
PROOF_REQUESTS = 20  # recommendations built both ways at start (Scorer._prove)


@dataclass
class Scorer:
    online: OnlineFeatures
    churn_model: LoadedModel
    ranking_model: LoadedModel
    catalog: CatalogKeeper
    candidate_pool: int = 200
    served: ServedLog | None = None  # a sample of what was scored, for the monitor
    # the ranker's scores: `ranking_model.score`, or the same numbers straight from its booster
    rank: Callable[[np.ndarray], np.ndarray] = field(init=False, repr=False)
    # the ranker's matrix from per-product blocks (serving/candidate_matrix.py); None: `read`
    matrix: CandidateMatrix | None = field(init=False, repr=False, default=None)
    # requests still to build the matrix both ways and compare (a difference: blocks off)
    unproven: int = field(init=False, repr=False, default=PROOF_REQUESTS)

    def __post_init__(self) -> None:
        self.rank = booster_scores(self.ranking_model, self.candidate_pool)
        model = self.ranking_model
        per_row = self.online.plan(model.feature_service).request_fields & {CANDIDATE_COPURCHASE}
        matrix = CandidateMatrix(
            self.online, model.feature_service, model.input_columns, per_row=per_row
        )
        self.matrix = matrix if matrix.layout is not None else None

    # -- churn ----------------------------------------------------------------------------------

    async def churn(self, customer_id: str) -> dict[str, Any]:
        now = datetime.now(UTC)
        model = self.churn_model
        res = await self.online.read(
            model.feature_service,
            {"customer_id": [customer_id]},
            {"event_timestamp": now},
            operation="churn",
        )
        if not res.any_found(0):
            raise NotFound("unknown customer")  # the id is the caller's: not echoed
        X = to_matrix(res.columns, model.input_columns, 1)
        p = float(model.predict_proba(X)[0])
        if self.served is not None:
            self.served.append(
                model.name,
                model.version,
                model.feature_service,
                {"customer_id": [customer_id]},
                model.input_columns,
                X,
                np.array([p]),
                now=now,
            )
        threshold = model.threshold if model.threshold is not None else 0.5
        return {
            "customer_id": customer_id,
            "churn_probability": p,
            "churn_label": int(p >= threshold),
            "threshold": threshold,
            "model": {
                "name": model.name,
                "version": model.version,
                "feature_service": model.feature_service,
            },
            **feature_ages(res, 0, now),
        }

    # -- recommendations ------------------------------------------------------------------------

    async def recommend(self, customer_id: str, k: int, exclude_purchased: bool) -> dict[str, Any]:
        now = datetime.now(UTC)
        began = time.monotonic()  # product rows checked since by a concurrent request: current
        catalog = await self.catalog.ensure_loaded()
        memo: dict = {}  # the customer's rows, read once for candidates and ranking alike
        model = self.ranking_model
        # one round trip for every view keyed by the customer alone (candidates, session,
        # the ranker's customer views): the reads below take them from the memo
        services = [CUSTOMER_SERVICE, model.feature_service]
        if self.online.has_service(SESSION_SERVICE):
            services.append(SESSION_SERVICE)
        await self.online.prefetch(
            services, {"customer_id": [customer_id]}, memo, operation="candidates_customer"
        )
        cust = await self.online.read(
            CUSTOMER_SERVICE,
            {"customer_id": [customer_id]},
            operation="candidates_customer",
            memo=memo,
        )
        known = cust.any_found(0)
        recent = id_list(cust.columns.get(RECENT, [None])[0])
        frequent = id_list(cust.columns.get(FREQUENT, [None])[0])
        favourite = category_or_none(cust.columns.get(FAVOURITE, [None])[0])
        exclude: set[str] = set()
        if exclude_purchased:
            bought = id_list(cust.columns.get(PURCHASED, [None])[0])
            exclude = set(recent) | set(frequent) | set(bought)
        if not known:
            prometheus.COLD_STARTS.inc()
            items = [
                {"product_id": pid, "score": None, "source": "popular"}
                for pid in catalog.popular(k)
            ]
            return self._answer(customer_id, items, cold_start=True, candidates=len(items))
        session = await self._session(customer_id, memo)
        looked_up = list(dict.fromkeys([*recent, *session]))
        # The products' rows are cached in process; the ranking read checks every cached row
        # it uses against Redis, the neighbours' rows read here included (`recheck`): when one
        # had moved (a write since it was cached), the candidates are drawn again from the
        # rows the check read anew (once: a second move is a write during this request).
        for attempt in (1, 2):
            found = await self._candidates_and_features(
                customer_id, recent, session, looked_up, favourite, frequent, exclude, catalog,
                memo, now, began, recheck=attempt == 1 and bool(looked_up),
            )  # fmt: skip
            if found is None or not found[4]:
                break
        if found is None:
            return self._answer(customer_id, [], cold_start=False, candidates=0)
        cands, ids, n, X, _ = found
        scores = self.rank(X)
        ranked = np.argsort(-scores, kind="stable")
        order = ranked[:k]
        if self.served is not None:
            ranks = np.empty(n, dtype=np.int32)
            ranks[ranked] = np.arange(1, n + 1)
            self.served.append(
                model.name,
                model.version,
                model.feature_service,
                {"customer_id": [customer_id] * n, "product_id": ids},
                model.input_columns,
                X,
                scores,
                ranks,
                now=now,
            )
        sources = [source for _, source, _ in cands]
        items = [
            {"product_id": ids[i], "score": float(scores[i]), "source": sources[i]} for i in order
        ]
        return self._answer(customer_id, items, cold_start=False, candidates=n)

    async def _candidates_and_features(
        self,
        customer_id: str,
        recent: list[str],
        session: list[str],
        looked_up: list[str],
        favourite: str | None,
        frequent: list[str],
        exclude: set[str],
        catalog,
        memo: dict,
        now: datetime,
        began: float,
        recheck: bool,
    ):
        """(candidates, their ids, how many, the ranker's matrix, whether a `recheck` row had
        moved), or None when the generator offers none."""
        model = self.ranking_model
        neighbours = {}
        if looked_up:
            near = await self.online.read(
                PRODUCT_SERVICE,
                {"product_id": looked_up},
                operation="candidates_products",
                check_cached=False,  # checked by the ranking read below
            )
            neighbours = neighbours_from_arrays(
                near.columns["product_id"],
                near.columns.get(NEIGHBOUR_IDS, [None] * len(looked_up)),
                near.columns.get(NEIGHBOUR_SCORES, [None] * len(looked_up)),
            )
        # what the ranker's test set was drawn with, up to the configured pool
        pool = self.candidate_pool
        config = replace(API_CONFIG, popular=pool, max_candidates=pool)
        cands = generate_rows(
            recent,
            neighbours,
            favourite,
            catalog,
            rng=None,
            config=config,
            exclude=exclude,
            session=session,
            frequent=frequent,
        )
        ids = [pid for pid, _, _ in cands]
        if not ids:
            return None
        n = len(ids)
        request: dict[str, Any] = {"event_timestamp": now}
        if CANDIDATE_COPURCHASE in self.online.plan(model.feature_service).request_fields:
            retrieval = copurchase_scores(recent, neighbours)  # as training computes it
            request[CANDIDATE_COPURCHASE] = [retrieval.get(pid, 0.0) for pid in ids]
        if self.matrix is not None:
            rows = await self.online.read_candidates(
                model.feature_service,
                {"customer_id": customer_id},
                "product_id",
                ids,
                request,
                memo,
                recheck=looked_up if recheck else None,
                since=began,
                operation="ranking",
            )
            if rows is not None:
                X = self.matrix.build(rows, customer_id, ids, now, request)
                if self.unproven > 0:
                    await self._prove(X, customer_id, ids, request, memo)
                return cands, ids, n, X, rows.rechanged
        feats = await self.online.read(
            model.feature_service,
            {"customer_id": [customer_id] * n, "product_id": ids},
            request,
            operation="ranking",
            memo=memo,
            recheck={"product_id": looked_up} if recheck else None,
            since=began,
        )
        return cands, ids, n, to_matrix(feats.columns, model.input_columns, n), feats.rechanged

    async def _prove(self, X: np.ndarray, customer_id: str, ids, request, memo) -> None:
        """The first requests also read their features the general way and compare the two
        matrices bit for bit: a difference turns the blocks off for this process (a product
        row written between the two reads would too: the general way is never wrong)."""
        model = self.ranking_model
        feats = await self.online.read(
            model.feature_service,
            {"customer_id": [customer_id] * len(ids), "product_id": ids},
            request,
            operation="ranking_proof",
            memo=memo,
        )
        expected = to_matrix(feats.columns, model.input_columns, len(ids))
        self.unproven -= 1
        if not same_bits(X, expected):
            self.matrix = None
            bad = [
                c
                for j, c in enumerate(model.input_columns)
                if not same_bits(X[:, j], expected[:, j])
            ]
            log.warning("ranker matrix from product blocks differs (%s): turned off", bad[:5])

    async def _session(self, customer_id: str, memo: dict | None = None) -> list[str]:
        """The live session's products (customer_session, written by `shopfeast stream`): carted,
        then viewed. None without the service (a registry applied before it existed)."""
        if not self.online.has_service(SESSION_SERVICE):
            return []
        res = await self.online.read(
            SESSION_SERVICE,
            {"customer_id": [customer_id]},
            operation="candidates_session",
            memo=memo,
        )
        return session_products(
            res.columns.get(SESSION_CARTED, [None])[0], res.columns.get(SESSION_VIEWED, [None])[0]
        )

    def _answer(
        self, customer_id: str, items: list[dict], cold_start: bool, candidates: int
    ) -> dict[str, Any]:
        for rank, item in enumerate(items, start=1):
            item["rank"] = rank
        return {
            "customer_id": customer_id,
            "cold_start": cold_start,
            "candidates_scored": 0 if cold_start else candidates,
            "model": {
                "name": self.ranking_model.name,
                "version": self.ranking_model.version,
                "feature_service": self.ranking_model.feature_service,
            },
            "items": items,
        }


def booster_scores(model: LoadedModel, rows: int = 200) -> Callable[[np.ndarray], np.ndarray]:
    """`model.score` for an XGBoost tree model, without the sklearn wrapper's per-call work.

    XGBRanker.predict is the booster's `inplace_predict` over the best iteration's trees, but
    around it sets and restores XGBoost's global configuration (a JSON round trip each way) and
    works out the iteration range again: ~0.25 ms of a 200-candidate ranking's ~0.8 ms (issue
    17). The same call is made here with the range worked out once. Proven equal to
    `model.score` at start-up on two matrices (all missing; random values with a third
    missing): any other model, or a difference, keeps `model.score`.
    """
    est = model.estimator
    if not type(est).__module__.startswith("xgboost.") or getattr(est, "booster", None) not in (
        None,
        "gbtree",
        "dart",
    ):
        return model.score
    try:
        booster = est.get_booster()
        try:
            trees = (0, est.best_iteration + 1)
        except AttributeError:  # trained without early stopping: every tree
            trees = (0, 0)
        missing = est.missing
    except Exception:
        return model.score

    def score(X: np.ndarray) -> np.ndarray:
        raw = booster.inplace_predict(
            X, iteration_range=trees, predict_type="value", missing=missing
        )
        return np.asarray(raw, dtype=float)

    width = len(model.input_columns)
    rng = np.random.default_rng(17)
    probe = rng.normal(size=(rows, width)) * rng.choice([0.1, 1.0, 100.0], size=(rows, width))
    probe[rng.random((rows, width)) < 0.3] = np.nan
    try:
        same = all(
            np.array_equal(score(X), model.score(X))
            for X in (np.full((rows, width), np.nan), probe)
        )
    except Exception:
        return model.score
    return score if same else model.score


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal arrays to the bit, every NaN alike."""
    if a.shape != b.shape:
        return False
    a, b = (np.where(np.isnan(x), np.nan, x) for x in (a, b))
    return bool(np.array_equal(a.view(np.uint64), b.view(np.uint64)))


def feature_ages(res: OnlineResult, i: int, now: datetime) -> dict[str, Any]:
    """How old the stored rows behind a prediction are: per view, and the oldest."""
    per_view = {
        view: (now - ts[i]).total_seconds()
        for view, ts in res.timestamps.items()
        if ts[i] is not None
    }
    return {
        "feature_age_seconds": max(per_view.values()) if per_view else None,
        "feature_age_by_view": per_view,
    }
