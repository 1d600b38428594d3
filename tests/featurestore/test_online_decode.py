"""The online read path's own decoding of Feast's Redis format equals Feast's, value and type.

featurestore/online.py reads Redis hashes without Feast's per-row protos: keys serialized
directly, values decoded by `_Decoder` (remembering immutable values by their bytes). Each is
checked here against the Feast function it stands in for, on every value kind, nulls, repeats
(the remembered path) and a full cache.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

from featurestore.online import (
    _as_feast_sees_it,
    _decode_rows,
    _Decoder,
    _KeyWriter,
    string_redis_keys,
)

NULL_TS = -(2**63)


def _protos() -> list[tuple[ValueType | None, Value]]:
    v = Value
    out: list[tuple[ValueType | None, Value]] = [
        (ValueType.DOUBLE, v(double_val=1.5)),
        (ValueType.DOUBLE, v(double_val=math.nan)),
        (ValueType.DOUBLE, v(double_val=-0.0)),
        (ValueType.FLOAT, v(float_val=0.1)),
        (ValueType.INT64, v(int64_val=2**40)),
        (ValueType.INT64, v(int64_val=0)),
        (ValueType.INT32, v(int32_val=-7)),
        (ValueType.BOOL, v(bool_val=True)),
        (ValueType.BOOL, v(bool_val=False)),
        (ValueType.STRING, v(string_val="électronique")),
        (ValueType.STRING, v(string_val="")),
        (ValueType.BYTES, v(bytes_val=b"\x00\x01")),
        (ValueType.UNIX_TIMESTAMP, v(unix_timestamp_val=1_700_000_000)),
        (ValueType.UNIX_TIMESTAMP, v(unix_timestamp_val=NULL_TS)),
        (ValueType.STRING_LIST, v(string_list_val={"val": ["P1", "P2"]})),
        (ValueType.DOUBLE_LIST, v(double_list_val={"val": [0.5, math.inf]})),
        (ValueType.INT64_LIST, v(int64_list_val={"val": []})),
        (ValueType.UNIX_TIMESTAMP_LIST, v(unix_timestamp_list_val={"val": [1, NULL_TS]})),
        (ValueType.STRING_SET, v(string_set_val={"val": ["a", "b"]})),
        (ValueType.UUID, v(string_val=str(uuid.UUID(int=5)))),
        (None, v(json_val='{"a": 1}')),
        (ValueType.DOUBLE, v()),
    ]
    out += [(ValueType.DOUBLE, p) for p in python_values_to_proto_values([2.25, None])]
    return out


@pytest.mark.parametrize("case", range(len(_protos())))
def test_decoder_equals_feast(case: int) -> None:
    vtype, proto = _protos()[case]
    raw = proto.SerializeToString()
    expected = feast_value_type_to_python_type(Value.FromString(raw), vtype)
    decoder = _Decoder(vtype)
    for got in (decoder(raw), decoder(raw), decoder.decode_column([raw, raw])[1]):
        assert type(got) is type(expected)
        assert got == expected or (got != got and expected != expected)  # NaN = NaN


def test_missing_and_empty_fields_read_as_none() -> None:
    decoder = _Decoder(ValueType.DOUBLE)
    assert decoder.decode_column([None, b"", Value(double_val=3.0).SerializeToString()]) == [
        None,
        None,
        3.0,
    ]


def test_a_full_cache_starts_again_and_stays_right() -> None:
    decoder = _Decoder(ValueType.INT64, limit=3)
    raws = [Value(int64_val=i).SerializeToString() for i in range(10)] * 2
    assert decoder.decode_column(raws) == list(range(10)) * 2
    assert len(decoder.seen) <= 3 + 2  # the two null entries are always there


def test_lists_are_new_objects_each_time() -> None:
    decoder = _Decoder(ValueType.STRING_LIST)
    raw = Value(string_list_val={"val": ["x"]}).SerializeToString()
    first = decoder(raw)
    first.append("mutated by a caller")
    assert decoder(raw) == ["x"]


def test_rows_as_feast_reads_them() -> None:
    """No `_ts` or the epoch: no row; otherwise the time (microseconds kept) and the values."""
    stamp = Timestamp(seconds=1_700_000_000, nanos=123_456_000).SerializeToString()
    epoch = Timestamp().SerializeToString()
    one = Value(int64_val=1).SerializeToString()
    rows = _decode_rows(
        [[one, stamp], [one, None], [None, epoch]], ("n",), (_Decoder(ValueType.INT64),)
    )
    assert rows[0] == (datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC), {"n": 1})
    assert rows[1] == (None, None)
    assert rows[2] == (None, None)


def test_mostly_dead_rows_decode_as_the_dense_path() -> None:
    """Replies that are mostly no row (a sparse customer x product view) decode only the live
    rows: the same rows and columns as when most rows are live (a dead row's fields, even
    present, read as nulls)."""
    stamp = Timestamp(seconds=1_700_000_000).SerializeToString()
    one, two = (Value(int64_val=i).SerializeToString() for i in (1, 2))
    live = [[one, two, stamp], [two, None, stamp]]
    dead = [[None, None, None], [one, one, None], [None, None, Timestamp().SerializeToString()]]
    names = ("a", "b")
    decoders = (_Decoder(ValueType.INT64), _Decoder(ValueType.INT64))
    sparse = _decode_rows([dead[0], live[0], *dead[1:], dead[0], live[1]], names, decoders)
    dense = _decode_rows([live[0], live[0], dead[1], live[1], live[1]], names, decoders)
    assert [sparse[i] for i in (1, 5)] == [dense[i] for i in (0, 3)]
    assert [sparse[i] for i in (0, 2, 3, 4)] == [dense[2]] * 4 == [(None, None)] * 4
    assert sparse.columns_of(names)[2] == {"a": [None, 1, None, None, None, 2],
                                           "b": [None, 2, None, None, None, None]}  # fmt: skip


def test_one_row_decodes_as_among_many() -> None:
    """A read of one entity decodes value by value: the same rows, values and types, as the
    same replies read among others (column by column), on every value kind."""
    stamp = Timestamp(seconds=1_700_000_000).SerializeToString()
    cases = _protos()
    names = tuple(f"f{i}" for i in range(len(cases)))
    row = [p.SerializeToString() for _, p in cases] + [stamp]

    def decoders():
        return tuple(_Decoder(vtype) for vtype, _ in cases)

    many = _decode_rows([row, row], names, decoders())
    for shared in (decoders(), None):  # fresh decoders, then ones that remember the values
        shared = shared or decoders()
        _decode_rows([row, row], names, shared)
        one = _decode_rows([row], names, shared)
        # (type, repr): NaN equal to NaN, 1 not equal to 1.0 or True
        assert [(type(c[0]), repr(c[0])) for c in one.columns] == [
            (type(c[0]), repr(c[0])) for c in many.columns
        ]
        assert one.stamps == many.stamps[:1]


@pytest.mark.parametrize(
    "join_keys, keys",
    [
        (("customer_id",), [("C0000001",), ("ü-ñ",), ("",)]),
        (("product_id", "customer_id"), [("P1", "C1"), ("P22", "C333")]),
        (("customer_id", "product_id"), [("C1", "P1")]),
    ],
)
def test_string_redis_keys_equal_feasts(join_keys, keys) -> None:
    expected = [
        serialize_entity_key(
            EntityKey(join_keys=list(join_keys), entity_values=[Value(string_val=v) for v in key]),
            3,
        )
        + b"shopfeast"
        for key in keys
    ]
    assert string_redis_keys(join_keys, keys, "shopfeast") == expected
    writer = _KeyWriter(join_keys, "shopfeast", limit=2)  # a full memory starts again
    assert writer.keys(keys) == expected
    assert writer.keys(keys) == expected  # the remembered parts
    assert writer.keys(keys[::-1]) == expected[::-1]


def test_non_string_ids_are_left_to_feast() -> None:
    assert string_redis_keys(("customer_id",), [("C1",), (7,)], "shopfeast") is None
    writer = _KeyWriter(("customer_id", "product_id"), "shopfeast")
    assert writer.keys([("C1", "P1"), ("C1", 7)]) is None
    assert writer.keys([("C1", "7")]) == string_redis_keys(
        ("customer_id", "product_id"), [("C1", "7")], "shopfeast"
    )  # 7 was not remembered as "7"


def test_list_values_remembered_are_still_new_lists() -> None:
    """A list read again comes from the remembered tuple: equal to Feast's, a new list each
    time, and a full memory starts again."""
    decoder = _Decoder(ValueType.INT64_LIST, limit=2)
    raws = [Value(int64_list_val={"val": [i, i + 1]}).SerializeToString() for i in range(5)]
    for _ in range(2):
        got = decoder.decode_column(raws + raws)
        assert got == [[i, i + 1] for i in range(5)] * 2
        assert len({id(v) for v in got}) == len(got)
        got[0].append(99)
    assert len(decoder.lists) <= 2


@pytest.mark.parametrize(
    "value",
    [
        datetime(2025, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2025, 6, 1, 12, 0, 0, 500_000),  # naive: UTC
        datetime(2025, 6, 1, 12, 0, 0, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
        datetime(1969, 12, 31, 23, 59, 58, 250_000, tzinfo=UTC),  # before the epoch
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2200, 2, 3, 4, 5, 6, 7, tzinfo=UTC),
    ],
)
def test_request_times_as_feast_sees_them(value) -> None:
    """The request time given to on-demand views equals Feast's proto round trip of it."""
    proto = python_values_to_proto_values([value], ValueType.UNKNOWN)[0]
    expected = feast_value_type_to_python_type(proto)
    (got,) = _as_feast_sees_it(value)
    assert type(got) is type(expected) and got == expected and got.tzinfo == expected.tzinfo
