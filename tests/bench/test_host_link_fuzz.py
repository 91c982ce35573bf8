"""bench/host_link_fuzz.py: a short run passes, reports what it fed, and saves what it prints."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "host_link_fuzz.py"
_spec = importlib.util.spec_from_file_location("host_link_fuzz", BENCH)
host_link_fuzz = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = host_link_fuzz
_spec.loader.exec_module(host_link_fuzz)


def test_short_fuzz_run(tmp_path, capsys):
    out = tmp_path / "fuzz.json"
    doc = host_link_fuzz.main(["--examples", "2", "--max-pieces", "6", "--max-garbage", "20", "--seed", "3",
                               "--json", str(out)])
    assert json.loads(out.read_text()) == doc
    assert doc["passed"] and doc["totals"]["streams"] == 2 and doc["totals"]["bytes"] > 0
    assert "RTL == golden on every stream" in capsys.readouterr().out


def test_bad_arguments_are_one_line(capsys):
    with pytest.raises(SystemExit):
        host_link_fuzz.main(["--examples", "0"])
    assert "--examples must be at least 1, not 0" in capsys.readouterr().err
