"""The event log: what producers append to and consumer-group workers read from.

`EventProducer` and `EventLog` are the only things the rest of shopfeast asks of the log;
`RedisStreamLog` fills both with a Redis Stream (XADD, XREADGROUP, XAUTOCLAIM, XACK). A Kafka
adapter fills the same methods with a topic partitioned by customer id (send = produce), a
consumer group (read_new = poll; read_pending = the records after the offsets it stored; partition
rebalancing instead of claim_stale), and offsets kept with the results: `commit` checks the
consumer still holds the partitions (its generation, stored in Redis) and stores the next offsets
in the same Redis transaction as the batch's effects, then commits them to Kafka too
(docs/streaming.md, "Kafka"). The worker uses nothing else (tests/streaming hold it to these
methods).

An entry is one event of the raw contract: its fields are the contract's columns as text, a missing
value is an absent field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import redis
import redis.asyncio

DEFAULT_STREAM = "shopfeast:events"
GROUP = "shopfeast-stream"


@dataclass(frozen=True)
class Effects:
    """What a batch's commit writes besides the acknowledgement (on the state Redis)."""

    quarantine_stream: str
    quarantine: list[dict[str, str]]  # rejected entries' fields plus _rule, _detail, _entry
    landed_set: str
    part: str | None  # the landing part to record as committed


# KEYS: stream, quarantine stream, landed set. ARGV: group, consumer, part ('' for none), n, the n
# entry ids, then per quarantined entry: its number of fields m and m field/value pairs.
# The fence: every entry must still be pending with this consumer, else nothing is done (0).
COMMIT = """
local stream, qstream, landed = KEYS[1], KEYS[2], KEYS[3]
local group, consumer, part = ARGV[1], ARGV[2], ARGV[3]
local n = tonumber(ARGV[4])
for i = 5, 4 + n do
  local p = redis.call('XPENDING', stream, group, ARGV[i], ARGV[i], 1)
  if #p == 0 or p[1][2] ~= consumer then return 0 end
end
local a = 5 + n
while a <= #ARGV do
  local m = tonumber(ARGV[a])
  local fields = {}
  for i = a + 1, a + 2 * m do fields[#fields + 1] = ARGV[i] end
  redis.call('XADD', qstream, '*', unpack(fields))
  a = a + 1 + 2 * m
end
if part ~= '' then redis.call('SADD', landed, part) end
for i = 5, 4 + n, 1000 do
  redis.call('XACK', stream, group, unpack(ARGV, i, math.min(i + 999, 4 + n)))
end
return 1
"""


@dataclass(frozen=True)
class Entry:
    """One log entry: its log position (a Redis Stream id) and its fields as text."""

    id: str
    fields: dict[str, str]


class EventProducer(Protocol):
    def send(self, events: Sequence[Mapping[str, object]]) -> list[str]:
        """Append events (contract columns; None = missing); their log ids, in order."""
        ...


class EventLog(EventProducer, Protocol):
    def read_new(self, consumer: str, count: int, block_ms: int) -> list[Entry]:
        """Entries never delivered to the group, now owned by `consumer` until acknowledged."""
        ...

    def read_pending(self, consumer: str, count: int) -> list[Entry]:
        """Entries delivered to `consumer` and not acknowledged (after its own restart)."""
        ...

    def claim_stale(self, consumer: str, min_idle_ms: int, count: int) -> list[Entry]:
        """Entries another consumer took and left unacknowledged for `min_idle_ms` (it died)."""
        ...

    def commit(self, consumer: str, entries: Sequence[Entry], effects: Effects) -> bool:
        """Atomically, on the worker's state Redis: if `consumer` still owns every entry, apply
        `effects` and acknowledge the entries, True; else nothing at all, False (another consumer
        claimed some of them while this one was slow: that one commits them, exactly once)."""
        ...

    def reset(self) -> None:
        """Forget what is cached of the server (after a reconnect)."""
        ...

    def backlog(self) -> dict[str, int]:
        """Entries not yet delivered (lag) and delivered but not acknowledged (pending)."""
        ...


def encode(event: Mapping[str, object]) -> dict[str, str]:
    """An event's fields as the log stores them: text, missing values left out."""
    out = {}
    for k, v in event.items():
        if v is None or (isinstance(v, float) and v != v):
            continue
        out[str(k)] = v.isoformat() if hasattr(v, "isoformat") else str(v)
    return out


