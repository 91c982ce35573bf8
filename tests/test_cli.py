import json
import subprocess
import sys

import pytest

from eqfpga import checkpoint as ckpt
from eqfpga import trainer
from eqfpga.cli import build_parser, main


def run(*args):
    return subprocess.run([sys.executable, "-m", "eqfpga.cli", *args], capture_output=True, text=True)


def test_every_command_has_help(capsys):
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in sub.choices:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        assert "usage: eqfpga " + name in capsys.readouterr().out


def test_info_prints_widths_and_json(tmp_path, capsys):
    assert main(["info", "--config", "up5k", "--json", str(tmp_path / "i.json")]) == 0
    out = capsys.readouterr().out
    assert "membrane" in out and "400-320-10" in out and "4-pixel border dropped" in out
    doc = json.loads((tmp_path / "i.json").read_text())
    assert doc["widths"]["drive"]["bits"] <= doc["config"]["drive_bits"]


def test_bad_config_is_one_line_error(tmp_path):
    bad = tmp_path / "b.toml"
    bad.write_text("[fixed_point]\ndrive_bits = 8\n")
    r = run("info", "--config", str(bad))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "drive_bits = 8 cannot hold" in r.stderr


def test_train_then_evaluate(tmp_path, capsys, small_config):
    # a tiny run through the CLI, with a configuration file
    from eqfpga.config import config_to_toml
    cfg = tmp_path / "small.toml"
    cfg.write_text(config_to_toml(small_config))
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(out), "--train-samples", "200",
                 "--test-samples", "100", "--quiet", "--json", str(tmp_path / "t.json")]) == 0
    assert json.loads((tmp_path / "t.json").read_text())["history"][0]["epoch"] == 1
    assert main(["evaluate", str(out / "last.npz"), "--images", "300",
                 "--json", str(tmp_path / "e.json")]) == 0
    doc = json.loads((tmp_path / "e.json").read_text())
    assert doc["images"] == 300 and 0 <= doc["accuracy"] <= 1
    # resume a finished run to 2 epochs
    assert main(["train", "--config", str(cfg), "--out", str(out), "--epochs", "2", "--resume",
                 "--train-samples", "200", "--test-samples", "100", "--quiet"]) == 0
    assert ckpt.load(out / "last.npz").epoch == 2


def test_evaluate_corrupt_checkpoint_is_one_line_error(tmp_path, small_config):
    path = ckpt.save(trainer.fresh(small_config), tmp_path / "c.npz")
    path.write_bytes(path.read_bytes()[:100])
    r = run("evaluate", str(path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "c.npz" in r.stderr


def test_fashion_mnist_from_folder(shared_data, tmp_path, small_config):
    path = ckpt.save(trainer.fresh(small_config), tmp_path / "c.npz")
    r = run("evaluate", str(path), "--dataset", "fashion-mnist", "--data",
            str(shared_data / "fashion-mnist"), "--images", "50")
    assert r.returncode == 0, r.stderr
    assert "50 fashion-mnist test images" in r.stdout


def test_verilog_writes_linted_design(tmp_path, capsys):
    assert main(["verilog", "-o", str(tmp_path), "--json", str(tmp_path / "v.json")]) == 0
    out = capsys.readouterr().out
    assert "lint-only -Wall: clean" in out
    doc = json.loads((tmp_path / "v.json").read_text())
    assert doc["lint_warnings"] == [] and (tmp_path / "eqfpga_accelerator.v").exists()
    assert (tmp_path / "eqfpga_accelerator.vlt").read_text().count("lint_off") >= 1


def test_verilog_refuses_weights_of_another_config(tmp_path):
    r = run("verilog", "--config", "ecp5", "-o", str(tmp_path), "--no-lint")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "error" in r.stderr


def test_verilog_lanes_must_divide_hidden(tmp_path):
    r = run("verilog", "--lanes", "7", "-o", str(tmp_path), "--no-lint")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "multiple of lanes" in r.stderr


def test_on_chip_training_over_a_port_takes_lanes_from_the_board(tmp_path):
    """--lanes is for --sim; with --port (ECP5's 500 hidden is no multiple of the default 8) the
    run gets as far as the port and says in one line that it cannot open it."""
    r = run("train", "--on-chip", "--port", str(tmp_path / "no-such-tty"), "--config", "ecp5",
            "--train-samples", "1", "--test-samples", "1", "--quiet", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "cannot open" in r.stderr and "lanes" not in r.stderr


def test_simulate_reports_agreement(tmp_path, capsys):
    assert main(["simulate", "--images", "6", "--first", "10", "--jobs", "2", "--quiet",
                 "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "class 100.00%, spike counts 100.00%" in out and "images/s" in out
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["images"] == 6 and doc["first_index"] == 10 and doc["mismatches"] == []


@pytest.mark.parametrize("args, message", [
    (["--images", "0"], "--images must be at least 1"),
    (["--first", "10000"], "outside the 10000 test images"),
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--weights", "nowhere.npz"], "nowhere.npz"),
    (["--sim", "amaranth", "--fst", "x.fst"], "VCD only"),
])
def test_simulate_bad_arguments_are_one_line_errors(args, message):
    r = run("simulate", "--quiet", *args)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr


def test_conv_train_and_resume(tmp_path, capsys):
    out = tmp_path / "conv"
    args = ["conv-train", "--train-samples", "16", "--test-samples", "16", "--out", str(out), "--quiet"]
    assert main(args + ["--json", str(tmp_path / "c.json")]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["history"][0]["epoch"] == 1
    assert main(args + ["--epochs", "2", "--resume"]) == 0
    assert (out / "last.npz").exists()
