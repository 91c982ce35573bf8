"""The ``eqfpga`` command line. Every command has ``--help``; figures also go to ``--json``."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from eqfpga import __version__


class UserError(Exception):
    """A mistake the user can fix; printed as one line, exit status 2."""


def _write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2) + "\n")


def _check_output_file(option: str, path) -> None:
    """Refuse, before any work, an output file that could not be written at the end (its
    folder may be missing: it is made when the file is written). Nothing is created here."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{option} {p}: is a folder, not a file")
    if p.exists():
        if not os.access(p, os.W_OK):
            raise UserError(f"{option} {p}: cannot be written (permission denied or read-only)")
        return
    _check_can_make(option, p, p.parent)


def _check_output_folder(option: str, path) -> None:
    """Refuse, before any work, an output folder that is a file or cannot be made or written."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{option} {p}: is a file, not a folder")
    _check_can_make(option, p, p)


def _check_can_make(option: str, path: Path, folder: Path) -> None:
    """``folder`` exists and is writable, or can be made below its nearest existing folder."""
    for above in (folder, *folder.parents):
        if above.exists():
            if not above.is_dir():
                raise UserError(f"{option} {path}: {above} is a file, not a folder")
            if not os.access(above, os.W_OK | os.X_OK):
                raise UserError(f"{option} {path}: the folder {above} cannot be written "
                                f"(permission denied or read-only)")
            return


#: Per command, its options that name an output folder (all others that are checked are files).
_OUTPUT_FOLDERS = {"train": ("out",), "verilog": ("out",), "build": ("out",)}
_OUTPUT_FILES = ("json", "vcd", "fst", "pty_file")


def _check_outputs(a) -> None:
    """Every output path of command ``a`` can be written: checked before the work starts."""
    folders = _OUTPUT_FOLDERS.get(a.command, ())
    for dest in (*_OUTPUT_FILES, "out"):
        value = getattr(a, dest, None)
        if value is None:
            continue
        option = "--" + dest.replace("_", "-")
        if dest in folders:
            _check_output_folder(option, value)
        else:
            _check_output_file(option, value)


def _check_port(port: str) -> None:
    """A serial port given as a path must be a terminal device (pyserial URLs pass as they are)."""
    import stat
    if "://" in port:
        return
    try:
        mode = Path(port).stat().st_mode
    except FileNotFoundError:
        raise UserError(f"cannot open the port {port}: no such device") from None
    except OSError as e:
        raise UserError(f"cannot open the port {port}: {e.strerror or e}") from None
    if stat.S_ISDIR(mode):
        raise UserError(f"cannot open the port {port}: it is a folder, not a serial port")
    if not stat.S_ISCHR(mode):
        raise UserError(f"cannot open the port {port}: it is a file, not a serial port")
    try:
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as e:
        raise UserError(f"cannot open the port {port}: {e.strerror or e}") from None
    try:
        if not os.isatty(fd):
            raise UserError(f"cannot open the port {port}: it is a device but not a serial port")
    finally:
        os.close(fd)


def count(minimum: int):
    """An argparse ``type`` for a count option: a whole number of at least ``minimum``, else
    argparse's usage error (exit status 2) naming the option, before any work starts."""
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {n}")
        return n
    parse.__name__ = f"count >= {minimum}"
    return parse


#: Counts of things (epochs, samples, images, lanes, processes, baud) and indices (``--first``).
positive_int, non_negative_int = count(1), count(0)


def dataset_arg(value: str) -> str:
    from eqfpga.data import DATASETS, is_npz
    if value in DATASETS or is_npz(value):
        return value
    raise argparse.ArgumentTypeError(f"{value!r}: expected one of {', '.join(DATASETS)} or an .npz file")


def _config_arg(p: argparse.ArgumentParser, default: str | None = "up5k") -> None:
    p.add_argument("--config", "-c", default=default,
                   help="shipped configuration name or TOML path (default: %(default)s)")


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", type=dataset_arg, default=None, metavar="{mnist,fashion-mnist,PATH.npz}",
                   help="mnist, fashion-mnist, or an .npz with train_images, train_labels, test_images, "
                        "test_labels (default: fashion-mnist for a configuration named for it, else mnist)")
    p.add_argument("--data", type=Path, default=None,
                   help="folder of the IDX .gz files (default: MNIST shipped with eqfpga)")


