"""Gradient check of convolutional EP: EP's update against the BPTT gradient of the same dynamics.

A tiny convolutional net (14x14 MNIST, conv 3x3 -> 4 ch, pool 2, conv 3x3 -> 6 ch, pool 2,
FC 16, 10 outputs), float. Reference: BPTT through the free phase of the *rate* dynamics
(:func:`eqfpga.golden.conv_float.bptt_grad`), run long enough to reach the fixed point. EP
estimates, symmetric nudging: (a) neurons passing rates, (b) neurons passing sigma-delta spikes
(what the chip does), each with average and with max pooling. Prints cosine similarity and
relative error ``|g_EP - g_BPTT| / |g_BPTT|`` per weight layer; writes
``bench/results/conv_gradcheck.json`` and ``.png``.

    python bench/conv_gradcheck.py [--samples 16] [--steps 1600]

With ``--checkpoint`` it checks a *trained* network instead (an ``eqfpga train`` checkpoint of
any mode whose first layer is a convolution, run with rate neurons in float64): BPTT through
``--steps`` free steps against EP with the configuration's free phase and each nudged-phase
length of ``--nudges`` (rates averaged over the last ``average_steps`` as in training), for
each beta of ``--betas``. It prints the cosine and the norm ratio ``|g_EP| / |g_BPTT|`` per
layer (how much of the gradient a short nudged phase delivers to the layers far from the
output) and writes ``bench/results/conv_gradcheck_<run>.json``::

    python bench/conv_gradcheck.py --checkpoint bench/results/conv_fashion-float-fashion-c32_64-d2-pad2/last.npz \\
        --data /work/shared/data/fashion-mnist --samples 64 --steps 200 --nudges 8,16,32 --betas 0.5 [--set leak_shift=1]

(``docs/conv.md``'s figures came from the ``conv_fashion-float-fashion-d1`` run at epoch 7, whose
checkpoint is no longer kept; the one above is a kept float Fashion-MNIST run state.)
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from eqfpga import checkpoint
from eqfpga import data
from eqfpga.config import Config, with_overrides
from eqfpga.golden import network, conv_float as cf

RESULTS = Path(__file__).resolve().parent / "results"

TINY = Config.convolutional("conv_tiny", image_size=14, conv_channels=(4, 6), kernel=3, fc_hidden=(16,),
                            w_init=(700, 100, 150, 250), batch_size=8, leak_shift=4, membrane_frac_bits=4,
                            description="gradient-check net")


def compare(ref: list, est: list) -> tuple[list, list]:
    cos = [float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30)) for a, b in zip(ref, est)]
    rel = [float(np.linalg.norm(a - b) / (np.linalg.norm(a) + 1e-30)) for a, b in zip(ref, est)]
    return cos, rel


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--steps", type=int, default=1600, help="BPTT free steps = EP free and nudge steps")
    ap.add_argument("--betas", default="0.01,0.2", help="rate EP uses the first, spiking EP all")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--checkpoint", type=Path, default=None, help="check this trained network instead")
    ap.add_argument("--data", type=Path, default=None, help="data folder (Fashion-MNIST checkpoints)")
    ap.add_argument("--nudges", default="16,32,64", help="nudged-phase lengths (with --checkpoint)")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                    help="with --checkpoint: change configuration fields of the dynamics (leak_shift=1)")
    a = ap.parse_args(argv)
    betas = [float(b) for b in a.betas.split(",")]
    if a.checkpoint is not None:
        return trained(a, betas)
    tr = data.load("train")
    X = data.downsample(tr.images[:a.samples], 14)
    y = tr.labels[:a.samples].astype(np.int64)
    rows = []
    for pooling in ("avg", "max"):
        c = replace(TINY, pooling=pooling)
        fp = cf.FParams.from_int(network.init_params(c), c)
        x = cf.float_input(X, c)
        t0 = time.perf_counter()
        ref, _, loss, _ = cf.bptt_grad(x, y, fp, c, steps=a.steps)
        t_bptt = time.perf_counter() - t0
        for spiking in (False, True):
            for beta in (betas if spiking else betas[:1]):
                t0 = time.perf_counter()
                est, _, _ = cf.ep_estimate(x, y, fp, c, spiking, free_steps=a.steps,
                                           nudge_steps=a.steps, beta=beta)
                cos, rel = compare(ref, est)
                rows.append({"pooling": pooling, "neurons": "spiking" if spiking else "rate",
                             "beta": beta, "cosine": cos, "relative_error": rel,
                             "seconds_ep": time.perf_counter() - t0, "seconds_bptt": t_bptt})
    layers = [f"W{i + 1}" for i in range(TINY.n_layers)]
    head = f"{'pooling':8s} {'neurons':8s} {'beta':>5s}  " + "  ".join(f"{l:>12s}" for l in layers)
    print("cosine similarity / relative error of EP vs BPTT, per layer")
    print(head)
    for r in rows:
        cells = "  ".join(f"{c:6.3f}/{e:5.2f}" for c, e in zip(r["cosine"], r["relative_error"]))
        print(f"{r['pooling']:8s} {r['neurons']:8s} {r['beta']:5.2f}  {cells}")
    a.out.mkdir(parents=True, exist_ok=True)
    doc = {"config": TINY.to_dict(), "samples": a.samples, "steps": a.steps, "layers": layers,
           "rows": rows}
    (a.out / "conv_gradcheck.json").write_text(json.dumps(doc, indent=2))
    plot(rows, layers, a.out / "conv_gradcheck.png")
    return doc


def norm_ratio(ref: list, est: list) -> list:
    return [float(np.linalg.norm(b) / (np.linalg.norm(a) + 1e-30)) for a, b in zip(ref, est)]


def free_phase_settling(x, p, c, steps: int) -> dict:
    """How far each layer's rates still are, after the free phase, from where they are after ``steps``."""
    d, idx0 = cf.input_drive(x, p, c)
    st = cf.FState.zeros(len(x), c, idx0, x.dtype)
    for t in range(1, steps + 1):
        st = cf.step(st, d, p, c, False)
        if t == c.free_steps:
            at_free = st.rates()
    diff = [np.abs(a - b) for a, b in zip(at_free, st.rates())]
    return {"free_steps": c.free_steps, "steps": steps, "mean_rate_change": [float(v.mean()) for v in diff],
            "max_rate_change": [float(v.max()) for v in diff]}


