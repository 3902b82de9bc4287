"""Config of local runtimes: llama_cpp and embeddings providers, the model repository, and a
tensor model's config.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.config import load_settings, validate_file
from modelport.config.defaults import Extras, default_config, describe
from modelport.config.load import load_data
from modelport.config.tensor_model import load_tensor_model_config
from modelport.errors import ConfigError


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "modelport.yaml"
    path.write_text(text)
    return validate_file(path, {})


def test_a_llama_cpp_provider_resolves_with_its_settings(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    path = tmp_path / "modelport.yaml"
    path.write_text(f"""
providers:
  llm: {{kind: llama_cpp, model_path: {model}, n_ctx: 512, parallel: 2, threads: 1,
         chat_template: gemma}}
routes:
  chat: {{targets: [{{provider: llm, model: tiny}}]}}
""")
    local = load_settings(path, {}).providers["llm"].local
    assert local is not None
    assert (local.model_path, local.n_ctx, local.parallel, local.threads) == (str(model), 512, 2, 1)
    assert local.chat_template == "gemma"


@pytest.mark.parametrize(("provider", "expected"), [
    ("{kind: llama_cpp}", "providers.p: set exactly one of model_path"),
    ("{kind: llama_cpp, model_path: /x.gguf, model_package: y}", "set exactly one"),
    ("{kind: llama_cpp, model_path: /nonexistent/x.gguf}", "providers.p.model_path: no such file"),
    ("{kind: embeddings, model_package: no-such-model-pkg}",
     "providers.p.model_package: 'no-such-model-pkg' is not installed"),
    ("{kind: llama_cpp, model_package: x, parallel: 0}", "providers.p.parallel"),
    ("{kind: embeddings, model_package: x, base_url: 'http://x'}",
     "providers.p.base_url: unknown key"),
    ("{kind: cohere}", "providers.p.kind: unsupported kind 'cohere'"),
])
def test_bad_local_providers_are_reported_with_their_paths(
    tmp_path: Path, provider: str, expected: str
) -> None:
    problems = _problems(tmp_path, f"providers:\n  p: {provider}\n")
    assert any(p.startswith(expected) or expected in p for p in problems), problems


def test_a_missing_model_repository_is_a_problem(tmp_path: Path) -> None:
    problems = _problems(tmp_path, f"model_repository: {tmp_path}/nothing-here\n")
    assert problems == [f"model_repository: no such directory: {tmp_path}/nothing-here"]


def test_tensor_model_config_defaults_and_policies(tmp_path: Path) -> None:
    assert load_tensor_model_config(tmp_path / "absent.yaml").select([1, 3, 2]) == [3]
    path = tmp_path / "config.yaml"
    path.write_text("version_policy: {specific: [1, 3]}\nmax_batch_delay_ms: 4\n")
    config = load_tensor_model_config(path)
    assert config.select([1, 2, 3]) == [3, 1] and config.max_batch_delay_s == 0.004
    path.write_text("version_policy: {all: true}\n")
    assert load_tensor_model_config(path).select([2, 1]) == [2, 1]
    path.write_text("version_policy: {latest: 2}\n")
    assert load_tensor_model_config(path).select([1, 2, 3]) == [3, 2]


@pytest.mark.parametrize(("text", "expected"), [
    ("surprise: 1\n", "surprise: Extra inputs are not permitted"),
    ("version_policy: {latest: 1, all: true}\n", "set only one of latest"),
    ("inputs: [{name: x, datatype: FLOAT, shape: [1]}]\n", "inputs.0.datatype"),
    ("inputs: [{name: x, datatype: FP32, shape: [1]}, {name: x, datatype: FP32, shape: [1]}]\n",
     "names must be unique"),
    ("max_batch_size: -1\n", "max_batch_size"),
    (": : :\n", "cannot be read as YAML"),
])
def test_bad_tensor_model_configs_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "m" / "config.yaml"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_tensor_model_config(path)
    assert any(expected in p and p.startswith("m/config.yaml") for p in info.value.problems), (
        info.value.problems)


def test_the_offline_default_follows_the_installed_extras(tmp_path: Path) -> None:
    nothing = default_config(Extras(llm=False, embeddings=False, tensor=False), tmp_path)
    assert nothing["routes"] == {} and "model_repository" not in nothing
    assert "install modelport[local]" in describe(nothing, "http://127.0.0.1:4000")[0]
    everything = default_config(Extras(llm=True, embeddings=True, tensor=True), tmp_path)
    assert set(everything["routes"]) == {"local-chat", "local-embed"}
    assert everything["model_repository"] == f"{tmp_path.as_posix()}/models"
    lines = "\n".join(describe(everything, "http://127.0.0.1:4000"))
    assert lines.count("curl http://127.0.0.1:4000/") == 3
    (tmp_path / "models").mkdir()
    settings = load_data(everything, source="<offline default>", environ={})
    assert settings.routes["local-chat"].targets[0].provider == "local-llm"
    assert settings.store.url == f"sqlite:///{tmp_path.as_posix()}/modelport.db"


def test_keys_may_name_models_of_the_repository(tmp_path: Path) -> None:
    (tmp_path / "models" / "iris").mkdir(parents=True)
    text = (f"model_repository: {tmp_path}/models\n"
            "keys:\n  k: {key: 'env:K', routes: [iris]}\n")
    path = tmp_path / "modelport.yaml"
    path.write_text(text)
    assert validate_file(path, {"K": "a-long-enough-key-0001"}) == []
    path.write_text(text.replace("[iris]", "[nope]"))
    assert validate_file(path, {"K": "a-long-enough-key-0001"}) == [
        "keys.k.routes[0]: unknown route 'nope' (nor a model in the model repository)"]
