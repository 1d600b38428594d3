"""Batched reads of a Feast feature service from the online store.

`FeatureStore.get_online_features` costs about 1 ms per entity row in Python on this machine (proto
assembly, type checks, a pyarrow round trip per on-demand view): too much for scoring 200
candidates in a few milliseconds. This module gives the same answer through Feast's own parts:

- a service is resolved once by Feast's request planner (`_get_online_request_context`): which
  feature views, which of their features (on-demand inputs included), which request fields;
- stored features come from the provider's `online_read_async`: one Redis pipeline per view, each
  unique entity key once;
- values are decoded by Feast's `feast_value_type_to_python_type`; request data takes Feast's proto
  round trip (online timestamps are whole seconds); on-demand views run through their own
  `transform_dict` / `transform_arrow`, as `get_online_features` calls them.

tests/serving/test_serving_api.py (test_batched_reads_equal_get_online_features) proves the
result equals `get_online_features`, feature by feature.

Views of the entities in `cached_entities` (products: a few thousand rows shared by every request,
rewritten once a day by materialization) are kept decoded in memory and refreshed in the background
by `refresh_cached`; a row older than `max_stale_s` is read again from Redis.
"""

from __future__ import annotations

import asyncio
import operator
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice, repeat
from typing import Any

import pyarrow as pa
import redis.asyncio as redis_asyncio
from feast import FeatureService, FeatureStore, FeatureView, OnDemandFeatureView
from feast.errors import FeatureServiceNotFoundException
from feast.infra.key_encoding_utils import (
    deserialize_entity_key,
    serialize_entity_key,
    serialize_entity_key_prefix,
)
from feast.infra.online_stores.online_store import OnlineStore
from feast.infra.online_stores.redis import RedisOnlineStore, RedisType, _versioned_fv_name
from feast.infra.provider import Provider, get_provider
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values
from feast.utils import _get_online_request_context
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp
from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser

from featurestore.errors import StoreUnavailable
from featurestore.redis_encoding import string_redis_keys


@contextmanager
def _untimed(operation: str) -> Iterator[None]:
    yield


EPOCH = datetime.fromtimestamp(0, tz=UTC)
_UNCHECKED = object()  # a cached row's version when its read did not give it (not Redis)
_ABSENT = object()  # the version of a row not cached: equal to no stored `_ts`
_NO_ENTRY = (None, None, None, None, _ABSENT)  # a row not cached, read as an entry
_NO_ENTRIES = repeat(_NO_ENTRY)
# (event timestamp, values); (None, None) when the entity has no row
Row = tuple[datetime | None, dict[str, Any] | None]


@dataclass(frozen=True)
class ViewPlan:
    """One stored feature view of a service: what to read and how to decode it."""

    view: FeatureView
    features: tuple[str, ...]
    join_keys: tuple[str, ...]
    types: dict[str, ValueType]
    cached: bool


@dataclass(frozen=True)
class ServicePlan:
    """A feature service as Feast's planner resolves it."""

    name: str
    views: tuple[ViewPlan, ...]
    odfvs: tuple[OnDemandFeatureView, ...]
    request_fields: frozenset[str]
    feature_names: tuple[str, ...]  # what the service returns, in its declared order
    join_keys: tuple[str, ...]
    key_types: dict[str, ValueType]


@dataclass
class OnlineResult:
    """Columns of one read, row-aligned with the entity rows asked for."""

    columns: dict[str, list[Any]]
    found: dict[str, list[bool]] = field(default_factory=dict)  # per view: a stored row existed
    timestamps: dict[str, list[datetime | None]] = field(default_factory=dict)
    rechanged: bool = False  # a `recheck` row had moved since it was cached (OnlineFeatures.read)

    def row(self, i: int, names: Iterable[str] | None = None) -> dict[str, Any]:
        return {n: self.columns[n][i] for n in (names or self.columns)}

    def any_found(self, i: int) -> bool:
        return any(found[i] for found in self.found.values())

    def oldest(self, i: int) -> datetime | None:
        stamps = [ts[i] for ts in self.timestamps.values() if ts[i] is not None]
        return min(stamps) if stamps else None


@dataclass
class CandidateRows:
    """One customer's candidates as `OnlineFeatures.read_candidates` reads them."""

    customer: OnlineResult  # one row: the customer's views and their on-demand views
    customer_values: dict[str, Any]  # every feature read of the customer's views (None: no row)
    products: dict[str, list[tuple]]  # cached view -> each candidate's cache entry
    pairs: dict[str, tuple[list, list, dict[str, list]]]  # view -> (found, times, columns)
    rechanged: bool = False  # a `recheck` row had moved since it was cached


class _ViewCache:
    """Decoded rows of shared views (products), by view and entity key.

    Each entry keeps the row twice: as a dict (for callers) and as a tuple in the view's
    feature order, so that a request's columns come from one C-level transpose of the tuples
    rather than a dict lookup per row and feature.
    """

    def __init__(self, max_stale_s: float) -> None:
        self.max_stale_s = max_stale_s
        # view -> key -> (loaded at, event timestamp, values dict | None, values tuple,
        # the row's version: its stored `_ts` bytes as read (None: none), or _UNCHECKED)
        self.rows: dict[str, dict[tuple, tuple]] = {}
        # view -> key -> when (time.monotonic()) the last read of its `_ts` was sent
        self.checked: dict[str, dict[tuple, float]] = {}

    def put(
        self, view: FeatureView, key: tuple, row: Row, now: float, raw_ts: Any = _UNCHECKED
    ) -> None:
        ts, values = row
        names = [f.name for f in view.features]
        flat = tuple(values.get(n) for n in names) if values else (None,) * len(names)
        self.rows.setdefault(view.name, {})[key] = (now, ts, values, flat, raw_ts)

    def clear(self) -> None:
        self.rows.clear()
        self.checked.clear()


