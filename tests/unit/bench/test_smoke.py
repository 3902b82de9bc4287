"""The benchmark harness's smoke mode: its settings, strict notes and its verdict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"


@pytest.fixture(scope="module")
def bench() -> Iterator[dict[str, ModuleType]]:
    """bench/suite.py and bench/harness.py, imported as the scripts import each other."""
    sys.path.insert(0, str(BENCH))
    try:
        import harness
        import suite

        yield {"suite": suite, "harness": harness}
    finally:
        sys.path.remove(str(BENCH))


def test_smoke_sets_short_defaults_and_explicit_flags_win(bench: dict[str, ModuleType]) -> None:
    suite = bench["suite"]
    args = suite.parse_args(["--smoke", "--parts", "overhead"])
    smoke = suite.SMOKE
    assert (args.rounds, args.duration, args.soak_minutes) == (
        smoke["rounds"], smoke["duration"], smoke["soak_minutes"])
    assert args.soak_minutes < 1 and args.duration < 10
    assert args.out_dir == (BENCH / ".work" / "smoke").resolve()
    assert suite.parse_args(["--smoke", "--duration", "7", "--parts", "overhead"]).duration == 7
    plain = suite.parse_args(["--parts", "overhead"])
    assert not plain.smoke and plain.duration == 10


def test_smoke_makes_every_part_strict(bench: dict[str, ModuleType]) -> None:
    suite = bench["suite"]
    args = suite.parse_args(["--smoke"])
    args.litellm_problem = None
    for part, (argv, _limit) in suite.commands(args).items():
        assert "--require-all" in argv, part
    local_argv = suite.commands(args)["local"][0]
    assert "--smoke" in local_argv and "--max-tokens" not in local_argv
    args = suite.parse_args([])
    args.litellm_problem = None
    assert all("--require-all" not in argv for argv, _ in suite.commands(args).values())


def test_strict_notes_turn_a_left_out_peer_into_an_error(bench: dict[str, ModuleType]) -> None:
    harness = bench["harness"]
    notes = harness.Notes(["from bench/run"])
    notes.left_out("LiteLLM left out: it could not be started (boom)\ntraceback...")
    assert notes == ["from bench/run", "LiteLLM left out: it could not be started (boom)"]
    strict = harness.Notes(strict=True)
    with pytest.raises(harness.BenchError, match=r"Portkey left out.*--require-all"):
        strict.left_out("Portkey left out: it could not be started")
    assert strict == []


def write_reports(out: Path, part: str, body: str = '{"runs": []}') -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"2026-11-29-{part}.md").write_text("| table |\n")
    (out / f"2026-11-29-{part}.json").write_text(body)


def verdict(bench: dict[str, ModuleType], out: Path, results: dict[str, tuple[int, float]],
            started: float) -> int:  # fmt: skip
    args = bench["suite"].parse_args(["--smoke", "--out-dir", str(out)])
    return int(bench["suite"].smoke_verdict(args, results, started))


def test_smoke_passes_only_when_every_part_ran_clean_and_wrote(
    bench: dict[str, ModuleType], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.time() - 1
    write_reports(tmp_path, "overhead")
    write_reports(tmp_path, "memory")
    ok = {"overhead": (0, 1.0), "memory": (0, 1.0)}
    assert verdict(bench, tmp_path, ok, started) == 0
    assert "every target answered" in capsys.readouterr().err

    # a part that saw failed requests (2) or could not run (1)
    assert verdict(bench, tmp_path, {**ok, "memory": (2, 1.0)}, started) == 1
    assert "memory: exit status 2" in capsys.readouterr().err
    # a part that wrote nothing, or JSON that does not parse
    assert verdict(bench, tmp_path, {**ok, "openloop": (0, 1.0)}, started) == 1
    assert "openloop: no .md written" in capsys.readouterr().err
    write_reports(tmp_path, "openloop", body="{not json")
    assert verdict(bench, tmp_path, {**ok, "openloop": (0, 1.0)}, started) == 1
    assert "is not JSON" in capsys.readouterr().err


def test_smoke_ignores_reports_from_an_earlier_run(
    bench: dict[str, ModuleType], tmp_path: Path
) -> None:
    write_reports(tmp_path, "overhead")
    old = time.time() - 3600
    for path in tmp_path.iterdir():
        os.utime(path, (old, old))
    assert verdict(bench, tmp_path, {"overhead": (0, 1.0)}, time.time() - 60) == 1


def test_peer_environments_follow_modelport_bench_envs(tmp_path: Path) -> None:
    code = "import harness, peers, local_peers; print(json.dumps([str(harness.ENVS), " \
        "str(peers.LITELLM_VENV), str(peers.PORTKEY_DIR), str(local_peers.MLSERVER_VENV), " \
        "str(local_peers.SERVER_VENV)]))"  # fmt: skip
    env = {**os.environ, "MODELPORT_BENCH_ENVS": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", f"import json; {code}"], cwd=BENCH, env=env,
                          capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    paths = [Path(p) for p in json.loads(done.stdout)]
    assert paths[0] == tmp_path.resolve()
    assert all(p.parent == tmp_path.resolve() for p in paths[1:])
    env.pop("MODELPORT_BENCH_ENVS")
    done = subprocess.run([sys.executable, "-c", f"import json; {code}"], cwd=BENCH, env=env,
                          capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    assert all(Path(p).parent == BENCH for p in json.loads(done.stdout)[1:])


def test_a_peer_that_cannot_start_is_stopped_and_left_out(
    bench: dict[str, ModuleType], tmp_path: Path
) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import overhead
    finally:
        sys.path.remove(str(BENCH))
    harness = bench["harness"]
    children = overhead.Children(tmp_path)

    def start_then_fail() -> object:
        children.start("peer", [sys.executable, "-c", "import time; time.sleep(60)"])
        raise harness.BenchError("not ready within 1 s")

    try:
        notes = harness.Notes()
        assert overhead.start_peer(children, notes, "peer", "The peer", start_then_fail) is None
        assert notes == ["The peer left out: it could not be started (not ready within 1 s)"]
        assert children.items == []  # its process was stopped and forgotten

        strict = harness.Notes(strict=True)
        with pytest.raises(harness.BenchError, match="The peer left out"):
            overhead.start_peer(children, strict, "peer", "The peer", start_then_fail)
        assert children.items == []

        started = overhead.start_peer(
            children, notes, "ok", "OK", lambda: children.start("ok", [sys.executable, "-V"])
        )
        assert started is not None and started.name == "ok"
    finally:
        children.stop_all()
