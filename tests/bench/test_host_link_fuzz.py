"""bench/host_link_fuzz.py: a short run passes, reports what it fed, and saves what it prints."""

import json


def test_short_fuzz_run(tmp_path, bench):
    out = tmp_path / "fuzz.json"
    r = bench("host_link_fuzz.py", "--examples", "2", "--max-pieces", "6", "--max-garbage", "20", "--seed", "3",
              "--json", out)
    doc = json.loads(out.read_text())
    assert doc["passed"] and doc["totals"]["streams"] == 2 and doc["totals"]["bytes"] > 0
    assert "RTL == golden on every stream" in r.stdout
    assert f"| {doc['totals']['streams']} | {doc['totals']['bytes']:,} |" in r.stdout


def test_bad_arguments_are_one_line(bench):
    r = bench("host_link_fuzz.py", "--examples", "0", ok=False)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].endswith("--examples must be at least 1, not 0")