class OnlineFeatures:
    """Reads feature services for many entity rows at once; one per process, built at start-up.

    Must be created inside the event loop that uses it (Feast's async Redis client binds to it).
    """

    def __init__(
        self,
        store: FeatureStore,
        cached_entities: Sequence[str] = ("product",),
        max_stale_s: float = 600.0,
        deadline_s: float = 1.0,
        provider: Provider | None = None,
        unavailable: type[Exception] = StoreUnavailable,
        timer: Callable[[str], AbstractContextManager[None]] = _untimed,
        exact: bool = True,
    ) -> None:
        """`unavailable`: the exception a failed or late read raises (the API's 503 error);
        `timer(operation)`: a context manager around each read (the API's latency metrics);
        `exact`: check cached rows against Redis on every use (`exact_cache`), else trust them
        for `max_stale_s`."""
        self.store = store
        self.provider = provider or get_provider(store.config)
        self.cached_entities = frozenset(cached_entities)
        self.cache = _ViewCache(max_stale_s)
        self.deadline_s = deadline_s
        self.unavailable = unavailable
        self.timer = timer
        self._plans: dict[str, ServicePlan] = {}
        self._fields: dict[tuple, tuple] = {}
        self._key_writers: dict[tuple[str, ...], _KeyWriter] = {}
        self._missing: dict[str, float] = {}  # service -> when the registry lacked it
        self.exact = exact

    async def ping(self) -> None:
        """One round trip to the online store (readiness checks)."""
        store = self.provider.online_store
        client = await store._get_client_async(self.store.config.online_store)
        await client.ping()

    # -- planning -------------------------------------------------------------------------------

    def plan(self, service: str | FeatureService) -> ServicePlan:
        name = service if isinstance(service, str) else service.name
        if name not in self._plans:
            fs = (
                service
                if isinstance(service, FeatureService)
                else self.store.get_feature_service(name)
            )
            self._plans[name] = self._make_plan(fs)
        return self._plans[name]

    def has_service(self, name: str, recheck_s: float = 60.0) -> bool:
        """Whether the registry defines the service (one applied before it existed does not).

        A missing service is asked for again only after `recheck_s` (the registry's own cache
        time): each registry miss costs milliseconds, and a request path asks on every call."""
        missing_since = self._missing.get(name)
        if missing_since is not None and time.monotonic() - missing_since < recheck_s:
            return False
        try:
            self.plan(name)
        except FeatureServiceNotFoundException:
            self._missing[name] = time.monotonic()
            return False
        self._missing.pop(name, None)
        return True

    def _make_plan(self, service: FeatureService) -> ServicePlan:
        (
            feature_refs,
            odfvs,
            name_to_join_key,
            entity_types,
            _,
            grouped,
            result_names,
            request_data,
            _,
        ) = _get_online_request_context(
            self.store.registry, self.store.project, service, full_feature_names=False
        )
        views = []
        for view, requested in grouped:
            keys = tuple(name_to_join_key[e] for e in view.entities)
            types = {f.name: f.dtype.to_value_type() for f in view.features}
            cached = bool(view.entities) and set(view.entities) <= self.cached_entities
            views.append(ViewPlan(view, tuple(requested), keys, types, cached))
        join_keys = tuple(dict.fromkeys(k for v in views for k in v.join_keys))
        names = [r.split(":", 1)[1] for r in feature_refs]
        return ServicePlan(
            name=service.name,
            views=tuple(views),
            odfvs=tuple(odfvs),
            request_fields=frozenset(request_data),
            feature_names=tuple(n for n in dict.fromkeys(names) if n in result_names),
            join_keys=join_keys,
            key_types={k: entity_types.get(k, ValueType.STRING) for k in join_keys},
        )

    # -- reading --------------------------------------------------------------------------------

    async def read(
        self,
        service: str | FeatureService,
        entities: dict[str, Sequence[Any]],
        request: dict[str, Any] | None = None,
        operation: str | None = None,
        memo: dict | None = None,
        recheck: dict[str, Sequence[Any]] | None = None,
        check_cached: bool = True,
        since: float | None = None,
    ) -> OnlineResult:
        """Features of `service` for the rows of `entities` (columns of join-key values).

        Only the views whose join keys are all given are read, and only the on-demand views whose
        sources were read (so a service mixing customer and product views can be read for
        customers alone). `request` holds one value per request field for all rows, or a list
        of one per row; the request time `event_timestamp` defaults to now. `memo`, a dict
        shared by the reads of one request, keeps the rows of uncached views read so far (whole
        rows), so a second service over the same customer costs no second round trip. Raises
        StoreUnavailable when Redis does not answer within the deadline.

        `recheck` ({join key: ids}) names cached rows an earlier read of the same request used
        (a recommendation's candidate generation): their `_ts` is checked in this read's round
        trip too, and `result.rechanged` says whether one had moved (the caller then redoes
        what it derived from them; the cache already holds the new rows). `check_cached=False`
        takes cached rows unchecked (no round trip when all are cached): for a caller that
        rechecks them in a later read. `since` (`time.monotonic()` when the caller's request
        began) lets rows checked by a concurrent read after that instant go unchecked.
        """
        plan = self.plan(service)
        n = len(next(iter(entities.values()))) if entities else 0
        views = [vp for vp in plan.views if all(k in entities for k in vp.join_keys)]
        again = None
        if recheck:
            again = {}
            for vp in views:
                if vp.cached and len(vp.join_keys) == 1 and vp.join_keys[0] in recheck:
                    again[vp.join_keys] = [(k,) for k in recheck[vp.join_keys[0]]]
        outcome: dict[str, bool] = {}
        with self.timer(operation or plan.name):
            stored = await self._read_views(
                views, entities, n, memo, again, outcome, check=check_cached, since=since
            )
        result = OnlineResult(
            columns={k: list(entities[k]) for k in plan.join_keys if k in entities},
            rechanged=outcome.get("rechanged", False),
        )
        for name, (found, stamps, cols) in stored.items():
            result.found[name] = found
            result.timestamps[name] = stamps
            result.columns.update(cols)
        read_names = {vp.view.projection.name_to_use() for vp in views}
        odfvs = [o for o in plan.odfvs if set(o.source_feature_view_projections) <= read_names]
        if odfvs:
            self._apply_odfvs(odfvs, plan, result, request or {}, n)
        keep = (*plan.join_keys, *plan.feature_names)
        result.columns = {k: result.columns[k] for k in keep if k in result.columns}
        return result

    async def prefetch(
        self,
        services: Sequence[str],
        entities: dict[str, Sequence[Any]],
        memo: dict,
        operation: str | None = None,
    ) -> None:
        """Read into `memo`, in one Redis round trip, the rows of every uncached view of
        `services` whose join keys `entities` gives; later reads with the same memo then cost
        no round trip for them (a recommendation: the customer's candidate, session and ranking
        views at once, instead of one round trip each)."""
        views: dict[str, ViewPlan] = {}
        for service in services:
            for vp in self.plan(service).views:
                if not vp.cached and all(k in entities for k in vp.join_keys):
                    views.setdefault(vp.view.name, vp)
        if not views:
            return
        n = len(next(iter(entities.values())))
        with self.timer(operation or "prefetch"):
            await self._read_views(list(views.values()), entities, n, memo)

    async def read_candidates(
        self,
        service: str | FeatureService,
        customer: dict[str, Any],
        product_key: str,
        ids: Sequence[Any],
        request: dict[str, Any],
        memo: dict,
        recheck: Sequence[Any] | None = None,
        since: float | None = None,
        operation: str | None = None,
    ) -> CandidateRows | None:
        """What `read(service, {customer keys: [value] * n, product_key: ids}, ...)` reads, kept
        apart by entity instead of joined into columns: the customer's views and the on-demand
        views of those alone for one row (from `memo`); each candidate's cache entry of every
        cached product view, checked against Redis as `read` checks them (and the `recheck`
        product ids with them); the views keyed by customer and product, as decoded columns.
        Product rows that did not move keep their entry objects, so a caller can keep what it
        derives from a row for as long as the entry is the same object.

        None when the service has a view this split does not cover (a product view that is not
        cached, a view of other keys): the caller reads it with `read`."""
        plan = self.plan(service)
        n = len(ids)
        by_customer, by_product, pairs = [], [], []
        for vp in plan.views:
            keys = set(vp.join_keys)
            if keys and keys <= set(customer):
                by_customer.append(vp)
            elif vp.join_keys == (product_key,) and vp.cached:
                by_product.append(vp)
            elif keys == {*customer, product_key}:
                pairs.append(vp)
            else:
                return None
        one = {k: v[:1] if isinstance(v, list) else v for k, v in request.items()}
        cust = await self.read(
            plan.name,
            {k: [v] for k, v in customer.items()},
            one,
            operation="ranking_customer",
            memo=memo,
        )  # (from the memo: no round trip)
        entities = {**{k: [v] * n for k, v in customer.items()}, product_key: list(ids)}
        again = {(product_key,): [(k,) for k in recheck]} if recheck and by_product else None
        outcome: dict[str, bool] = {}
        with self.timer(operation or plan.name):
            stored = await self._read_views(
                [*by_product, *pairs], entities, n, None, again, outcome, since=since,
                as_entries=True,
            )  # fmt: skip
        values: dict[str, Any] = {}
        for vp in by_customer:
            key = tuple(customer[k] for k in vp.join_keys)
            _, row = memo.get((vp.view.name, key), (None, None))
            values.update({f: None if row is None else row.get(f) for f in vp.features})
        return CandidateRows(
            customer=cust,
            customer_values=values,
            products={vp.view.name: stored[vp.view.name] for vp in by_product},
            pairs={vp.view.name: stored[vp.view.name] for vp in pairs},
            rechanged=outcome.get("rechanged", False),
        )

    async def _guarded(self, coro, deadline_s: float | None = None):
        """Bound the time spent on Redis and turn its failures into one StoreUnavailable."""
        try:
            async with asyncio.timeout(deadline_s or self.deadline_s):  # no task, unlike wait_for
                return await coro
        except (TimeoutError, OSError) as exc:
            raise self.unavailable("online store unavailable") from exc
        except Exception as exc:
            if _is_redis_error(exc):
                raise self.unavailable("online store unavailable") from exc
            raise

    async def _read_views(
        self,
        views: list[ViewPlan],
        entities,
        n: int,
        memo=None,
        recheck=None,
        outcome=None,
        check: bool = True,
        since: float | None = None,
        as_entries: bool = False,
    ):
        """Every view's rows for the entity rows: cached and memoised rows first, then one
        Redis round trip, bounded by the deadline, for all that is left. `as_entries`: a cached
        view's rows come as its cache entries, one per entity row (`_ViewCache.rows`' values,
        checked like the columns), not as columns.

        With exact caching (`exact_cache()`), the same round trip reads the stored `_ts` of every
        cached row used (and of the keys in `recheck`, {join keys: keys}, rows an earlier read
        of this request took from the cache): a row whose `_ts` moved is read again before it
        is used, and `outcome["rechanged"]` tells whether a `recheck` row had moved. A row whose
        `_ts` another read checked (or read) with a command sent at or after `since` (the
        request's start, `time.monotonic()`) is not checked again: it reflects every write
        acknowledged before the request began (concurrent requests share their checks)."""
        now = time.monotonic()
        exact = self.exact_cache()
        fresh_after = float("-inf") if exact else now - self.cache.max_stale_s
        plans, wanted = [], []
        checks: dict[tuple[str, ...], list] = {}  # join keys -> [views, keys to check]
        for vp in views:
            keys = list(zip(*(entities[k] for k in vp.join_keys), strict=True))
            unique = list(dict.fromkeys(keys))
            if vp.cached:
                entries = self.cache.rows.setdefault(vp.view.name, {})
                if exact:  # checked below, whatever their age: only rows never read are missing
                    get = entries.get
                    missing = [
                        k
                        for k in unique
                        if (tag := get(k, _NO_ENTRY)[4]) is _ABSENT or tag is _UNCHECKED
                    ]
                else:
                    missing = [
                        k for k in unique if (e := entries.get(k)) is None or e[0] < fresh_after
                    ]
                if exact and check:
                    group = checks.setdefault(vp.join_keys, [[], {}])
                    group[0].append(vp)
                    group[1].update(dict.fromkeys(unique))
            elif memo is not None:
                missing = [k for k in unique if (vp.view.name, k) not in memo]
            else:
                missing = unique
            plans.append((vp, keys, unique, missing))
            if missing:
                # cached and memoised rows are kept whole, for whichever service reads them next
                wanted.append((vp, missing, vp.cached or memo is not None))
        rechecked = {}
        for join_keys, extra in (recheck or {}).items():
            if join_keys in checks:
                checks[join_keys][1].update(dict.fromkeys(extra))
                rechecked[join_keys] = set(extra)
        # rows not cached yet are read whole anyway: their `_ts` needs no second look
        missing_of = {id(vp): missing for vp, _, _, missing in plans if vp.cached}
        verify = []
        checked = self.cache.checked
        for views_, keys_ in checks.values():
            unread = {k for v in views_ for k in missing_of[id(v)]}
            keys_ = [k for k in keys_ if k not in unread] if unread else list(keys_)
            if since is not None:  # checked since the request began, by any read: not again
                # (but a `recheck` row: the earlier read may have used it before that check)
                stamps = [checked.setdefault(v.view.name, {}).get for v in views_]
                again_ = rechecked.get(views_[0].join_keys, ())
                if len(stamps) == 2:  # a product's two views: unrolled, no generator per key
                    a, b = stamps
                    keys_ = [
                        k for k in keys_ if a(k, -1.0) < since or b(k, -1.0) < since or k in again_
                    ]
                else:
                    keys_ = [
                        k
                        for k in keys_
                        if k in again_ or any(get(k, -1.0) < since for get in stamps)
                    ]
            if keys_:
                verify.append((tuple(views_), keys_))
        # Only a read that misses the cache and the memo, or checks it, waits for Redis.
        sent = time.monotonic()  # before the commands go: what they read is at least this new
        replies, moved = (
            await self._guarded(self._fetch_many(wanted, verify)) if wanted or verify else ([], [])
        )
        fetched = dict(zip((id(w[0]) for w in wanted), replies, strict=True))
        if moved:  # rows written since they were cached: read again (rare: after a write)
            again = [(vp, keys_, True) for views_, keys_ in moved for vp in views_]
            rows_again, _ = await self._guarded(self._fetch_many(again))
            for (vp, keys_, _), got in zip(again, rows_again, strict=True):
                self._put_cached(vp, keys_, got, time.monotonic())
            if outcome is not None and recheck:
                extra = {k for keys_ in recheck.values() for k in keys_}
                outcome["rechanged"] = any(k in extra for _, keys_ in moved for k in keys_)
        if exact:  # (once moved rows are read again: a concurrent read may then skip them)
            for views_, keys_ in verify:
                for v in views_:
                    checked.setdefault(v.view.name, {}).update(dict.fromkeys(keys_, sent))
        now = time.monotonic()
        out = {}
        for vp, keys, unique, missing in plans:
            got = fetched.get(id(vp))
            if isinstance(got, _Decoded) and not vp.cached and memo is None and len(unique) == n:
                # every row its own entity, fetched in row order: the decoded columns as they are
                out[vp.view.name] = got.columns_of(vp.features)
                continue
            if vp.cached:
                if got is not None:
                    self._put_cached(vp, missing, got, now)
                out[vp.view.name] = (
                    self._cached_entries(vp, keys) if as_entries else self._cached_columns(vp, keys)
                )
                continue
            rows = dict(zip(missing, got or [], strict=True))
            if memo is not None:
                for key, row in rows.items():
                    memo[vp.view.name, key] = row
                rows = {k: memo[vp.view.name, k] for k in unique}
            out[vp.view.name] = self._columns(vp, keys, unique, rows, n)
        return out

    def _put_cached(self, vp: ViewPlan, keys: list[tuple], got, now: float) -> None:
        """Rows just read into the cache, each with its stored `_ts` bytes when the read has
        them (the Redis pipeline's; another store's rows stay _UNCHECKED: the TTL applies)."""
        raws = got.raw_stamps if isinstance(got, _Decoded) else None
        # a row put is checked again by the next read that uses it (a background refresh may put
        # a row read before a write that a request's check has seen since)
        stamps = self.cache.checked.get(vp.view.name)
        if stamps:
            for key in keys:
                stamps.pop(key, None)
        if raws is None:
            for key, row in zip(keys, got, strict=True):
                self.cache.put(vp.view, key, row, now, _UNCHECKED)
        else:
            for key, row, raw in zip(keys, got, raws, strict=True):
                self.cache.put(vp.view, key, row, now, raw)

    def exact_cache(self) -> bool:
        """Whether cached rows are checked against Redis on every use (their `_ts`, read in
        the read's round trip) rather than trusted for `max_stale_s`.

        Exact because Feast's Redis layout versions each row: every writer (Feast's
        `online_write_batch`, shopfeast's materialization engine, the stream worker's encoder)
        stores a row with its event time in `_ts:<view>` and replaces a row only with a strictly
        newer event time, so equal `_ts` bytes mean equal values. Off where that does not hold
        or cannot be read in the same pipeline: `skip_dedup` (rows rewritten at the same event
        time), a cluster, another online store, or `exact=False`."""
        if not self.exact or not self._plain_redis():
            return False
        return not getattr(self.store.config.online_store, "skip_dedup", False)

    @staticmethod
    def _columns(vp: ViewPlan, keys, unique, rows: dict[tuple, Row], n: int):
        if len(unique) == 1:  # one customer broadcast over many candidates: no per-row work
            ts, values = rows[unique[0]]
            cols = {f: [None if values is None else values.get(f)] * n for f in vp.features}
            return [values is not None] * n, [ts] * n, cols
        ordered = [rows[key] for key in keys]
        pick = _picker(vp.features)
        empty = (None,) * len(vp.features)
        table = [empty if v is None else pick(v) for _, v in ordered]
        columns = zip(*table, strict=True) if table else ([] for _ in vp.features)
        cols = dict(zip(vp.features, map(list, columns), strict=True))
        return [v is not None for _, v in ordered], [ts for ts, _ in ordered], cols

    def _cached_entries(self, vp: ViewPlan, keys: list[tuple]) -> list[tuple]:
        """Each key's cache entry: a new tuple whenever its row is put again, so an entry that
        is the same object as before holds the same row."""
        return list(map(self.cache.rows[vp.view.name].__getitem__, keys))

    def _cached_columns(self, vp: ViewPlan, keys: list[tuple]):
        entries = self.cache.rows[vp.view.name]
        ordered = [entries[k] for k in keys]
        names = [f.name for f in vp.view.features]
        columns = (
            list(zip(*(e[3] for e in ordered), strict=True)) if ordered else [() for _ in names]
        )
        at = {name: i for i, name in enumerate(names)}
        cols = {f: list(columns[at[f]]) for f in vp.features}
        return [e[2] is not None for e in ordered], [e[1] for e in ordered], cols

    async def _fetch(self, vp: ViewPlan, keys: list[tuple], all_features: bool) -> list[Row]:
        return (await self._fetch_many([(vp, keys, all_features)]))[0][0]

    async def _fetch_many(
        self, wanted: list[tuple[ViewPlan, list[tuple], bool]], verify=()
    ) -> tuple[list[list[Row]], list[tuple[tuple[ViewPlan, ...], list[tuple]]]]:
        """Rows of several views in one round trip, and which cached rows of `verify`
        ((views of one hash, keys) pairs) no longer hold the `_ts` they were cached with: with
        Redis, one pipeline built and decoded here (what Feast's RedisOnlineStore's
        `online_read_async` does per view, and its `get_online_features` across views); other
        stores, `online_read_async` per view (`online_read` where the store has no
        asynchronous read), nothing to verify.
        A pooled connection that died with a restarted Redis fails once: retried at once."""
        if not wanted and not verify:
            return [], []
        for attempt in (1, 2):
            try:
                if self._plain_redis():
                    return await self._redis_pipeline(wanted, verify)
                elif not self._reads_async():
                    raw = [
                        self.provider.online_read(
                            self.store.config,
                            vp.view,
                            [self._entity_key(vp.join_keys, k) for k in keys],
                            None if whole else list(vp.features),
                        )
                        for vp, keys, whole in wanted
                    ]
                else:
                    raw = await asyncio.gather(
                        *(
                            self.provider.online_read_async(
                                self.store.config,
                                vp.view,
                                [self._entity_key(vp.join_keys, k) for k in keys],
                                None if whole else list(vp.features),
                            )
                            for vp, keys, whole in wanted
                        )
                    )
                break
            except Exception as exc:
                if attempt == 2 or not _is_connection_error(exc):
                    raise
        return [
            [self._decode(vp, r) for r in rows]
            for (vp, _, _), rows in zip(wanted, raw, strict=True)
        ], []

    def _reads_async(self) -> bool:
        """Whether the online store reads asynchronously; one that does not (the embedded
        profile's SQLite: a local file, read in milliseconds) is read with `online_read`."""
        store = self.provider.online_store
        return type(store).online_read_async is not OnlineStore.online_read_async

    def _plain_redis(self) -> bool:
        """A Redis online store reached through one server (plain or Sentinel), not a cluster
        (whose client routes each key to its node: Feast's own read path serves it)."""
        config = self.store.config.online_store
        return (
            isinstance(self.provider.online_store, RedisOnlineStore)
            and config.redis_type != RedisType.redis_cluster
        )

    async def _redis_pipeline(self, wanted, verify=()):
        """One round trip of HMGETs for every (view, key) wanted, decoded straight into rows,
        and of the `_ts` fields of the cached rows in `verify` (see `_fetch_many`).

        The keys, hash fields and values are Feast's (`_generate_redis_keys_for_entities`,
        `_generate_hset_keys_for_features`: murmur3 of `view:feature`, `_ts:view` last). What
        Feast's pipeline does per command in Python is done once here: the HMGETs are written as
        Redis protocol bytes from each view's precomputed field block (redis-py spends ~7 us
        packing each 30-field command), keys shared by several views are serialized once, and
        values are decoded by `_Decoder` (what Feast's `_convert_redis_values_to_protobuf`
        + `feast_value_type_to_python_type` give, without a dict of protos per row). A cached
        row's check is one HMGET of its views' `_ts` fields, its command bytes remembered per
        key (the views of one entity share a hash: a product's two views, one command)."""
        store: RedisOnlineStore = self.provider.online_store
        client = await store._get_client_async(self.store.config.online_store)
        # Views of the same entity live in one Redis hash (Feast's layout): views wanted for
        # the same keys share one HMGET per key, their fields one after the other.
        groups: dict[tuple, list[int]] = {}
        for i, (vp, keys, _) in enumerate(wanted):
            groups.setdefault((vp.join_keys, tuple(keys)), []).append(i)
        commands: list[bytes] = []
        layout = []
        for (join_keys, keys), members in groups.items():
            head, block = self._merged_hmget([(wanted[i][0], wanted[i][2]) for i in members])
            for key in self._redis_keys(join_keys, list(keys)):
                commands.append(b"%s$%d\r\n%s\r\n%s" % (head, len(key), key, block))
            layout.append((members, len(keys)))
        for views, keys in verify:
            commands += self._version_commands(views, keys)
        replies = await _send_and_read(client, commands)
        out: list = [None] * len(wanted)
        at = 0
        for members, count in layout:
            rows = replies[at : at + count]
            at += count
            start = 0
            for i in members:
                vp, _, whole = wanted[i]
                names = self._hmget_parts(vp, whole)[2]
                stop = start + len(names) + 1  # the view's features, then its `_ts`
                part = rows if len(members) == 1 else [r[start:stop] for r in rows]
                out[i] = _decode_rows(part, names, self._decoders(vp, names))
                start = stop
        moved = []
        for views, keys in verify:
            stored = replies[at : at + len(keys)]
            at += len(keys)
            per_view = [
                [e[4] for e in map(self.cache.rows.get(vp.view.name, {}).get, keys, _NO_ENTRIES)]
                for vp in views
            ]
            # per key, its views' `_ts` as cached, as the HMGET answers them (a list)
            cached = list(map(list, zip(*per_view, strict=True)))
            if stored != cached:  # a row not cached (_ABSENT) never matches
                changed = [k for k, a, b in zip(keys, stored, cached, strict=True) if a != b]
                moved.append((views, changed))
        return out, moved

    def _version_commands(self, views: tuple[ViewPlan, ...], keys: list[tuple]) -> list[bytes]:
        """Per key, an HMGET of the views' `_ts` fields as protocol bytes, remembered (the
        same products are checked by request after request; at most 200,000 keys)."""
        made = self._fields.setdefault(("versions", tuple(vp.view.name for vp in views)), {})
        try:
            return [made[k] for k in keys]
        except KeyError:
            pass
        if len(made) > 200_000:
            made.clear()
        fields = [self._raw_fields(vp, True)[-1] for vp in views]
        head = b"*%d\r\n$5\r\nHMGET\r\n" % (len(fields) + 2)
        block = b"".join(b"$%d\r\n%s\r\n" % (len(f), f) for f in fields)
        redis_keys = self._redis_keys(views[0].join_keys, keys)
        for k, key in zip(keys, redis_keys, strict=True):
            made[k] = b"%s$%d\r\n%s\r\n%s" % (head, len(key), key, block)
        return [made[k] for k in keys]

    def _raw_fields(self, vp: ViewPlan, whole: bool) -> tuple[bytes, ...]:
        """The hash fields an HMGET of the view reads, as bytes (`_ts:view` last)."""
        key = ("raw", vp.view.name, vp.features, whole)
        if key not in self._fields:
            _, fields, _ = self._hash_fields(vp, whole)
            self._fields[key] = tuple(
                f.encode() if isinstance(f, str) else bytes(f) for f in fields
            )
        return self._fields[key]

    def _merged_hmget(self, views: list[tuple[ViewPlan, bool]]) -> tuple[bytes, bytes]:
        """(array header, fields as protocol bytes) of one HMGET reading several views of the
        same key: each view's fields and `_ts`, in the given order."""
        key = ("merged", *((vp.view.name, vp.features, whole) for vp, whole in views))
        if key not in self._fields:
            parts = [self._hmget_parts(vp, whole) for vp, whole in views]
            width = sum(len(names) + 1 for _, _, names in parts)
            head = b"*%d\r\n$5\r\nHMGET\r\n" % (width + 2)
            self._fields[key] = (head, b"".join(block for _, block, _ in parts))
        return self._fields[key]

    def _hmget_parts(self, vp: ViewPlan, whole: bool) -> tuple[bytes, bytes, tuple[str, ...]]:
        """(the HMGET's array header, its fields as protocol bytes, the feature names)."""
        key = ("hmget", vp.view.name, vp.features, whole)
        if key not in self._fields:
            names, fields, _ = self._hash_fields(vp, whole)
            raw = [f.encode() if isinstance(f, str) else bytes(f) for f in fields]
            head = b"*%d\r\n$5\r\nHMGET\r\n" % (len(raw) + 2)
            block = b"".join(b"$%d\r\n%s\r\n" % (len(f), f) for f in raw)
            self._fields[key] = (head, block, tuple(names[:-1]))
        return self._fields[key]

    def _redis_keys(self, join_keys: tuple[str, ...], keys: list[tuple]) -> list[bytes]:
        """Feast's Redis keys (`serialize_entity_key(key, v3) + project`)."""
        config = self.store.config
        if config.entity_key_serialization_version == 3:
            writer = self._key_writers.get(join_keys)
            if writer is None:
                writer = self._key_writers[join_keys] = _KeyWriter(join_keys, config.project)
            fast = writer.keys(keys)
            if fast is None:
                fast = string_redis_keys(join_keys, keys, config.project)
            if fast is not None:
                return fast
        store: RedisOnlineStore = self.provider.online_store
        return store._generate_redis_keys_for_entities(
            config, [self._entity_key(join_keys, k) for k in keys]
        )

    def _decoders(self, vp: ViewPlan, names: tuple[str, ...]) -> tuple:
        key = ("decoders", vp.view.name, names)
        if key not in self._fields:
            self._fields[key] = tuple(_Decoder(vp.types.get(n)) for n in names)
        return self._fields[key]

    def _hash_fields(self, vp: ViewPlan, whole: bool):
        """(feature names with `_ts`, hash fields, stored view name), as Feast's Redis store
        names them (murmur3 of `view:feature`), computed once per view and feature list."""
        key = (vp.view.name, vp.features, whole)
        if key not in self._fields:
            requested = None if whole else list(vp.features)
            fv_name = _versioned_fv_name(vp.view, self.store.config)
            names, fields = self.provider.online_store._generate_hset_keys_for_features(
                vp.view, requested, fv_name_override=fv_name
            )
            self._fields[key] = (tuple(names), fields, fv_name)
        return self._fields[key]

    @staticmethod
    def _decode(vp: ViewPlan, row) -> Row:
        ts, values = row
        if values is None or ts is None or ts <= EPOCH:
            return None, None  # Feast's Redis store: no `_ts` field means no row
        return ts, {
            f: feast_value_type_to_python_type(v, vp.types.get(f)) for f, v in values.items()
        }

    @staticmethod
    def _entity_key(join_keys: tuple[str, ...], key: tuple) -> EntityKey:
        if all(type(k) is str for k in key):  # the ids here: what Feast makes of a str, directly
            values = [ValueProto(string_val=k) for k in key]
        else:
            values = python_values_to_proto_values(list(key), ValueType.UNKNOWN)
        return EntityKey(join_keys=list(join_keys), entity_values=values)

    # -- the cache of shared views -------------------------------------------------------------

    def cached_views(self, services: Iterable[str]) -> list[ViewPlan]:
        """The cached views the given services read, once each."""
        seen: dict[str, ViewPlan] = {}
        for s in services:
            for vp in self.plan(s).views:
                if vp.cached:
                    seen.setdefault(vp.view.name, vp)
        return list(seen.values())

    async def refresh_cached(
        self,
        views: Sequence[ViewPlan],
        keys: Sequence[tuple],
        chunk: int = 100,
        deadline_s: float | None = None,
    ) -> None:
        """Re-read `keys` of the cached views, `chunk` keys per Redis pipeline.

        Between chunks the event loop serves requests, so a refresh of thousands of products
        never holds a request back by more than one chunk's decoding.
        """
        for vp in views:
            for start in range(0, len(keys), chunk):
                part = list(keys[start : start + chunk])
                rows = await self._guarded(self._fetch(vp, part, all_features=True), deadline_s)
                self._put_cached(vp, part, rows, time.monotonic())
                await asyncio.sleep(0)

    def cached_rows(self, view: str) -> dict[tuple, Row]:
        return {k: (e[1], e[2]) for k, e in self.cache.rows.get(view, {}).items()}

    # -- on-demand views ------------------------------------------------------------------------

    def _apply_odfvs(
        self,
        odfvs: list[OnDemandFeatureView],
        plan: ServicePlan,
        result: OnlineResult,
        request: dict[str, Any],
        n: int,
    ) -> None:
        """Run each on-demand view on the rows, once per distinct entity of its sources.

        On-demand transforms are row-wise (Feast runs them on whatever batch a caller sends,
        offline and online), and the request values are one per request. So an on-demand view
        of customer views alone (recency) runs once per customer, not once per candidate.
        """
        base = dict(result.columns)
        for name in plan.request_fields:
            value = request.get(name, datetime.now(UTC) if name == "event_timestamp" else None)
            if isinstance(value, list):  # one value per row
                if len(value) != n:
                    raise ValueError(f"request field {name}: {len(value)} values for {n} rows")
                # (a float is what Feast's round trip gives back: itself)
                base[name] = [v if type(v) is float else _as_feast_sees_it(v)[0] for v in value]
            else:  # one value for every row
                base[name] = _as_feast_sees_it(value) * n
        distinct: dict[tuple[str, ...], tuple] = {}  # views of the same keys: rows told once
        for odfv in odfvs:
            wanted, keys = self._odfv_columns(plan, odfv, tuple(base))
            if keys not in distinct:
                distinct[keys] = _distinct_rows([base[k] for k in keys], n)
            firsts, slots = distinct[keys]
            inputs = {
                c: base[c] if firsts is None else [base[c][i] for i in firsts] for c in wanted
            }
            if odfv.mode == "python":
                out = odfv.transform_dict(inputs)
                cols = {f.name: list(out[f.name]) for f in odfv.features}
            else:
                out_table = odfv.transform_arrow(pa.Table.from_pydict(inputs), False)
                cols = {f.name: out_table.column(f.name).to_pylist() for f in odfv.features}
            # Feast stores an on-demand NaN as a null value: so do we.
            cols = {name: [None if v != v else v for v in values] for name, values in cols.items()}
            if slots is _ONE_ROW:  # one entity for every row (a customer's view): repeated
                cols = {name: values * n for name, values in cols.items()}
            elif slots is not None:
                cols = {name: [values[j] for j in slots] for name, values in cols.items()}
            result.columns.update(cols)

    def on_demand(
        self,
        service: str | FeatureService,
        odfvs: Sequence[OnDemandFeatureView],
        columns: dict[str, list[Any]],
        request: dict[str, Any],
        n: int,
    ) -> dict[str, list[Any]]:
        """The outputs of `odfvs` (of `service`) on `n` rows given as columns, computed as
        `read` computes them (once per distinct entity, NaN served as null)."""
        result = OnlineResult(columns=dict(columns))
        self._apply_odfvs(list(odfvs), self.plan(service), result, request, n)
        return {f.name: result.columns[f.name] for o in odfvs for f in o.features}

    def _odfv_columns(
        self, plan: ServicePlan, odfv: OnDemandFeatureView, columns: tuple[str, ...]
    ) -> tuple[list[str], tuple[str, ...]]:
        """(the columns an on-demand view is handed, the join keys of its sources), worked out
        once per service, view and set of columns read."""
        key = ("odfv", plan.name, odfv.name, columns)
        if key not in self._fields:
            sources = {
                f.name for p in odfv.source_feature_view_projections.values() for f in p.features
            }
            wanted = [
                c
                for c in columns
                if c in sources or c in plan.join_keys or c in plan.request_fields
            ]
            keys = [
                k
                for vp in plan.views
                if vp.view.projection.name_to_use() in odfv.source_feature_view_projections
                for k in vp.join_keys
            ]
            self._fields[key] = (wanted, tuple(dict.fromkeys(keys)))
        return self._fields[key]


