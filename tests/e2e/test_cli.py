"""``modelport config validate`` and start-up failures, run as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.gateway import write_config


def _modelport(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelport.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **(env or {})})


def test_validate_accepts_the_documented_example(tmp_path: Path) -> None:
    path = write_config(tmp_path / "ok.yaml", {
        "providers": {"upstream-a": {"kind": "openai", "base_url": "http://127.0.0.1:9100/v1",
                                     "api_key": "env:UPSTREAM_A_KEY"}},
        "routes": {"support-summary": {"description": "Summarise", "owner": "support-team",
                                       "targets": [{"provider": "upstream-a",
                                                    "model": "gpt-4o-mini"}]}},
    })
    result = _modelport("config", "validate", str(path), cwd=tmp_path,
                        env={"UPSTREAM_A_KEY": "k"})
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout and "1 routes" in result.stdout


def test_validate_prints_every_error_with_its_key_path(tmp_path: Path) -> None:
    path = write_config(tmp_path / "bad.yaml", {
        "providers": {"p": {"kind": "openai", "base_url": "ftp://x", "api_key": "sk-inline"}},
        "routes": {"r": {"owner": "o", "targets": [{"provider": "q", "model": "m", "w": 1}]}},
        "extra": True,
    })
    result = _modelport("config", "validate", str(path), cwd=tmp_path)
    assert result.returncode == 2
    for expected in ("extra: unknown key", "providers.p.base_url:", "providers.p.api_key:",
                     "routes.r.targets[0].w: unknown key"):
        assert expected in result.stderr
    assert "sk-inline" not in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_reports_missing_secrets_and_dangling_references(tmp_path: Path) -> None:
    path = write_config(tmp_path / "refs.yaml", {
        "providers": {"p": {"kind": "openai", "base_url": "http://x", "api_key": "env:ABSENT"}},
        "routes": {"r": {"targets": [{"provider": "ghost", "model": "m"}]}},
    })
    result = _modelport("config", "validate", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert "providers.p.api_key: environment variable ABSENT is not set" in result.stderr
    assert "routes.r.targets[0].provider: unknown provider 'ghost'" in result.stderr


def test_serve_with_a_missing_config_file_says_so(tmp_path: Path) -> None:
    result = _modelport("serve", "--config", "nosuch.yaml", "--port", "1", cwd=tmp_path)
    assert result.returncode == 2
    assert "nosuch.yaml: file not found" in result.stderr


def test_serve_refuses_an_unusable_store_url(tmp_path: Path) -> None:
    write_config(tmp_path / "modelport.yaml", {"store": {"url": "nosuchdb://x"}})
    result = _modelport("serve", "--port", "1", cwd=tmp_path)
    assert result.returncode == 2 and "store.url" in result.stderr
    assert "Traceback" not in result.stderr
