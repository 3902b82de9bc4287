"""Open Inference Protocol (KServe V2, Triton HTTP/REST) inference bodies, with binary data.

A request is a JSON object::

    {"id": "7", "parameters": {...},
     "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [[...]]}],
     "outputs": [{"name": "y", "parameters": {"binary_data": true}}]}

and a response is ``{"model_name", "model_version", "id", "outputs": [{"name", "datatype",
"shape", "data"}]}``. JSON ``data`` holds the elements in row-major order, flat or nested;
BYTES elements are strings.

Triton's binary tensor data extension: a tensor whose ``parameters.binary_data_size`` is set
has no ``data``; its bytes follow the JSON object in the body, in the order the tensors are
listed, and the ``Inference-Header-Content-Length`` header gives the JSON object's length.
Binary data is little-endian, row-major and unpadded. BOOL is one byte per element (0 or 1);
a BYTES element is a 4-byte little-endian length followed by that many bytes. An output is
sent as binary when its ``parameters.binary_data`` is true or, when that is not given, when
the request's ``parameters.binary_data_output`` is true.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from modelport.errors import RequestError
from modelport.protocol.json_body import load_object
from modelport.protocol.v2_errors import render_error as render_error

Array = npt.NDArray[Any]

# The NumPy dtype of each datatype of core.datatypes (a test keeps the two in step).
DATATYPES: Mapping[str, np.dtype[Any]] = MappingProxyType(
    {
        "BOOL": np.dtype(np.bool_),
        "UINT8": np.dtype(np.uint8),
        "UINT16": np.dtype(np.uint16),
        "UINT32": np.dtype(np.uint32),
        "UINT64": np.dtype(np.uint64),
        "INT8": np.dtype(np.int8),
        "INT16": np.dtype(np.int16),
        "INT32": np.dtype(np.int32),
        "INT64": np.dtype(np.int64),
        "FP16": np.dtype(np.float16),
        "FP32": np.dtype(np.float32),
        "FP64": np.dtype(np.float64),
        "BYTES": np.dtype(np.object_),
    }
)

# Binary tensor data is little-endian whatever the host's byte order.
_WIRE: Mapping[str, np.dtype[Any]] = MappingProxyType(
    {name: dtype.newbyteorder("<") for name, dtype in DATATYPES.items() if name != "BYTES"}
)
_BY_KIND: Mapping[tuple[str, int], str] = MappingProxyType(
    {(dtype.kind, dtype.itemsize): name for name, dtype in DATATYPES.items() if name != "BYTES"}
)
_INT_LIMITS: Mapping[str, tuple[int, int]] = MappingProxyType(
    {
        name: (int(np.iinfo(dtype).min), int(np.iinfo(dtype).max))
        for name, dtype in DATATYPES.items()
        if dtype.kind in "iu"
    }
)
# The numpy kinds that JSON values of each datatype may arrive as, and how to name them.
_JSON_KINDS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        name: {
            "b": ("b", "true or false"),
            "i": ("iu", "integers"),
            "u": ("iu", "integers"),
            "f": ("iuf", "numbers"),
        }[dtype.kind]
        for name, dtype in DATATYPES.items()
        if name != "BYTES"
    }
)
_NO_PARAMETERS: Mapping[str, object] = MappingProxyType({})
_NARROW_FLOATS = frozenset({"FP16", "FP32"})
_UINT8 = np.dtype(np.uint8)
_U32 = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    """An output named in a request; ``binary`` asks for it as binary tensor data."""

    name: str
    binary: bool


@dataclass(frozen=True, slots=True)
class InferRequest:
    """A decoded request: each input has its declared shape and datatype.

    ``outputs`` is None when the request names no outputs, which asks for all of them.
    """

    id: str | None
    inputs: dict[str, Array]
    outputs: tuple[RequestedOutput, ...] | None
    binary_output_default: bool
    parameters: dict[str, object]


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The protocol datatype of a numpy dtype; object, bytes and str arrays are BYTES.

    Raises ValueError for a dtype the protocol has no datatype for (complex, datetime, ...).
    """
    if dtype.kind in "OSU":
        return "BYTES"
    name = _BY_KIND.get((dtype.kind, dtype.itemsize))
    if name is None:
        raise ValueError(f"numpy dtype {dtype} has no Open Inference Protocol datatype")
    return name


