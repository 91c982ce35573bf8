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
    from eqfpga.config import config_to_toml, load_config
    bad = tmp_path / "b.toml"
    bad.write_text(config_to_toml(load_config("up5k")).replace("drive_bits = 17", "drive_bits = 8"))
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
    (["--first", "10000"], "outside the 10000 test images"),
    (["--first", "9995", "--images", "10"], "--images 10 from --first 9995: the mnist test set has 10000 images"),
    (["--weights", "nowhere.npz"], "nowhere.npz"),
    (["--sim", "amaranth", "--fst", "x.fst"], "VCD only"),
])
def test_simulate_bad_arguments_are_one_line_errors(args, message):
    r = run("simulate", "--quiet", *args)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr


#: The shipped convolutional network and learning rule with short phases: quick to train.
SHORT_PHASES = ["--set", "free_steps=8", "nudge_steps=4", "average_steps=2"]


def test_conv_config_trains_stops_resumes_and_evaluates(tmp_path, capsys):
    out = tmp_path / "conv"
    args = ["train", "--config", "conv_mnist", *SHORT_PHASES, "--train-samples", "32", "--test-samples", "16",
            "--out", str(out), "--quiet"]
    # --max-minutes 0 stops after the first batch (16 samples) with a checkpoint
    assert main(args + ["--max-minutes", "0", "--json", str(tmp_path / "stop.json")]) == 0
    doc = json.loads((tmp_path / "stop.json").read_text())
    assert (doc["stopped"], doc["epochs_done"], doc["position"], doc["batch_size"]) == (True, 0, 16, 16)
    assert main(args + ["--resume", "--json", str(tmp_path / "c.json")]) == 0
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["history"][0]["epoch"] == 1 and not doc["stopped"]
    assert doc["full_epoch_minutes"] == pytest.approx(doc["history"][0]["ms_per_sample"] * 60000 / 6e4)
    assert "ms per training sample: a 60,000-sample epoch takes" in capsys.readouterr().out
    ck = ckpt.load(out / "last.npz")
    assert (ck.epoch, ck.position, ck.samples_seen, ck.mode) == (1, 0, 32, "int")
    assert main(["evaluate", str(out / "last.npz"), "--images", "16", "--json", str(tmp_path / "e.json")]) == 0
    doc = json.loads((tmp_path / "e.json").read_text())
    assert (doc["config"], doc["mode"], doc["images"]) == ("conv_mnist", "int", 16)


