"""Many short byte strings in one NumPy buffer, and row-wise concatenation of such columns.

Materialization builds one Redis command per entity out of ~100 pieces (field names, lengths,
encoded values). Doing that per piece in Python costs microseconds each, millions of times; with
every column held as one buffer plus offsets, the commands of a whole chunk are assembled with a
few NumPy gathers per column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Segments:
    """`n` byte strings: row `i` is `data[offsets[i]:offsets[i + 1]]` (compact, in row order)."""

    data: np.ndarray  # uint8
    offsets: np.ndarray  # int64, length n + 1, offsets[0] == 0

    @classmethod
    def from_list(cls, items: Sequence[bytes]) -> Segments:
        offsets = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in items], out=offsets[1:])
        return cls(np.frombuffer(b"".join(items), dtype=np.uint8), offsets)

    @classmethod
    def from_matrix(cls, matrix: np.ndarray, lengths: np.ndarray) -> Segments:
        """Row `i` is the first `lengths[i]` bytes of `matrix[i]`."""
        keep = np.arange(matrix.shape[1]) < lengths[:, None]
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(np.ascontiguousarray(matrix[keep]), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def to_list(self) -> list[bytes]:
        raw = self.data.tobytes()
        bounds = self.offsets.tolist()
        return [raw[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def take(self, index: np.ndarray) -> Segments:
        index = np.asarray(index, dtype=np.int64)
        lengths = self.lengths[index]
        offsets = np.zeros(len(index) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        src = _ranges(self.offsets[:-1][index], lengths, offsets)
        return Segments(self.data[src], offsets)


def _ranges(starts: np.ndarray, lengths: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Concatenated `range(starts[i], starts[i] + lengths[i])` (offsets = cumsum of lengths)."""
    total = int(offsets[-1])
    return np.repeat(starts - offsets[:-1], lengths) + np.arange(total, dtype=np.int64)


def lookup(table: Sequence[bytes], index: np.ndarray) -> Segments:
    """`table[index[i]]` for every row (a small table of prefixes, say)."""
    return Segments.from_list(list(table)).take(index)


def concat_rows(parts: Sequence[bytes | Segments], n: int) -> Segments:
    """Row `i` = the concatenation of every part's row `i` (a bytes part is the same in all)."""
    lengths = np.empty((n, len(parts)), dtype=np.int64)
    for j, part in enumerate(parts):
        lengths[:, j] = len(part) if isinstance(part, bytes) else part.lengths
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths.sum(axis=1), out=offsets[1:])
    starts = offsets[:-1, None] + np.cumsum(lengths, axis=1) - lengths
    out = np.empty(int(offsets[-1]), dtype=np.uint8)
    for j, part in enumerate(parts):
        if isinstance(part, bytes):
            if part:
                const = np.frombuffer(part, dtype=np.uint8)
                out[starts[:, j, None] + np.arange(len(const))] = const
        elif part.offsets[-1]:
            dst = _ranges(starts[:, j], part.lengths, part.offsets)
            out[dst] = part.data
    return Segments(out, offsets)
