"""``eqfpga train --on-chip``: the accelerator trains itself, checked weight for weight.

Each epoch streams the training samples, in the golden trainer's order and with the epoch's
learning shifts, to the accelerator — in Verilator (``sim="verilator"``) or on a board or the
virtual board over its UART (``port``) — reads every parameter and LFSR position back, and
compares them with the golden model trained on the same samples. Test accuracy is that of
the read-back weights (the simulation has shown inference to be the golden model's).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from eqfpga import checkpoint, data, trainer
from eqfpga.config import Config
from eqfpga.golden import network, train

__all__ = ["train_on_chip"]


def _golden_epoch(c: Config, ck, x, y):
    from eqfpga.golden.ep_update import Streams
    p, st = ck.params.copy(), Streams(*ck.streams.as_list())
    rule = c.at_epoch(ck.epoch)
    preds = np.zeros(len(y), np.int64)
    for n in range(len(y)):
        preds[n] = train.train_sample(x[n], int(y[n]), p, rule, st).prediction
    return p, st, preds


def _verilator_epoch(c, ck, x, y, lanes, bar):
    from eqfpga.sim import verilator
    b = verilator.build(c, lanes)
    hw = verilator.run(b, x, ck.params, streams=ck.streams, labels=y, train=True,
                       read_back=True, shifts=c.at_epoch(ck.epoch), progress=bar)
    return hw.params, hw.streams, hw.prediction, hw.clock_cycles, float(hw.cycles.mean())


def _port_epoch(c, ck, x, y, port, bar):
    from eqfpga.boards.host import Host, open_port
    from eqfpga.golden import lfsr
    from eqfpga.golden.ep_update import Streams
    host = Host(open_port(port))
    host.load(c, ck.params, ck.streams)
    rule = c.at_epoch(ck.epoch)
    host.set_shifts(rule.w1_shift, rule.w2_shift, rule.b1_shift, rule.b2_shift)
    preds = np.zeros(len(y), np.int64)
    for n in range(len(y)):
        preds[n], _ = host.train(x[n], int(y[n]), c.outputs)
        if bar is not None:
            bar.update(1)
    params = host.read_params(c)
    states = [int.from_bytes(host.request(3, bytes([4, k, 0, 1])), "little") for k in range(4)]
    return params, Streams(*(lfsr.position_of(s & lfsr.PERIOD) for s in states)), preds, None, None


def _test_accuracy(te, params, c: Config) -> float:
    return float(np.mean(network.predict(te.images, params, c)[0] == te.labels))


def train_on_chip(c: Config, out: Path, epochs: int, *, sim: str = "verilator", port: str | None = None,
                  lanes: int = 8, train_samples: int | None = None, test_samples: int | None = None,
                  dataset: str = "mnist", data_dir=None, check: bool = True, progress: bool = True) -> dict:
    """Train ``epochs`` epochs on the accelerator; checkpoint after each into ``out/last.npz``."""
    from tqdm import tqdm
    out = Path(out)
    tr = data.load("train", dataset, data_dir).take(train_samples)
    te = data.load("test", dataset, data_dir).take(test_samples)
    ck = trainer.fresh(c)
    history = []
    for _ in range(epochs):
        xs, ys = trainer.epoch_samples(c, tr.images, tr.labels, ck.epoch)
        t0 = time.perf_counter()
        with tqdm(total=len(ys), desc=f"on-chip epoch {ck.epoch + 1} ({port or sim})",
                  unit="sample", mininterval=2, disable=not progress) as bar:
            if port:
                params, streams, preds, clock, cycles = _port_epoch(c, ck, xs, ys, port, bar)
            else:
                params, streams, preds, clock, cycles = _verilator_epoch(c, ck, xs, ys, lanes, bar)
        seconds = time.perf_counter() - t0
        entry = {"epoch": ck.epoch + 1, "samples": len(ys), "seconds": seconds,
                 "samples_per_second": len(ys) / seconds,
                 "train_accuracy": float(np.mean(preds == ys)),
                 "cycles_per_sample": cycles, "clock_cycles": clock}
        if check:
            g_params, g_streams, g_preds = _golden_epoch(c, ck, xs, ys)
            diff = params.differences(g_params)
            entry.update({"weights_equal_golden": not diff, "differences": len(diff),
                          "first_differences": [list(map(str, d)) for d in diff[:10]],
                          "streams_equal_golden": streams == g_streams,
                          "predictions_equal_golden": bool((preds == g_preds).all()),
                          "golden_test_accuracy": _test_accuracy(te, g_params, c)})
        entry["test_accuracy"] = _test_accuracy(te, params, c)
        history.append(entry)
        ck = checkpoint.Checkpoint(c, params, streams, epoch=ck.epoch + 1, position=0,
                                   samples_seen=ck.samples_seen + len(ys), history=history,
                                   meta={"trained": f"on chip ({port or sim})"})
        checkpoint.save(ck, out / "last.npz")
    return {"config": c.name, "checkpoint": str(out / "last.npz"), "history": history}