def test_float_mode_trains_and_evaluates(tmp_path, capsys):
    out = tmp_path / "float"
    args = ["train", "--config", "conv_mnist", "--mode", "float", *SHORT_PHASES, "--train-samples", "16",
            "--test-samples", "16", "--out", str(out), "--quiet"]
    assert main(args) == 0
    assert ckpt.load(out / "last.npz").mode == "float"
    assert main(["evaluate", str(out / "last.npz"), "--images", "16", "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["mode"] == "float"
    capsys.readouterr()
    # a resume without its --mode is refused in one line, naming the run's mode
    assert main([a for a in args if a not in ("--mode", "float")] + ["--resume", "--epochs", "2"]) == 2
    assert capsys.readouterr().err == f"eqfpga: error: {out / 'last.npz'}: trained in float mode, not int\n"


DEEP_TOML = """\
name = "deep"

[input]
shape = [1, 28, 28]
crop = 4

[fixed_point]
input_bits = 8
weight_bits = 8
weight_frac_bits = 6
bias_bits = 12
rate_bits = 8
membrane_frac_bits = 4
leak_shift = 2
input_shift = 10
beta_shift = 1
drive_bits = 16
membrane_bits = 20

[phases]
free_steps = 8
nudge_steps = 4
symmetric_nudge = false

[learning]
batch_size = 1
update_order = "hardware"
lr_decay_epochs = 0
seed = 1

[[layers]]
kind = "dense"
neurons = 16
w_shift = 12
b_shift = 8
w_init = 24

[[layers]]
kind = "dense"
neurons = 8
w_shift = 12
b_shift = 8
w_init = 12

[[layers]]
kind = "dense"
neurons = 10
w_shift = 12
b_shift = 8
w_init = 12
"""


def test_two_hidden_layer_dense_network_trains_resumes_and_evaluates(tmp_path):
    cfg = tmp_path / "deep.toml"
    cfg.write_text(DEEP_TOML)
    out = tmp_path / "run"
    args = ["train", "--config", str(cfg), "--out", str(out), "--train-samples", "64", "--test-samples", "32",
            "--quiet"]
    assert main(args + ["--json", str(tmp_path / "t.json")]) == 0
    doc = json.loads((tmp_path / "t.json").read_text())
    assert (doc["config"], doc["epochs_done"], doc["history"][0]["train_samples"]) == ("deep", 1, 64)
    ck = ckpt.load(out / "last.npz")
    assert [w.shape for w in ck.params.w] == [(400, 16), (16, 8), (8, 10)] and len(ck.streams) == 6
    assert main(args + ["--resume", "--epochs", "2"]) == 0
    ck = ckpt.load(out / "last.npz")
    assert (ck.epoch, ck.samples_seen) == (2, 128) and (out / "epoch002.npz").exists()
    assert main(["evaluate", str(out / "last.npz"), "--images", "50", "--json", str(tmp_path / "e.json")]) == 0
    doc = json.loads((tmp_path / "e.json").read_text())
    assert (doc["config"], doc["images"]) == ("deep", 50) and 0 <= doc["accuracy"] <= 1


@pytest.mark.parametrize("config", ["up5k", "DEEP"])
def test_batches_on_a_per_sample_configuration_are_refused_in_one_line(tmp_path, config):
    if config == "DEEP":
        (tmp_path / "deep.toml").write_text(DEEP_TOML)
        config = str(tmp_path / "deep.toml")
    r = run("train", "--config", config, "--batch-size", "4", "--train-samples", "8", "--quiet",
            "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "--batch-size 4:" in r.stderr and "trains per sample" in r.stderr and "update_order" in r.stderr
    assert not (tmp_path / "o").exists()


def test_batches_on_a_tensor_order_configuration(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--config", "up5k", "--set", 'update_order="tensor"', "--batch-size", "4",
                 "--train-samples", "8", "--test-samples", "8", "--out", str(out), "--quiet"]) == 0
    c = ckpt.load(out / "last.npz").config
    assert (c.batch_size, c.update_order) == (4, "tensor")


COUNT_OPTIONS = [
    (["evaluate", "--images", "-1"], "--images: must be at least 1, not -1"),
    (["evaluate", "--images", "0"], "--images: must be at least 1, not 0"),
    (["evaluate", "--images", "ten"], "--images: expected a whole number, got 'ten'"),
    (["train", "--epochs", "-2"], "--epochs: must be at least 1, not -2"),
    (["train", "--train-samples", "-1"], "--train-samples: must be at least 1, not -1"),
    (["train", "--train-samples", "0"], "--train-samples: must be at least 1, not 0"),
    (["train", "--test-samples", "-3"], "--test-samples: must be at least 1, not -3"),
    (["train", "--checkpoint-every", "0"], "--checkpoint-every: must be at least 1, not 0"),
    (["train", "--on-chip", "--lanes", "0"], "--lanes: must be at least 1, not 0"),
    (["train", "--config", "conv_mnist", "--epochs", "0"], "--epochs: must be at least 1, not 0"),
    (["train", "--mode", "float", "--train-samples", "-1"], "--train-samples: must be at least 1, not -1"),
    (["train", "--batch-size", "0"], "--batch-size: must be at least 1, not 0"),
    (["verilog", "--lanes", "-8"], "--lanes: must be at least 1, not -8"),
    (["simulate", "--images", "0"], "--images: must be at least 1, not 0"),
    (["simulate", "--first", "-1"], "--first: must be at least 0, not -1"),
    (["simulate", "--jobs", "0"], "--jobs/-j: must be at least 1, not 0"),
    (["simulate", "--lanes", "0"], "--lanes: must be at least 1, not 0"),
    (["run", "--port", "p", "--baud", "0"], "--baud: must be at least 1, not 0"),
    (["run", "--port", "p", "--images", "-5"], "--images: must be at least 1, not -5"),
    (["run", "--port", "p", "--first", "-1"], "--first: must be at least 0, not -1"),
    (["plot", "stdp", "--samples", "0"], "--samples: must be at least 1, not 0"),
    (["plot", "stdp", "--first", "-2"], "--first: must be at least 0, not -2"),
    (["plot", "stdp", "--lanes", "0"], "--lanes: must be at least 1, not 0"),
]


@pytest.mark.parametrize("args, message", COUNT_OPTIONS)
def test_counts_are_checked_where_they_are_parsed(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"eqfpga {args[0]}: error: argument {message}"


@pytest.mark.parametrize("args, message", [
    (["evaluate", "--images", "20000"], "--images 20000: the mnist test set has 10000 images"),
    (["train", "--train-samples", "60001"], "train_samples = 60001 is more than the 60000 mnist training images"),
    (["train", "--config", "conv_mnist", "--mode", "float", "--test-samples", "10001"],
     "test_samples = 10001 is more than the 10000 mnist test images"),
    (["plot", "stdp", "--first", "59990", "--samples", "20"],
     "--first 59990 --samples 20: the mnist training set has 60000 images"),
])
def test_counts_beyond_the_data_are_one_line_errors(tmp_path, capsys, args, message):
    out = {"evaluate": [], "plot": ["-o", str(tmp_path / "o")]}.get(args[0], ["--out", str(tmp_path / "o")])
    assert main(args + out) == 2
    assert capsys.readouterr().err == f"eqfpga: error: {message}\n"
    assert not (tmp_path / "o").exists()


def test_evaluate_a_file_that_is_no_checkpoint(tmp_path, capsys):
    (tmp_path / "notes.npz").write_text("a text file")
    assert main(["evaluate", str(tmp_path / "notes.npz")]) == 2
    assert capsys.readouterr().err == (f"eqfpga: error: {tmp_path / 'notes.npz'}: is not an eqfpga checkpoint "
                                       f"(not a NumPy .npz archive)\n")


def _run_files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def small_toml(tmp_path, small_config):
    from eqfpga.config import config_to_toml
    path = tmp_path / "small.toml"
    path.write_text(config_to_toml(small_config))
    return path


def test_train_refuses_to_overwrite_a_run_without_resume_or_force(tmp_path, capsys, small_toml):
    out = tmp_path / "run"
    args = ["train", "--config", str(small_toml), "--out", str(out), "--train-samples", "20",
            "--test-samples", "10", "--quiet"]
    assert main(args) == 0
    before = _run_files(out)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{out} already holds a training run" in err and "--resume" in err
    assert _run_files(out) == before
    assert main(args + ["--resume", "--force"]) == 2
    assert "give one" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0
    assert ckpt.load(out / "last.npz").epoch == 1


@pytest.mark.parametrize("change, message", [
    (["--train-samples", "30"], "--train-samples differs from the run's: 20 when it started, 30 now"),
    (["--test-samples", "3"], "--test-samples differs from the run's: 10 when it started, 3 now"),
])
def test_train_resume_refuses_other_settings(tmp_path, capsys, small_toml, change, message):
    out = tmp_path / "run"
    args = ["train", "--config", str(small_toml), "--out", str(out), "--quiet"]
    assert main(args + ["--train-samples", "20", "--test-samples", "10"]) == 0
    before = _run_files(out)
    capsys.readouterr()
    settings = {"--train-samples": "20", "--test-samples": "10", change[0]: change[1]}
    assert main(args + ["--resume", "--epochs", "2"] + [x for kv in settings.items() for x in kv]) == 2
    assert capsys.readouterr().err == (f"eqfpga: error: {out / 'last.npz'}: {message} (resume with "
                                       f"{change[0]} {20 if change[0] == '--train-samples' else 10}, or start "
                                       f"a new run in another folder)\n")
    assert _run_files(out) == before


def test_conv_config_train_refuses_to_overwrite_a_run_and_other_resume_settings(tmp_path, capsys):
    out = tmp_path / "conv"
    args = ["train", "--config", "conv_mnist", "--train-samples", "16", "--test-samples", "16", "--out", str(out),
            "--quiet", *SHORT_PHASES]
    assert main(args) == 0
    before = _run_files(out)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{out} already holds a training run" in err and "--resume" in err
    assert main(args[:4] + ["32"] + args[5:] + ["--resume", "--epochs", "2"]) == 2
    assert "--train-samples differs from the run's: 16 when it started, 32 now" in capsys.readouterr().err
    assert main(args + ["--resume", "--epochs", "2", "--batch-size", "8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "made for configuration 'conv_mnist'" in err and "batch_size" in err
    assert _run_files(out) == before


def test_calibrate_keeps_mnist_scaling_and_raises_fashion_mnists(tmp_path, capsys, shared_data):
    assert main(["calibrate", "-c", "up5k", "--json", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["input_shift"] == 10
    out = tmp_path / "f.toml"
    assert main(["calibrate", "-c", "up5k", "--dataset", "fashion-mnist", "--data",
                 str(shared_data / "fashion-mnist"), "-o", str(out)]) == 0
    from eqfpga.config import load_config
    tuned = load_config(out)
    assert tuned.input_shift == 11 and tuned.name == "up5k-fashion-mnist"
    assert "input_shift 11 calibrated on fashion-mnist (was 10)" in tuned.description
    r = run("calibrate", "-c", "up5k", "-o", str(out))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "exists" in r.stderr


def test_train_calibrates_and_takes_an_npz_data_set(tmp_path):
    import numpy as np
    from eqfpga import data
    path = tmp_path / "bright.npz"   # MNIST with strokes 2 pixels wider: twice the ink

    def bold(split):
        x = split.images.reshape(-1, 28, 28)
        return np.maximum.reduce([np.roll(x, (r, c), (1, 2)) for r in (-1, 0, 1) for c in (-1, 0, 1)])
    tr, te = data.load("train").take(200), data.load("test").take(50)
    np.savez(path, train_images=bold(tr), train_labels=tr.labels, test_images=bold(te), test_labels=te.labels)
    r = run("train", "-c", "up5k", "--dataset", str(path), "--calibrate", "--train-samples", "20",
            "--test-samples", "10", "--out", str(tmp_path / "run"), "--quiet")
    assert r.returncode == 0, r.stderr
    assert "input_shift 11 calibrated on bright (configured: 10)" in r.stdout
    ck = ckpt.load(tmp_path / "run" / "last.npz")
    assert ck.config.input_shift == 11 and ck.meta["dataset"] == str(path)
    r = run("evaluate", str(tmp_path / "run" / "last.npz"), "--dataset", str(path))
    assert r.returncode == 0 and "50 bright test images" in r.stdout, r.stderr
    r = run("train", "-c", "up5k", "--dataset", "cifar")
    assert r.returncode == 2 and "expected one of mnist, fashion-mnist or an .npz file" in r.stderr


def test_evaluate_takes_a_shipped_checkpoint_by_name_on_its_own_data_set():
    r = run("evaluate", "conv_mnist", "--images", "50")
    assert r.returncode == 0, r.stderr
    assert "conv_mnist.npz: configuration 'conv_fashion_fine' (int), 50 mnist test images" in r.stdout
    assert float(r.stdout.split("accuracy ")[1].split("%")[0]) > 95
