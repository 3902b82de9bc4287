"""Small real models for the tensor-runtime tests, written into a model repository.

``Crashy`` is a scikit-learn-style estimator whose process dies when it sees 666 in its
input: it stands in for a native crash in a model runtime. The worker unpickles it from this
module (spawned workers get the test process's ``sys.path``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


class Crashy:
    n_features_in_ = 2

    def predict(self, x: np.ndarray) -> np.ndarray:
        if (np.asarray(x) == 666).any():
            os._exit(3)
        return np.asarray(x).sum(axis=1)


def write_iris(repository: Path, version: int = 1) -> Path:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    model = LogisticRegression(max_iter=1000).fit(data.data, data.target)
    path = repository / "iris" / str(version) / "model.joblib"
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, path)
    return path


def write_crashy(repository: Path) -> Path:
    import joblib

    path = repository / "crashy" / "1" / "model.joblib"
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(Crashy(), path)
    return path


def linear_onnx(features: int, outputs: int, *, seed: int = 0, hidden: int = 0) -> bytes:
    """``y = relu(x @ W1) @ W2`` (or ``relu(x @ W)`` with no hidden layer), FP32, batch
    dimension free: a model that batches well."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes: list[Any] = []
    inits = []
    if hidden:
        w1 = rng.standard_normal((features, hidden)).astype(np.float32)
        w2 = rng.standard_normal((hidden, outputs)).astype(np.float32)
        inits = [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2")]
        nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"]),
                 helper.make_node("Relu", ["h"], ["r"]),
                 helper.make_node("MatMul", ["r", "W2"], ["y"])]
    else:
        w = rng.standard_normal((features, outputs)).astype(np.float32)
        inits = [numpy_helper.from_array(w, "W")]
        nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]),
                 helper.make_node("Relu", ["h"], ["y"])]
    graph = helper.make_graph(
        nodes, "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", outputs])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def onnx_reference(x: np.ndarray, features: int, outputs: int, *, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((features, outputs)).astype(np.float32)
    return np.maximum(x @ w, 0)


def write_onnx(repository: Path, name: str, data: bytes, version: int = 1,
               config: str | None = None) -> Path:
    path = repository / name / str(version) / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if config is not None:
        (repository / name / "config.yaml").write_text(config)
    return path