class RedisStreamLog:
    """A Redis Stream with one consumer group (created on first use, from the stream's start)."""

    def __init__(self, client: redis.Redis, stream: str = DEFAULT_STREAM, group: str = GROUP):
        self.client = client
        self.stream = stream
        self.group = group
        self._group_ready = False
        self._commit = None

    def send(self, events: Sequence[Mapping[str, object]]) -> list[str]:
        pipe = self.client.pipeline(transaction=False)
        for event in events:
            pipe.xadd(self.stream, encode(event))
        return [_text(i) for i in pipe.execute()]

    def ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def reset(self) -> None:
        """Forget what this object knows of the server (after a reconnect: Redis may be new)."""
        self._group_ready = False

    def read_new(self, consumer: str, count: int, block_ms: int) -> list[Entry]:
        return self._read(consumer, ">", count, block_ms)

    def read_pending(self, consumer: str, count: int) -> list[Entry]:
        return self._read(consumer, "0", count, None)

    def _read(self, consumer: str, start: str, count: int, block_ms: int | None) -> list[Entry]:
        self.ensure_group()
        try:
            reply = self.client.xreadgroup(
                self.group, consumer, {self.stream: start}, count=count, block=block_ms
            )
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._group_ready = False  # the stream was deleted (or Redis came back empty)
            return []
        raw = [e for _, entries in reply or [] for e in entries]
        gone = [entry_id for entry_id, fields in raw if fields is None]
        if gone:  # trimmed from the stream while pending: nothing left to process
            self.client.xack(self.stream, self.group, *gone)
        return list(_entries(raw))

    def claim_stale(self, consumer: str, min_idle_ms: int, count: int) -> list[Entry]:
        self.ensure_group()
        reply = self.client.xautoclaim(
            self.stream,
            self.group,
            consumer,
            min_idle_time=min_idle_ms,
            start_id="0-0",
            count=count,
        )
        return list(_entries(reply[1]))

    def commit(self, consumer: str, entries: Sequence[Entry], effects: Effects) -> bool:
        """One Lua script (the stream lives on the worker's state Redis): ownership of every
        entry checked with XPENDING, then the quarantine entries, the landing record and XACK."""
        if self._commit is None:
            self._commit = self.client.register_script(COMMIT)
        args: list = [self.group, consumer, effects.part or "", len(entries)]
        args += [e.id for e in entries]
        for fields in effects.quarantine:
            args.append(len(fields))
            for k, v in fields.items():
                args += [k, v]
        keys = [self.stream, effects.quarantine_stream, effects.landed_set]
        return bool(self._commit(keys=keys, args=args))

    def backlog(self) -> dict[str, int]:
        """Entries not yet delivered (lag) and delivered but unacknowledged (pending)."""
        self.ensure_group()
        for g in self.client.xinfo_groups(self.stream):
            if _text(g["name"]) == self.group:
                lag = g.get("lag")
                if lag is None:  # Redis cannot tell (after a restart, or deletions): count
                    start = "(" + _text(g["last-delivered-id"])
                    lag = len(self.client.xrange(self.stream, start, "+", count=100_000))
                return {"lag": int(lag), "pending": int(g["pending"])}
        return {"lag": 0, "pending": 0}


class AsyncRedisStreamProducer:
    """The producer for an asyncio application (the API): XADDs in one pipelined round trip."""

    def __init__(self, client: redis.asyncio.Redis, stream: str = DEFAULT_STREAM) -> None:
        self.client = client
        self.stream = stream

    async def send(self, events: Sequence[Mapping[str, object]]) -> list[str]:
        async with self.client.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.xadd(self.stream, encode(event))
            ids = await pipe.execute()
        return [_text(i) for i in ids]

    async def close(self) -> None:
        await self.client.aclose()


def async_producer(
    url: str, stream: str, socket_timeout_s: float, connect_timeout_s: float
) -> AsyncRedisStreamProducer:
    """A producer on the stream's Redis with bounded waits (a dead Redis costs a request ~1 s)."""
    client = redis.asyncio.Redis.from_url(
        url, socket_timeout=socket_timeout_s, socket_connect_timeout=connect_timeout_s
    )
    return AsyncRedisStreamProducer(client, stream)


def _entries(raw) -> Iterable[Entry]:
    for entry_id, fields in raw:
        if fields is None:  # deleted from the stream while pending (XTRIM): nothing to process
            continue
        try:
            text = {k.decode(): v.decode() for k, v in fields.items()}
        except AttributeError:  # a client with decode_responses
            text = {_text(k): _text(v) for k, v in fields.items()}
        yield Entry(_text(entry_id), text)


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