def cmd_info(a) -> dict:
    from eqfpga.config import load_config
    c = load_config(a.config)
    widths = {k: {"bits": w.bits, "signed": w.signed, "lo": w.lo, "hi": w.hi}
              for k, w in c.widths.items()}
    weight_bytes = sum(math.prod(ly.weight_shape) for ly in c.geometry) * c.weight_bits / 8
    print(f"eqfpga {__version__}  configuration {c.name!r}  model hash {c.model_hash[:16]}")
    if c.description:
        print(f"  {c.description}")
    crop = f" ({c.image_side}x{c.image_side} images, {c.crop}-pixel border dropped)" if c.crop else ""
    net = "-".join(map(str, (c.inputs, *c.hidden_sizes, c.outputs))) if c.is_dense else c.describe_layers()
    print(f"  network {net}{crop}, {c.weight_bits}-bit weights "
          f"({weight_bytes / 1024:.1f} KiB), phases free {c.free_steps} / nudged {c.nudge_steps} steps")
    print(f"  {'quantity':<16}{'bits':>5}  {'signed':<7}{'worst-case range'}")
    for k, w in c.widths.items():
        print(f"  {k:<16}{w.bits:>5}  {'yes' if w.signed else 'no':<7}[{w.lo}, {w.hi}]")
    return {"version": __version__, "config": c.to_dict(), "model_hash": c.model_hash,
            "weight_bytes": weight_bytes, "widths": widths}


def _training_images(c, dataset, data_dir):
    from eqfpga import data, trainer
    from eqfpga.run_folder import RunError
    try:
        return trainer.network_split(c, data.load("train", dataset, data_dir), data.dataset_name(dataset)).images
    except RunError as e:
        raise UserError(str(e)) from None


def _calibrated(c, dataset, data_dir):
    from eqfpga import calibrate, data
    tuned = calibrate.calibrated(c, _training_images(c, dataset, data_dir), data.dataset_name(dataset))
    print(f"input_shift {tuned.input_shift} calibrated on {data.dataset_name(dataset)} "
          f"(configured: {c.input_shift})")
    return tuned


def cmd_calibrate(a) -> dict:
    from eqfpga import calibrate, data, trainer
    from eqfpga.config import config_to_toml, load_config
    if a.out and Path(a.out).exists():
        raise UserError(f"--out {a.out}: exists; calibrate writes a new configuration file")
    c = load_config(a.config)
    dataset, data_dir = trainer.run_data(c, a.dataset, a.data)
    name = data.dataset_name(dataset)
    images = _training_images(c, dataset, data_dir)
    drive = calibrate.ink_drive(c, images)
    tuned = calibrate.calibrated(c, images, name)
    print(f"configuration {c.name!r} on {name}: ink drive 2^{math.log2(drive / c.one):.2f} rates before the "
          f"shift; input_shift {tuned.input_shift} (configured: {c.input_shift})")
    if a.out:
        from dataclasses import replace

        from eqfpga.checkpoint import write_atomically
        tuned = replace(tuned, name=a.name or f"{c.name}-{name}")
        write_atomically(a.out, config_to_toml(tuned).encode())
        print(f"calibrated configuration {tuned.name!r}: {a.out}  (train it: eqfpga train -c {a.out} "
              f"--dataset {dataset})")
    return {"config": c.name, "dataset": name, "ink_drive_log2": math.log2(drive / c.one),
            "input_shift": tuned.input_shift, "configured_input_shift": c.input_shift,
            "out": str(a.out) if a.out else None}


#: Training images of MNIST and Fashion-MNIST: what ``train --json`` extrapolates a full epoch to.
FULL_EPOCH = 60_000


