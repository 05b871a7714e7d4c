"""Smoke test of benchmarks/cli_latency.py: one command, two timed runs, a table and its JSON."""
from __future__ import annotations

import importlib.util
import json

import pytest

from helpers import REPO

pytestmark = pytest.mark.slow  # every test here takes seconds (CONTRIBUTING.md)

SCRIPT = REPO / "benchmarks" / "cli_latency.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("bench_cli_latency", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_command_gives_a_row_and_the_same_json(tmp_path, capsys):
    out = tmp_path / "latency.json"
    result = _load_script().main(["--commands", "describe hog", "--repeats", "2",
                                  "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["settings"]["repeats"] == 2 and result["target_s"] == 1.0
    (row,) = result["rows"]
    assert row["command"] == "featinv describe hog" and row["mode"] == "warm"
    assert len(row["runs_s"]) == 2 and all(t > 0 for t in row["runs_s"])
    assert row["min_s"] <= row["median_s"] <= row["max_s"]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["command", "mode", "median"]
    assert lines[1].startswith("featinv describe hog  warm")
    assert float(lines[1].split()[4]) == pytest.approx(row["median_s"], abs=0.006)


def test_a_failing_command_is_an_error_not_a_time(tmp_path):
    with pytest.raises(RuntimeError, match="Unknown feature 'nosuch'"):
        _load_script().time_run(["describe", "nosuch"], tmp_path)
