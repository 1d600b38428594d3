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
import redis

from featurestore.realtime import RowEncoder
from pipelines.realtime import LOOKBACK_US, PRODUCT_EVENTS, SOURCES, compute, micros
from streaming import landing
from streaming.log import Effects, Entry, EventLog, RedisStreamLog
from streaming.state import (
    BUFFER_TTL_S,
    MARKER_TTL_S,
    MEMBER_FIELDS,
    Scripts,
    buffer_keys,
    marker_key,
    pack_event,
    unpack_events,
)
from streaming.validation import BatchContext, Verdict, judge, typed_rows

log = logging.getLogger("shopfeast.stream")


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
        online_client: Callable[[], redis.Redis],
        encoders: dict[str, RowEncoder],
        log: Callable[[redis.Redis], EventLog] | None = None,
    ) -> None:
        """`stream_client`: the Redis of the worker's state (markers, buffers, quarantine, landing
        records) and, for a Redis Stream, of the log too; `log`: the log on it (default the
        Redis Stream `config.stream`; a Kafka adapter would be another EventLog)."""
        self.config = config
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
        self.online = self._online_factory()
        self.log: EventLog = self._log_factory(self.client)
        self.log.reset()
        self.scripts = Scripts(self.client)
        self.online_scripts = Scripts(self.online)

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
            landing.write_tmp(
                self.config.data_dir, part, landing.raw_rows([entries[i].fields for i in accepted])
            )
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
        pipe = self.client.pipeline(transaction=False)
        ids = []
        all_ids = out.typed.column("event_id").to_pylist()
        for i in accepted:
            event_id = all_ids[i]
            ids.append(event_id)
            value = f"{verdict.entries[i].id} {int(out.row_hash[i])} {int(out.key_hash[i])}"
            pipe.set(
                marker_key(self.config.prefix, event_id), value, nx=True, get=True, ex=MARKER_TTL_S
            )
        for i, event_id, old in zip(accepted, ids, pipe.execute(), strict=True):
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
        """Buffer the events per entity, recompute each touched entity's row, write it."""
        us = micros(events["event_ts"])
        customer = _objects(events["customer_id"])
        product = _objects(events["product_id"])
        members = [
            pack_event(v)
            for v in zip(
                _objects(events["event_id"]),
                us.tolist(),
                customer,
                _objects(events["session_id"]),
                _objects(events["event_type"]),
                product,
                strict=True,
            )
        ]
        is_product_event = events["event_type"].isin(PRODUCT_EVENTS).to_numpy(bool)
        for name, ids in (("customer_session", customer), ("product_realtime", product)):
            take = [
                i
                for i, v in enumerate(ids)
                if v is not None and (name != "product_realtime" or is_product_event[i])
            ]
            if take:
                self._update_view(
                    name, [ids[i] for i in take], [us[i] for i in take], [members[i] for i in take]
                )

    def _update_view(self, name: str, ids: list[str], scores: list, members: list[str]) -> None:
        by_entity: dict[str, list] = {}
        for entity_id, score, member in zip(ids, scores, members, strict=True):
            by_entity.setdefault(entity_id, []).extend((int(score), member))
        keys: list[str] = []
        args: list = [LOOKBACK_US[name], BUFFER_TTL_S]
        for entity_id, pairs in by_entity.items():
            keys += buffer_keys(self.config.prefix, name, entity_id)
            args.append(len(pairs) // 2)
            args += pairs
        replies = self.scripts.update_buffers(keys=keys, args=args)
        versions = dict(zip(by_entity, (int(r[0]) for r in replies), strict=True))
        rows = [row for r in replies for row in unpack_events(r[1:])]
        events = pd.DataFrame(rows, columns=list(MEMBER_FIELDS))
        events["event_ts"] = pd.to_datetime(events["event_ts"].astype("int64"), unit="us", utc=True)
        latest = compute(name, events, latest_only=True)
        encoder = self.encoders[name]
        keys, args = [], [encoder.version_field, encoder.key_ttl_seconds]
        for entity_id, row in zip(
            latest[SOURCES[name].join_key].tolist(), encoder.encode(latest), strict=True
        ):
            keys.append(row.key)
            args += [versions[entity_id], len(row.fields) // 2, *row.fields]
        self.online_scripts.write_rows(keys=keys, args=args)

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