def cmd_train(a) -> dict:
    from dataclasses import replace

    from eqfpga import trainer
    from eqfpga.checkpoint import CheckpointError
    from eqfpga.config import ConfigError, load_config, with_overrides
    from eqfpga.run_folder import RunError
    c = load_config(a.config)
    try:
        c = with_overrides(c, a.set)
    except ConfigError as e:
        raise UserError(str(e)) from None
    if a.batch_size is not None and a.batch_size != c.batch_size:
        if c.update_order == "hardware":
            raise UserError(f"--batch-size {a.batch_size}: configuration {c.name!r} trains per sample, as the "
                            f"chip does (update_order 'hardware'); batches need --set 'update_order=\"tensor\"'")
        try:
            c = replace(c, batch_size=a.batch_size)
        except ConfigError as e:
            raise UserError(f"--batch-size {a.batch_size}: {e}") from None
    if a.resume and a.force:
        raise UserError("--resume continues the run in OUT, --force starts it over: give one")
    dataset, data_dir = trainer.run_data(c, a.dataset, a.data)
    if a.calibrate:
        if a.resume or a.branch_from:
            raise UserError("--calibrate chooses a new run's input scaling: not with --resume or --branch-from")
        c = _calibrated(c, dataset, data_dir)
    if a.on_chip:
        if a.force or a.mode != "int" or a.branch_from or a.max_minutes:
            raise UserError("--force, --mode, --branch-from and --max-minutes are not available with --on-chip")
        return _train_on_chip(a, c, dataset, data_dir)
    if a.port or a.sim:
        raise UserError("--sim and --port train on the chip: add --on-chip")
    if a.resume and a.branch_from:
        raise UserError("--resume continues a run, --branch-from starts a new one: give one")
    out = a.out or Path("runs") / (c.name if a.mode == "int" else f"{c.name}-{a.mode}")
    try:
        ck = trainer.fit(c, out, a.epochs, mode=a.mode, resume=a.resume, force=a.force, dataset=dataset,
                         data_dir=data_dir, train_samples=a.train_samples, test_samples=a.test_samples,
                         checkpoint_every=a.checkpoint_every, branch_from=a.branch_from,
                         max_seconds=None if a.max_minutes is None else 60 * a.max_minutes,
                         progress=not a.quiet)
    except (CheckpointError, RunError) as e:
        raise UserError(str(e)) from None
    except KeyboardInterrupt:   # before training started (while training, fit saves and returns)
        raise SystemExit(130)
    result = {"config": c.name, "mode": a.mode, "dataset": dataset, "batch_size": c.batch_size,
              "checkpoint": str(out / "last.npz"), "epochs_done": ck.epoch, "position": ck.position,
              "stopped": ck.epoch < a.epochs, "history": ck.history}
    if ck.history:
        h = ck.history[-1]
        ms = h.get("ms_per_sample")
        if ms is not None:
            result["ms_per_sample"] = ms
            result["full_epoch_minutes"] = ms * FULL_EPOCH / 6e4
            if h.get("train_samples", FULL_EPOCH) < FULL_EPOCH:
                print(f"{ms:.1f} ms per training sample: a {FULL_EPOCH:,}-sample epoch takes "
                      f"{result['full_epoch_minutes']:.0f} min on this machine")
    print(f"checkpoint: {out / 'last.npz'}   curves: {out / 'training.png'}")
    return result


def _train_on_chip(a, c, dataset: str, data_dir) -> dict:
    from eqfpga.boards.host import HostError
    from eqfpga.sim.train_on_chip import train_on_chip
    if a.resume:
        raise UserError("--resume is not available with --on-chip yet")
    if a.port:
        _check_port(a.port)
    if not a.port and c.hidden % a.lanes:   # a board says its lanes in its INFO reply
        raise UserError(f"--lanes {a.lanes}: the hidden size {c.hidden} must be a multiple of lanes")
    out = a.out or Path("runs") / f"{c.name}-on-chip"
    try:
        result = train_on_chip(c, out, a.epochs, sim=a.sim or "verilator", port=a.port, lanes=a.lanes,
                               train_samples=a.train_samples, test_samples=a.test_samples,
                               dataset=dataset, data_dir=data_dir, check=not a.no_check,
                               progress=not a.quiet)
    except HostError as e:
        raise UserError(str(e)) from None
    except KeyboardInterrupt:
        raise SystemExit(130)
    for e in result["history"]:
        check = ""
        if "weights_equal_golden" in e:
            check = (", weights, LFSRs and predictions equal golden" if e["weights_equal_golden"]
                     and e["streams_equal_golden"] and e["predictions_equal_golden"]
                     else f", MISMATCH with golden: {e['differences']} parameter(s) differ")
        print(f"epoch {e['epoch']}: {e['samples']} samples in {e['seconds']:.0f} s "
              f"({e['samples_per_second']:.0f} samples/s), test accuracy {e['test_accuracy']:.2%}{check}")
    print(f"checkpoint: {result['checkpoint']}")
    if any(not e.get("weights_equal_golden", True) or not e.get("streams_equal_golden", True)
           or not e.get("predictions_equal_golden", True) for e in result["history"]):
        _write_json(a.json, result)
        raise SystemExit(1)
    return result