def parse_infer_request(body: bytes, header_length: int | None) -> InferRequest:
    """Decode a request body; ``header_length`` is its Inference-Header-Content-Length."""
    view = memoryview(body)
    if header_length is None:
        header, binary = view, view[len(view) :]
    elif 0 < header_length <= len(view):
        header, binary = view[:header_length], view[header_length:]
    else:
        raise RequestError(
            f"Inference-Header-Content-Length is {header_length} but the body has {len(view)} bytes"
        )
    doc = _load(header, binary_form=header_length is not None)
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise RequestError("'id' must be a string")
    parameters = doc.get("parameters")
    if parameters is None:
        parameters = {}
    elif not isinstance(parameters, dict):
        raise RequestError("request 'parameters' must be an object")
    binary_default = parameters.get("binary_data_output")
    if binary_default is None:
        binary_default = False
    elif not isinstance(binary_default, bool):
        raise RequestError("request parameters: 'binary_data_output' must be true or false")
    return InferRequest(
        id=request_id,
        inputs=_inputs(doc.get("inputs"), binary, header_length is not None),
        outputs=_outputs(doc.get("outputs"), binary_default),
        binary_output_default=binary_default,
        parameters=parameters,
    )


def render_infer_response(
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    outputs: Sequence[tuple[str, Array, bool]],
) -> tuple[bytes, int | None]:
    """Encode a response from ``(name, array, binary)`` outputs.

    Returns the body and, when any output is binary, the length of the JSON object that
    starts it (the Inference-Header-Content-Length); None means the body is plain JSON.
    Raises RequestError for a JSON BYTES output that is not UTF-8 (it must be sent binary).
    """
    tensors: list[dict[str, object]] = []
    blobs: list[bytes] = []
    for name, array, binary in outputs:
        datatype = datatype_of(array.dtype)
        tensor: dict[str, object] = {
            "name": name,
            "datatype": datatype,
            "shape": list(array.shape),
        }
        if binary:
            blob = _binary_data(array, datatype)
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = _json_data(array, datatype, name)
        tensors.append(tensor)
    response: dict[str, object] = {"model_name": model_name}
    if model_version is not None:
        response["model_version"] = model_version
    if request_id is not None:
        response["id"] = request_id
    response["outputs"] = tensors
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return b"".join((header, *blobs)), len(header)


def _load(header: memoryview, *, binary_form: bool) -> dict[str, Any]:
    return load_object(header, "the inference header" if binary_form else "the request body")


def _parameters(spec: dict[str, Any], kind: str, name: str) -> Mapping[str, object]:
    params = spec.get("parameters")
    if params is None:
        return _NO_PARAMETERS
    if not isinstance(params, dict):
        raise RequestError(f"{kind} '{name}': 'parameters' must be an object")
    return params


def _name(spec: object, kind: str, index: int) -> str:
    if not isinstance(spec, dict):
        raise RequestError(f"{kind}s[{index}] must be an object")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise RequestError(f"{kind}s[{index}]: 'name' must be a non-empty string")
    return name


