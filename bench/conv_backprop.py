"""What the convolutional EP architecture reaches when backprop trains it: the reference for EP's gap.

The network of a conv configuration without its feedback, one feed-forward pass
(:func:`eqfpga.golden.conv_float.feedforward`, the same layers, pooling, clipped rates and
initial weights), trained on ``1/2 ||r_L - t||^2`` with exact gradients. Optimisers:

- ``ep-sgd``: plain SGD with EP's own per-layer step sizes
  (:func:`~eqfpga.golden.conv_float.step_sizes`), batch size and schedule: what EP would
  reach if its estimate were the exact gradient of this network;
- ``adam``: Adam (``--lr``), a well-tuned optimiser's reference.

``--train-layers 3,4`` trains only those weight layers (1-based) and keeps the rest at their
random initial values: ``3,4`` shows what fixed random convolutions allow. By default the
output error passes the output clip unchanged, as EP's nudge does (``--mask-output``
differentiates the clip there too). ``--loss ce`` trains a softmax cross-entropy read-out of the
output pre-activations instead (outside EP's energy, to see whether the loss limits the
network), and ``--pad N`` zero-pads the images by ``N`` pixels on every side (the configuration's
``input_pad``, as ``--set input_pad=N``: with ``N = kernel // 2`` the first convolution's output
keeps the image's size, as a 'same' convolution would, and every later map grows with it).
A Fashion-MNIST epoch takes about 15 s (16/32 channels,
one core), some 40 times less than an EP epoch.

``--network recurrent`` trains EP's own network instead, feedback included: its ``--steps``
free steps (default: the config's ``free_steps``) differentiated through time
(:func:`~eqfpga.golden.conv_float.bptt_grad`), test accuracy from the same free phase. It is the
exact-gradient twin of an EP run (the same dynamics, inference and step sizes), at about the
cost of an EP epoch with 32 steps and twice that with 64. ``--cross-check`` also tests each
epoch's weights in the other network: what feed-forward training is worth to the recurrent
network EP trains, and the reverse.

    python bench/conv_backprop.py --config conv_fashion --epochs 10 --optimizer adam
    python bench/conv_backprop.py --config conv_fashion --epochs 10 --optimizer ep-sgd
    python bench/conv_backprop.py --config conv_fashion --epochs 10 --train-layers 3,4
    python bench/conv_backprop.py --config conv_fashion --set 'conv_channels=[32,64]'
    python bench/conv_backprop.py --config conv_fashion --optimizer ep-sgd --pad 2 --loss ce
    python bench/conv_backprop.py --config conv_mnist --optimizer ep-sgd --network recurrent --steps 32 --cross-check

Prints per-epoch train/test accuracy and writes ``--json`` (default
``bench/results/conv_backprop_<config>_<optimizer>[_<tag>].json``) and, after every epoch, a
float conv checkpoint beside it as ``.npz`` (:func:`eqfpga.checkpoint.save`: the weights,
history and Adam's moments, checksummed); ``--resume`` with the same options continues a
stopped run from its last completed epoch, to the weights an uninterrupted run would have.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eqfpga import checkpoint, trainer
from eqfpga import data
from eqfpga.checkpoint import write_atomically
from eqfpga.config import ConfigError
from eqfpga.config import Config, load_config, with_overrides
from eqfpga.golden import network, conv_float as cf

RESULTS = Path(__file__).resolve().parent / "results"
OPTIMIZERS = ("adam", "ep-sgd")
NETWORKS = ("ff", "recurrent")


class Adam:
    def __init__(self, params: list, lr: float, b1=0.9, b2=0.999, eps=1e-8):
        self.lr, self.b1, self.b2, self.eps, self.t = lr, b1, b2, eps, 0
        self.m = [np.zeros_like(a) for a in params]
        self.v = [np.zeros_like(a) for a in params]

    def state(self) -> dict:
        """The moments and step count, as arrays for a checkpoint's ``extra``."""
        return ({f"m{j}": a for j, a in enumerate(self.m)} | {f"v{j}": a for j, a in enumerate(self.v)}
                | {"t": np.array(self.t)})

    def restore(self, state: dict) -> None:
        self.m = [state[f"m{j}"] for j in range(len(self.m))]
        self.v = [state[f"v{j}"] for j in range(len(self.v))]
        self.t = int(state["t"])

    def step(self, params: list, grads: list, trainable: list):
        self.t += 1
        for j, (a, g) in enumerate(zip(params, grads)):
            if not trainable[j]:
                continue
            self.m[j] = self.b1 * self.m[j] + (1 - self.b1) * g
            self.v[j] = self.b2 * self.v[j] + (1 - self.b2) * g * g
            mh = self.m[j] / (1 - self.b1 ** self.t)
            vh = self.v[j] / (1 - self.b2 ** self.t)
            a -= (self.lr * mh / (np.sqrt(vh) + self.eps)).astype(a.dtype)


