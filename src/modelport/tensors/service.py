"""Tensor models: load them from the repository, check requests, batch them, answer.

Each model runs in its own worker process (all its served versions together), behind one
batcher per version. A model is ready once its worker has loaded every version and run
the warm-up requests. A model that fails to load leaves the server up: it is listed as
unavailable with the reason, and ``load`` tries again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelport.admission.gate import Gate, GateSettings
from modelport.config.settings import LimitSettings
from modelport.core.datatypes import NUMERIC
from modelport.errors import NotFound, RequestError, RuntimeUnavailable
from modelport.observability.metrics import Metrics
from modelport.protocol.v2 import InferRequest, datatype_of
from modelport.runtimes.batcher import Batcher, rows_of
from modelport.runtimes.tensor_worker import TensorWorkerSpec, serve
from modelport.runtimes.workers import Worker
from modelport.tensors.repository import ModelSource, model_names, read_model

log = logging.getLogger("modelport.tensors")

PLATFORMS = {"onnx": "onnxruntime_onnx", "sklearn": "sklearn_joblib"}


@dataclass(slots=True)
class TensorModel:
    """One model's runtime state."""

    source: ModelSource
    gate: Gate = field(default_factory=lambda: Gate(GateSettings()))
    worker: Worker | None = None
    batchers: dict[int, Batcher] = field(default_factory=dict)
    described: dict[int, dict[str, Any]] = field(default_factory=dict)
    state: str = "unavailable"  # loading, ready, unavailable, unloaded
    reason: str = ""

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def environment(self) -> str:
        return self.source.config.environment

    @property
    def limits(self) -> LimitSettings:
        """The model's own limits, as a route's (for keys it is named like a route)."""
        return self.source.config.limits

    @property
    def versions(self) -> list[int]:
        return [v.version for v in self.source.versions]

    def any_input_name(self, version: int) -> bool:
        """A scikit-learn model with no declared inputs takes one input of any name."""
        return (self.described[version]["platform"] == "sklearn"
                and not self.source.config.inputs)


