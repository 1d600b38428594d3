"""The product rows cached in the serving process against a real Redis (the repo's redis profile).

A recommendation reads its 200 candidates' product rows from the process's cache, checking each
against the `_ts` Redis holds for it in the same round trip (featurestore.online, `exact_cache`).
These tests serve the same requests through that path and through a reader that caches nothing
(every product row read from Redis for every request) and compare the answers; then write product
rows with Feast (`write_to_online_store`, as a push or a materialization does) and check that the
very next request sees them.
"""

from __future__ import annotations

import asyncio
import contextvars
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

import serving.scoring as scoring
from featurestore.online import OnlineFeatures
from featurestore.store import open_store
from serving.app import build_resources
from serving.scoring import Scorer
from tests.support.serving_support import shared_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="session")
def store(request, tmp_path_factory, redis_url, postgres_dsn):
    return shared_store(request, tmp_path_factory, redis_url, postgres_dsn)


@pytest.fixture
def env(store, monkeypatch):
    store.apply_env(monkeypatch)
    # one request time for both paths: ages (days since ...) are then the same numbers
    monkeypatch.setattr(scoring, "datetime", _Frozen)
    return store


class _Frozen(datetime):
    @classmethod
    def now(cls, tz=None):  # noqa: ARG003 - the scorer asks for UTC
        return NOW


def _scorers(env):
    """(the app's scorer: products cached and checked, a scorer reading every row from Redis,
    the app's resources). Built inside the running loop (Feast's async client binds to it)."""
    res = build_resources(env.settings())
    uncached = OnlineFeatures(res.store, cached_entities=())
    plain = Scorer(
        uncached, res.churn_model, res.ranking_model, res.catalog, res.scorer.candidate_pool
    )
    return res.scorer, plain, res


async def _both(cached: Scorer, plain: Scorer, customer: str, k: int = 100):
    return (
        await cached.recommend(customer, k, exclude_purchased=False),
        await plain.recommend(customer, k, exclude_purchased=False),
    )


def test_cached_and_uncached_paths_answer_the_same(env) -> None:
    async def main():
        cached, plain, res = _scorers(env)
        await res.catalog.refresh()
        assert res.online.exact_cache()  # the path under test: checked against Redis
        customers = [*env.customers[:12], "nobody"]
        first = [await _both(cached, plain, c) for c in customers]
        again = [await _both(cached, plain, c) for c in customers]  # served from the cache
        return first, again, res

    first, again, res = asyncio.run(main())
    scored = 0
    for a, b in [*first, *again]:
        assert a == b  # same products, sources, ranks and scores, to the last bit
        scored += not a["cold_start"]
    assert scored >= 20 and any(a["items"] for a, _ in first)
    assert len(res.online.cache.rows["product_stats"]) == len(env.products)


def _row(fs, view: str, product: str) -> pd.DataFrame:
    """The product's stored row of `view` as Feast serves it, as a frame Feast can write back."""
    features = [f.name for f in fs.get_feature_view(view).features]
    served = fs.get_online_features(
        [f"{view}:{f}" for f in features], [{"product_id": product}]
    ).to_dict()
    return pd.DataFrame({"product_id": [product], **{f: served[f] for f in features}})


def _write(fs, view: str, frame: pd.DataFrame, when: datetime) -> None:
    stamp = pd.Timestamp(when)
    fs.write_to_online_store(view, frame.assign(event_timestamp=stamp, created_timestamp=stamp))