def cmd_evaluate(a) -> dict:
    import numpy as np
    from eqfpga import checkpoint, data, trainer
    from eqfpga.run_folder import RunError
    from eqfpga.golden import network
    path = checkpoint.resolve(a.checkpoint)
    ck = checkpoint.load(path)
    # a checkpoint knows the data set it was trained on
    dataset, data_dir = trainer.run_data(ck.config, a.dataset or ck.meta.get("dataset"), a.data)
    test = data.load("test", dataset, data_dir)
    if a.images is not None and a.images > len(test):
        raise UserError(f"--images {a.images}: the {dataset} test set has {len(test)} images")
    test = test.take(a.images)
    try:
        images = trainer.network_split(ck.config, test, data.dataset_name(dataset)).images
    except RunError as e:
        raise UserError(f"{path}: {e}") from None
    spikes = None
    if ck.mode == "int":
        pred, counts = network.predict(images, ck.params, ck.config)
        correct = int(np.sum(pred == test.labels))
        spikes = float(counts.sum(axis=1).mean()) if len(counts) else 0.0
    else:
        correct = int(round(trainer.evaluate(ck, images, test.labels) * len(test)))
    acc = correct / len(test)
    print(f"{path}: configuration {ck.config.name!r} ({ck.mode}), {len(test)} {data.dataset_name(dataset)} test images: "
          f"accuracy {acc:.2%} ({correct}/{len(test)}), error {1 - acc:.2%}")
    return {"checkpoint": str(path), "config": ck.config.name, "mode": ck.mode, "dataset": dataset,
            "images": len(test), "correct": correct, "accuracy": acc, "mean_output_spikes": spikes}


def _checkpoint(a):
    """The checkpoint of ``a.weights`` (default: shipped), checked against ``a.config`` if given."""
    from eqfpga import checkpoint
    from eqfpga.config import load_config
    config = load_config(a.config) if getattr(a, "config", None) else None
    ck = checkpoint.load(checkpoint.resolve(a.weights), config)
    lanes = getattr(a, "lanes", None)
    if lanes is not None and (lanes < 1 or ck.config.hidden % lanes):
        raise UserError(f"--lanes {lanes}: the hidden size {ck.config.hidden} must be a "
                        f"multiple of lanes")
    return ck


def _test_images(c, a):
    """Test images for configuration ``c`` (downsampled when it takes fewer than 28x28 inputs)."""
    from eqfpga import data
    test = data.load("test", a.dataset, a.data)
    if a.first < 0 or a.first >= len(test):
        raise UserError(f"--first {a.first} is outside the {len(test)} test images")
    images, labels = test.images[a.first:], test.labels[a.first:]
    if a.images is not None:
        if a.images < 1:
            raise UserError(f"--images must be at least 1, not {a.images}")
        if a.images > len(images):
            raise UserError(f"--images {a.images} from --first {a.first}: the {a.dataset} test set "
                            f"has {len(test)} images")
        images, labels = images[:a.images], labels[:a.images]
    try:
        images = data.images_for(data.Split(images, labels, test.shape), c.input_shape, c.outputs,
                                 f"configuration {c.name!r}", data.dataset_name(a.dataset))
    except data.DataError as e:
        raise UserError(str(e)) from None
    return images, labels.astype(int)