def trained(a, betas):
    ck = checkpoint.load(a.checkpoint)
    c = with_overrides(ck.config, a.set)
    if ck.mode == "int":
        p = cf.FParams.from_int(ck.params, c)
    else:
        p = cf.FParams([w.astype(np.float64) for w in ck.params.w], [b.astype(np.float64) for b in ck.params.b])
    dataset = ck.meta.get("dataset", "mnist")
    tr = data.load("train", dataset, a.data)
    pick = np.random.default_rng(0).permutation(len(tr))[:a.samples]
    x, y = cf.float_input(tr.images[pick], c), tr.labels[pick].astype(np.int64)
    ref, _, _, _ = cf.bptt_grad(x, y, p, c, steps=a.steps)
    settle = free_phase_settling(x, p, c, a.steps)
    rows = []
    for n in [int(v) for v in a.nudges.split(",")]:
        for beta in betas:
            est, _, _ = cf.ep_estimate(x, y, p, c, False, nudge_steps=n, beta=beta)
            cos, _ = compare(ref, est)
            rows.append({"nudge_steps": n, "beta": beta, "cosine": cos, "norm_ratio": norm_ratio(ref, est)})
    layers = [f"W{i + 1}" for i in range(c.n_layers)]
    print(f"{a.checkpoint}: epoch {ck.epoch}, {a.samples} {dataset} training images, BPTT over {a.steps} steps")
    print(f"free phase: mean |r({c.free_steps}) - r({a.steps})| per layer "
          + " ".join(f"{v:.4f}" for v in settle["mean_rate_change"])
          + ", largest " + " ".join(f"{v:.2f}" for v in settle["max_rate_change"]))
    print("cosine / |EP| / |BPTT| per layer")
    print(f"{'nudge':>5s} {'beta':>5s}  " + "  ".join(f"{l:>12s}" for l in layers))
    for r in rows:
        cells = "  ".join(f"{co:6.3f}/{q:5.2f}" for co, q in zip(r["cosine"], r["norm_ratio"]))
        print(f"{r['nudge_steps']:5d} {r['beta']:5.2f}  {cells}")
    doc = {"checkpoint": str(a.checkpoint), "epoch": ck.epoch, "mode": ck.mode, "dataset": dataset,
           "config": c.to_dict(), "set": a.set, "samples": a.samples, "bptt_steps": a.steps, "free_phase_settling": settle,
           "layers": layers, "rows": rows}
    a.out.mkdir(parents=True, exist_ok=True)
    tag = "".join(f"_{item.replace('=', '')}" for item in a.set)
    (a.out / f"conv_gradcheck_{a.checkpoint.parent.name}{tag}.json").write_text(json.dumps(doc, indent=2))
    return doc


def plot(rows, layers, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    n = len(rows)
    width = 0.8 / n
    xs = np.arange(len(layers))
    for i, r in enumerate(rows):
        lab = f"{r['pooling']} pool, {r['neurons']}, beta={r['beta']:g}"
        axes[0].bar(xs + i * width, r["cosine"], width, label=lab)
        axes[1].bar(xs + i * width, r["relative_error"], width, label=lab)
    for ax, t in zip(axes, ("cosine(EP, BPTT)", "|EP - BPTT| / |BPTT|")):
        ax.set_xticks(xs + 0.4 - width / 2, layers)
        ax.set_title(t)
        ax.grid(alpha=0.3, axis="y")
    axes[0].axhline(1.0, color="k", lw=0.5)
    axes[0].set_ylim(min(-0.2, min(min(r["cosine"]) for r in rows) - 0.05), 1.05)
    axes[1].legend(fontsize=7)
    fig.suptitle("Convolutional EP gradient check (tiny net, float)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