def accuracy(split: data.Split, p: cf.FParams, c: Config, network="ff") -> float:
    test = cf.accuracy if network == "recurrent" else cf.feedforward_accuracy
    return test(split.images, split.labels, p, c)


@dataclass(frozen=True)
class Options:
    """How a run trains (everything but the configuration and the data)."""
    optimizer: str = "adam"
    lr: float = 1e-3                      # Adam's
    batch: int | None = None              # default: the config's (ep-sgd) or 32 (adam)
    train_layers: tuple | None = None     # 1-based weight layers to train; None: all
    mask_output: bool = False
    loss: str = "mse"
    network: str = "ff"
    cross_check: bool = False


def fresh(c: Config) -> checkpoint.Checkpoint:
    """A new run: the integer model's initial weights in float32, no epochs done."""
    return checkpoint.Checkpoint(c, cf.FParams.from_int(network.init_params(c), c, np.float32), [], mode="float")


def train(c: Config, train_set: data.Split, test_set: data.Split, epochs: int, o: Options,
          ck: checkpoint.Checkpoint | None = None, progress=True, log=print,
          on_epoch=None) -> checkpoint.Checkpoint:
    """Train to ``epochs`` completed epochs from the checkpoint ``ck`` (default: :func:`fresh`);
    ``on_epoch(ck)`` after each, with Adam's state in ``ck.extra``. A run continued from a saved
    checkpoint ends with the weights of an uninterrupted one."""
    from tqdm import tqdm

    ck = ck or fresh(c)
    p, L = ck.params, c.n_layers
    adam = Adam(p.w + p.b, o.lr) if o.optimizer == "adam" else None
    if adam and ck.extra:
        adam.restore(ck.extra)
    layers = set(range(1, L + 1) if o.train_layers is None else o.train_layers)
    trainable = [(j % L) + 1 in layers for j in range(2 * L)]
    batch = o.batch or (c.batch_size if o.optimizer == "ep-sgd" else 32)
    for epoch in range(ck.epoch, epochs):
        order = trainer.epoch_order(c, epoch, len(train_set))
        augmentation = trainer.epoch_augmentation(c, epoch, len(train_set))
        sw, sb = cf.step_sizes(c.at_epoch(epoch))
        rates = sw + sb
        correct, t0 = 0, time.perf_counter()
        for i in tqdm(range(0, len(order), batch), desc=f"{o.optimizer} epoch {epoch + 1}/{epochs}",
                      disable=not progress, mininterval=1.0):
            images, labels = trainer.batch_images(train_set, order, augmentation, i, batch)
            x = cf.float_input(images, c, np.float32)
            if o.network == "recurrent":
                gw, gb, _, pred = cf.bptt_grad(x, labels, p, c, c.free_steps, o.mask_output)
            else:
                gw, gb, _, pred = cf.feedforward_grad(x, labels, p, c, o.mask_output, o.loss)
            correct += int(np.sum(pred == labels))
            params, grads = p.w + p.b, gw + gb
            if adam:
                adam.step(params, [g / len(labels) for g in grads], trainable)
            else:
                for a, g, k, on in zip(params, grads, rates, trainable):
                    if on:
                        a -= (k * g).astype(a.dtype)
        h = {"epoch": epoch + 1, "train_accuracy": correct / len(order),
             "test_accuracy": accuracy(test_set, p, c, o.network), "train_seconds": time.perf_counter() - t0}
        other = ""
        if o.cross_check:
            name = NETWORKS[1 - NETWORKS.index(o.network)]
            h[f"test_accuracy_{name}"] = accuracy(test_set, p, c, name)
            other = f"  in the {name} network {100 * h[f'test_accuracy_{name}']:.2f}%"
        ck.history.append(h)
        ck.epoch += 1
        ck.extra = adam.state() if adam else {}
        log(f"epoch {h['epoch']}: train (online) {100 * h['train_accuracy']:.2f}%  "
            f"test {100 * h['test_accuracy']:.2f}%{other}  ({h['train_seconds']:.0f} s)")
        if on_epoch:
            on_epoch(ck)
    return ck


