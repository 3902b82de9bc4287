"""The house rules that keep the layers honest, checked on the source itself."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "modelport"


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_only_config_load_reads_the_environment() -> None:
    pattern = re.compile(r"os\.environ|os\.getenv|getenv\(")
    # A worker process may set switches for the libraries it loads (writes, not reads).
    writes = re.compile(r"os\.environ\.setdefault\(|os\.environ\[[^\]]+\]\s*=(?!=)")
    readers = [p.relative_to(SRC).as_posix() for p in _sources()
               if pattern.search(writes.sub("", p.read_text()))]
    assert readers == ["config/load.py"]


def test_no_module_level_global_statements() -> None:
    offenders = [p.name for p in _sources() if re.search(r"^\s*global\s", p.read_text(), re.M)]
    assert offenders == []


def test_every_module_says_what_it_owns() -> None:
    missing = []
    for path in _sources():
        text = path.read_text().lstrip()
        if text and not text.startswith('"""') and path.name != "__init__.py":
            missing.append(path.relative_to(SRC).as_posix())
    assert missing == []


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], capture_output=True, text=True,
                            cwd=SRC.parents[1], timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_server_without_local_models_does_not_load_numpy() -> None:
    """NumPy (~12 MB) is for tensor models and local runtimes only: an app built from a config
    with neither must not import it, /v2 errors included."""
    code = (
        "import sys\n"
        "from modelport.config.load import load_data\n"
        "from modelport.api.app import create_app\n"
        "create_app(load_data({'providers': {'up': {'kind': 'openai', "
        "'base_url': 'http://127.0.0.1:9/v1'}}, 'routes': {'r': {'targets': "
        "[{'provider': 'up', 'model': 'm'}]}}}, 'test', {}))\n"
        "print(sorted(m for m in sys.modules if m == 'numpy' or m.startswith('numpy.'))[:3])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    assert done.stdout.strip() == "[]", done.stdout


def test_modules_and_functions_stay_within_the_style_guides_sizes() -> None:
    """The house style: split a module near 800 lines, and no function runs past 100 (a long
    table becomes data or is split by what it describes)."""
    too_long: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        where = path.relative_to(SRC).as_posix()
        if text.count("\n") > 800:
            too_long.append(f"{where}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 100:
                    too_long.append(f"{where}: {node.name} is {length} lines")
    assert too_long == []
