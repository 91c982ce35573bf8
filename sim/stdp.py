"""``eqfpga plot stdp``: weight change against pre/post spike timing (EqSpike's observation).

Training samples run on the accelerator in Verilator with every time step's spikes recorded.
For each hidden->output synapse (``W2[j, k]``) and sample, every pair of a pre-synaptic spike
(hidden ``j``) and a post-synaptic spike (output ``k``) in the nudged phases gives a timing
``dt = t_post - t_pre`` (time steps), and the pair is credited with the synapse's expected
weight change over that sample, ``q / 2**w2_shift`` in LSB (stochastic rounding makes this
the mean of the change actually applied, which is mostly 0 or +-1 LSB). ``q`` comes from the
golden model trained on the same samples: the run reads the accelerator's weights back at the
end and requires them equal to golden's, so the updates are the hardware's too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eqfpga.config import Config
from eqfpga.golden import train
from eqfpga.golden.ep_update import Streams
from eqfpga.hw.accelerator import Phase

__all__ = ["stdp_pairs", "plot_stdp"]


def stdp_pairs(c: Config, params, streams: Streams, images, labels, *, lanes: int = 8):
    """``(dt, dw)`` for every pre/post spike pair of every W2 synapse over the samples."""
    from eqfpga.sim import verilator
    b = verilator.build(c, lanes)
    hw = verilator.run(b, images, params, streams=streams, labels=labels, train=True,
                       read_back=True, trace=True)
    golden, st = params.copy(), Streams(*streams.as_list())
    dts, dws = [], []
    for i, (phases, s_h, s_y) in enumerate(hw.trace):
        rf_h, rf_y, rn_h, rn_y = train.train_sample(images[i], int(labels[i]), golden, c, st).rates
        dw = (np.outer(rn_h, rn_y) - np.outer(rf_h, rf_y)) / 2.0 ** c.w2_shift
        nudged = phases != Phase.FREE.value
        t = np.flatnonzero(nudged)
        pre = [t[s_h[nudged, j] == 1] for j in range(c.hidden)]
        post = [t[s_y[nudged, k] == 1] for k in range(c.outputs)]
        for j in range(c.hidden):
            if not len(pre[j]):
                continue
            for k in range(c.outputs):
                if not len(post[k]):
                    continue
                d = (post[k][None, :] - pre[j][:, None]).ravel()
                dts.append(d)
                dws.append(np.full(len(d), dw[j, k]))
    if hw.params.differences(golden):
        raise RuntimeError("the accelerator's weights differ from golden's: see eqfpga train --on-chip")
    return np.concatenate(dts), np.concatenate(dws)


def plot_stdp(dt: np.ndarray, dw: np.ndarray, path: str | Path, title: str) -> dict:
    """Mean weight change per timing bin (with its spread), as a PNG; returns the curve."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    bins = np.arange(dt.min(), dt.max() + 1)
    mean = np.array([dw[dt == b].mean() for b in bins])
    std = np.array([dw[dt == b].std() for b in bins])
    count = np.array([(dt == b).sum() for b in bins])
    keep = count >= 20
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.axhline(0, color="0.7", lw=0.8)
    ax.axvline(0, color="0.7", lw=0.8)
    ax.fill_between(bins[keep], (mean - std)[keep], (mean + std)[keep], alpha=0.2)
    ax.plot(bins[keep], mean[keep], "o-", ms=3)
    ax.set_xlabel("t_post - t_pre (time steps, nudged phases)")
    ax.set_ylabel("expected weight change (LSB per sample)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return {"dt": bins[keep].tolist(), "mean_dw": mean[keep].tolist(), "std_dw": std[keep].tolist(),
            "pairs": count[keep].tolist()}