# Value kinds decoded here directly, as Feast's feast_value_type_to_python_type returns them (the
# attribute itself; a list's values as a list); anything else goes through Feast's function.
_SCALAR_KINDS = frozenset(
    {"bytes_val", "string_val", "int32_val", "int64_val", "double_val", "float_val", "bool_val"}
)
_LIST_KINDS = frozenset(
    {
        "bytes_list_val",
        "string_list_val",
        "int32_list_val",
        "int64_list_val",
        "double_list_val",
        "float_list_val",
        "bool_list_val",
    }
)
# Feast turns strings of these declared types into uuid.UUID: always its own function.
_FEAST_DECODED_TYPES = frozenset(
    {
        ValueType.UUID,
        ValueType.TIME_UUID,
        ValueType.UUID_LIST,
        ValueType.TIME_UUID_LIST,
        ValueType.UUID_SET,
        ValueType.TIME_UUID_SET,
    }
)


_MISS = object()


class _Decoder:
    """bytes of one feature's stored ValueProto (or None: no field) -> the Python value Feast
    serves (`feast_value_type_to_python_type`).

    Immutable results (scalars, timestamps, nulls) are remembered by their bytes in `seen`, up
    to `limit` distinct values: counts, flags and categories repeat across entities, and an
    entity's row reads the same bytes until the next materialization, so most values of a read
    are found by one C-level `map` over the column (`decode_column`). A full memory starts
    again: at most `limit` values per feature and view (~0.4 MB), whatever the shop's size."""

    __slots__ = ("vtype", "seen", "limit", "lists")

    def __init__(self, vtype: ValueType | None, limit: int = 4096) -> None:
        self.vtype = vtype
        self.seen: dict[bytes | None, Any] = {None: None, b"": None}
        self.limit = 0 if vtype in _FEAST_DECODED_TYPES else limit
        # lists are mutable: remembered as tuples of their (immutable) items, handed out as
        # new lists (a copy costs far less than parsing the proto again)
        self.lists: dict[bytes, tuple] = {}

    def __call__(self, raw: bytes | None) -> Any:
        value = self.seen.get(raw, _MISS)
        if value is not _MISS:
            return value
        items = self.lists.get(raw)  # type: ignore[arg-type]
        if items is not None:
            return list(items)
        proto = ValueProto.FromString(raw)
        kind = proto.WhichOneof("val")
        if kind is None:
            return None
        if self.limit == 0:  # types Feast decodes its own way (UUIDs from strings)
            return feast_value_type_to_python_type(proto, self.vtype)
        if kind in _LIST_KINDS:  # mutable: a new list each time
            items = tuple(getattr(proto, kind).val)
            if len(self.lists) >= self.limit:
                self.lists = {}
            self.lists[raw] = items  # type: ignore[index]
            return list(items)
        if kind in _SCALAR_KINDS:
            value = getattr(proto, kind)
        elif kind == "unix_timestamp_val":
            value = feast_value_type_to_python_type(proto, self.vtype)  # a datetime or None
        else:
            return feast_value_type_to_python_type(proto, self.vtype)
        if len(self.seen) >= self.limit:
            self.seen = {None: None, b"": None}
        self.seen[raw] = value
        return value

    def decode_column(self, raws: Sequence[bytes | None]) -> list[Any]:
        """Every value of a column: remembered ones by one `map`, the rest one by one."""
        values = list(map(self.seen.get, raws, repeat(_MISS)))
        if _MISS in values:
            for i in [i for i, v in enumerate(values) if v is _MISS]:
                values[i] = self(raws[i])
        return values


