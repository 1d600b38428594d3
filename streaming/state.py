"""What the stream worker keeps in Redis besides the log: per-entity event buffers, event-id
markers, and the compare-and-set that writes a view's row in Feast's layout.

- **Buffers** (`<prefix>:buf:<view>:<id>`, a sorted set): the entity's events of the view's lookback
  (`pipelines.realtime.LOOKBACK_US`), one member per event (its fields packed, first the
  `event_id`), scored by event time in microseconds. Adding is `ZADD NX`, so an event delivered
  twice is there once: the features computed from the buffer count it once. `<...>:ver` holds the
  buffer's version, raised whenever an event is added (Redis TIME in µs, at least the old + 1, so
  it survives a restart of Redis and stays monotonic).
- **Markers** (`<prefix>:id:<event_id>`, 7 days): the stream entry that accepted the event and the
  event's row and key hashes, taken with `SET NX GET` before its effects: a second entry with the
  same event id is judged a duplicate by the ingest's own rules (duplicate_row / duplicate_id),
  and a redelivery of the same entry finds its own marker and goes on.
- **Window counters** (`<prefix>:cnt:<view>:<id>:<event type>`, sorted sets of event ids scored
  by time) serve a view whose row is only counts over its lookback and the latest time
  (`product_realtime`): a hot product's hour holds ~10^5-10^6 events, too many to read back and
  recompute on every batch. Adding is `ZADD NX` (a redelivered event counts once), the sets are
  trimmed to (latest - lookback, latest] over all types, and the counts are `ZCARD`s: the same
  window `pipelines.realtime.compute` counts (tests/streaming replays a day and compares).
- **Rows** are written into the entity's Feast hash with the view's version in a field
  `_sv:<view>` only when newer than the stored one: two workers updating one entity at once cannot
  leave the older state behind (Feast's own rule compares event times, which a late event does not
  raise).
"""

from __future__ import annotations

import hashlib

import redis

MARKER_TTL_S = 7 * 24 * 3600
BUFFER_TTL_S = 24 * 3600  # an entity without events for a day starts afresh
SEP = "\x1f"

# Both scripts start with this: `bump` raises an entity's version when events were added (or it
# has none yet) to Redis TIME in µs, at least the old version + 1, so versions stay monotonic
# across a Redis restart; it returns the version the entity now has.
BUMP_VERSION = """
local now = redis.call('TIME')
local clock = tonumber(now[1]) * 1000000 + tonumber(now[2])
local function bump(verkey, added, ttl)
  local ver = tonumber(redis.call('GET', verkey) or '0')
  if added > 0 or ver == 0 then
    if clock <= ver then clock = ver + 1 end
    ver = clock
    redis.call('SET', verkey, string.format('%d', ver), 'EX', ttl)
  end
  return ver
end
"""

# KEYS: buffer, version of each entity in turn. ARGV: lookback_us, ttl_s, then per entity: the
# number of events n, then n (score, member) pairs. Per entity: add (NX), trim the buffer to
# (max - lookback, max], raise the version if something was added. Returns per entity
# {version, member, member, ...}: its buffer after the update.
UPDATE_BUFFERS = (
    BUMP_VERSION
    + """
local lookback, ttl = tonumber(ARGV[1]), ARGV[2]
local out = {}
local a = 3
for k = 1, #KEYS, 2 do
  local buf, verkey = KEYS[k], KEYS[k + 1]
  local n = tonumber(ARGV[a])
  a = a + 1
  local added = 0
  for i = 1, n do
    added = added + redis.call('ZADD', buf, 'NX', ARGV[a], ARGV[a + 1])
    a = a + 2
  end
  local top = redis.call('ZRANGE', buf, -1, -1, 'WITHSCORES')
  if #top == 2 then
    redis.call('ZREMRANGEBYSCORE', buf, '-inf', string.format('%.0f', tonumber(top[2]) - lookback))
  end
  local ver = bump(verkey, added, ttl)
  redis.call('EXPIRE', buf, ttl)
  local one = {string.format('%d', ver)}
  for _, m in ipairs(redis.call('ZRANGE', buf, 0, -1)) do one[#one + 1] = m end
  out[#out + 1] = one
end
return out
"""
)