def resume(out: Path, weights: Path, summary: dict, c: Config) -> tuple[checkpoint.Checkpoint, dict]:
    """The checkpoint (``weights``) and summary (``out``) of a saved run, refused with ValueError
    unless it was made with the same configuration, data and options."""
    try:
        saved = json.loads(out.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"--resume: cannot read {out} ({e})") from None
    if not weights.is_file():
        raise ValueError(f"--resume: {weights} is missing (runs before resume support saved no weights)")
    differ = [k for k in summary if k not in ("history", "command") and saved.get(k) != summary[k]]
    if differ:
        raise ValueError(f"--resume: {out} was made with other {', '.join(differ)}")
    try:
        ck = checkpoint.load(weights, c, "float")
    except checkpoint.CheckpointError as e:
        raise ValueError(f"--resume: {e}") from None
    saved.setdefault("resumed", []).append(summary["command"])
    return ck, saved


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="conv_fashion")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="override configuration fields")
    ap.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    ap.add_argument("--batch", type=int, default=None, help="default: the config's (ep-sgd) or 32 (adam)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--train-layers", default=None, help="comma-separated 1-based weight layers to train")
    ap.add_argument("--mask-output", action="store_true", help="differentiate the output clip too")
    ap.add_argument("--loss", choices=cf.LOSSES, default="mse",
                    help="mse: 1/2 ||r_L - t||^2 as EP's nudge (default); ce: softmax cross-entropy read-out")
    ap.add_argument("--network", choices=NETWORKS, default="ff",
                    help="ff: one feed-forward pass (default); recurrent: EP's own network, feedback "
                         "included, its free phase differentiated through time (BPTT, --steps)")
    ap.add_argument("--steps", type=int, default=None,
                    help="free steps of the recurrent network (default: the config's free_steps)")
    ap.add_argument("--cross-check", action="store_true",
                    help="also test each epoch's weights in the other network (ff <-> recurrent)")
    ap.add_argument("--pad", type=int, default=0, metavar="N",
                    help="zero-pad the images by N pixels per side (the configuration's input_pad)")
    ap.add_argument("--dataset", default=None, help="mnist or fashion-mnist (default: from the config name)")
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--train-samples", type=int, default=None)
    ap.add_argument("--test-samples", type=int, default=None)
    ap.add_argument("--tag", default="", help="suffix of the default JSON name")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--resume", action="store_true",
                    help="continue the run whose JSON (and its .npz weights) the same options name")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    try:
        if a.pad < 0:
            raise ConfigError(f"--pad must be >= 0, got {a.pad}")
        if a.network == "recurrent" and a.loss != "mse":
            raise ConfigError("--network recurrent trains the mse loss only")
        # one override, so the geometry is checked with the padded size (deeper nets need it)
        c = with_overrides(load_config(a.config),
                           a.set + [f"free_steps={a.steps}"] * (a.steps is not None)
                           + [f"input_pad={a.pad}"] * bool(a.pad))
        layers = None if a.train_layers is None else [int(s) for s in a.train_layers.split(",")]
        if layers and not all(1 <= l <= c.n_layers for l in layers):
            raise ConfigError(f"--train-layers: layers are 1..{c.n_layers}")
        dataset, data_dir = trainer.run_data(c, a.dataset, a.data)
        tr = data.load("train", dataset, data_dir).take(a.train_samples)
        te = data.load("test", dataset, data_dir).take(a.test_samples)
    except (ConfigError, ValueError, data.DataError) as e:
        raise SystemExit(f"error: {e}") from None
    o = Options(a.optimizer, a.lr, a.batch, None if layers is None else tuple(layers), a.mask_output,
                a.loss, a.network, a.cross_check)
    command = "python " + " ".join(["bench/conv_backprop.py"] + (argv if argv is not None else sys.argv[1:]))
    summary = {"config": c.to_dict(), "dataset": dataset, "optimizer": a.optimizer,
               "lr": a.lr if a.optimizer == "adam" else None, "batch": a.batch, "train_layers": layers,
               "mask_output": a.mask_output, "loss": a.loss, "pad": a.pad, "network": a.network,
               "cross_check": a.cross_check, "train_samples": len(tr), "test_samples": len(te),
               "history": [], "command": command}
    out = a.json or RESULTS / f"conv_backprop_{c.name}_{a.optimizer}{'_' + a.tag if a.tag else ''}.json"
    weights = out.with_suffix(".npz")
    ck = None
    if a.resume:
        try:
            ck, summary = resume(out, weights, summary, c)
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
        print(f"resuming {out}: {ck.epoch} epochs done")
    out.parent.mkdir(parents=True, exist_ok=True)

    def save(ck):   # after every epoch: a stopped run keeps what it measured and can resume
        checkpoint.save(ck, weights)
        summary["history"] = ck.history
        write_atomically(out, json.dumps(summary, indent=2).encode())

    train(c, tr, te, a.epochs, o, ck, progress=not a.no_progress, on_epoch=save)
    print(f"wrote {out}")
    return summary


if __name__ == "__main__":
    main()
