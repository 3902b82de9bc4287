"""Schemathesis against the OpenAPI document, over real HTTP: no generated request, valid or
not, may get a 500, an answer that breaks the document (its status, content type, body or
headers), in open mode or with keys. CI runs a short profile; set MODELPORT_FUZZ_EXAMPLES
(say, 500) for a long one by hand."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.gateway import InProcessGateway
from tests.integration.access_setup import ADMIN_KEY, KEY_ALL, Keyed

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,response_headers_conformance")
EXAMPLES = os.environ.get("MODELPORT_FUZZ_EXAMPLES", "15")


def _st() -> str:
    found = shutil.which("st", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("schemathesis is not installed (it comes with modelport[test])")
    return found


def _fuzz(url: str, *headers: str) -> subprocess.CompletedProcess[str]:
    argv = [_st(), "run", f"{url}/openapi.json", "--url", url, "--checks", CHECKS,
            "--max-examples", EXAMPLES, "--generation-deterministic",
            "--request-timeout", "10", "--no-color"]
    for header in headers:
        argv += ["--header", header]
    with tempfile.TemporaryDirectory() as where:  # schemathesis keeps a cache where it runs
        return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False,
                              cwd=where)


def _passed(result: subprocess.CompletedProcess[str]) -> None:
    summary = result.stdout[-3000:]
    assert result.returncode == 0, summary
    assert " passed" in summary and "failed" not in summary.split("Test cases:")[-1], summary


def test_open_mode_survives_the_fuzzer(gateway: InProcessGateway) -> None:
    _passed(_fuzz(gateway.url))


def test_keyed_mode_survives_the_fuzzer_as_admin_and_as_a_key(keyed: Keyed) -> None:
    url = keyed.gateway.url
    _passed(_fuzz(url, f"Authorization: Bearer {ADMIN_KEY}"))
    _passed(_fuzz(url, f"Authorization: Bearer {KEY_ALL}"))
