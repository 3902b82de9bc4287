"""The Open Inference Protocol codec: JSON and binary request bodies in, responses out."""

from __future__ import annotations

import inspect
import re
import struct
from typing import Any

import numpy as np
import orjson
import pytest

from modelport.errors import RequestError
from modelport.protocol.v2 import (
    DATATYPES,
    RequestedOutput,
    datatype_of,
    parse_infer_request,
    render_error,
    render_infer_response,
)

try:
    import tritonclient.http as triton_http
    from tritonclient.http import _utils as triton_utils
except ImportError:
    triton_http = None
    triton_utils = None

needs_tritonclient = pytest.mark.skipif(
    triton_http is None,
    reason="tritonclient[http] is not importable; the client compatibility tests need it",
)

SAMPLES: dict[str, np.ndarray[Any, Any]] = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    "UINT8": np.array([[0, 1, 2], [127, 128, 255]], dtype=np.uint8),
    "UINT16": np.array([[0, 1, 2], [256, 40000, 65535]], dtype=np.uint16),
    "UINT32": np.array([[0, 1, 2], [70000, 3000000000, 4294967295]], dtype=np.uint32),
    "UINT64": np.array([[0, 1, 2], [2**32, 2**63, 2**64 - 1]], dtype=np.uint64),
    "INT8": np.array([[-128, -1, 0], [1, 2, 127]], dtype=np.int8),
    "INT16": np.array([[-32768, -1, 0], [1, 300, 32767]], dtype=np.int16),
    "INT32": np.array([[-(2**31), -1, 0], [1, 70000, 2**31 - 1]], dtype=np.int32),
    "INT64": np.array([[-(2**63), -1, 0], [1, 2**40, 2**63 - 1]], dtype=np.int64),
    "FP16": np.array([[0.5, -1.25, 0.0], [65504.0, 1e-3, -2.0]], dtype=np.float16),
    "FP32": np.array([[0.1, -3.5, 0.0], [1e30, 1e-30, 5.1]], dtype=np.float32),
    "FP64": np.array([[0.1, -3.5, 0.0], [1e300, 2.5e-300, 5.1]], dtype=np.float64),
    "BYTES": np.array(
        [[b"a", b"", "\u00e9\u6f22".encode()], [b"xyz", b"\x00\x01\x00", b"q" * 300]], dtype=object
    ),
}
ALL = sorted(SAMPLES)


def json_values(array: np.ndarray[Any, Any]) -> Any:
    """The array as nested JSON values; BYTES elements as strings."""
    if array.dtype == object:
        return (
            np.array([b.decode() for b in array.ravel()], dtype=object)
            .reshape(array.shape)
            .tolist()
        )
    return array.tolist()


def binary_blob(array: np.ndarray[Any, Any]) -> bytes:
    """The array in the binary tensor data format, encoded independently of the codec."""
    if array.dtype == object:
        return b"".join(struct.pack("<I", len(b)) + b for b in array.ravel())
    return array.astype(array.dtype.newbyteorder("<")).tobytes()


def decode_blob(blob: bytes, datatype: str, shape: list[int]) -> np.ndarray[Any, Any]:
    if datatype != "BYTES":
        return np.frombuffer(blob, dtype=DATATYPES[datatype].newbyteorder("<")).reshape(shape)
    items, pos = [], 0
    while pos < len(blob):
        (n,) = struct.unpack_from("<I", blob, pos)
        items.append(blob[pos + 4 : pos + 4 + n])
        pos += 4 + n
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array.reshape(shape)


def tensor(name: str, datatype: str, shape: list[int], **fields: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, **fields}


