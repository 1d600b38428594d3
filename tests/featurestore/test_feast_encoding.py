"""The column-wise Redis encoding gives Feast's own bytes, value for value (no Redis needed)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest
from feast import Entity, FeatureView, Field, FileSource
from feast.infra.online_stores.helpers import _redis_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import python_values_to_proto_values
from feast.types import Array, Bool, Float32, Float64, Int32, Int64, String, UnixTimestamp
from feast.utils import _convert_arrow_to_proto
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

from featurestore.redis_encoding import encode_values, entity_keys, event_timestamps, varint

TS = pa.timestamp("us", tz="UTC")

COLUMNS: dict[str, tuple[pa.Array, ValueType]] = {
    "double": (
        pa.array([0.0, -0.0, 1.5, None, float("nan"), 1e300, -2.25, float("inf")]),
        ValueType.DOUBLE,
    ),
    "double_all_null": (pa.array([None, None], type=pa.float64()), ValueType.DOUBLE),
    "double_from_int": (pa.array([0, 3, -7]), ValueType.DOUBLE),
    "float": (pa.array([0.1, None, -3.0, 1e10], type=pa.float32()), ValueType.FLOAT),
    "int64": (pa.array([0, 1, 127, 128, 300, -1, -(2**63), 2**62, None]), ValueType.INT64),
    "int64_no_null": (pa.array([5, 0, 123456789]), ValueType.INT64),
    "int32": (pa.array([0, -5, 2**31 - 1, None], type=pa.int32()), ValueType.INT32),
    "bool": (pa.array([True, False, None, True]), ValueType.BOOL),
    "bool_no_null": (pa.array([True, False]), ValueType.BOOL),
    "string": (pa.array(["", "abc", None, "héllo ✓", "x" * 300]), ValueType.STRING),
    "timestamp": (
        pa.array(
            [
                datetime(2025, 3, 1, tzinfo=UTC),
                datetime(2025, 3, 1, 12, 30, 15, 999999, tzinfo=UTC),
                None,
                datetime(1970, 1, 1, tzinfo=UTC),
            ],
            type=TS,
        ),
        ValueType.UNIX_TIMESTAMP,
    ),
    "timestamp_no_null": (
        pa.array([datetime(2024, 1, 1, 1, tzinfo=UTC)], type=TS),
        ValueType.UNIX_TIMESTAMP,
    ),
    "string_list": (
        pa.array([["p1", "p2"], [], None, ["é" * 200], ["a", None]], type=pa.list_(pa.string())),
        ValueType.STRING_LIST,
    ),
    "double_list": (
        pa.array([[0.5, 0.25], [], None, [1.0, None, -2.0]], type=pa.list_(pa.float64())),
        ValueType.DOUBLE_LIST,
    ),
}


def feast_bytes(arr: pa.Array, value_type: ValueType) -> list[bytes]:
    values = arr.to_numpy(zero_copy_only=False)
    return [v.SerializeToString() for v in python_values_to_proto_values(values, value_type)]


@pytest.mark.parametrize("name", sorted(COLUMNS))
def test_values_match_feast_converter(name: str) -> None:
    arr, value_type = COLUMNS[name]
    assert encode_values(arr, value_type) == feast_bytes(arr, value_type)


def test_feature_view_rows_match_feast_write_path() -> None:
    """Through Feast's own arrow -> proto conversion of a whole view (the materialize path)."""
    dtypes = {
        "double": Float64,
        "float": Float32,
        "int64": Int64,
        "int32": Int32,
        "bool": Bool,
        "string": String,
        "timestamp": UnixTimestamp,
        "string_list": Array(String),
        "double_list": Array(Float64),
    }
    n = 4
    cols = {name: COLUMNS[name][0].slice(0, n) for name in dtypes}
    cols["customer_id"] = pa.array(["c1", "c2", "c3", "ü"])
    cols["event_timestamp"] = pa.array(
        [datetime(2025, 1, d, tzinfo=UTC) for d in (1, 2, 3, 4)], type=TS
    )
    batch = pa.RecordBatch.from_pydict(cols)
    entity = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)
    view = FeatureView(
        name="v",
        entities=[entity],
        schema=[Field(name=k, dtype=t) for k, t in dtypes.items()],
        source=FileSource(path="x.parquet", timestamp_field="event_timestamp"),
    )
    rows = _convert_arrow_to_proto(batch, view, {"customer_id": ValueType.STRING})
    for name, dtype in dtypes.items():
        ours = encode_values(batch.column(name), dtype.to_value_type())
        assert ours == [r[1][name].SerializeToString() for r in rows], name
    keys = entity_keys(batch.column("customer_id"), "customer_id", ValueType.STRING, "proj")
    assert keys == [_redis_key("proj", r[0], entity_key_serialization_version=3) for r in rows]


def test_int_entity_keys_match() -> None:
    arr = pa.array([1, -2, 2**40])
    ours = entity_keys(arr, "id", ValueType.INT64, "p")
    theirs = [
        _redis_key("p", EntityKey(join_keys=["id"], entity_values=[Value(int64_val=v)]), 3)
        for v in arr.to_pylist()
    ]
    assert ours == theirs


@pytest.mark.parametrize("micros", [0, 123, 999_999])
def test_event_timestamps_match_protobuf(micros: int) -> None:
    times = [datetime(2025, 3, d, 0, 0, 0, micros, tzinfo=UTC) for d in (1, 2)]
    segments, nanos = event_timestamps(pa.array(times, type=TS))
    ours = segments.to_list()
    for t, b, ns in zip(times, ours, nanos.tolist(), strict=True):
        ts = Timestamp()
        ts.FromDatetime(t)
        assert b == ts.SerializeToString()
        assert ns == ts.seconds * 1_000_000_000 + ts.nanos


@pytest.mark.parametrize("value", [0, 1, 127, 128, 2**35, -1, -(2**63)])
def test_varint_matches_protobuf(value: int) -> None:
    assert b"\x20" + varint(value) == Value(int64_val=value).SerializeToString()


def test_nan_and_null_doubles_read_back_as_unset() -> None:
    out = encode_values(pa.array([float("nan"), None, 2.0]), ValueType.DOUBLE)
    parsed = [Value.FromString(b) for b in out]
    assert [p.WhichOneof("val") for p in parsed] == [None, None, "double_val"]
    assert math.isclose(parsed[2].double_val, 2.0)


def test_segments_take_and_concatenate_rows() -> None:
    from featurestore.segments import Segments, concat_rows, lookup

    a = Segments.from_list([b"ab", b"", b"cde", b"f"])
    b = Segments.from_list([b"1", b"22", b"", b"4444"])
    assert a.take(np.array([3, 0, 1])).to_list() == [b"f", b"ab", b""]
    rows = concat_rows([b"<", a, b"|", b, lookup([b"x", b"yy"], np.array([1, 0, 0, 1]))], 4)
    assert rows.to_list() == [b"<ab|1yy", b"<|22x", b"<cde|x", b"<f|4444yy"]
    matrix = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert Segments.from_matrix(matrix, np.array([2, 0, 4])).to_list() == [
        b"\x00\x01",
        b"",
        b"\x08\x09\x0a\x0b",
    ]