_STAMPS: dict[bytes | None, datetime | None] = {None: None, b"": None}


def _event_time(raw: bytes | None) -> datetime | None:
    """A stored `_ts` -> its time, as Feast reads it (None for no field or the epoch);
    remembered by bytes (rows materialized together share their event times)."""
    ts = _STAMPS.get(raw, _MISS)
    if ts is not _MISS:
        return ts
    stamp = Timestamp.FromString(raw)
    ts = datetime.fromtimestamp(stamp.seconds + stamp.nanos / 1_000_000_000.0, tz=UTC)
    ts = None if ts <= EPOCH else ts
    if len(_STAMPS) >= 50_000:
        _STAMPS.clear()
        _STAMPS.update({None: None, b"": None})
    _STAMPS[raw] = ts
    return ts


class _Decoded(Sequence):
    """One view's rows as decoded from Redis, kept as columns: (event time, values dict) rows
    are made only when asked for (the memo and the cache keep rows; a plain read takes the
    columns as they are). `raw_stamps`: each row's `_ts` bytes as stored (None: no field)."""

    __slots__ = ("stamps", "names", "columns", "_rows", "raw_stamps")

    def __init__(
        self, stamps: list, names: tuple[str, ...], columns: list[list], raw_stamps: list
    ) -> None:
        self.stamps = stamps
        self.names = names
        self.columns = columns
        self.raw_stamps = raw_stamps
        self._rows: list[Row] | None = None

    def rows(self) -> list[Row]:
        if self._rows is None:
            if not self.names:
                self._rows = [(None, None)] * len(self.stamps)
            else:
                self._rows = [
                    (None, None) if ts is None else (ts, dict(zip(self.names, values, strict=True)))
                    for ts, values in zip(self.stamps, zip(*self.columns, strict=True), strict=True)
                ]
        return self._rows

    def __len__(self) -> int:
        return len(self.stamps)

    def __getitem__(self, i):  # type: ignore[override]
        return self.rows()[i]

    def __iter__(self):
        return iter(self.rows())

    def columns_of(self, features: tuple[str, ...]):
        """(found, event times, {feature: values}) as `_columns` makes them from the rows: a row
        without an event time reads as nulls."""
        at = {name: j for j, name in enumerate(self.names)}
        dead = [i for i, ts in enumerate(self.stamps) if ts is None]
        cols = {}
        for f in features:
            j = at.get(f)
            values = [None] * len(self.stamps) if j is None else self.columns[j]
            for i in dead:  # (this read's own lists: nothing else holds them)
                values[i] = None
            cols[f] = values
        return [ts is not None for ts in self.stamps], list(self.stamps), cols


