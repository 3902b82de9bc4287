"""The local part's peers: llama-cpp-python's own OpenAI server (against the GGUF runtime) and
MLServer with its scikit-learn runtime (against the tensor runtime). Each is installed on first
use into its own virtual environment under harness.ENVS and started like the servers under
test, pinned to the gateway's CPU."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from harness import ENVS
from local_harness import LOCKS, http, install_venv, wait_http
from local_raw import NO_EXTRA_BUFFERS, cpu_has_amx
from overhead import GATEWAY_CPU, HOST, BenchError, Child, Children, pinned

SERVER_PORT = 18701
SERVER_VENV = ENVS / ".venv-llama-server"
MLSERVER_PORT = 18703
MLSERVER_GRPC_PORT = 18704
MLSERVER_METRICS_PORT = 18705
MLSERVER_VENV = ENVS / ".venv-mlserver"


# --------------------------------------------------------------------------- llama-cpp-python


def ensure_llama_server() -> str | None:
    """llama-cpp-python's server in bench/.venv-llama-server, reusing the repo's own
    llama-cpp-python build (no compile): the venv gets only the server's extra dependencies
    (fastapi, uvicorn, sse-starlette, ..., pinned in bench/locks/llama-server.txt) and a .pth
    line that puts the repo's site-packages after its own, so `llama_cpp` is the very module
    the raw run and Modelport use."""
    try:
        import llama_cpp
    except ImportError:
        return "llama-cpp-python is not installed in this Python"

    site = Path(llama_cpp.__file__).resolve().parent.parent

    def add_pth() -> None:
        found = sorted(SERVER_VENV.glob("lib/python*/site-packages"))
        if not found:
            raise BenchError(f"no site-packages in {SERVER_VENV}")
        (found[0] / "zz-modelport-repo-venv.pth").write_text(f"{site}\n")

    return install_venv(
        SERVER_VENV,
        "llama-cpp-python's OpenAI server (its [server] extra)",
        LOCKS / "llama-server.txt",
        "llama-server-install.log",
        ["-c", "import llama_cpp.server.app"],
        after=add_pth,
        limit_s=600,
    )


def start_llama_server(children: Children, model: str, n_ctx: int, threads: int, pin: bool,
                       ready: Callable[[], tuple[bool, str]]) -> Child:  # fmt: skip
    """The server on SERVER_PORT, pinned like the other servers; ``ready`` probes it."""
    launch = ["-m", "llama_cpp.server"]
    if cpu_has_amx():  # the same workaround as the raw baseline's
        launch = ["-c", NO_EXTRA_BUFFERS + "import runpy, sys\nsys.argv[0] = 'llama_cpp.server'\n"
                  "runpy.run_module('llama_cpp.server', run_name='__main__')\n"]
    argv = [str(SERVER_VENV / "bin" / "python"), *launch, "--model", model,
            "--host", HOST, "--port", str(SERVER_PORT), "--n_ctx", str(n_ctx),
            "--n_threads", str(threads), "--n_threads_batch", str(threads),
            "--interrupt_requests", "False", "--verbose", "False"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    child = children.start("llama-server", pinned(GATEWAY_CPU, argv, pin), env)
    wait_http(child, ready, 120)
    return child


# --------------------------------------------------------------------------- MLServer


def ensure_mlserver() -> str | None:
    """MLServer with its scikit-learn runtime, pinned in bench/locks/mlserver.txt: uvloop
    < 0.22 (MLServer 1.7's workers fail on uvloop 0.22's get_event_loop) and the scikit-learn
    of the repo's own lock, so both servers unpickle the model file with the same library;
    None when usable, else why not."""
    return install_venv(
        MLSERVER_VENV, "MLServer with its scikit-learn runtime", LOCKS / "mlserver.txt",
        "mlserver-install.log", ["-c", "import mlserver, mlserver_sklearn"],
    )  # fmt: skip


def start_mlserver(children: Children, workdir: Path, iris_file: str, workers: int, pin: bool,
                   probe_body: bytes) -> Child:  # fmt: skip
    """MLServer serving ``iris_file`` as model `iris` with adaptive batching on; ready when
    ``probe_body`` gets an inference answer."""
    root = workdir / "mlserver"
    (root / "iris").mkdir(parents=True)
    (root / "settings.json").write_text(json.dumps({
        "host": HOST, "http_port": MLSERVER_PORT, "grpc_port": MLSERVER_GRPC_PORT,
        "metrics_port": MLSERVER_METRICS_PORT, "parallel_workers": workers,
        "debug": False,
    }, indent=1))  # fmt: skip
    (root / "iris" / "model-settings.json").write_text(json.dumps({
        "name": "iris", "implementation": "mlserver_sklearn.SKLearnModel",
        "max_batch_size": 64, "max_batch_time": 0.001,
        "parameters": {"uri": iris_file, "version": "1"},
    }, indent=1))  # fmt: skip
    argv = [str(MLSERVER_VENV / "bin" / "mlserver"), "start", str(root)]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH") and not k.startswith("MLSERVER")
    }
    child = children.start("mlserver", pinned(GATEWAY_CPU, argv, pin), env)
    base = f"http://{HOST}:{MLSERVER_PORT}"

    def probe() -> tuple[bool, str]:
        status, body = http("POST", f"{base}/v2/models/iris/infer", probe_body, 5)
        return status == 200 and b'"outputs"' in body, f"infer -> {status} {body[:200]!r}"

    wait_http(child, probe, 180)
    return child


def mlserver_version() -> str | None:
    found = sorted(MLSERVER_VENV.glob("lib/python*/site-packages/mlserver-*.dist-info"))
    return found[-1].name.removeprefix("mlserver-").removesuffix(".dist-info") if found else None