def json_body(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return orjson.dumps({"inputs": list(inputs), **extra})


def binary_body(header: dict[str, Any], *blobs: bytes) -> tuple[bytes, int]:
    head = orjson.dumps(header)
    return head + b"".join(blobs), len(head)


def assert_same(got: np.ndarray[Any, Any], want: np.ndarray[Any, Any], datatype: str) -> None:
    assert got.dtype == DATATYPES[datatype]
    assert got.shape == want.shape
    assert got.tolist() == want.tolist()


# ---- datatypes -------------------------------------------------------------------------------


def test_datatypes_cover_the_protocol_without_bf16() -> None:
    assert set(DATATYPES) == {
        "BOOL",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "FP16",
        "FP32",
        "FP64",
        "BYTES",
    }
    assert DATATYPES["BYTES"] == np.dtype(object)


@pytest.mark.parametrize("datatype", ALL)
def test_datatype_of_inverts_datatypes(datatype: str) -> None:
    assert datatype_of(DATATYPES[datatype]) == datatype


@pytest.mark.parametrize("dtype", ["<U5", "S3", "O", ">f4", ">i8"])
def test_datatype_of_maps_strings_and_other_byte_orders(dtype: str) -> None:
    expected = {"<U5": "BYTES", "S3": "BYTES", "O": "BYTES", ">f4": "FP32", ">i8": "INT64"}
    assert datatype_of(np.dtype(dtype)) == expected[dtype]


@pytest.mark.parametrize("dtype", ["c8", "M8[s]", "m8[s]", "V4"])
def test_datatype_of_rejects_dtypes_without_a_datatype(dtype: str) -> None:
    with pytest.raises(ValueError, match="has no Open Inference Protocol datatype"):
        datatype_of(np.dtype(dtype))


# ---- requests: JSON form ---------------------------------------------------------------------


@pytest.mark.parametrize("datatype", ALL)
def test_json_request_with_nested_data(datatype: str) -> None:
    want = SAMPLES[datatype]
    body = json_body(tensor("x", datatype, [2, 3], data=json_values(want)))

    request = parse_infer_request(body, None)

    assert_same(request.inputs["x"], want, datatype)


@pytest.mark.parametrize("datatype", ALL)
def test_json_request_with_flat_data(datatype: str) -> None:
    want = SAMPLES[datatype]
    body = json_body(tensor("x", datatype, [3, 2], data=json_values(want.ravel())))

    request = parse_infer_request(body, None)

    assert_same(request.inputs["x"], want.reshape(3, 2), datatype)


def test_json_nesting_need_not_follow_the_shape() -> None:
    body = json_body(tensor("x", "INT32", [4], data=[[1, 2], [3, 4]]))

    assert parse_infer_request(body, None).inputs["x"].tolist() == [1, 2, 3, 4]


def test_json_integers_are_accepted_for_float_datatypes() -> None:
    body = json_body(tensor("x", "FP32", [1, 4], data=[5, 3.5, 1, 0.25]))

    x = parse_infer_request(body, None).inputs["x"]

    assert x.dtype == np.float32
    assert x.tolist() == [[5.0, 3.5, 1.0, 0.25]]


def test_json_uint64_above_the_int64_range_mixed_with_small_values() -> None:
    body = json_body(tensor("x", "UINT64", [3], data=[0, 1, 2**64 - 1]))

    x = parse_infer_request(body, None).inputs["x"]

    assert x.dtype == np.uint64
    assert x.tolist() == [0, 1, 2**64 - 1]


def test_iris_request() -> None:
    body = json_body(tensor("input", "FP32", [1, 4], data=[[5.1, 3.5, 1.4, 0.2]]))

    request = parse_infer_request(body, None)

    assert request.id is None
    assert request.outputs is None
    assert request.binary_output_default is False
    assert request.parameters == {}
    np.testing.assert_array_equal(
        request.inputs["input"], np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
    )


@pytest.mark.parametrize(
    ("datatype", "shape", "data"),
    [("INT32", [0], []), ("FP32", [2, 0], [[], []]), ("BYTES", [0, 3], []), ("BOOL", [0], [])],
)
def test_json_empty_tensors(datatype: str, shape: list[int], data: list[Any]) -> None:
    x = parse_infer_request(json_body(tensor("x", datatype, shape, data=data)), None).inputs["x"]

    assert x.dtype == DATATYPES[datatype]
    assert x.shape == tuple(shape)


def test_json_scalar_tensor_has_an_empty_shape() -> None:
    x = parse_infer_request(json_body(tensor("x", "INT64", [], data=[7])), None).inputs["x"]

    assert x.shape == ()
    assert x.item() == 7


def test_json_bytes_become_utf8_encoded_bytes() -> None:
    body = json_body(tensor("t", "BYTES", [2, 1], data=[["h\u00e9llo"], ["\u2603"]]))

    x = parse_infer_request(body, None).inputs["t"]

    assert x.dtype == object
    assert x.tolist() == [["h\u00e9llo".encode()], ["\u2603".encode()]]


def test_request_id_and_parameters_are_kept() -> None:
    body = json_body(
        tensor("x", "INT8", [1], data=[1]),
        id="req-7",
        parameters={"priority": 3, "custom": "v", "binary_data_output": True},
    )

    request = parse_infer_request(body, None)

    assert request.id == "req-7"
    assert request.parameters == {"priority": 3, "custom": "v", "binary_data_output": True}
    assert request.binary_output_default is True


# ---- requests: binary form -------------------------------------------------------------------


@pytest.mark.parametrize("datatype", ALL)
def test_binary_request(datatype: str) -> None:
    want = SAMPLES[datatype]
    blob = binary_blob(want)
    body, length = binary_body(
        {"inputs": [tensor("x", datatype, [2, 3], parameters={"binary_data_size": len(blob)})]},
        blob,
    )

    request = parse_infer_request(body, length)

    assert_same(request.inputs["x"], want, datatype)


@pytest.mark.parametrize("datatype", [d for d in ALL if d != "BYTES"])
def test_binary_inputs_own_aligned_writable_memory(datatype: str) -> None:
    blob = binary_blob(SAMPLES[datatype])
    body, length = binary_body(
        {"inputs": [tensor("x", datatype, [2, 3], parameters={"binary_data_size": len(blob)})]},
        blob,
    )

    x = parse_infer_request(body, length).inputs["x"]

    assert x.flags.writeable
    assert x.flags.aligned
    assert x.flags.c_contiguous


def test_binary_inputs_take_their_bytes_in_order_alongside_json_inputs() -> None:
    a = np.arange(6, dtype=np.int16).reshape(2, 3)
    c = np.array([b"first", b"\xff\xfe not utf-8"], dtype=object)
    body, length = binary_body(
        {
            "inputs": [
                tensor("a", "INT16", [2, 3], parameters={"binary_data_size": 12}),
                tensor("b", "FP64", [2], data=[1.5, 2.5]),
                tensor("c", "BYTES", [2], parameters={"binary_data_size": len(binary_blob(c))}),
                tensor("d", "BOOL", [0], parameters={"binary_data_size": 0}),
            ]
        },
        binary_blob(a),
        binary_blob(c),
    )

    inputs = parse_infer_request(body, length).inputs

    assert list(inputs) == ["a", "b", "c", "d"]
    assert inputs["a"].tolist() == a.tolist()
    assert inputs["b"].tolist() == [1.5, 2.5]
    assert inputs["c"].tolist() == [b"first", b"\xff\xfe not utf-8"]
    assert inputs["d"].shape == (0,)


def test_binary_bool_treats_any_nonzero_byte_as_true() -> None:
    body, length = binary_body(
        {"inputs": [tensor("x", "BOOL", [3], parameters={"binary_data_size": 3})]}, b"\x00\x01\x07"
    )

    assert parse_infer_request(body, length).inputs["x"].tolist() == [False, True, True]


def test_header_length_equal_to_the_body_is_plain_json() -> None:
    body = json_body(tensor("x", "UINT8", [1], data=[9]))

    assert parse_infer_request(body, len(body)).inputs["x"].tolist() == [9]


# ---- requests: outputs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "outputs"),
    [
        ({}, None),
        ({"outputs": []}, None),
        ({"outputs": [{"name": "y"}]}, (RequestedOutput("y", False),)),
        (
            {"outputs": [{"name": "y"}], "parameters": {"binary_data_output": True}},
            (RequestedOutput("y", True),),
        ),
        (
            {
                "outputs": [
                    {"name": "a", "parameters": {"binary_data": True}},
                    {"name": "b", "parameters": {"binary_data": False}},
                    {"name": "c", "parameters": {"classification": 0}},
                ]
            },
            (RequestedOutput("a", True), RequestedOutput("b", False), RequestedOutput("c", False)),
        ),
        (
            {
                "outputs": [{"name": "a", "parameters": {"binary_data": False}}, {"name": "b"}],
                "parameters": {"binary_data_output": True},
            },
            (RequestedOutput("a", False), RequestedOutput("b", True)),
        ),
    ],
)
def test_requested_outputs(extra: dict[str, Any], outputs: Any) -> None:
    body = json_body(tensor("x", "FP32", [1], data=[1.0]), **extra)

    assert parse_infer_request(body, None).outputs == outputs