def _decode_rows(replies: list[list[bytes | None]], names: tuple[str, ...], decoders) -> _Decoded:
    """HMGET replies (the features' values, then `_ts`) -> rows (event time, values), as
    Feast's `_get_features_for_entity` reads them; no `_ts` (the epoch) means no row. Decoded
    column by column (rows are made from the columns only when asked for)."""
    raws = [r[-1] for r in replies]
    stamps = list(map(_STAMPS.get, raws, repeat(_MISS)))  # times seen before: one C-level map
    if _MISS in stamps:
        stamps = list(map(_event_time, raws))
    if not replies or not names:
        return _Decoded(stamps, names, [[] for _ in names], raws)
    if len(replies) == 1:  # one entity (a customer's views): a call per value, not per column
        decoded = [[d(raw)] for d, raw in zip(decoders, replies[0], strict=False)]
        return _Decoded(stamps, names, decoded, raws)
    dead = stamps.count(None)
    if dead * 2 > len(stamps):
        # mostly no row (a customer's candidates in a sparse customer x product view): a row
        # without an event time reads as nulls whatever its fields hold, so only the others
        # are decoded
        live = [i for i, ts in enumerate(stamps) if ts is not None]
        decoded = [[None] * len(stamps) for _ in names]
        if live:
            columns = list(zip(*[replies[i] for i in live], strict=True))
            for d, col, out in zip(decoders, columns, decoded, strict=False):
                for i, value in zip(live, d.decode_column(col), strict=True):
                    out[i] = value
        return _Decoded(stamps, names, decoded, raws)
    columns = list(zip(*replies, strict=True))
    decoded = [d.decode_column(col) for d, col in zip(decoders, columns, strict=False)]
    return _Decoded(stamps, names, decoded, raws)


