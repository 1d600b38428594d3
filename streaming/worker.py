"""`shopfeast stream`: a consumer-group worker from the event log to the online store.

One batch of entries at a time (new ones, its own pending ones after a restart, or ones a dead
worker left pending, claimed with XAUTOCLAIM):

1. judge them with the ingest's rules (streaming.validation);
2. take each accepted event's marker (`SET NX GET`): a second entry with the same event id is a
   duplicate by the ingest's rules; a redelivered entry finds its own marker;
3. add the accepted events to their entities' buffers and write the recomputed rows
   (pipelines.realtime.compute, the function the batch side uses) into the online store;
4. write the accepted events as a landing part (temporary name, fsynced);
5. commit atomically (one Lua script): if this consumer still owns every entry, the rejected
   entries onto the quarantine stream with their rule, the landing part's id, and the
   acknowledgement of every entry of the batch; else nothing (a consumer that was slow past
   `claim_idle_ms` finds its entries claimed: it drops its part, the claimer commits them);
6. publish the landing part (rename).

Every step before the commit is idempotent by event id, so a worker killed anywhere loses nothing
and counts nothing twice: its entries are redelivered (to itself after a restart, to another
worker after `claim_idle_ms`) and the steps run again. A lost connection (Redis restarting) is
retried with back-off until Redis answers; SIGTERM finishes the batch in hand and stops.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import redis

from featurestore.realtime import FeastPush, RowEncoder
from pipelines.realtime import LOOKBACK_US, PRODUCT_COUNTS, SOURCES, compute, micros
from pipelines.specs import TIMESTAMP_FIELD
from streaming import landing
from streaming.log import Effects, Entry, EventLog, RedisStreamLog
from streaming.state import (
    BUFFER_TTL_S,
    MARKER_TTL_S,
    MEMBER_FIELDS,
    Scripts,
    buffer_keys,
    counter_keys,
    marker_key,
    pack_event,
    unpack_events,
)
from streaming.validation import BatchContext, Verdict, judge, typed_rows

log = logging.getLogger("shopfeast.stream")

# product_realtime's counted event types, as 1-based indexes of the counter sets.
COUNTED_TYPES = tuple(PRODUCT_COUNTS.values())
COUNTED_TYPE = {t: i + 1 for i, t in enumerate(COUNTED_TYPES)}


@dataclass
class WorkerConfig:
    data_dir: Path
    stream: str = "shopfeast:events"
    group: str = "shopfeast-stream"
    consumer: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    batch_size: int = 500
    block_ms: int = 200
    claim_idle_ms: int = 30_000
    claim_every_s: float = 5.0
    retry_max_s: float = 2.0
    bounds: dict[str, float] | None = None  # the contract's upper bounds (None: the defaults)

    @property
    def prefix(self) -> str:
        return f"{self.stream}:state"

    @property
    def quarantine_stream(self) -> str:
        return f"{self.stream}:quarantine"

    @property
    def landed_set(self) -> str:
        return f"{self.prefix}:landing-committed"


@dataclass
class Counters:
    batches: int = 0
    entries: int = 0
    accepted: int = 0
    quarantined: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)


class Worker:
    def __init__(
        self,
        config: WorkerConfig,
        stream_client: Callable[[], redis.Redis],
        online_client: Callable[[], redis.Redis] | None,
        encoders: dict[str, RowEncoder],
        log: Callable[[redis.Redis], EventLog] | None = None,
        push: FeastPush | None = None,
    ) -> None:
        """`stream_client`: the Redis of the worker's state (markers, buffers, quarantine, landing
        records) and, for a Redis Stream, of the log too; `log`: the log on it (default the
        Redis Stream `config.stream`; a Kafka adapter would be another EventLog).
        `online_client` and `encoders`: a Redis online store, written in Feast's layout with the
        version compare-and-set; or `push` (any other online store, through Feast's push API:
        one consumer only) with `online_client` None."""
        if (online_client is None) == (push is None):
            raise ValueError("a worker writes online through a Redis client or Feast's push")
        self.config = config
        self.push = push
        self._stream_factory = stream_client
        self._online_factory = online_client
        self._log_factory = log or (
            lambda client: RedisStreamLog(client, self.config.stream, self.config.group)
        )
        self.encoders = encoders
        self.context = BatchContext(config.data_dir, config.bounds)
        self.counters = Counters()
        self.hook: Callable[[str], None] | None = None  # tests: called at each stage of a batch
        self._connect()

    def _connect(self) -> None:
        self.client = self._stream_factory()
        self.online = self._online_factory() if self._online_factory else None
        self.log: EventLog = self._log_factory(self.client)
        self.log.reset()
        self.scripts = Scripts(self.client)
        self.online_scripts = Scripts(self.online) if self.online is not None else None

    # --- the loop ------------------------------------------------------------------------------

    def run(self, stop: Callable[[], bool]) -> Counters:
        """Process batches until `stop()` is true (checked between batches)."""
        backoff = 0.05
        pending = True  # after a (re)start: our own unacknowledged entries first
        last_claim = 0.0
        while not stop():
            try:
                if pending:
                    self._recover_landing()
                    entries = self.log.read_pending(self.config.consumer, self.config.batch_size)
                    pending = bool(entries)
                elif time.monotonic() - last_claim >= self.config.claim_every_s:
                    last_claim = time.monotonic()
                    self._recover_landing()  # parts a dead worker committed, not renamed
                    entries = self.log.claim_stale(
                        self.config.consumer, self.config.claim_idle_ms, self.config.batch_size
                    )
                else:
                    entries = self.log.read_new(
                        self.config.consumer, self.config.batch_size, self.config.block_ms
                    )
                if entries and self.process(entries) is None:
                    pending = True  # fenced off: our own entries left are read again
                backoff = 0.05
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
                log.warning("redis unavailable (%s); retrying in %.2fs", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, self.config.retry_max_s)
                self._reconnect()
                pending = True
        try:  # a peer killed between its commit and its rename: publish now, not at the next start
            self._recover_landing()
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
            log.warning(
                "redis unavailable at shutdown (%s): committed parts left to the next worker", exc
            )
        return self.counters

    def _reconnect(self) -> None:
        for client in (getattr(self, "client", None), getattr(self, "online", None)):
            try:
                if client is not None:
                    client.close()
            except Exception:  # noqa: BLE001 - a dead connection may fail to close
                pass
        self._connect()

    def _recover_landing(self) -> None:
        landed = self.config.landed_set

        def committed(parts: list[str]) -> list[bool]:
            return [bool(x) for x in self.client.smismember(landed, parts)]

        for part in landing.recover(self.config.data_dir, committed):
            self.client.srem(landed, part)

    # --- one batch -------------------------------------------------------------------------------

    def process(self, entries: list[Entry]) -> Verdict | None:
        """One batch; None when the commit was fenced off (another consumer claimed some of the
        entries meanwhile and commits them itself; the effects so far are idempotent)."""
        self.context.refresh()
        now = pd.Timestamp.now(tz="UTC")
        earlier = self._earlier_markers(entries)
        verdict = judge(entries, self.context, now, self.config.stream, earlier)
        self._reserve(verdict)
        accepted = verdict.accepted
        if accepted:
            self._update_online(typed_rows(verdict, accepted))
            self._stage("online")
            part = landing.new_part_id()
            rows = verdict.outcome.raw.data.take(pa.array(accepted, pa.int64()))
            landing.write_tmp(self.config.data_dir, part, rows)  # the raw rows judged
            self._stage("landed")
        else:
            part = None
        if not self._commit(verdict, part):
            if part is not None:
                landing.discard(self.config.data_dir, part)
            log.warning("batch of %d entries claimed by another consumer: left to it", len(entries))
            return None
        self._stage("committed")
        if part is not None:
            landing.publish(self.config.data_dir, part)
            self.client.srem(self.config.landed_set, part)
        self._count(verdict)
        return verdict

    def _stage(self, name: str) -> None:
        if self.hook is not None:
            self.hook(name)

    def _event_ids(self, entries: list[Entry]) -> list[str | None]:
        return [(e.fields.get("event_id") or "").strip() or None for e in entries]

    def _earlier_markers(self, entries: list[Entry]) -> tuple[np.ndarray, np.ndarray]:
        """Hashes of the events other entries accepted under this batch's event ids."""
        ids = self._event_ids(entries)
        keyed = [(e, i) for e, i in zip(entries, ids, strict=True) if i]
        if not keyed:
            return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
        values = self.client.mget([marker_key(self.config.prefix, i) for _, i in keyed])
        rows, keys = [], []
        for (entry, _), value in zip(keyed, values, strict=True):
            if value is None:
                continue
            owner, row_hash, key_hash = value.decode().split(" ")
            if owner != entry.id:
                rows.append(int(row_hash))
                keys.append(int(key_hash))
        return np.array(rows, np.uint64), np.array(keys, np.uint64)

    def _reserve(self, verdict: Verdict) -> None:
        """Take the markers of the accepted events; an id another entry holds is a duplicate."""
        accepted = verdict.accepted
        if not accepted:
            return
        out = verdict.outcome
        all_ids = out.typed.column("event_id").to_pylist()
        ids = [all_ids[i] for i in accepted]
        keys = [marker_key(self.config.prefix, event_id) for event_id in ids]
        values = [
            f"{verdict.entries[i].id} {int(out.row_hash[i])} {int(out.key_hash[i])}"
            for i in accepted
        ]
        olds = self.scripts.one("reserve", keys, [MARKER_TTL_S, *values])
        for i, event_id, old in zip(accepted, ids, olds, strict=True):
            if old is None:
                continue
            owner, row_hash, _ = old.decode().split(" ")
            if owner == verdict.entries[i].id:
                continue  # our own marker: this entry is being redelivered
            if int(row_hash) == int(out.row_hash[i]):
                verdict.reject(i, "duplicate_row", "exact copy of an event already accepted")
            else:
                verdict.reject(
                    i, "duplicate_id", f"event_id={event_id!r} already accepted with other values"
                )

    def _update_online(self, events: pd.DataFrame) -> None:
        """Add the events to their entities' state (customer buffers, product window counters) in
        one round trip, then write each touched entity's row in one more."""
        us = micros(events["event_ts"]).tolist()
        event_ids = _objects(events["event_id"])
        customer = _objects(events["customer_id"])
        product = _objects(events["product_id"])
        types = _objects(events["event_type"])
        sessions = _objects(events["session_id"])
        calls, touched = [], []
        members: dict[str, list] = {}
        for i, c in enumerate(customer):
            if c is not None:
                member = pack_event((event_ids[i], us[i], c, sessions[i], types[i], product[i]))
                members.setdefault(c, []).extend((us[i], member))
        if members:
            calls.append(self._buffer_call("customer_session", members))
            touched.append(("customer_session", list(members), self._session_rows))
        counted: dict[str, list] = {}
        for i, p in enumerate(product):
            t = COUNTED_TYPE.get(types[i])
            if p is not None and t is not None:
                counted.setdefault(p, []).extend((t, us[i], event_ids[i]))
        if counted:
            calls.append(self._counter_call("product_realtime", counted))
            touched.append(("product_realtime", list(counted), self._counter_rows))
        if not calls:
            return
        writes = []
        for (view, ids, rows_of), reply in zip(touched, self.scripts.run(calls), strict=True):
            rows, versions = rows_of(ids, reply)
            if self.push is not None:
                self.push.write(view, rows)
            else:
                writes.append(self._write_call(view, rows, versions))
        if writes:
            self.online_scripts.run(writes)

    def _buffer_call(self, name: str, members: dict[str, list]) -> tuple[str, list, list]:
        keys: list[str] = []
        args: list = [LOOKBACK_US[name], BUFFER_TTL_S]
        for entity_id, pairs in members.items():
            keys += buffer_keys(self.config.prefix, name, entity_id)
            args.append(len(pairs) // 2)
            args += pairs
        return "update_buffers", keys, args

    def _counter_call(self, name: str, triples: dict[str, list]) -> tuple[str, list, list]:
        keys: list[str] = []
        args: list = [LOOKBACK_US[name], BUFFER_TTL_S, len(COUNTED_TYPES)]
        for entity_id, values in triples.items():
            keys += counter_keys(self.config.prefix, name, entity_id, COUNTED_TYPES)
            args.append(len(values) // 3)
            args += values
        return "update_counts", keys, args

    def _session_rows(self, ids: list[str], replies: list) -> tuple[pd.DataFrame, dict]:
        """customer_session: pipelines.realtime.compute over each customer's buffer."""
        versions = dict(zip(ids, (int(r[0]) for r in replies), strict=True))
        rows = [row for r in replies for row in unpack_events(r[1:])]
        events = pd.DataFrame(rows, columns=list(MEMBER_FIELDS))
        events["event_ts"] = pd.to_datetime(events["event_ts"].astype("int64"), unit="us", utc=True)
        return compute("customer_session", events, latest_only=True), versions

    def _counter_rows(self, ids: list[str], replies: list) -> tuple[pd.DataFrame, dict]:
        """product_realtime: the window counts, as compute's latest row would hold them."""
        versions = dict(zip(ids, (int(r[0]) for r in replies), strict=True))
        latest = np.array([int(r[1]) for r in replies], np.int64)
        frame = pd.DataFrame({SOURCES["product_realtime"].join_key: ids})
        frame[TIMESTAMP_FIELD] = pd.to_datetime(latest, unit="us", utc=True)
        for j, feature in enumerate(PRODUCT_COUNTS):
            frame[feature] = np.array([int(r[2 + j]) for r in replies], np.int64)
        frame["product_last_event_ts"] = pd.to_datetime(
            latest // 1_000_000 * 1_000_000, unit="us", utc=True
        )
        return frame, versions

    def _write_call(
        self, name: str, latest: pd.DataFrame, versions: dict
    ) -> tuple[str, list, list]:
        encoder = self.encoders[name]
        keys, args = [], [encoder.version_field, encoder.key_ttl_seconds]
        for entity_id, row in zip(
            latest[SOURCES[name].join_key].tolist(), encoder.encode(latest), strict=True
        ):
            keys.append(row.key)
            args += [versions[entity_id], len(row.fields) // 2, *row.fields]
        return "write_rows", keys, args

    def _commit(self, verdict: Verdict, part: str | None) -> bool:
        """Quarantine, landing record and acknowledgement, atomically, if still ours."""
        quarantine = [
            {
                **verdict.entries[i].fields,
                "_rule": rule,
                "_detail": verdict.details[i] or "",
                "_entry": verdict.entries[i].id,
            }
            for i, rule in enumerate(verdict.rules)
            if rule is not None
        ]
        effects = Effects(self.config.quarantine_stream, quarantine, self.config.landed_set, part)
        return self.log.commit(self.config.consumer, verdict.entries, effects)

    def _count(self, verdict: Verdict) -> None:
        c = self.counters
        c.batches += 1
        c.entries += len(verdict.entries)
        for rule in verdict.rules:
            if rule is None:
                c.accepted += 1
            else:
                c.quarantined += 1
                c.by_rule[rule] = c.by_rule.get(rule, 0) + 1


def _objects(s: pd.Series) -> list:
    """A column as Python values, None for missing."""
    return [None if v is pd.NA or v is None else v for v in s.astype(object).tolist()]
