"""``modelport init``: a commented starter ``modelport.yaml``.

One OpenAI-compatible provider whose key comes from an environment variable, one route that
calls it, and the offline models (those whose extras are installed) as that route's
fallback. The file it writes passes ``modelport config validate`` once the variable is set.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from modelport.config.defaults import EMBEDDINGS_PACKAGE, LLM_PACKAGE, Extras

_HEAD = """\
# Modelport configuration: every key is listed in docs/configuration.md.
# Check it with `modelport config validate modelport.yaml`, start with `modelport serve`.

# The ledger (every request: route, target, tokens, cost) in SQLite beside this file;
# a postgresql://user@host/db URL lets several replicas share it.
store:
  url: sqlite:///./.modelport/modelport.db

providers:
  # Any OpenAI-compatible API: OpenAI itself, or vLLM, Ollama (http://localhost:11434/v1),
  # llama.cpp's server, TGI. Secrets are references, never values: env:NAME or file:PATH.
  {provider}:
    kind: openai
    base_url: {base_url}
    api_key: env:{key_var}
    timeout_s: 60
"""

_LOCAL_LLM = f"""\
  # A small model Modelport runs itself with llama.cpp, offline (modelport[llm]).
  local-llm:
    kind: llama_cpp
    model_package: {LLM_PACKAGE}
    chat_template: plain    # a base model: question-and-answer text, one-line answers
    temperature: 0.2
"""

_LOCAL_EMBEDDINGS = f"""\
  # Sentence embeddings, run locally (modelport[embeddings]).
  local-embedder:
    kind: embeddings
    model_package: {EMBEDDINGS_PACKAGE}
"""

_ROUTES = """\

# Routes are what applications call: the `model` of an OpenAI request.
routes:
  assistant:
    description: General questions from our applications
    owner: platform-team
    targets:
      - provider: {provider}
        model: {model}
        input_per_mtok: 0.15     # USD per million tokens, for costs and budgets
        output_per_mtok: 0.60
    timeout_s: 30
    retries: 1
{fallback}"""

_LOCAL_ROUTES = """\
  local-chat:
    description: Offline answers from a small local model
    owner: platform-team
    targets:
      - {provider: local-llm, model: gemma-3-270m, context_window: 2048}
"""

_EMBED_ROUTE = """\
  local-embed:
    description: Sentence embeddings, offline
    owner: platform-team
    targets:
      - {provider: local-embedder, model: all-MiniLM-L6-v2}
"""

_TAIL = """
# Keys: set an admin key (MODELPORT_ADMIN_KEY, or `admin_key: env:NAME` here) and every call
# needs a key; create them with `modelport keys create NAME --route assistant`.
"""


def starter_config(extras: Extras, *, provider: str = "openai",
                   base_url: str = "https://api.openai.com/v1", key_var: str = "OPENAI_API_KEY",
                   model: str = "gpt-4o-mini") -> str:
    """The text of a starter config for a machine with these extras installed."""
    text = _HEAD.format(provider=provider, base_url=base_url, key_var=key_var)
    if extras.llm:
        text += _LOCAL_LLM
    if extras.embeddings:
        text += _LOCAL_EMBEDDINGS
    fallback = ""
    if extras.llm:
        fallback = ("    # When the provider fails or cannot be reached, the local model answers.\n"
                    "    fallback_routes: [local-chat]\n")
    text += _ROUTES.format(provider=provider, model=model, fallback=fallback)
    if extras.llm:
        text += _LOCAL_ROUTES
    if extras.embeddings:
        text += _EMBED_ROUTE
    return text + _TAIL


@click.command("init")
@click.option("--path", "path", default="modelport.yaml", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite the file if it exists.")
def command(path: Path, force: bool) -> None:
    """Write a commented starter modelport.yaml."""
    if path.exists() and not force:
        click.echo(f"modelport: {path} exists; use --force to overwrite it", err=True)
        sys.exit(1)
    try:
        path.write_text(starter_config(Extras.detect()))
    except OSError as exc:
        click.echo(f"modelport: cannot write {path}: {exc.strerror or exc}", err=True)
        sys.exit(1)
    click.echo(f"wrote {path}. Next:\n"
               f"  export OPENAI_API_KEY=sk-...\n"
               f"  modelport config validate {path}\n"
               f"  modelport serve" + ("" if path.name == "modelport.yaml"
                                       else f" --config {path}"))