# ---- requests: every bad input is a RequestError naming what is wrong ------------------------

X = {"name": "x", "datatype": "FP32", "shape": [3, 4], "data": list(range(12))}


def with_x(**changes: Any) -> bytes:
    spec = {**X, **changes}
    return json_body({k: v for k, v in spec.items() if v is not ...})


BAD_JSON_REQUESTS: list[tuple[bytes, str]] = [
    (b"", "the request body is empty"),
    (b"{", "the request body is not valid JSON"),
    (b'{"inputs": [NaN]}', "the request body is not valid JSON"),
    (b"[]", "the request body must be a JSON object"),
    (b'{"inputs": [], "parameters": {"x": ' + b"[" * 300 + b"]" * 300 + b"}}",
     "the request body nests deeper than 128 levels"),
    (b"{}", "'inputs' must be a non-empty list of tensors"),
    (b'{"inputs": []}', "'inputs' must be a non-empty list of tensors"),
    (b'{"inputs": {"name": "x"}}', "'inputs' must be a non-empty list of tensors"),
    (b'{"inputs": [1]}', "inputs[0] must be an object"),
    (json_body(X, {"datatype": "FP32"}), "inputs[1]: 'name' must be a non-empty string"),
    (json_body(X, {**X, "name": ""}), "inputs[1]: 'name' must be a non-empty string"),
    (json_body(X, X), "input 'x' is given more than once"),
    (with_x(shape=...), "input 'x': 'shape' must be a list of non-negative integers"),
    (with_x(shape="3,4"), "input 'x': 'shape' must be a list of non-negative integers"),
    (with_x(shape=[3, -4]), "input 'x': 'shape' must be a list of non-negative integers"),
    (with_x(shape=[3, 4.0]), "input 'x': 'shape' must be a list of non-negative integers"),
    (with_x(shape=[True, 12]), "input 'x': 'shape' must be a list of non-negative integers"),
    (with_x(datatype=...), "input 'x': unknown datatype None; expected one of BOOL, UINT8"),
    (with_x(datatype="BF16"), "input 'x': unknown datatype 'BF16'"),
    (with_x(datatype="fp32"), "input 'x': unknown datatype 'fp32'"),
    (with_x(data=...), "input 'x': needs 'data' or parameters.binary_data_size"),
    (with_x(data=5), "input 'x': 'data' must be a list"),
    (with_x(data=list(range(10))), "input 'x': expected 12 values for shape [3, 4], got 10"),
    (with_x(data=[list(range(4))] * 4), "input 'x': expected 12 values for shape [3, 4], got 16"),
    (with_x(data=[[1, 2], [3]]), "input 'x': 'data' must be a flat list, or rectangular nested"),
    (with_x(data=["1.5"] * 12), "input 'x': FP32 data must be numbers"),
    (with_x(data=[None] * 12), "input 'x': FP32 data must be numbers"),
    (with_x(data=[True] * 12), "input 'x': FP32 data must be numbers"),
    (with_x(data=[{}] * 12), "input 'x': FP32 data must be numbers"),
    (with_x(datatype="INT32", data=[1.5] * 12), "input 'x': INT32 data must be integers"),
    (with_x(datatype="INT32", data=[True] * 12), "input 'x': INT32 data must be integers"),
    (with_x(datatype="BOOL", data=[1] * 12), "input 'x': BOOL data must be true or false"),
    (with_x(datatype="UINT8", data=[300] * 12), "input 'x': a value is out of range for UINT8"),
    (with_x(datatype="INT8", data=[-129] * 12), "input 'x': a value is out of range for INT8"),
    (with_x(datatype="UINT64", data=[-1] * 12), "input 'x': a value is out of range for UINT64"),
    (with_x(datatype="INT64", data=[2**63] * 12), "input 'x': a value is out of range for INT64"),
    (
        with_x(datatype="UINT64", data=[-1] + [2**64 - 1] * 11),
        "input 'x': a value is out of range for UINT64",
    ),
    (
        with_x(datatype="UINT64", data=[0.5] + [2**64 - 1] * 11),
        "input 'x': UINT64 data must be integers",
    ),
    (with_x(datatype="FP16", data=[1e5] * 12), "input 'x': a value is out of range for FP16"),
    (with_x(datatype="FP16", data=[70000] * 12), "input 'x': a value is out of range for FP16"),
    (with_x(data=[1e39] * 12), "input 'x': a value is out of range for FP32"),
    (with_x(datatype="BYTES", data=["a"] * 11 + [1]), "input 'x': BYTES data must be strings"),
    (with_x(datatype="BYTES", data=[["a"] * 6, [None] * 6]), "BYTES data must be strings"),
    (with_x(datatype="BYTES", data=["a"] * 13), "input 'x': expected 12 values for shape [3, 4]"),
    (with_x(shape=[1] * 65, data=[1]), "input 'x': cannot build a FP32 tensor"),
    (with_x(shape=[0, 2**62], data=[]), "input 'x': cannot build a FP32 tensor"),
    (with_x(parameters=[]), "input 'x': 'parameters' must be an object"),
    (
        with_x(data=..., parameters={"shared_memory_region": "r", "shared_memory_byte_size": 48}),
        "input 'x': shared memory is not supported",
    ),
    (
        with_x(data=..., parameters={"binary_data_size": 48}),
        "input 'x' has binary_data_size but the request has no Inference-Header-Content-Length",
    ),
    (json_body(X, id=7), "'id' must be a string"),
    (json_body(X, parameters=[1]), "request 'parameters' must be an object"),
    (
        json_body(X, parameters={"binary_data_output": "yes"}),
        "'binary_data_output' must be true or false",
    ),
    (json_body(X, outputs={"name": "y"}), "'outputs' must be a list"),
    (json_body(X, outputs=["y"]), "outputs[0] must be an object"),
    (json_body(X, outputs=[{"name": "y"}, {}]), "outputs[1]: 'name' must be a non-empty string"),
    (json_body(X, outputs=[{"name": "y"}, {"name": "y"}]), "output 'y' is requested more than"),
    (json_body(X, outputs=[{"name": "y", "parameters": 1}]), "output 'y': 'parameters' must be"),
    (
        json_body(X, outputs=[{"name": "y", "parameters": {"binary_data": 1}}]),
        "output 'y': 'binary_data' must be true or false",
    ),
    (
        json_body(X, outputs=[{"name": "y", "parameters": {"classification": 2}}]),
        "output 'y': the classification extension is not supported",
    ),
    (
        json_body(X, outputs=[{"name": "y", "parameters": {"shared_memory_region": "r"}}]),
        "output 'y': shared memory is not supported",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD_JSON_REQUESTS)
def test_bad_json_request(body: bytes, message: str) -> None:
    with pytest.raises(RequestError, match=re.escape(message)):
        parse_infer_request(body, None)


def binary_x(size: Any, datatype: str = "FP32", shape: list[int] | None = None) -> bytes:
    shape = [2, 2] if shape is None else shape
    return orjson.dumps(
        {"inputs": [tensor("x", datatype, shape, parameters={"binary_data_size": size})]}
    )


def two_strings() -> bytes:
    return struct.pack("<I", 2) + b"ab" + struct.pack("<I", 1) + b"c"


FP32_2X2 = binary_x(16)
BAD_BINARY_REQUESTS: list[tuple[bytes, bytes, int | None, str]] = [
    # (JSON header, binary data, Inference-Header-Content-Length or None for the header's, message)
    (FP32_2X2, bytes(16), 0, "Inference-Header-Content-Length is 0 but the body has"),
    (FP32_2X2, bytes(16), -1, "Inference-Header-Content-Length is -1 but the body has"),
    (FP32_2X2, bytes(16), len(FP32_2X2) + 17, "but the body has"),
    (FP32_2X2, bytes(16), len(FP32_2X2) - 5, "the inference header is not valid JSON"),
    (b"[]", bytes(16), None, "the inference header must be a JSON object"),
    (binary_x(12), bytes(12), None, "input 'x': binary_data_size is 12 but shape [2, 2] of FP32"),
    (binary_x(20), bytes(20), None, "input 'x': binary_data_size is 20 but shape [2, 2] of FP32"),
    (FP32_2X2, bytes(12), None, "input 'x': binary_data_size 16 runs past the end of the body"),
    (FP32_2X2, bytes(17), None, "the body has 17 bytes of binary data after the inference header"),
    (binary_x(-1), bytes(16), None, "input 'x': binary_data_size must be a non-negative integer"),
    (binary_x(16.0), bytes(16), None, "binary_data_size must be a non-negative integer"),
    (binary_x(True), bytes(16), None, "binary_data_size must be a non-negative integer"),
    (binary_x("16"), bytes(16), None, "binary_data_size must be a non-negative integer"),
    (
        orjson.dumps({"inputs": [{**X, "parameters": {"binary_data_size": 48}}]}),
        bytes(48),
        None,
        "input 'x': has both 'data' and binary_data_size",
    ),
    (
        orjson.dumps({"inputs": [X]}),
        bytes(4),
        None,
        "the body has 4 bytes of binary data after the inference header but the inputs'",
    ),
    (binary_x(10, "BYTES", [2]), two_strings()[:-1], None, "ends after 1 of 2 elements"),
    (binary_x(6, "BYTES", [2]), two_strings()[:6], None, "ends after 1 of 2 elements"),
    (binary_x(3, "BYTES", [2]), two_strings()[:3], None, "ends after 0 of 2 elements"),
    (binary_x(11, "BYTES", [1]), two_strings(), None, "binary_data_size is 11 but its 1 BYTES"),
]


@pytest.mark.parametrize(("header", "data", "length", "message"), BAD_BINARY_REQUESTS)
def test_bad_binary_request(header: bytes, data: bytes, length: int | None, message: str) -> None:
    with pytest.raises(RequestError, match=re.escape(message)):
        parse_infer_request(header + data, len(header) if length is None else length)


# ---- responses -------------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", ALL)
def test_json_response(datatype: str) -> None:
    array = SAMPLES[datatype]

    body, length = render_infer_response("m", "1", "req-1", [("y", array, False)])

    assert length is None
    doc = orjson.loads(body)
    assert doc == {
        "model_name": "m",
        "model_version": "1",
        "id": "req-1",
        "outputs": [
            {"name": "y", "datatype": datatype, "shape": [2, 3], "data": doc["outputs"][0]["data"]}
        ],
    }
    data = doc["outputs"][0]["data"]
    if datatype == "BYTES":
        assert data == json_values(array.ravel())
    else:
        assert_same(np.array(data, dtype=DATATYPES[datatype]).reshape(2, 3), array, datatype)


@pytest.mark.parametrize("datatype", ALL)
def test_binary_response(datatype: str) -> None:
    array = SAMPLES[datatype]

    body, length = render_infer_response("m", None, None, [("y", array, True)])

    assert length is not None
    doc = orjson.loads(body[:length])
    assert doc == {
        "model_name": "m",
        "outputs": [
            {
                "name": "y",
                "datatype": datatype,
                "shape": [2, 3],
                "parameters": {"binary_data_size": len(body) - length},
            }
        ],
    }
    assert body[length:] == binary_blob(array)


def test_fp32_json_output_uses_the_shortest_float32_repr() -> None:
    probabilities = np.array([[0.1, 0.2, 0.7]], dtype=np.float32)

    body, _ = render_infer_response("iris", None, None, [("p", probabilities, False)])

    assert b'"data":[0.1,0.2,0.7]' in body


def test_mixed_response_puts_binary_outputs_after_the_json_in_order() -> None:
    a = np.array([1, 2], dtype=np.int32)
    b = np.array([[True]])
    c = np.array([b"xy"], dtype=object)

    body, length = render_infer_response(
        "m", None, None, [("a", a, True), ("b", b, False), ("c", c, True)]
    )

    assert length is not None
    outputs = orjson.loads(body[:length])["outputs"]
    assert outputs[0]["parameters"] == {"binary_data_size": 8}
    assert outputs[1]["data"] == [True]
    assert "parameters" not in outputs[1]
    assert outputs[2]["parameters"] == {"binary_data_size": 6}
    assert body[length:] == a.tobytes() + struct.pack("<I", 2) + b"xy"


@pytest.mark.parametrize(
    ("array", "values"),
    [
        (np.array(["setosa", "virginica"]), ["setosa", "virginica"]),
        (np.array([b"ab", b"c"]), ["ab", "c"]),
        (np.array(["s", b"b", 3], dtype=object), ["s", "b", "3"]),
    ],
)
def test_string_outputs_are_bytes(array: np.ndarray[Any, Any], values: list[str]) -> None:
    body, _ = render_infer_response("m", None, None, [("y", array, False)])
    binary, length = render_infer_response("m", None, None, [("y", array, True)])

    output = orjson.loads(body)["outputs"][0]
    assert (output["datatype"], output["data"]) == ("BYTES", values)
    assert length is not None
    assert decode_blob(binary[length:], "BYTES", [len(values)]).tolist() == [
        v.encode() for v in values
    ]


def test_non_contiguous_and_big_endian_outputs() -> None:
    strided = np.arange(12, dtype=np.int64).reshape(3, 4)[:, ::2]
    big = np.array([1.5, -2.0], dtype=">f4")

    body, _ = render_infer_response("m", None, None, [("s", strided, False), ("b", big, False)])
    binary, length = render_infer_response(
        "m", None, None, [("s", strided, True), ("b", big, True)]
    )

    outputs = orjson.loads(body)["outputs"]
    assert outputs[0]["data"] == [0, 2, 4, 6, 8, 10]
    assert outputs[1] == {"name": "b", "datatype": "FP32", "shape": [2], "data": [1.5, -2.0]}
    assert binary[length:] == strided.tobytes() + np.array([1.5, -2.0], "<f4").tobytes()


def test_non_utf8_bytes_cannot_be_sent_as_json() -> None:
    array = np.array([b"\xff\xfe"], dtype=object)

    with pytest.raises(RequestError, match=r"output 'y' is not valid UTF-8.*binary_data"):
        render_infer_response("m", None, None, [("y", array, False)])
    body, length = render_infer_response("m", None, None, [("y", array, True)])
    assert length is not None
    assert body[length:] == b"\x02\x00\x00\x00\xff\xfe"


def test_empty_binary_output() -> None:
    body, length = render_infer_response("m", None, None, [("y", np.zeros((0, 3)), True)])

    assert length == len(body)
    assert orjson.loads(body)["outputs"][0]["parameters"] == {"binary_data_size": 0}


def test_unsupported_output_dtype_is_a_server_error() -> None:
    with pytest.raises(ValueError, match="complex64"):
        render_infer_response("m", None, None, [("y", np.zeros(2, np.complex64), False)])


def test_render_error() -> None:
    assert orjson.loads(render_error("input 'x': bad \"quote\"")) == {
        "error": "input 'x': bad \"quote\""
    }


# ---- NVIDIA's tritonclient against the codec ---------------------------------------------------


def client_request(
    inputs: list[Any], outputs: list[Any] | None = None, **extra: Any
) -> tuple[bytes, int | None]:
    """The exact body and Inference-Header-Content-Length tritonclient's HTTP client sends."""
    assert triton_utils is not None
    build = triton_utils._get_inference_request
    arguments = {
        "inputs": inputs,
        "request_id": "",
        "outputs": outputs,
        "sequence_id": 0,
        "sequence_start": False,
        "sequence_end": False,
        "priority": 0,
        "timeout": None,
        "custom_parameters": None,
        **extra,
    }
    accepted = inspect.signature(build).parameters
    missing = [p for p in accepted if p not in arguments]
    assert not missing, f"tritonclient's _get_inference_request now needs {missing}"
    body, length = build(**{k: v for k, v in arguments.items() if k in accepted})
    return bytes(body), length


def client_input(name: str, array: np.ndarray[Any, Any], binary: bool) -> Any:
    assert triton_http is not None
    datatype = datatype_of(array.dtype)
    tensor = triton_http.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


@needs_tritonclient
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("datatype", ALL)
def test_tritonclient_request(datatype: str, binary: bool) -> None:
    array = SAMPLES[datatype]

    body, length = client_request([client_input("x", array, binary)])

    assert (length is None) is not binary
    request = parse_infer_request(body, length)
    assert_same(request.inputs["x"], array, datatype)
    assert request.outputs is None
    assert request.binary_output_default is True


@needs_tritonclient
def test_tritonclient_request_with_several_inputs_outputs_and_parameters() -> None:
    assert triton_http is not None
    iris = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
    words = np.array([b"\xff not utf-8", b"ok"], dtype=object)
    mask = np.array([True, False])
    outputs = [
        triton_http.InferRequestedOutput("label", binary_data=True),
        triton_http.InferRequestedOutput("probabilities", binary_data=False),
    ]

    body, length = client_request(
        [
            client_input("a", iris, True),
            client_input("b", mask, False),
            client_input("c", words, True),
        ],
        outputs,
        request_id="r-1",
        priority=2,
        custom_parameters={"tenant": "t1"},
    )

    request = parse_infer_request(body, length)
    assert request.id == "r-1"
    assert request.parameters == {"priority": 2, "tenant": "t1"}
    assert request.binary_output_default is False
    assert request.outputs == (
        RequestedOutput("label", True),
        RequestedOutput("probabilities", False),
    )
    assert request.inputs["a"].tolist() == iris.tolist()
    assert request.inputs["b"].tolist() == [True, False]
    assert request.inputs["c"].tolist() == [b"\xff not utf-8", b"ok"]


@needs_tritonclient
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("datatype", ALL)
def test_tritonclient_reads_the_response(datatype: str, binary: bool) -> None:
    assert triton_http is not None
    array = SAMPLES[datatype]

    body, length = render_infer_response("m", "1", "r-1", [("y", array, binary)])

    result = triton_http.InferResult.from_response_body(body, verbose=False, header_length=length)
    got = result.as_numpy("y")
    assert got.shape == array.shape
    if datatype != "BYTES":
        assert got.dtype == array.dtype
        assert got.tolist() == array.tolist()
    elif binary:
        assert got.tolist() == array.tolist()
    else:  # JSON BYTES come back as the strings they were sent as
        assert got.tolist() == json_values(array)
    assert result.get_response()["model_name"] == "m"


@needs_tritonclient
def test_tritonclient_reads_a_mixed_response() -> None:
    assert triton_http is not None
    label = np.array(["setosa"])
    probabilities = np.array([[0.9, 0.05, 0.05]], dtype=np.float32)
    empty = np.zeros((0, 2), dtype=np.int32)

    body, length = render_infer_response(
        "iris",
        None,
        None,
        [("label", label, True), ("probabilities", probabilities, False), ("empty", empty, True)],
    )

    result = triton_http.InferResult.from_response_body(body, verbose=False, header_length=length)
    assert result.as_numpy("label").tolist() == [b"setosa"]
    assert result.as_numpy("probabilities").tolist() == probabilities.tolist()
    assert result.as_numpy("empty").shape == (0, 2)


def test_every_table_of_datatypes_has_exactly_the_protocols_datatypes() -> None:
    from modelport.api.v2_routes import _CONFIG_TYPES
    from modelport.core.datatypes import DATATYPES as NAMES
    from modelport.protocol.v2 import DATATYPES

    assert tuple(DATATYPES) == NAMES
    assert tuple(_CONFIG_TYPES) == NAMES and _CONFIG_TYPES["BYTES"] == "TYPE_STRING"