def cmd_verilog(a) -> dict:
    from eqfpga.hw import verilog
    ck = _checkpoint(a)
    params = None if a.no_weights else ck.params
    path = verilog.generate(ck.config, a.out, params=params, streams=ck.streams, lanes=a.lanes)
    result = {"config": ck.config.name, "lanes": a.lanes, "verilog": str(path),
              "weights": "port" if a.no_weights else "memory initialisation"}
    print(f"{path}: accelerator for {ck.config.name!r} (P={a.lanes}), weights by "
          f"{result['weights']}; waivers in {path.with_suffix('.vlt')}")
    verilog.waiver_file(path.with_suffix(".vlt"), path.name)
    if not a.no_lint:
        warnings = verilog.lint(path)
        result["lint_warnings"] = warnings
        if warnings:
            for w in warnings[:20]:
                print(w, file=sys.stderr)
            raise UserError(f"verilator --lint-only -Wall: {len(warnings)} warning(s) in {path}")
        print("verilator --lint-only -Wall: clean")
    return result


def cmd_simulate(a) -> dict:
    from eqfpga.sim import simulate
    ck = _checkpoint(a)
    images, labels = _test_images(ck.config, a)
    if a.jobs < 1:
        raise UserError(f"--jobs must be at least 1, not {a.jobs}")
    if a.sim == "amaranth" and a.fst:
        raise UserError("Amaranth's simulator writes VCD only: use --vcd")
    bar = None
    if not a.quiet:
        from tqdm import tqdm
        bar = tqdm(total=len(images), desc=f"simulate ({a.sim})", unit="image", mininterval=1)
    try:
        report = simulate.simulate(ck, images, labels, sim=a.sim, lanes=a.lanes, jobs=a.jobs,
                                   clock_hz=a.clock_mhz * 1e6, vcd=a.vcd, fst=a.fst,
                                   progress=bar, first_index=a.first)
    finally:
        if bar is not None:
            bar.close()
    report["checkpoint"] = str(a.weights or "shipped")
    print(simulate.format_report(report))
    if report["mismatches"]:
        _write_json(a.json, report)
        raise SystemExit(1)
    return report


def cmd_build(a) -> dict:
    from eqfpga.boards import build, targets
    board = targets.get_board(a.board)
    cycles = None if a.no_cycles else build.measured_cycles(board)
    out = a.out or Path("build/boards") / board.name
    try:
        report = build.build(board, out, cycles=cycles)
    except targets.BoardError:
        path = Path(out) / "build_report.json"
        if path.exists():
            print(build.format_report(json.loads(path.read_text())))
            _write_json(a.json, json.loads(path.read_text()))
        raise
    print(build.format_report(report))
    return report


def cmd_flash(a) -> dict:
    from eqfpga.boards import flash, targets
    board = targets.get_board(a.board)
    cmd = flash.flash(board, a.build_dir or Path("build/boards") / board.name)
    print(f"programmed {board.name}: {' '.join(cmd)}")
    return {"board": board.name, "command": cmd}


def cmd_virtual_board(a) -> dict:
    from eqfpga.boards import targets, virtual
    import signal

    board = targets.get_board(a.board)

    def stop(signum, frame):
        raise KeyboardInterrupt
    # The board is taken down however this process ends: Ctrl-C, SIGTERM, a closed terminal
    # (SIGHUP), an error; SIGKILL is covered by the child's parent-death signal.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    proc, pty = virtual.start(board)
    try:
        if a.pty_file:
            Path(a.pty_file).parent.mkdir(parents=True, exist_ok=True)
            Path(a.pty_file).write_text(pty + "\n")
        print(f"virtual {board.name} on {pty} (eqfpga run --port {pty}); Ctrl-C stops it",
              flush=True)
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        virtual.stop(proc)
    return {"board": board.name, "pty": pty}


