"""Unit tests of monitor.wire: exact round trips and a clear error for each bad input."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from monitor.wire import (
    MAX_ARRAY_ELEMENTS,
    MAX_MESSAGE_BYTES,
    Ack,
    DataSummary,
    Error,
    Event,
    Finish,
    Graph,
    GraphNode,
    Hello,
    Histogram,
    Message,
    Predictions,
    ProtocolError,
    Scalars,
    Welcome,
    decode,
    encode,
    pack,
)


def same(a: Message, b: Message) -> None:
    """Field-by-field equality, arrays compared exactly (NaN equal to NaN)."""
    assert type(a) is type(b)
    for key, left in vars(a).items():
        right = vars(b)[key]
        if isinstance(left, np.ndarray):
            assert isinstance(right, np.ndarray)
            assert left.shape == right.shape
            np.testing.assert_array_equal(left, right)
        else:
            assert left == right, key


def scalars(n: int = 5) -> Scalars:
    return Scalars(
        run="run-1",
        seq=7,
        names=("loss", "acc"),
        steps=np.arange(n, dtype=np.int64),
        wall=np.linspace(1e9, 1e9 + 1, n),
        index=np.arange(n, dtype=np.int32) % 2,
        values=np.linspace(0.0, 1.0, n),
    )


EXAMPLES: list[Message] = [
    Hello(
        run="r",
        stream="s1",
        name="n",
        project="p",
        config={"lr": 0.1, "layers": [1, 2]},
        host="h",
        world_size=2,
        rank=1,
    ),
    scalars(),
    Histogram("r", 2, "dense/kernel", 10, 5.0, np.linspace(-1, 1, 5), np.array([1.0, 2, 3, 4]), -1, 1, 0, 0.5, 10, 0),
    Predictions(
        "r", 3, "val", 4, 1.0, "classification", np.array([0, 2, 1]), np.eye(3), ("a", "b", "c"), np.ones((3, 2))
    ),
    Predictions("r", 4, "reg", 4, 1.0, "regression", np.array([1.0, 2.0]), np.array([1.5, 2.5])),
    Graph(
        "r",
        5,
        (GraphNode("in", "InputLayer", "(None, 4)", 0, 0), GraphNode("d", "Dense", "(None, 2)", 10, 10)),
        (("in", "d"),),
    ),
    DataSummary(
        "r",
        6,
        "train",
        0,
        1.0,
        ("x0", "x1"),
        np.tile(np.linspace(0, 1, 4), (2, 1)),
        np.ones((2, 3)),
        ("cat", "dog"),
        np.array([3, 4]),
        ("x0", "x1"),
        np.zeros((5, 2)),
        np.array([0, 1, 0, 1, 1]),
    ),
    Event("r", 8, 3, 2.0, "warning", "NaN detected"),
    Finish("r", 9, 3.0, "crashed"),
    Welcome("r", "s1", 41),
    Ack("r", 42),
    Error("r", 3, "bad_dtype", "array 'values' must be float"),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: m.kind)
def test_every_kind_round_trips_exactly(message: Message) -> None:
    same(decode(encode(message)), message)


FLOAT_DTYPES = st.sampled_from([np.float16, np.float32, np.float64])
INT_DTYPES = st.sampled_from([np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32])


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 50),
    values_dtype=FLOAT_DTYPES,
    steps_dtype=INT_DTYPES,
    data=st.data(),
)
def test_scalars_round_trip_over_dtypes_and_lengths(n: int, values_dtype: Any, steps_dtype: Any, data: Any) -> None:
    values = data.draw(hnp.arrays(values_dtype, n, elements={"allow_nan": True, "allow_infinity": True}))
    steps = data.draw(hnp.arrays(steps_dtype, n))
    names = ("a", "b", "c")
    message = Scalars("r", 1, names, steps, np.zeros(n), np.zeros(n, dtype=np.int8), values)
    decoded = decode(encode(message))
    assert isinstance(decoded, Scalars)
    np.testing.assert_array_equal(decoded.values, values.astype(np.float64))
    np.testing.assert_array_equal(decoded.steps, steps.astype(np.int64))
    assert decoded.values.dtype == np.float64 and decoded.steps.dtype == np.int64
    assert decoded.nonfinite == int(np.count_nonzero(~np.isfinite(values)))


@settings(max_examples=40, deadline=None)
@given(shape=hnp.array_shapes(min_dims=2, max_dims=2, max_side=12), dtype=FLOAT_DTYPES, data=st.data())
def test_predictions_round_trip_over_shapes(shape: tuple[int, int], dtype: Any, data: Any) -> None:
    outputs = data.draw(hnp.arrays(dtype, shape, elements={"allow_nan": False, "min_value": 0, "max_value": 1}))
    y_true = data.draw(hnp.arrays(np.int64, shape[0], elements={"min_value": 0, "max_value": shape[1] - 1}))
    message = Predictions("r", 1, "p", 0, 0.0, "classification", y_true, outputs)
    decoded = decode(encode(message))
    assert isinstance(decoded, Predictions)
    np.testing.assert_array_equal(decoded.outputs, outputs.astype(np.float64))
    np.testing.assert_array_equal(decoded.y_true, y_true)


def raw_frame(header: dict[str, Any], body: bytes = b"") -> bytes:
    head = json.dumps(header).encode()
    return struct.pack("<I", len(head)) + head + body


def error_of(data: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode(data)
    return info.value


def test_truncated_frame_names_the_array() -> None:
    err = error_of(encode(scalars())[:-5])
    assert err.code == "bad_frame" and "'values'" in err.message and err.seq == 7


def test_too_short_for_header_length() -> None:
    assert error_of(b"\x01").code == "bad_frame"


def test_header_not_json() -> None:
    err = error_of(struct.pack("<I", 5) + b"{nope")
    assert err.code == "bad_header" and "not JSON" in err.message


def test_header_not_an_object() -> None:
    err = error_of(raw_frame([1, 2]))  # type: ignore[arg-type]
    assert err.code == "bad_header" and "object" in err.message


def test_unknown_kind_lists_known_kinds() -> None:
    err = error_of(raw_frame({"kind": "telemetry", "run": "r", "seq": 1}))
    assert err.code == "unknown_kind" and "'telemetry'" in err.message and "scalars" in err.message


def test_missing_field_is_named() -> None:
    err = error_of(raw_frame({"kind": "event", "run": "r", "seq": 2, "fields": {"wall": 1.0}}))
    assert err.code == "missing_field" and "'text'" in err.message and err.run == "r" and err.seq == 2


def test_disallowed_dtype_is_named() -> None:
    body = np.zeros(2, dtype=">f8").tobytes()
    header = {
        "kind": "scalars",
        "run": "r",
        "seq": 1,
        "fields": {"names": ["a"]},
        "arrays": [{"name": "values", "dtype": ">f8", "shape": [2], "offset": 0, "nbytes": 16}],
    }
    err = error_of(raw_frame(header, body))
    assert err.code == "bad_dtype" and "'values'" in err.message and ">f8" in err.message


def test_complex_dtype_refused_on_encode() -> None:
    message = Scalars("r", 1, ("a",), np.zeros(1, np.int64), np.zeros(1), np.zeros(1, np.int32), np.zeros(1, complex))
    with pytest.raises(ProtocolError) as info:
        encode(message)
    assert info.value.code == "bad_dtype"


def test_wrong_kind_of_dtype_for_a_field() -> None:
    message = Scalars("r", 1, ("a",), np.zeros(1), np.zeros(1), np.zeros(1, np.int32), np.zeros(1))
    err = error_of(encode(message))
    assert err.code == "bad_dtype" and "'steps' must be int" in err.message


def test_shape_not_matching_byte_length() -> None:
    header = {
        "kind": "scalars",
        "run": "r",
        "seq": 1,
        "fields": {"names": ["a"]},
        "arrays": [{"name": "values", "dtype": "<f8", "shape": [3], "offset": 0, "nbytes": 16}],
    }
    err = error_of(raw_frame(header, bytes(16)))
    assert err.code == "bad_shape" and "needs 24 bytes" in err.message


def test_array_over_element_limit() -> None:
    n = MAX_ARRAY_ELEMENTS + 1
    header = {
        "kind": "scalars",
        "run": "r",
        "seq": 1,
        "fields": {"names": ["a"]},
        "arrays": [{"name": "values", "dtype": "u1", "shape": [n], "offset": 0, "nbytes": n}],
    }
    err = error_of(raw_frame(header, bytes(n)))
    assert err.code == "too_many_elements" and str(MAX_ARRAY_ELEMENTS) in err.message


def test_message_over_size_limit() -> None:
    err = error_of(bytes(MAX_MESSAGE_BYTES + 1))
    assert err.code == "too_large"


def test_mismatched_rows_named() -> None:
    message = scalars()
    bad = Scalars("r", 1, message.names, message.steps, message.wall[:2], message.index, message.values)
    err = error_of(encode(bad))
    assert err.code == "bad_shape" and "'wall'" in err.message


def test_index_out_of_names() -> None:
    bad = Scalars("r", 1, ("a",), np.zeros(2, np.int64), np.zeros(2), np.array([0, 3], np.int32), np.zeros(2))
    assert error_of(encode(bad)).code == "bad_field"


def test_nan_and_inf_are_counted_not_refused() -> None:
    message = Scalars("r", 1, ("a",), np.arange(3), np.zeros(3), np.zeros(3, np.int32), np.array([np.nan, np.inf, 1.0]))
    decoded = decode(encode(message))
    assert isinstance(decoded, Scalars) and decoded.nonfinite == 2


def test_wrong_protocol_version() -> None:
    data = pack("hello", "r", 0, {"stream": "s", "protocol": 99})
    err = error_of(data)
    assert err.code == "bad_version" and "99" in err.message


@pytest.mark.parametrize("run", ["", "../etc", "a/b", "x" * 201, " spaced", "newline\n"])
def test_bad_run_ids(run: str) -> None:
    assert error_of(encode(Event(run, 1, 0, 0.0, "info", "hi"))).code == "bad_field"


def test_name_too_long() -> None:
    err = error_of(encode(Event("r", 1, 0, 0.0, "info", "x" * 20_000)))
    assert err.code == "name_too_long"


def test_histogram_edges_must_fit_counts() -> None:
    bad = Histogram("r", 1, "h", 0, 0.0, np.zeros(3), np.zeros(3), 0, 0, 0, 0, 0, 0)
    assert error_of(encode(bad)).code == "bad_shape"


def test_classification_labels_must_index_classes() -> None:
    bad = Predictions("r", 1, "p", 0, 0.0, "classification", np.array([0, 5]), np.eye(2))
    assert "outside" in error_of(encode(bad)).message


def test_graph_edges_must_name_known_nodes() -> None:
    bad = Graph("r", 1, (GraphNode("a", "Dense"),), (("a", "ghost"),))
    assert error_of(encode(bad)).code == "bad_field"


def test_seq_must_be_non_negative_integer() -> None:
    err = error_of(raw_frame({"kind": "ack", "run": "r", "seq": -1}))
    assert err.code == "bad_header" and "'seq'" in err.message


def test_float32_predictions_stay_float32_and_int_outputs_widen() -> None:
    probs = np.full((3, 2), 0.5, dtype=np.float32)
    decoded = decode(encode(Predictions("r", 1, "p", 0, 0.0, "classification", np.array([0, 1, 0]), probs)))
    assert isinstance(decoded, Predictions) and decoded.outputs.dtype == np.float32
    ints = Predictions("r", 2, "p", 0, 0.0, "regression", np.arange(3), np.arange(3))
    decoded = decode(encode(ints))
    assert isinstance(decoded, Predictions) and decoded.outputs.dtype == np.float64


def test_a_data_summary_with_impossible_bins_is_refused() -> None:
    summary = DataSummary(
        "r", 1, "train", 0, 1.0, ("x", "y"), np.array([[0.0, 0.5, 1.0], [0.0, np.inf, 1.0]]), np.ones((2, 2)),
        (), None, (), None, None,
    )  # fmt: skip
    err = error_of(encode(summary))
    assert err.code == "bad_field" and "'edges' must be finite and ascending" in err.message