def _inputs(raw: object, binary: memoryview, has_header: bool) -> dict[str, Array]:
    if not isinstance(raw, list) or not raw:
        raise RequestError("'inputs' must be a non-empty list of tensors")
    tensors: dict[str, Array] = {}
    offset = 0
    for index, spec in enumerate(raw):
        name = _name(spec, "input", index)
        if name in tensors:
            raise RequestError(f"input '{name}' is given more than once")
        shape = _shape(spec.get("shape"), name)
        datatype = spec.get("datatype")
        if not isinstance(datatype, str) or datatype not in DATATYPES:
            raise RequestError(
                f"input '{name}': unknown datatype {datatype!r}; expected one of "
                + ", ".join(DATATYPES)
            )
        params = _parameters(spec, "input", name)
        if "shared_memory_region" in params:
            raise RequestError(
                f"input '{name}': shared memory is not supported; send the data in the body"
            )
        data = spec.get("data")
        size = params.get("binary_data_size")
        if size is None:
            if data is None:
                raise RequestError(f"input '{name}': needs 'data' or parameters.binary_data_size")
            tensors[name] = _guarded(_from_json, data, shape, datatype, name)
            continue
        if type(size) is not int or size < 0:
            raise RequestError(f"input '{name}': binary_data_size must be a non-negative integer")
        if data is not None:
            raise RequestError(f"input '{name}': has both 'data' and binary_data_size")
        if not has_header:
            raise RequestError(
                f"input '{name}' has binary_data_size but the request has no "
                "Inference-Header-Content-Length header"
            )
        end = offset + size
        if end > len(binary):
            raise RequestError(
                f"input '{name}': binary_data_size {size} runs past the end of the body "
                f"({len(binary) - offset} bytes of binary data left)"
            )
        tensors[name] = _guarded(_from_binary, binary[offset:end], shape, datatype, name)
        offset = end
    if offset != len(binary):
        raise RequestError(
            f"the body has {len(binary)} bytes of binary data after the inference header "
            f"but the inputs' binary_data_size values add up to {offset}"
        )
    return tensors


def _shape(raw: object, name: str) -> list[int]:
    if not isinstance(raw, list) or not all(type(d) is int and d >= 0 for d in raw):
        raise RequestError(f"input '{name}': 'shape' must be a list of non-negative integers")
    return raw


def _guarded(decode: Any, data: Any, shape: list[int], datatype: str, name: str) -> Array:
    """Run a decoder; numpy's own complaints (a shape too big to build) become RequestError."""
    try:
        array: Array = decode(data, shape, datatype, name)
    except (ValueError, TypeError, OverflowError) as exc:
        raise RequestError(f"input '{name}': cannot build a {datatype} tensor: {exc}") from None
    return array


def _from_json(data: object, shape: list[int], datatype: str, name: str) -> Array:
    if not isinstance(data, list):
        raise RequestError(f"input '{name}': 'data' must be a list")
    count = math.prod(shape)
    if datatype == "BYTES":
        items = _json_strings(data, name)
        _check_count(len(items), count, shape, name)
        return _object_array(items).reshape(shape)
    try:
        array = np.asarray(data)
    except (ValueError, TypeError):
        raise RequestError(
            f"input '{name}': 'data' must be a flat list, or rectangular nested lists"
        ) from None
    _check_count(array.size, count, shape, name)
    return _cast(array, data, datatype, name).reshape(shape)


def _check_count(got: int, count: int, shape: list[int], name: str) -> None:
    if got != count:
        raise RequestError(f"input '{name}': expected {count} values for shape {shape}, got {got}")


def _json_strings(data: list[Any], name: str) -> list[bytes]:
    items: list[bytes] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, str):
                items.append(value.encode())
            elif isinstance(value, list):
                stack.append(iter(value))
                break
            else:
                raise RequestError(f"input '{name}': BYTES data must be strings")
        else:
            stack.pop()
    return items


def _cast(array: Array, data: list[Any], datatype: str, name: str) -> Array:
    """The JSON values numpy inferred ``array`` from, checked and cast to ``datatype``."""
    dtype = DATATYPES[datatype]
    if array.dtype == dtype:
        return array
    if not array.size:
        return array.astype(dtype)
    limits = _INT_LIMITS.get(datatype)
    if limits is not None and array.dtype.kind == "f":
        # Integers above the int64 range mixed with others infer as float64.
        return _exact_integers(data, datatype, name)
    kinds, words = _JSON_KINDS[datatype]
    if array.dtype.kind not in kinds:
        raise RequestError(f"input '{name}': {datatype} data must be {words}")
    if limits is not None and (int(array.min()) < limits[0] or int(array.max()) > limits[1]):
        raise _out_of_range(datatype, name)
    if datatype in _NARROW_FLOATS:
        try:
            with np.errstate(over="raise"):
                return array.astype(dtype)
        except FloatingPointError:
            raise _out_of_range(datatype, name) from None
    return array.astype(dtype)