async def _send_and_read(client, commands: list[bytes]) -> list[Any]:
    """Send packed commands in one write and read their replies (one round trip), on a pooled
    connection of a plain (or Sentinel) Redis client. A connection that failed midway is
    dropped, not returned to the pool."""
    if not isinstance(client, redis_asyncio.Redis) or client.single_connection_client:
        raise TypeError("a plain redis.asyncio.Redis client is needed")
    pool = client.connection_pool
    conn = await pool.get_connection()
    try:
        await conn.send_packed_command(commands)
        parser = getattr(conn, "_parser", None)
        if isinstance(parser, _AsyncHiredisParser) and getattr(parser, "_reader", None):
            return await _hiredis_replies(parser, len(commands), conn.socket_timeout)
        return [await conn.read_response() for _ in commands]
    except BaseException:
        await conn.disconnect(nowait=True)
        raise
    finally:
        await pool.release(conn)


async def _hiredis_replies(
    parser: _AsyncHiredisParser, count: int, socket_timeout: float | None
) -> list[Any]:
    """`count` replies straight from the connection's hiredis reader, refilled from its socket
    as needed: what `read_response` returns for each, without its timeout context and coroutine
    per reply (a third of a 20-customer read's CPU). Each wait for more bytes is bounded by the
    connection's socket timeout, as redis-py bounds it (a frozen Redis fails in about that
    time, not only at the read's deadline)."""
    reader = parser._reader
    replies: list[Any] = []
    while True:
        # every complete reply buffered, up to `count`, by one C-level loop (the reader answers
        # its sentinel, NOT_ENOUGH_DATA as redis-py sets it, when it holds no complete reply)
        batch = list(islice(iter(reader.gets, NOT_ENOUGH_DATA), count - len(replies)))
        if not _REPLY_TYPES.issuperset(map(type, batch)):
            for reply in batch:
                if isinstance(reply, Exception):  # an error reply, or a connection error
                    raise reply
        replies += batch
        if len(replies) >= count:
            return replies
        async with asyncio.timeout(socket_timeout):
            await parser.read_from_socket()