def test_a_written_product_row_is_served_by_the_next_request(env) -> None:
    """A new product_stats row of a candidate, and a new co-purchase list of one of the
    customer's recent products (what candidates are drawn from), both written after the rows
    were cached: the next request answers as the uncached path does, on the new rows."""
    fs = open_store("redis", env.data_dir)
    customer = env.customers[4]
    recent = fs.get_online_features(
        ["customer_activity:recent_product_ids"], [{"customer_id": customer}]
    ).to_dict()["recent_product_ids"][0]
    assert recent, "the test customer should have recent products"
    seed = recent[0]
    written = NOW + timedelta(days=400)  # newer than anything stored, whatever the clock

    async def main():
        cached, plain, res = _scorers(env)
        await res.catalog.refresh()
        before, same = await _both(cached, plain, customer)
        assert before == same
        candidate, old_stats = next(  # a candidate with a price
            (i["product_id"], row)
            for i in reversed(before["items"])
            if pd.notna((row := _row(fs, "product_stats", i["product_id"]))["product_price"][0])
        )
        old_lists = _row(fs, "product_copurchase", seed)
        # the candidate's price tripled; the seed's only neighbour: the lowest-ranked product
        # offered only for its popularity so far (in the customer's categories or overall)
        stats = old_stats.assign(product_price=old_stats["product_price"] * 3 + 1.0)
        target = next(
            i["product_id"]
            for i in reversed(before["items"])
            if i["source"] in ("category_fit", "category_popular", "popular", "random")
        )
        lists = old_lists.assign(copurchase_product_ids=[[target]], copurchase_scores=[[7.5]])
        try:
            _write(fs, "product_stats", stats, written)
            _write(fs, "product_copurchase", lists, written)
            after, expected = await _both(cached, plain, customer)
            price = res.online.cache.rows["product_stats"][(candidate,)][2]["product_price"]
            return before, after, expected, target, price, float(stats["product_price"][0])
        finally:  # the shared store's values back (newer still: Feast keeps the newest)
            _write(fs, "product_stats", old_stats, written + timedelta(seconds=1))
            _write(fs, "product_copurchase", old_lists, written + timedelta(seconds=1))

    before, after, expected, target, price, new_price = asyncio.run(main())
    assert price == new_price  # the cache holds the written row
    assert after == expected  # and served it, as a read of every row from Redis does
    sources = {i["product_id"]: i["source"] for i in after["items"]}
    assert sources[target] == "copurchase"  # drawn from the new list
    assert after != before


def test_concurrent_requests_share_their_checks(env, monkeypatch) -> None:
    """Requests in flight together check a product row once between them (a check sent after
    a request began covers it) and answer as the uncached path does."""
    import featurestore.online as online_module

    sent: list[int] = []
    real = online_module._send_and_read

    async def counting(client, commands):
        sent.append(len(commands))
        return await real(client, commands)

    async def main():
        cached, plain, res = _scorers(env)
        await res.catalog.refresh()
        customers = env.customers[:8]
        expected = [await plain.recommend(c, 100, exclude_purchased=False) for c in customers]
        for c in customers:  # every product cached
            await cached.recommend(c, 100, exclude_purchased=False)
        monkeypatch.setattr(online_module, "_send_and_read", counting)
        one_by_one = [await cached.recommend(c, 100, exclude_purchased=False) for c in customers]
        alone = sum(sent)
        sent.clear()
        # All eight begin (their start time taken), then each goes on once the one before it
        # has answered: left to the event loop, requests may run in lockstep, every check in
        # flight before any reply, and share nothing (CI once: 648 commands both ways). The
        # catalog step is the first await after a request's start, so it is the gate.
        turns = [asyncio.Event() for _ in customers]
        turns[0].set()
        turn: contextvars.ContextVar[int] = contextvars.ContextVar("turn")
        loaded = cached.catalog.ensure_loaded

        async def in_turn():
            await turns[turn.get()].wait()
            return await loaded()

        monkeypatch.setattr(cached.catalog, "ensure_loaded", in_turn)

        async def request(i: int, customer: str):
            turn.set(i)
            try:
                return await cached.recommend(customer, 100, exclude_purchased=False)
            finally:
                if i + 1 < len(turns):
                    turns[i + 1].set()

        together = await asyncio.gather(*(request(i, c) for i, c in enumerate(customers)))
        return expected, one_by_one, list(together), alone, sum(sent)

    expected, one_by_one, together, alone, shared = asyncio.run(main())
    assert one_by_one == expected and together == expected
    assert shared < alone  # fewer `_ts` reads: the checks were shared


# -- the ranker's matrix from per-product blocks (serving/candidate_matrix.py) ----------------


