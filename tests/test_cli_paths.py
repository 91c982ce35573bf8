"""Paths the CLI is given: output files and folders are checked before any work starts, and a
serial port that is not one is refused in one line."""

import subprocess
import sys

import pytest


def run(*args):
    return subprocess.run([sys.executable, "-m", "eqfpga.cli", *args], capture_output=True, text=True)


def one_line_error(r, *words):
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("eqfpga: error: "), r.stderr
    for w in words:
        assert w in r.stderr


@pytest.fixture
def a_file(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("keep me\n")
    return f


def test_json_at_a_folder_is_refused_before_the_work(tmp_path):
    r = run("evaluate", "--images", "5", "--json", str(tmp_path))
    one_line_error(r, "--json", "is a folder")
    assert "accuracy" not in r.stdout


def test_json_below_a_file_is_refused_before_the_work(a_file):
    r = run("simulate", "--images", "1", "--quiet", "--json", str(a_file / "s.json"))
    one_line_error(r, "--json", "is a file, not a folder")
    assert r.stdout == "" and a_file.read_text() == "keep me\n"


def test_vcd_below_a_file_is_refused_before_the_simulation(a_file):
    r = run("simulate", "--images", "1", "--quiet", "--vcd", str(a_file / "dir" / "x.vcd"))
    one_line_error(r, "--vcd", "is a file, not a folder")
    assert r.stdout == ""


@pytest.mark.parametrize("command", [["verilog", "--no-lint"], ["train", "--train-samples", "10"],
                                     ["build", "--board", "icebreaker"]])
def test_output_folder_at_an_existing_file_is_refused(command, a_file):
    r = run(*command, "--out", str(a_file))
    one_line_error(r, "--out", "is a file, not a folder")
    assert a_file.read_text() == "keep me\n"


def test_output_file_at_a_folder_is_refused(tmp_path):
    one_line_error(run("plot", "stdp", "-o", str(tmp_path)), "--out", "is a folder")


def test_json_folders_are_made(tmp_path):
    path = tmp_path / "a" / "b" / "info.json"
    assert run("info", "--json", str(path)).returncode == 0
    assert path.exists()


@pytest.mark.parametrize("port, words", [
    ("/dev/nonexistent", ["no such device"]),
    ("{tmp}", ["is a folder"]),
    ("{file}", ["is a file"]),
    ("/dev/null", ["not a serial port"]),
])
def test_a_port_that_is_not_a_serial_port_is_one_line(port, words, tmp_path, a_file):
    port = port.format(tmp=tmp_path, file=a_file)
    one_line_error(run("run", "--port", port, "--images", "1", "--quiet"), "cannot open", port, *words)
    one_line_error(run("train", "--on-chip", "--port", port, "--train-samples", "1",
                       "--test-samples", "1", "--quiet", "--out", str(tmp_path / "o")),
                   "cannot open", port, *words)