_REPLY_TYPES = frozenset({list, bytes, int, type(None)})  # what RESP2 replies decode to


class _KeyWriter:
    """Feast's v3 Redis keys of entities of `join_keys` whose ids are strings: the bytes
    string_redis_keys writes (join keys sorted, then each id as a STRING value, then the
    project), with each id's part serialized once and remembered (a recommendation's 200
    customer x product keys: ~0.03 ms instead of ~0.14). At most `limit` ids, then it starts
    again; None (string_redis_keys decides) when an id is not a str."""

    __slots__ = ("order", "prefix", "suffix", "parts", "limit")

    def __init__(self, join_keys: tuple[str, ...], project: str, limit: int = 200_000) -> None:
        self.order = sorted(range(len(join_keys)), key=join_keys.__getitem__)
        self.prefix = serialize_entity_key_prefix([join_keys[i] for i in self.order], 3)
        self.suffix = project.encode()
        self.parts: dict[str, bytes] = {}
        self.limit = limit

    def part(self, value: Any) -> bytes | None:
        if type(value) is not str:
            return None
        raw = value.encode()
        if len(self.parts) >= self.limit:
            self.parts = {}
        part = self.parts[value] = _STRING_TYPE + struct.pack("<I", len(raw)) + raw
        return part

    def _learn(self, keys: Sequence[tuple]) -> bool:
        """Remember the parts of the keys' ids not seen yet; False when one is not a str."""
        parts = self.parts
        for value in {v for key in keys for v in key if v not in parts}:
            if self.part(value) is None:
                return False
        return True

    def keys(self, keys: Sequence[tuple]) -> list[bytes] | None:
        parts, prefix, suffix = self.parts, self.prefix, self.suffix
        try:  # every id seen before (a str subclass equal to a str: that str's bytes, as Feast)
            if len(self.order) == 1:
                return [prefix + parts[value] + suffix for (value,) in keys]
            if len(self.order) == 2:
                i, j = self.order
                return [prefix + parts[key[i]] + parts[key[j]] + suffix for key in keys]
        except (KeyError, TypeError):  # a new id (or an unhashable one)
            pass
        if len(self.order) == 2 and self._learn(keys):  # new str ids (a customer): once more
            parts = self.parts
            i, j = self.order
            try:
                return [prefix + parts[key[i]] + parts[key[j]] + suffix for key in keys]
            except (KeyError, TypeError):
                parts = self.parts
        get = parts.get
        out = []
        if len(self.order) == 1:
            for (value,) in keys:
                part = get(value) if type(value) is str else None
                if part is None and (part := self.part(value)) is None:
                    return None
                out.append(prefix + part + suffix)
            return out
        for key in keys:
            parts = [prefix]
            for i in self.order:
                value = key[i]
                part = get(value) if type(value) is str else None
                if part is None and (part := self.part(value)) is None:
                    return None
                parts.append(part)
            parts.append(suffix)
            out.append(b"".join(parts))
        return out


