"""Raw RESP pipelining over a redis-py connection.

redis-py builds and parses every pipelined command in Python (about 40 µs a command on this
machine, most of a materialization). Here commands are packed as bytes in bulk, sent in windows on
one pooled connection, and replies parsed by hiredis straight from the socket (redis-py's own
reader when hiredis or the socket is not available). The connection is dropped, not returned to
the pool, if anything goes wrong mid-window, so no half-read replies can leak into a later
command.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice

from redis import Redis
from redis.exceptions import ConnectionError, ResponseError

from featurestore.segments import Segments

try:
    import hiredis
except ImportError:  # redis-py works without it; so does this module, slower
    hiredis = None

RECV_BYTES = 1 << 20


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


def command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(bulk(a) for a in args)


def execute(client: Redis, commands: Iterable[bytes], window: int) -> Iterator[object]:
    """Send `commands` (packed) `window` at a time and yield their replies in order."""

    def windows() -> Iterator[tuple[bytes, int]]:
        it = iter(commands)
        while chunk := list(islice(it, window)):
            yield b"".join(chunk), len(chunk)

    yield from _execute_packed(client, windows())


def execute_rows(
    client: Redis, commands: Segments, per_row: int, window_rows: int
) -> Iterator[object]:
    """Like `execute` for commands assembled in one buffer, `per_row` commands a row."""
    bounds = commands.offsets
    view = memoryview(commands.data)
    n = len(commands)

    def windows() -> Iterator[tuple[memoryview, int]]:
        for lo in range(0, n, max(window_rows, 1)):
            hi = min(lo + window_rows, n)
            yield view[bounds[lo] : bounds[hi]], (hi - lo) * per_row

    yield from _execute_packed(client, windows())


def _execute_packed(client: Redis, windows) -> Iterator[object]:
    pool = client.connection_pool
    conn = pool.get_connection()
    healthy = False
    reader = hiredis.Reader() if hiredis is not None else None
    try:
        for payload, count in windows:
            conn.send_packed_command([payload])
            sock = getattr(conn, "_sock", None)
            if reader is None or sock is None:
                for _ in range(count):
                    yield conn.read_response()
            else:
                yield from _replies(reader, sock, count)
        healthy = True
    finally:
        if not healthy:
            conn.disconnect()
        pool.release(conn)


def _replies(reader, sock, count: int) -> Iterator[object]:
    while count:
        reply = reader.gets()
        if reply is False:
            data = sock.recv(RECV_BYTES)
            if not data:
                raise ConnectionError("Redis closed the connection mid-pipeline")
            reader.feed(data)
            continue
        if isinstance(reply, hiredis.ReplyError):
            raise ResponseError(str(reply))
        count -= 1
        yield reply


def run(client: Redis, commands: Iterable[bytes], window: int) -> list[object]:
    return list(execute(client, commands, window))