class TensorService:
    def __init__(self, root: Path, metrics: Metrics) -> None:
        self.root = root
        self._metrics = metrics
        self._models: dict[str, TensorModel] = {}
        self._lock = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Load every model in the repository, side by side."""
        await asyncio.gather(*(self.load(name) for name in model_names(self.root)))

    async def close(self) -> None:
        await asyncio.gather(*(self._stop(m) for m in self._models.values()))

    async def load(self, name: str) -> TensorModel:
        """(Re)load a model from disk; the old one keeps serving until the new one is ready."""
        source = read_model(self.root, name)
        if source.problem == "no such model in the repository":
            raise NotFound(f"There is no model '{name}' in the model repository.")
        config = source.config
        model = TensorModel(source, Gate(GateSettings(
            max_concurrency=config.admission_concurrency, max_queue=config.admission_queue,
            queue_timeout_s=config.admission_timeout_s)), state="loading")
        old = self._models.get(name)
        if old is None or old.state != "ready":
            self._models[name] = model
        for note in source.notes:
            log.warning("model_file_refused", extra={"model": name, "reason": note})
        if source.problem is None:
            await self._start(model)
        else:
            model.state, model.reason = "unavailable", source.problem
            log.error("model_load_failed", extra={"model": name, "reason": source.problem})
        self._models[name] = model
        if old is not None and old is not model:
            await self._stop(old)
        self._metrics.runtime_ready.labels(name).set(1 if model.state == "ready" else 0)
        return model

    async def unload(self, name: str) -> None:
        model = self._models.get(name)
        if model is None:
            raise NotFound(f"There is no model '{name}' in the model repository.")
        await self._stop(model)
        model.state, model.reason = "unloaded", "unloaded by an operator"
        self._metrics.runtime_ready.labels(name).set(0)

    async def _start(self, model: TensorModel) -> None:
        config = model.source.config
        spec = TensorWorkerSpec(
            name=model.name,
            versions=model.source.versions,
            threads=config.threads,
            declared_inputs=tuple({"name": s.name, "datatype": s.datatype,
                                   "shape": list(s.shape)} for s in config.inputs),
            declared_outputs=tuple({"name": s.name, "datatype": s.datatype,
                                    "shape": list(s.shape)} for s in config.outputs),
            warmup=config.warmup,
        )
        restarts = self._metrics.runtime_restarts.labels(model.name)
        ready = self._metrics.runtime_ready.labels(model.name)
        worker = Worker(model.name, serve, spec, on_restart=restarts.inc,
                        on_state=lambda s: ready.set(1 if s == "ready" else 0))
        model.worker = worker
        if not await worker.start():
            model.state, model.reason = "unavailable", worker.reason or "failed to load"
            await worker.close()
            return
        model.described = {int(v): d for v, d in worker.info["versions"].items()}
        sizes = self._metrics.runtime_batch_size.labels(model.name)
        for version in model.versions:
            model.batchers[version] = Batcher(
                self._runner(worker, version),
                max_batch_size=config.max_batch_size,
                max_delay_s=config.max_batch_delay_s,
                max_queue=config.max_queue,
                queue_timeout_s=config.queue_timeout_s,
                on_batch=sizes.observe,
            )
        model.state, model.reason = "ready", ""
        log.info("model_ready", extra={"model": model.name, "versions": model.versions})

    @staticmethod
    def _runner(worker: Worker, version: int) -> Any:
        async def run(inputs: dict[str, np.ndarray], names: list[str] | None
                      ) -> dict[str, np.ndarray]:
            result: dict[str, np.ndarray] = await worker.call("infer", (version, inputs, names))
            return result
        return run

    async def _stop(self, model: TensorModel) -> None:
        for batcher in model.batchers.values():
            await batcher.close()
        model.batchers.clear()
        if model.worker is not None:
            await model.worker.close()

    # -- queries -----------------------------------------------------------------------

    def index(self) -> list[dict[str, Any]]:
        """Every model in the repository with its state, as the repository index reports."""
        rows: list[dict[str, Any]] = []
        for name in sorted(set(model_names(self.root)) | set(self._models)):
            model = self._models.get(name)
            if model is None:
                rows.append({"name": name, "state": "UNAVAILABLE", "reason": "not loaded"})
                continue
            versions: list[int | None] = list(model.versions) or [None]
            for version in versions:
                row: dict[str, Any] = {"name": name, "state": self.state_of(model).upper()}
                if version is not None:
                    row["version"] = str(version)
                if model.reason:
                    row["reason"] = model.reason
                rows.append(row)
        return rows

    def state_of(self, model: TensorModel) -> str:
        if model.state == "ready" and model.worker is not None and model.worker.state != "ready":
            return "unavailable"
        return model.state

    def get(self, name: str, version: str | None = None) -> tuple[TensorModel, int | None]:
        """The model and the version asked for (``None``: the newest); 404 if unknown."""
        model = self._models.get(name)
        if model is None:
            raise NotFound(f"There is no model '{name}'.")
        if version is None:
            return model, (model.versions[0] if model.versions else None)
        if not version.isdecimal() or int(version) not in model.versions:
            raise NotFound(f"Model '{name}' has no version '{version}'.")
        return model, int(version)

    def is_ready(self, name: str, version: str | None = None) -> bool:
        model, _ = self.get(name, version)
        return self.state_of(model) == "ready"

    def states(self) -> dict[str, str]:
        """Each model's state, for readiness."""
        return {name: self.state_of(m) for name, m in self._models.items()
                if m.state != "unloaded"}

    def all_ready(self) -> bool:
        return all(self.state_of(m) == "ready" for m in self._models.values()
                   if m.state != "unloaded")

    def metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        model, chosen = self.get(name, version)
        body: dict[str, Any] = {"name": name, "versions": [str(v) for v in model.versions]}
        described = model.described.get(chosen) if chosen is not None else None
        if described is None:
            platform = model.source.versions[0].platform if model.source.versions else None
            body["platform"] = PLATFORMS.get(platform or "", "")
            body["inputs"], body["outputs"] = [], []
            body["state"] = self.state_of(model).upper()
            if model.reason:
                body["reason"] = model.reason
            return body
        body["platform"] = PLATFORMS[described["platform"]]
        body["inputs"] = [dict(i) for i in described["inputs"]]
        body["outputs"] = [dict(o) for o in described["outputs"]]
        body["state"] = self.state_of(model).upper()
        return body

    # -- inference ---------------------------------------------------------------------

    async def infer(self, name: str, version: str | None, request: InferRequest
                    ) -> tuple[int, list[tuple[str, np.ndarray, bool]]]:
        """The version that served, and the outputs with whether each goes back binary."""
        model, chosen = self.get(name, version)
        if self.state_of(model) != "ready" or chosen is None:
            reason = f": {model.reason}" if model.reason else ""
            loading = self.state_of(model) == "loading"
            raise RuntimeUnavailable(f"Model '{name}' is not ready{reason}",
                                     retry_after_s=2 if loading else None)
        started = time.perf_counter()
        status = "200"
        try:
            inputs = self._check_inputs(model, chosen, request.inputs)
            names = self._check_outputs(model, chosen, request)
            batcher = model.batchers[chosen]
            depth = self._metrics.runtime_queue_depth.labels(name)
            depth.set(batcher.depth + 1)
            try:
                results = await batcher.submit(inputs, names)
            finally:
                depth.set(batcher.depth)
        except Exception as exc:
            status = str(getattr(exc, "status", 500))
            raise
        finally:
            self._metrics.runtime_requests.labels(name, str(chosen), status).inc()
            self._metrics.runtime_duration.labels(name).observe(time.perf_counter() - started)
        binary = {o.name: o.binary for o in request.outputs or ()}
        order = names if names is not None else list(results)
        return chosen, [
            (n, results[n], binary.get(n, request.binary_output_default)) for n in order
        ]

    @staticmethod
    def _check_inputs(model: TensorModel, version: int, given: dict[str, np.ndarray]
                      ) -> dict[str, np.ndarray]:
        declared = model.described[version]["inputs"]
        if model.any_input_name(version):
            if len(given) != 1:
                raise RequestError(f"Model '{model.name}' takes exactly one input tensor.")
            ((name, array),) = given.items()
            spec = dict(declared[0], name=name)
            if datatype_of(array.dtype) not in NUMERIC:
                raise RequestError(f"Input '{name}' must be numeric for model '{model.name}'.")
            _check_shape(spec, array)
            return given
        expected = {i["name"]: i for i in declared}
        for name in given:
            if name not in expected:
                raise RequestError(f"Model '{model.name}' has no input '{name}'; it takes "
                                   f"{', '.join(sorted(expected))}.")
        for name, spec in expected.items():
            if name not in given:
                raise RequestError(f"Input '{name}' is missing.")
            array = given[name]
            if datatype_of(array.dtype) != spec["datatype"]:
                raise RequestError(f"Input '{name}' must be {spec['datatype']}, "
                                   f"not {datatype_of(array.dtype)}.")
            _check_shape(spec, array)
        if model.source.config.max_batch_size > 0 and rows_of(given) < 0:
            raise RequestError("Every input must have the same first (batch) dimension.")
        return given

    @staticmethod
    def _check_outputs(model: TensorModel, version: int, request: InferRequest
                       ) -> list[str] | None:
        if request.outputs is None:
            return None
        known = {o["name"] for o in model.described[version]["outputs"]}
        names = [o.name for o in request.outputs]
        for name in names:
            if name not in known:
                raise RequestError(f"Model '{model.name}' has no output '{name}'; it has "
                                   f"{', '.join(sorted(known))}.")
        return names


def _check_shape(spec: dict[str, Any], array: np.ndarray) -> None:
    shape = spec["shape"]
    if len(shape) != array.ndim or any(
        d >= 0 and d != actual for d, actual in zip(shape, array.shape, strict=True)
    ):
        want = "[" + ", ".join(str(d) for d in shape) + "]"
        raise RequestError(f"Input '{spec['name']}' has shape {list(array.shape)}; the model "
                           f"takes {want} (-1: any size).")