_STRING_TYPE = struct.pack("<I", ValueType.STRING.value)


_ONE_ROW = object()  # _distinct_rows: every row the first one's entity


def _distinct_rows(key_columns: list[list[Any]], n: int):
    """(first row of each distinct key, each row's distinct index), or (None, None) when every
    row is distinct already (or there are no keys), or ([0], _ONE_ROW) when every row is the
    first one's entity."""
    if not key_columns or n <= 1:
        return None, None
    # a key the same on every row (one customer's candidates) tells no row apart: C-level counts
    varying = [c for c in key_columns if c.count(c[0]) != n]
    if not varying:
        return [0], _ONE_ROW
    if len(set(varying[0] if len(varying) == 1 else zip(*varying, strict=True))) == n:
        return None, None  # the common case for (customer, product) pairs: every row its own
    keys = list(zip(*key_columns, strict=True))
    index: dict[tuple, int] = {}
    firsts: list[int] = []
    slots: list[int] = []
    for i, key in enumerate(keys):
        j = index.get(key)
        if j is None:
            j = index[key] = len(firsts)
            firsts.append(i)
        slots.append(j)
    if len(firsts) == n:
        return None, None
    return firsts, slots


def _picker(names: tuple[str, ...]):
    """A fast row -> tuple of `names` (missing names read as None)."""
    getter = operator.itemgetter(*names) if names else (lambda _: ())

    def pick(values: dict[str, Any]) -> tuple:
        try:
            got = getter(values)
        except KeyError:
            return tuple(values.get(n) for n in names)
        return got if len(names) != 1 else (got,)

    return pick


def request_value(value: Any) -> Any:
    """A request value as an on-demand view receives it online (the request time: whole
    seconds, aware)."""
    return _as_feast_sees_it(value)[0]


def _as_feast_sees_it(value: Any) -> list[Any]:
    """A request value as the on-demand view receives it online (Feast's proto round trip)."""
    if type(value) is float:  # a double_val carries a Python float exactly
        return [value]
    if type(value) is datetime:  # the request time: Feast keeps whole seconds (naive is UTC)
        aware = value if value.utcoffset() is not None else value.replace(tzinfo=UTC)
        return [datetime.fromtimestamp(int(aware.timestamp()), tz=UTC)]
    proto = python_values_to_proto_values([value], ValueType.UNKNOWN)[0]
    return [feast_value_type_to_python_type(proto)]


def _is_redis_error(exc: BaseException) -> bool:
    import redis.exceptions as rex

    return isinstance(exc, (rex.ConnectionError, rex.TimeoutError, rex.BusyLoadingError))


def _is_connection_error(exc: BaseException) -> bool:
    import redis.exceptions as rex

    return isinstance(exc, rex.ConnectionError) and not isinstance(exc, rex.TimeoutError)


async def entity_ids(online: OnlineFeatures, join_key: str, limit: int | None = None) -> list[str]:
    """Ids of one entity with a row in the online store, read off Feast's Redis key layout
    (`serialize_entity_key(key) + project`), sorted; at most `limit` of them."""
    store = online.provider.online_store
    config = online.store.config
    client = await store._get_client_async(config.online_store)
    version = config.entity_key_serialization_version
    project = config.project.encode()
    prefix = serialize_entity_key_prefix([join_key], version)
    pattern = _glob_escape(prefix) + b"*" + _glob_escape(project)
    ids = []
    async for key in client.scan_iter(match=pattern, count=2000):
        if not key.endswith(project):
            continue
        try:
            entity = deserialize_entity_key(key[: -len(project)], version)
        except (ValueError, UnicodeDecodeError, struct.error):
            continue
        # Another project whose name ends like ours would decode too: the bytes must round-trip.
        if (
            list(entity.join_keys) == [join_key]
            and serialize_entity_key(entity, version) + project == key
        ):
            ids.append(str(feast_value_type_to_python_type(entity.entity_values[0])))
            if limit and len(ids) >= limit:
                break
    return sorted(ids)


def _glob_escape(raw: bytes) -> bytes:
    """Escape Redis glob characters in a binary key prefix."""
    out = bytearray()
    for b in raw:
        if b in b"*?[]\\":
            out.append(ord("\\"))
        out.append(b)
    return bytes(out)
