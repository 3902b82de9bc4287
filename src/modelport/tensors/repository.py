"""The model repository on disk: ``<root>/<name>/<version>/model.onnx|model.joblib``.

Each model directory may hold a ``config.yaml`` (``config/tensor_model.py``). Versions are
positive integers; the version policy picks which of them are served. A model file must
lie inside the repository once links are resolved: a joblib file is code, and a link
pointing elsewhere is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from modelport.config.tensor_model import TensorModelConfig, load_tensor_model_config
from modelport.errors import ConfigError
from modelport.runtimes.tensor_worker import VersionFile

MODEL_FILES = {"model.onnx": "onnx", "model.joblib": "sklearn"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True, slots=True)
class ModelSource:
    """What the repository holds for one model, or why it cannot be served."""

    name: str
    config: TensorModelConfig
    versions: tuple[VersionFile, ...]  # the served ones, newest first
    problem: str | None = None  # why nothing can be served
    notes: tuple[str, ...] = ()  # files skipped while others are served


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


def model_names(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and valid_name(p.name))


def read_model(root: Path, name: str) -> ModelSource:
    """Read one model's directory; problems are reported in the result, never raised."""
    directory = root / name
    if not valid_name(name) or not directory.is_dir():
        return ModelSource(name, TensorModelConfig(), (), "no such model in the repository")
    try:
        config = load_tensor_model_config(directory / "config.yaml")
    except ConfigError as exc:
        return ModelSource(name, TensorModelConfig(), (), "; ".join(exc.problems))
    found: dict[int, VersionFile] = {}
    problems: list[str] = []
    base = root.resolve()
    for entry in directory.iterdir():
        if not entry.is_dir() or not entry.name.isdecimal() or int(entry.name) <= 0:
            continue
        version = int(entry.name)
        for filename, platform in MODEL_FILES.items():
            path = entry / filename
            if not path.exists():
                continue
            real = path.resolve()
            if not real.is_relative_to(base):
                problems.append(f"version {version}: {filename} resolves outside the model "
                                "repository and is refused")
                continue
            if config.platform is not None and config.platform != platform:
                continue
            found[version] = VersionFile(version, str(real), platform)
            break
    chosen = config.select(list(found))
    if not chosen:
        problems.append("no servable version (expected <version>/model.onnx or "
                        "<version>/model.joblib)")
        return ModelSource(name, config, (), "; ".join(problems))
    return ModelSource(name, config, tuple(found[v] for v in chosen), notes=tuple(problems))