def cmd_run(a) -> dict:
    import time

    import numpy as np

    from eqfpga.boards.host import Host, HostError, open_port
    from eqfpga.golden import network
    ck = _checkpoint(a)
    c = ck.config
    images, labels = _test_images(c, a)
    _check_port(a.port)
    try:
        host = Host(open_port(a.port, a.baud), timeout=a.timeout)
        info = host.identify()
        host.check(c)
        progress = _bar(not a.quiet)
        if not a.no_load:
            from eqfpga.golden.host_link import Geometry, param_entries, write_payloads
            n = len(write_payloads(Geometry(c, info.lanes), param_entries(Geometry(c, info.lanes), ck.params)))
            with progress(total=n, desc="load weights", unit="frame") as bar:
                host.load(c, ck.params, progress=bar)
        pred, counts = np.zeros(len(images), np.int64), np.zeros((len(images), c.outputs), np.int64)
        t0 = time.perf_counter()
        with progress(total=len(images), desc="classify", unit="image") as bar:
            for i, img in enumerate(images):
                pred[i], counts[i] = host.classify(img, c.outputs)
                bar.update(1)
        seconds = time.perf_counter() - t0
    except HostError as e:
        raise UserError(str(e)) from None
    want, want_counts = network.predict(images, ck.params, c)
    bad = [int(a.first + i) for i in np.flatnonzero((pred != want) | (counts != want_counts).any(axis=1))]
    report = {"port": a.port, "config": c.name, "lanes": info.lanes, "images": len(images),
              "accuracy": float(np.mean(pred == labels)), "golden_accuracy": float(np.mean(want == labels)),
              "agreement": 1 - len(bad) / len(images), "mismatches": bad,
              "images_per_second": len(images) / seconds}
    print(f"{len(images)} images on {a.port} ({c.name}, P={info.lanes}): accuracy "
          f"{report['accuracy']:.2%} (golden {report['golden_accuracy']:.2%}), agreement with golden "
          f"{report['agreement']:.2%}{'' if not bad else ' MISMATCH on image(s) ' + ', '.join(map(str, bad[:20]))}"
          f", {report['images_per_second']:.1f} images/s over the link")
    if bad:
        _write_json(a.json, report)
        raise SystemExit(1)
    return report


def cmd_plot(a) -> dict:
    from eqfpga import data
    from eqfpga.sim import stdp
    ck = _checkpoint(a)
    c = ck.config
    if a.samples < 1:
        raise UserError(f"--samples must be at least 1, not {a.samples}")
    split = data.load("train", a.dataset, a.data)
    if a.first + a.samples > len(split):
        raise UserError(f"--first {a.first} --samples {a.samples}: the {a.dataset} training set has "
                        f"{len(split)} images")
    x, y = split.images[a.first:a.first + a.samples], split.labels[a.first:a.first + a.samples].astype(int)
    print(f"training {len(x)} samples on the accelerator in Verilator, spikes recorded ...", flush=True)
    dt, dw = stdp.stdp_pairs(c, ck.params, ck.streams, x, y, lanes=a.lanes)
    curve = stdp.plot_stdp(dt, dw, a.out, f"W2 update vs spike timing ({c.name}, {len(x)} samples)")
    print(f"{len(dt):,} pre/post spike pairs -> {a.out}")
    return {"plot": str(a.out), "samples": len(x), "pairs": int(len(dt)), "curve": curve}


def _bar(enabled: bool):
    from contextlib import nullcontext

    from tqdm import tqdm

    class Quiet:
        def update(self, n=1):
            pass

    def make(**kw):
        return tqdm(mininterval=1, **kw) if enabled else nullcontext(Quiet())
    return make