def _exact_integers(data: list[Any], datatype: str, name: str) -> Array:
    values = np.asarray(data, dtype=DATATYPES["BYTES"]).ravel().tolist()
    if not all(type(value) is int for value in values):
        raise RequestError(f"input '{name}': {datatype} data must be integers")
    try:
        return np.asarray(values, dtype=DATATYPES[datatype])
    except OverflowError:
        raise _out_of_range(datatype, name) from None


def _out_of_range(datatype: str, name: str) -> RequestError:
    return RequestError(f"input '{name}': a value is out of range for {datatype}")


def _from_binary(chunk: memoryview, shape: list[int], datatype: str, name: str) -> Array:
    count = math.prod(shape)
    if datatype == "BYTES":
        return _object_array(_binary_strings(chunk, count, name)).reshape(shape)
    dtype = DATATYPES[datatype]
    needed = count * dtype.itemsize
    if len(chunk) != needed:
        raise RequestError(
            f"input '{name}': binary_data_size is {len(chunk)} but shape {shape} of "
            f"{datatype} needs {needed} bytes"
        )
    # A copy: the tensor owns aligned, writable memory rather than viewing the body.
    if datatype == "BOOL":
        array = np.frombuffer(chunk, dtype=_UINT8).astype(dtype)
    else:
        array = np.frombuffer(chunk, dtype=_WIRE[datatype]).astype(dtype)
    return array.reshape(shape)


def _binary_strings(chunk: memoryview, count: int, name: str) -> list[bytes]:
    items: list[bytes] = []
    pos, end = 0, len(chunk)
    for _ in range(count):
        if end - pos < 4:
            break
        (length,) = _U32.unpack_from(chunk, pos)
        pos += 4
        if end - pos < length:
            break
        items.append(chunk[pos : pos + length].tobytes())
        pos += length
    if len(items) != count:
        raise RequestError(
            f"input '{name}': BYTES binary data ends after {len(items)} of {count} elements"
        )
    if pos != end:
        raise RequestError(
            f"input '{name}': binary_data_size is {end} but its {count} BYTES elements "
            f"take {pos} bytes"
        )
    return items


def _object_array(items: list[bytes]) -> Array:
    array = np.empty(len(items), dtype=DATATYPES["BYTES"])
    array[:] = items
    return array


def _outputs(raw: object, binary_default: bool) -> tuple[RequestedOutput, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise RequestError("'outputs' must be a list")
    requested: dict[str, RequestedOutput] = {}
    for index, spec in enumerate(raw):
        name = _name(spec, "output", index)
        if name in requested:
            raise RequestError(f"output '{name}' is requested more than once")
        params = _parameters(spec, "output", name)
        if params.get("classification"):
            raise RequestError(f"output '{name}': the classification extension is not supported")
        if "shared_memory_region" in params:
            raise RequestError(f"output '{name}': shared memory is not supported")
        binary = params.get("binary_data")
        if binary is None:
            binary = binary_default
        elif not isinstance(binary, bool):
            raise RequestError(f"output '{name}': 'binary_data' must be true or false")
        requested[name] = RequestedOutput(name, binary)
    return tuple(requested.values()) or None


def _json_data(array: Array, datatype: str, name: str) -> object:
    if datatype != "BYTES":
        # orjson writes a native-endian C-contiguous array directly (shortest float repr).
        return array.astype(DATATYPES[datatype], copy=False).ravel()
    values: list[str] = []
    for item in array.ravel().tolist():
        if isinstance(item, bytes):
            try:
                values.append(item.decode())
            except UnicodeDecodeError:
                raise RequestError(
                    f"output '{name}' is not valid UTF-8, so it cannot be sent as JSON; "
                    "request it with parameters.binary_data set to true"
                ) from None
        else:
            values.append(item if isinstance(item, str) else str(item))
    return values


def _binary_data(array: Array, datatype: str) -> bytes:
    if datatype != "BYTES":
        return array.astype(_WIRE[datatype], copy=False).tobytes()
    parts: list[bytes] = []
    for item in array.ravel().tolist():
        data = item if isinstance(item, bytes) else str(item).encode()
        parts.append(_U32.pack(len(data)))
        parts.append(data)
    return b"".join(parts)
