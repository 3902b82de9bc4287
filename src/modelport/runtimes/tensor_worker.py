"""The worker process of a tensor model: ONNX Runtime or scikit-learn, one or more versions.

It loads every version it was given, describes each (inputs and outputs with datatypes and
shapes), runs the warm-up requests, and only then reports ready. Each ``infer`` message is
one batch, already assembled and checked by the parent; the reply maps output names to
arrays. Loading a joblib file runs code from it: the parent only passes files that lie
inside the model repository, which must be trusted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.errors import InputRejected, UpstreamServerError
from modelport.protocol.v2 import DATATYPES
from modelport.runtimes.workers import ChildChannel, answer_calls

_ORT_TYPES = {
    "tensor(bool)": "BOOL", "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64", "tensor(int8)": "INT8",
    "tensor(int16)": "INT16", "tensor(int32)": "INT32", "tensor(int64)": "INT64",
    "tensor(float16)": "FP16", "tensor(float)": "FP32", "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}
NUMPY_TYPES = DATATYPES  # the V2 datatype -> NumPy dtype table of protocol.v2
SKLEARN_OUTPUTS = ("predict", "predict_proba")


@dataclass(frozen=True, slots=True)
class VersionFile:
    version: int
    path: str
    platform: str  # onnx or sklearn


@dataclass(frozen=True, slots=True)
class TensorWorkerSpec:
    name: str
    versions: tuple[VersionFile, ...]
    threads: int = 1
    declared_inputs: tuple[dict[str, Any], ...] = ()
    declared_outputs: tuple[dict[str, Any], ...] = ()
    warmup: bool | tuple[dict[str, Any], ...] = True


@dataclass(slots=True)
class _Loaded:
    platform: str
    model: Any
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)


def _load_onnx(path: str, threads: int) -> _Loaded:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def describe(args: Any) -> list[dict[str, Any]]:
        return [{
            "name": a.name,
            "datatype": _ORT_TYPES.get(a.type, a.type),
            "shape": [d if isinstance(d, int) and d >= 0 else -1 for d in a.shape],
        } for a in args]

    return _Loaded("onnx", session, describe(session.get_inputs()), describe(session.get_outputs()))


def _load_sklearn(path: str) -> _Loaded:
    import joblib

    model = joblib.load(path)
    if not hasattr(model, "predict"):
        raise TypeError(f"the object in {path} has no predict method")
    features = int(getattr(model, "n_features_in_", -1))
    outputs = [{"name": "predict", "datatype": "", "shape": [-1]}]
    if hasattr(model, "predict_proba"):
        classes = len(getattr(model, "classes_", ())) or -1
        outputs.append({"name": "predict_proba", "datatype": "FP64", "shape": [-1, classes]})
    inputs = [{"name": "input-0", "datatype": "FP64", "shape": [-1, features]}]
    return _Loaded("sklearn", model, inputs, outputs)


def _run(loaded: _Loaded, inputs: dict[str, np.ndarray], names: list[str] | None
         ) -> dict[str, np.ndarray]:
    if loaded.platform == "onnx":
        wanted = names or [o["name"] for o in loaded.outputs]
        with _model_call():
            results = loaded.model.run(wanted, inputs)
        return {n: np.asarray(r) for n, r in zip(wanted, results, strict=True)}
    (x,) = inputs.values()
    out: dict[str, np.ndarray] = {}
    for name in names or ["predict"]:
        method = getattr(loaded.model, name)
        with _model_call():
            result = method(x)
        out[name] = np.asarray(result)
    return out


@contextlib.contextmanager
def _model_call() -> Iterator[None]:
    """Around the runtime's own call only: what it raises about its input is the caller's
    (``InputRejected``), anything else a failure of the model (``UpstreamServerError``)."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, ValueError | TypeError | KeyError | IndexError) or (
            type(exc).__name__ in ("InvalidArgument", "Fail", "InvalidGraph")
        ):
            raise InputRejected(f"The model rejected the input: {exc}") from exc
        raise UpstreamServerError(f"The model failed: {exc}") from exc


def _warmup_inputs(loaded: _Loaded, spec: TensorWorkerSpec) -> list[dict[str, np.ndarray]]:
    if spec.warmup is False:
        return []
    if spec.warmup is True:
        sample: dict[str, np.ndarray] = {}
        for i in loaded.inputs:
            shape = [1 if d < 0 else d for d in i["shape"]]
            sample[i["name"]] = np.zeros(shape, dtype=NUMPY_TYPES.get(i["datatype"], np.float64))
        return [sample]
    types = {i["name"]: NUMPY_TYPES.get(i["datatype"], np.float64) for i in loaded.inputs}
    return [{k: np.asarray(v, dtype=types.get(k, np.float64)) for k, v in item.items()}
            for item in spec.warmup]


def _prepare(version: VersionFile, spec: TensorWorkerSpec) -> _Loaded:
    if version.platform == "onnx":
        loaded = _load_onnx(version.path, spec.threads)
    else:
        loaded = _load_sklearn(version.path)
    if spec.declared_inputs:
        loaded.inputs = [dict(i) for i in spec.declared_inputs]
    for sample in _warmup_inputs(loaded, spec):
        results = _run(loaded, sample, None)
        for output in loaded.outputs:  # learn what the model really returns
            if not output["datatype"] and output["name"] in results:
                output["datatype"] = _datatype(results[output["name"]].dtype)
    if spec.declared_outputs:
        loaded.outputs = [dict(o) for o in spec.declared_outputs]
    for output in loaded.outputs:
        output["datatype"] = output["datatype"] or "INT64"
    return loaded


def _datatype(dtype: np.dtype[Any]) -> str:
    for name, kind in NUMPY_TYPES.items():
        if np.dtype(kind) == dtype:
            return name
    return "BYTES"


def serve(channel: ChildChannel, spec: TensorWorkerSpec) -> None:
    """The child's entry point."""
    loaded = {v.version: _prepare(v, spec) for v in spec.versions}
    channel.ready({"versions": {
        v: {"platform": m.platform, "inputs": m.inputs, "outputs": m.outputs}
        for v, m in loaded.items()
    }})
    answer_calls(channel, "infer",
                 lambda payload: _run(loaded[payload[0]], payload[1], payload[2]))