def test_matrix_from_product_blocks_is_the_read_to_the_bit(env) -> None:
    """Every request builds the ranker's matrix both ways (`Scorer._prove`, kept on here for
    all of them): blocks of cached product rows, and `read` + `to_matrix`. One bit of
    difference would turn the blocks off; the answers equal the uncached reader's."""

    async def main():
        cached, plain, res = _scorers(env)
        await res.catalog.refresh()
        assert cached.matrix is not None and plain.matrix is None  # uncached: the general way
        cached.unproven = 10**6
        answers = []
        for customer in env.customers[:20]:
            for exclude in (True, False):
                answers.append(
                    (
                        await cached.recommend(customer, 100, exclude),
                        await plain.recommend(customer, 100, exclude),
                    )
                )
        return cached, answers

    cached, answers = asyncio.run(main())
    assert cached.matrix is not None  # no request found a difference
    assert len(cached.matrix.blocks) > 0
    assert all(a == b for a, b in answers)
    assert sum(bool(a["items"]) for a, _ in answers) >= 20


def test_a_written_product_row_rebuilds_its_block(env) -> None:
    """A candidate's product_stats row and a co-purchase list written after their blocks were
    made: the next request rebuilds those blocks from the new rows (checked both ways)."""
    fs = open_store("redis", env.data_dir)
    customer = env.customers[6]
    written = NOW + timedelta(days=500)

    async def main():
        cached, plain, res = _scorers(env)
        await res.catalog.refresh()
        cached.unproven = 10**6
        before = await cached.recommend(customer, 100, exclude_purchased=False)
        candidate, old_stats = next(
            (i["product_id"], row)
            for i in before["items"]
            if pd.notna((row := _row(fs, "product_stats", i["product_id"]))["product_price"][0])
        )
        neighbour = before["items"][-1]["product_id"]
        old_lists = _row(fs, "product_copurchase", neighbour)
        recent = fs.get_online_features(
            ["customer_activity:recent_product_ids"], [{"customer_id": customer}]
        ).to_dict()["recent_product_ids"][0]
        block = cached.matrix.blocks[candidate]
        stats = old_stats.assign(product_price=old_stats["product_price"] * 5 + 2.0)
        lists = old_lists.assign(
            copurchase_product_ids=[list(recent[:2])],
            copurchase_scores=[[3.25, 1.5][: len(recent[:2])]],
        )
        try:
            _write(fs, "product_stats", stats, written)
            _write(fs, "product_copurchase", lists, written)
            after, expected = await _both(cached, plain, customer)
            return before, after, expected, block, cached, candidate, neighbour
        finally:
            _write(fs, "product_stats", old_stats, written + timedelta(seconds=1))
            _write(fs, "product_copurchase", old_lists, written + timedelta(seconds=1))

    before, after, expected, block, cached, candidate, neighbour = asyncio.run(main())
    assert cached.matrix is not None  # built both ways: the same bits
    assert after == expected
    assert cached.matrix.blocks[candidate] is not block  # made again from the new row
    assert cached.matrix.blocks[candidate][2].price != block[2].price
    assert cached.matrix.blocks[neighbour][2].pairs  # its new list, with the recent products
    assert after != before


def test_a_matrix_that_differs_turns_the_blocks_off(env, monkeypatch) -> None:
    """The proof can fail: a block matrix one ulp off in one column is caught on the first
    request, which (like every later one) is then answered the general way."""
    import numpy as np

    import serving.candidate_matrix as candidate_matrix

    real = candidate_matrix.match_for_candidates

    def off_by_one_ulp(side, products):
        columns = real(side, products)
        columns[6] = np.nextafter(columns[6], np.inf)  # copurchase_score
        return columns

    monkeypatch.setattr(candidate_matrix, "match_for_candidates", off_by_one_ulp)

    async def main():
        cached, plain, res = _scorers(env)
        await res.catalog.refresh()
        answers = [await _both(cached, plain, c) for c in env.customers[:3]]
        return cached, answers

    cached, answers = asyncio.run(main())
    assert cached.matrix is None
    assert all(a == b for a, b in answers)
