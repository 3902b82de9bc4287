"""``modelport batch submit|status|results|cancel``: batches on a running server, over its
Files and Batches APIs (docs/batch.md).

``submit`` uploads a JSON Lines file and starts a batch; a line may be a whole batch line
(``custom_id``, ``url``, ``body``) or just a request body, which is numbered ``line-N``.
``--route`` sends every line to that route. ``--wait`` shows the progress (lines done and
failed, the rate, the time left) until the batch ends, then writes the output and error
files. The server is ``--url`` (or ``MODELPORT_URL``), the key ``MODELPORT_API_KEY``
(none in open mode).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import IO, Any, NoReturn

import click

from modelport.config.load import api_key_in_environment

DEFAULT_URL = "http://127.0.0.1:4000"
ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
OVER = ("completed", "cancelled", "expired", "failed")
EXIT_FAILED, EXIT_INPUT = 1, 2
_TIMEOUT_S = 600.0


def _fail(message: str, status: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"modelport: {message}", err=True)
    sys.exit(status)


def _url_option(func: Any) -> Any:
    return click.option("--url", envvar="MODELPORT_URL", default=DEFAULT_URL,
                        show_default=True, help="The running server (or MODELPORT_URL).")(func)


def _send(url: str, method: str, path: str, data: IO[bytes] | bytes | None = None,
          headers: dict[str, str] | None = None) -> bytes:
    """One call; its body, or one line on stderr and an exit status."""
    all_headers = dict(headers or {})
    key = api_key_in_environment()
    if key is not None:
        all_headers["Authorization"] = f"Bearer {key.reveal()}"
    request = urllib.request.Request(url.rstrip("/") + path, data=data, method=method,
                                     headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            return response.read()  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read()).get("error", {})
        except (ValueError, AttributeError):
            error = {}
        if not isinstance(error, dict):
            error = {}
        _fail(f"{exc.code}: {error.get('message') or exc.reason}",
              EXIT_INPUT if exc.code in (400, 404, 413, 415) else EXIT_FAILED)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        _fail(f"cannot reach the server at {url} ({reason}); is it running? (--url)")


def _json(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    return json.loads(_send(url, method, path, data, {"Content-Type": "application/json"}))


def _prepared(source: Path, endpoint: str, route: str | None, out: IO[bytes]) -> int:
    """The input as batch lines, written to ``out``; the number of lines."""
    count = 0
    try:
        with source.open("rb") as lines:
            for number, raw in enumerate(lines, 1):
                if not raw.strip():
                    continue
                try:
                    item = json.loads(raw)
                except ValueError:
                    _fail(f"{source}: line {number} is not valid JSON", EXIT_INPUT)
                if not isinstance(item, dict):
                    _fail(f"{source}: line {number} is not a JSON object", EXIT_INPUT)
                if "body" not in item:  # a bare request body
                    item = {"custom_id": f"line-{number}", "method": "POST", "url": endpoint,
                            "body": item}
                if route is not None and isinstance(item.get("body"), dict):
                    item["body"]["model"] = route
                out.write(json.dumps(item).encode() + b"\n")
                count += 1
    except OSError as exc:
        _fail(f"cannot read {source}: {exc.strerror or exc}", EXIT_INPUT)
    return count


def _upload(url: str, source: Path, endpoint: str, route: str | None) -> str:
    """The prepared input uploaded as a form, from a temporary file (bounded memory)."""
    boundary = uuid.uuid4().hex
    with tempfile.TemporaryFile() as form:
        form.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n"
                   f"batch\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                   f"filename=\"{source.name}\"\r\nContent-Type: application/jsonl\r\n\r\n"
                   .encode())
        if _prepared(source, endpoint, route, form) == 0:
            _fail(f"{source}: no lines", EXIT_INPUT)
        form.write(f"\r\n--{boundary}--\r\n".encode())
        size = form.tell()
        form.seek(0)
        answer = _send(url, "POST", "/v1/files", form, {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(size)})
    return str(json.loads(answer)["id"])


def _line(batch: dict[str, Any], started: float, first_done: int) -> str:
    counts = batch["request_counts"]
    total, done, failed = counts["total"], counts["completed"], counts["failed"]
    finished = done + failed
    width = 30
    filled = int(width * finished / total) if total else width
    elapsed = max(time.monotonic() - started, 1e-6)
    rate = (finished - first_done) / elapsed
    eta = f"{(total - finished) / rate:.0f}s" if rate > 0 and finished < total else "-"
    return (f"[{'#' * filled}{'.' * (width - filled)}] {finished}/{total} "
            f"({done} done, {failed} failed) {rate:.1f} lines/s, ETA {eta} "
            f"[{batch['status']}]")


def _wait(url: str, batch_id: str) -> dict[str, Any]:
    started, batch = time.monotonic(), _json(url, "GET", f"/v1/batches/{batch_id}")
    first = batch["request_counts"]["completed"] + batch["request_counts"]["failed"]
    while True:
        click.echo("\r" + _line(batch, started, first), nl=False, err=True)
        if batch["status"] in OVER:
            click.echo("", err=True)
            return batch  # type: ignore[no-any-return]
        time.sleep(0.5)
        batch = _json(url, "GET", f"/v1/batches/{batch_id}")


def _save(url: str, batch: dict[str, Any], output: Path, errors: Path) -> None:
    for file_id, path in ((batch.get("output_file_id"), output),
                          (batch.get("error_file_id"), errors)):
        if file_id:
            path.write_bytes(_send(url, "GET", f"/v1/files/{file_id}/content"))
            click.echo(f"wrote {path}")


@click.command("submit")
@click.argument("path", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--endpoint", type=click.Choice(ENDPOINTS), default=ENDPOINTS[0],
              show_default=True, help="What every line calls.")
@click.option("--route", default=None, help="Send every line to this route.")
@click.option("--window", default="24h", show_default=True, help="The completion window.")
@click.option("--wait", is_flag=True, help="Show progress until it ends; write the results.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --wait: the output file [default: PATH.out.jsonl].")
@_url_option
def submit(path: Path, endpoint: str, route: str | None, window: str, wait: bool,
           output: Path | None, url: str) -> None:
    """Upload PATH (JSON Lines) and run it as a batch."""
    file_id = _upload(url, path, endpoint, route)
    batch = _json(url, "POST", "/v1/batches", {"input_file_id": file_id, "endpoint": endpoint,
                                               "completion_window": window})
    click.echo(f"{batch['id']}: {batch['request_counts']['total']} lines, {batch['status']}")
    if not wait:
        return
    batch = _wait(url, batch["id"])
    out = output or path.with_name(path.name + ".out.jsonl")
    _save(url, batch, out, out.with_name(out.name.replace(".out.", ".errors.", 1)
                                         if ".out." in out.name else out.name + ".errors"))
    if batch["status"] != "completed":
        _fail(f"{batch['id']} ended {batch['status']}")


@click.command("status")
@click.argument("batch_id")
@click.option("--wait", is_flag=True, help="Show progress until it ends.")
@_url_option
def status(batch_id: str, wait: bool, url: str) -> None:
    """A batch's status and counts."""
    batch = _wait(url, batch_id) if wait else _json(url, "GET", f"/v1/batches/{batch_id}")
    counts = batch["request_counts"]
    click.echo(f"{batch['id']}: {batch['status']}, {counts['completed']} done, "
               f"{counts['failed']} failed of {counts['total']}"
               + (f" (paused: {batch['paused_reason']})" if batch.get("paused_reason")
                  else ""))


@click.command("results")
@click.argument("batch_id")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="[default: BATCH_ID.out.jsonl]")
@_url_option
def results(batch_id: str, output: Path | None, url: str) -> None:
    """Write a batch's output and error files."""
    batch = _json(url, "GET", f"/v1/batches/{batch_id}")
    if batch["status"] not in OVER:
        _fail(f"{batch_id} is {batch['status']}: no results yet (status --wait)")
    out = output or Path(f"{batch_id}.out.jsonl")
    _save(url, batch, out, out.with_name(out.stem + ".errors.jsonl"))


@click.command("cancel")
@click.argument("batch_id")
@_url_option
def cancel(batch_id: str, url: str) -> None:
    """Stop running a batch's lines."""
    batch = _json(url, "POST", f"/v1/batches/{batch_id}/cancel")
    click.echo(f"{batch['id']}: {batch['status']}")