def build_parser() -> argparse.ArgumentParser:
    from eqfpga.checkpoint import MODES as TRAINING_MODES

    ap = argparse.ArgumentParser(prog="eqfpga", description=(
        "FPGA generator for spiking neural networks that learn on the chip with "
        "Equilibrium Propagation."))
    ap.add_argument("--version", action="version", version=f"eqfpga {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="show a configuration, its formats and worst-case widths")
    _config_arg(p)
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("calibrate", help="the input_shift that scales a data set's ink to the drive the "
                                         "shipped configurations were tuned to (and a configuration using it)")
    _config_arg(p)
    _data_args(p)
    p.add_argument("--out", "-o", type=Path, default=None,
                   help="write the calibrated configuration as TOML here (a new file)")
    p.add_argument("--name", default=None, help="its name (default: CONFIG-DATASET)")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("train", help="train any network: the integer golden model (per sample, as the chip does, or in batches), a float reference, or on the chip")
    _config_arg(p)
    _data_args(p)
    p.add_argument("--epochs", type=positive_int, default=1,
                   help="epochs the run has when done, counted from its start (default: %(default)s)")
    p.add_argument("--out", type=Path, default=None,
                   help="run folder (default: runs/CONFIG, runs/CONFIG-MODE for a float mode)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/last.npz (same --dataset and sample counts)")
    p.add_argument("--force", action="store_true",
                   help="start a new run in OUT even if it holds one (its files are deleted)")
    p.add_argument("--train-samples", type=positive_int, default=None, help="use the first N training images")
    p.add_argument("--test-samples", type=positive_int, default=None, help="evaluate on the first N test images")
    p.add_argument("--checkpoint-every", type=positive_int, default=2000, metavar="N")
    p.add_argument("--mode", choices=TRAINING_MODES, default="int",
                   help="the integer golden model (what the chip computes), or the float rate or "
                        "spiking reference (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                   help="samples per update, where the configuration allows batches (update_order "
                        "tensor); 1 is what the chip does (default: the configuration's)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="change configuration fields (JSON values: leak_shift=1 'w_shifts=[15,15,14,13]')")
    p.add_argument("--calibrate", action="store_true",
                   help="first set input_shift from the training images (as 'eqfpga calibrate'); the "
                        "checkpoints record the configuration used")
    p.add_argument("--branch-from", type=Path, default=None, metavar="CK",
                   help="start from the end of an epoch of another run (its last.npz or epochNNN.npz): "
                        "a new schedule, phases or mode for trained weights")
    p.add_argument("--max-minutes", type=float, default=None, metavar="M",
                   help="stop with a checkpoint after M minutes of training (continue with --resume)")
    p.add_argument("--on-chip", action="store_true",
                   help="train on the accelerator (--sim verilator, or --port P for a board) "
                        "and check every weight against golden")
    p.add_argument("--sim", choices=["verilator"], default=None, help="with --on-chip (default)")
    p.add_argument("--port", default=None, help="with --on-chip: a board's (or virtual board's) serial port")
    p.add_argument("--lanes", type=positive_int, default=8,
                   help="with --on-chip --sim: accelerator lanes (a board's come from its INFO reply)")
    p.add_argument("--no-check", action="store_true", help="with --on-chip: skip the golden comparison")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", metavar="PATH",
                   help="also write the figures as JSON (with the time per sample and a full epoch's minutes)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="test accuracy of a checkpoint (default: the shipped one)")
    p.add_argument("checkpoint", nargs="?", default=None,
                   help="a checkpoint file, or a shipped one by name: up5k (default), conv_mnist")
    _data_args(p)
    p.add_argument("--images", type=positive_int, default=None, help="only the first N test images")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.set_defaults(func=cmd_evaluate)

    import os

    from eqfpga.hw.verilog import DEFAULT_LANES

    def hardware_args(p):
        _config_arg(p, default=None)
        p.add_argument("--weights", "-w", type=Path, default=None,
                       help="checkpoint (default: the shipped trained network)")
        p.add_argument("--lanes", type=positive_int, default=DEFAULT_LANES,
                       help="weights per cycle, a divisor of the hidden size (default: %(default)s)")

    p = sub.add_parser("verilog", help="write the accelerator's Verilog and lint it with Verilator")
    hardware_args(p)
    p.add_argument("-o", "--out", type=Path, default=Path("build/verilog"), help="output folder")
    p.add_argument("--no-weights", action="store_true",
                   help="memories start at zero; load weights through the host port")
    p.add_argument("--no-lint", action="store_true", help="skip verilator --lint-only -Wall")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.set_defaults(func=cmd_verilog)

    p = sub.add_parser("simulate", help="run the hardware cycle-accurately on test images, "
                                        "compared image by image with the golden model")
    hardware_args(p)
    _data_args(p)
    p.add_argument("--images", type=positive_int, default=None, help="only N test images (default: all)")
    p.add_argument("--first", type=non_negative_int, default=0, help="index of the first test image")
    p.add_argument("--sim", choices=["verilator", "amaranth"], default="verilator",
                   help="simulator (Amaranth's is slow: a few images)")
    p.add_argument("--jobs", "-j", type=positive_int, default=os.cpu_count() or 1,
                   help="parallel simulation processes (default: %(default)s)")
    p.add_argument("--clock-mhz", type=float, default=30.0,
                   help="clock for the images/s figure (default: %(default)s)")
    p.add_argument("--vcd", metavar="PATH", help="waveform of the first mismatching (else first) image")
    p.add_argument("--fst", metavar="PATH", help="the same as FST (Verilator only)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.set_defaults(func=cmd_simulate)

    from eqfpga.boards.targets import BOARDS
    boards = ", ".join(sorted(BOARDS))

    p = sub.add_parser("build", help="bitstream for a board (YoWASP Yosys + nextpnr) and its report")
    p.add_argument("--board", "-b", required=True, help=f"one of: {boards}")
    p.add_argument("-o", "--out", type=Path, default=None, help="build folder (default: build/boards/BOARD)")
    p.add_argument("--no-cycles", action="store_true",
                   help="skip the simulation that turns Fmax into inferences/s")
    p.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("flash", help="program a board with its built bitstream")
    p.add_argument("--board", "-b", required=True, help=f"one of: {boards}")
    p.add_argument("--build-dir", type=Path, default=None, help="default: build/boards/BOARD")
    p.add_argument("--json", metavar="PATH", help="also write what was run as JSON")
    p.set_defaults(func=cmd_flash)

    p = sub.add_parser("virtual-board", help="a board top in Verilator behind a pseudo-terminal")
    p.add_argument("--board", "-b", default="icebreaker", help=f"one of: {boards}")
    p.add_argument("--pty-file", type=Path, default=None, help="also write the terminal's path here")
    p.set_defaults(func=cmd_virtual_board)

    p = sub.add_parser("run", help="classify test images on a board (or the virtual board) over "
                                   "its UART, compared with the golden model")
    p.add_argument("--port", "-p", required=True, help="serial port, e.g. /dev/ttyUSB1 or /dev/pts/3")
    p.add_argument("--baud", type=positive_int, default=115_200)
    p.add_argument("--weights", "-w", type=Path, default=None,
                   help="checkpoint (default: the shipped trained network)")
    _data_args(p)
    p.add_argument("--images", type=positive_int, default=100, help="test images (default: %(default)s)")
    p.add_argument("--first", type=non_negative_int, default=0, help="index of the first test image")
    p.add_argument("--no-load", action="store_true", help="the weights are already on the device")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for a reply")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("plot", help="plots from simulation: 'stdp' (weight change against "
                                    "pre/post spike timing)")
    p.add_argument("what", choices=["stdp"])
    p.add_argument("--weights", "-w", type=Path, default=None,
                   help="checkpoint to train from (default: the shipped trained network)")
    p.add_argument("--lanes", type=positive_int, default=DEFAULT_LANES)
    _data_args(p)
    p.add_argument("--samples", type=positive_int, default=20, help="training samples (default: %(default)s)")
    p.add_argument("--first", type=non_negative_int, default=0, help="index of the first training sample")
    p.add_argument("-o", "--out", type=Path, default=Path("stdp.png"), help="PNG (default: %(default)s)")
    p.add_argument("--json", metavar="PATH", help="also write the curve as JSON")
    p.set_defaults(func=cmd_plot)
    return ap


def main(argv: list[str] | None = None) -> int:
    from eqfpga.checkpoint import CheckpointError
    from eqfpga.config import ConfigError
    from eqfpga.data import DataError
    from eqfpga.boards.targets import BoardError
    from eqfpga.hw.verilog import ToolError

    args = build_parser().parse_args(argv)
    if getattr(args, "dataset", "") is None and args.func not in (cmd_train, cmd_evaluate):
        args.dataset = "mnist"      # train and evaluate choose from the configuration
    try:
        _check_outputs(args)
        result = args.func(args)
        _write_json(getattr(args, "json", None), result)
    except (UserError, ConfigError, DataError, CheckpointError, ToolError, BoardError) as e:
        print(f"eqfpga: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into e.g. `head`: not an error
        sys.stderr.close()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