# KEYS: per entity, its version key then one sorted set per counted event type (`ntypes` of them).
# ARGV: lookback_us, ttl_s, ntypes, then per entity: the number of events n, then n (type index
# 1..ntypes, score, event id) triples. Per entity: add (NX), trim every set to
# (latest - lookback, latest] with latest over all sets, raise the version if something was added.
# Returns per entity {version, latest µs, count of each type}.
UPDATE_COUNTS = (
    BUMP_VERSION
    + """
local lookback, ttl, ntypes = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local out = {}
local a = 4
for k = 1, #KEYS, ntypes + 1 do
  local verkey = KEYS[k]
  local n = tonumber(ARGV[a])
  a = a + 1
  local added = 0
  for i = 1, n do
    added = added + redis.call('ZADD', KEYS[k + tonumber(ARGV[a])], 'NX', ARGV[a + 1], ARGV[a + 2])
    a = a + 3
  end
  local latest = nil
  for j = 1, ntypes do
    local top = redis.call('ZRANGE', KEYS[k + j], -1, -1, 'WITHSCORES')
    if #top == 2 and (latest == nil or tonumber(top[2]) > latest) then latest = tonumber(top[2]) end
  end
  local one = {}
  local counts = {}
  for j = 1, ntypes do
    if latest ~= nil then
      redis.call('ZREMRANGEBYSCORE', KEYS[k + j], '-inf', string.format('%.0f', latest - lookback))
    end
    counts[j] = redis.call('ZCARD', KEYS[k + j])
    if counts[j] > 0 then redis.call('EXPIRE', KEYS[k + j], ttl) end
  end
  local ver = bump(verkey, added, ttl)
  one[1] = string.format('%d', ver)
  one[2] = string.format('%.0f', latest or 0)
  for j = 1, ntypes do one[j + 2] = counts[j] end
  out[#out + 1] = one
end
return out
"""
)

# KEYS: event-id markers. ARGV: ttl_s, then one value per key. `SET NX GET` each: returns per key
# the value another entry set before (false where this call took the marker).
RESERVE = """
local ttl, out = ARGV[1], {}
for k = 1, #KEYS do
  local old = redis.call('SET', KEYS[k], ARGV[k + 1], 'NX', 'GET', 'EX', ttl)
  out[k] = old
end
return out
"""

# KEYS: the entities' Feast hashes. ARGV: version field, key ttl (0: none), then per entity: its
# version, the number of field/value pairs, the pairs. An entity's row is written only when its
# version is newer than the stored one. Returns how many were written.
WRITE_ROWS = """
local vfield, ttl = ARGV[1], tonumber(ARGV[2])
local a = 3
local written = 0
for k = 1, #KEYS do
  local ver, n = ARGV[a], tonumber(ARGV[a + 1])
  a = a + 2
  local stored = tonumber(redis.call('HGET', KEYS[k], vfield) or '0')
  if stored < tonumber(ver) then
    local args = {vfield, ver}
    for i = a, a + 2 * n - 1 do args[#args + 1] = ARGV[i] end
    redis.call('HSET', KEYS[k], unpack(args))
    if ttl > 0 then redis.call('EXPIRE', KEYS[k], ttl) end
    written = written + 1
  end
  a = a + 2 * n
end
return written
"""


SCRIPTS = {
    "update_buffers": UPDATE_BUFFERS,
    "update_counts": UPDATE_COUNTS,
    "reserve": RESERVE,
    "write_rows": WRITE_ROWS,
}
_SHA = {name: hashlib.sha1(text.encode()).hexdigest() for name, text in SCRIPTS.items()}


class Scripts:
    """The Lua scripts on one Redis, called by their SHA (loaded when Redis says it lacks them:
    after a restart or SCRIPT FLUSH); several calls go in one pipelined round trip. Every script
    is idempotent, so a batch of calls is simply run again after loading."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def run(self, calls: list[tuple[str, list, list]]) -> list:
        """(script name, keys, args) of each call -> each call's reply."""
        for attempt in (0, 1):
            pipe = self.client.pipeline(transaction=False)
            for name, keys, args in calls:
                pipe.evalsha(_SHA[name], len(keys), *keys, *args)
            try:
                return pipe.execute()
            except redis.exceptions.NoScriptError:
                if attempt:
                    raise
                for text in SCRIPTS.values():
                    self.client.script_load(text)
        raise AssertionError("unreachable")

    def one(self, name: str, keys: list, args: list):
        return self.run([(name, keys, args)])[0]


def buffer_keys(prefix: str, view: str, entity_id: str) -> list[str]:
    base = f"{prefix}:buf:{view}:{{{entity_id}}}"  # one hash slot per entity (Redis Cluster)
    return [base, base + ":ver"]


def counter_keys(prefix: str, view: str, entity_id: str, types: tuple[str, ...]) -> list[str]:
    """The version key, then one sorted set per counted event type (one hash slot per entity)."""
    base = f"{prefix}:cnt:{view}:{{{entity_id}}}"
    return [base + ":ver", *(f"{base}:{t}" for t in types)]


def marker_key(prefix: str, event_id: str) -> str:
    return f"{prefix}:id:{event_id}"


# A buffered event: what pipelines.realtime.compute reads of it.
MEMBER_FIELDS = ("event_id", "event_ts", "customer_id", "session_id", "event_type", "product_id")


def pack_event(values: tuple) -> str:
    """(event_id, event_ts in µs, customer_id, session_id, event_type, product_id) as a member."""
    return SEP.join("" if v is None else str(v) for v in values)


def unpack_events(members: list[bytes]) -> list[list[str | None]]:
    out = []
    for m in members:
        parts = (m.decode() if isinstance(m, bytes) else m).split(SEP)
        out.append([p or None for p in parts])
    return out
