"""``eqfpga simulate``: the generated hardware on test images, compared with the golden model.

Every image is classified by the hardware (Verilator through cocotb, or Amaranth's simulator)
and by :func:`eqfpga.golden.network.predict`; the two must agree on the class *and* on the
output spike counts. A disagreement is a bug and is reported by image index.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from eqfpga.sim import verilator
from eqfpga.sim.verilator import SampleResults

__all__ = ["simulate", "compare", "amaranth_run", "format_report"]


def amaranth_run(c, lanes: int, images: np.ndarray, params, *, progress=None,
                 waves: str | None = None) -> SampleResults:
    """The same samples in Amaranth's Python simulator (slow: for a few images)."""
    from amaranth.sim import Simulator

    from eqfpga.hw.accelerator import Accelerator
    from eqfpga.sim import accelerator as drv

    dut = Accelerator(config=c, lanes=lanes, params=params)
    runs = []

    async def bench(ctx):
        for img in images:
            runs.append(await drv.run_sample(ctx, dut, img, record=False))
            if progress is not None:
                progress.update(1)

    sim = Simulator(dut)
    sim.add_clock(verilator.CLOCK_PERIOD_NS * 1e-9)
    sim.add_testbench(bench)
    t0 = time.perf_counter()
    if waves:
        with sim.write_vcd(waves):
            sim.run()
    else:
        sim.run()
    seconds = time.perf_counter() - t0
    clock = round(sim._engine.now / (verilator.CLOCK_PERIOD_NS * 1000)) if hasattr(sim, "_engine") else 0
    return SampleResults(np.array([r.prediction for r in runs], np.int64),
                         np.array([r.spike_counts for r in runs], np.int64),
                         np.array([r.cycles for r in runs], np.int64),
                         np.array([r.spikes for r in runs], np.int64),
                         clock or int(sum(r.cycles for r in runs) + len(runs) * (c.pixels + 2)),
                         seconds, seconds, 1)


def _hardware(sim: str, ck, images, lanes, jobs, progress, waves=None, work_dir=None):
    if sim == "verilator":
        b = verilator.build(ck.config, lanes, waves=waves)
        return verilator.run(b, images, ck.params, jobs=jobs, progress=progress, work_dir=work_dir)
    if sim == "amaranth":
        return amaranth_run(ck.config, lanes, images, ck.params, progress=progress)
    raise ValueError(f"unknown simulator {sim!r} (choose verilator or amaranth)")


def _dump(sim: str, ck, image, lanes, path: Path, fmt: str) -> Path:
    """Simulate one image again with waveforms on and write them to ``path`` (its folder is
    made if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if sim == "amaranth":
        if fmt != "vcd":
            raise ValueError("Amaranth's simulator writes VCD only: use --vcd")
        amaranth_run(ck.config, lanes, image[None], ck.params, waves=str(path))
        return path
    b = verilator.build(ck.config, lanes, waves=fmt)
    work = verilator.cache_dir() / "runs" / f"waves-{time.time_ns()}"
    verilator.run(b, image[None], ck.params, jobs=1, work_dir=work)
    shutil.copyfile(work / "job0" / f"dump.{fmt}", path)
    shutil.rmtree(work, ignore_errors=True)
    return path


def compare(hw: SampleResults, prediction: np.ndarray, spike_counts: np.ndarray):
    """Indices of the samples whose class, and whose output spike counts, differ from golden."""
    return (np.flatnonzero(hw.prediction != prediction),
            np.flatnonzero((hw.spike_counts != spike_counts).any(axis=1)))


def simulate(ck, images: np.ndarray, labels: np.ndarray, *, sim: str = "verilator",
             lanes: int = 8, jobs: int = 1, clock_hz: float = 30e6, vcd: str | None = None,
             fst: str | None = None, progress=None, first_index: int = 0) -> dict:
    """Run ``images`` on the hardware of checkpoint ``ck`` and compare with the golden model.

    Returns the report (see :func:`format_report`). ``vcd``/``fst``: write the waveform of the
    first disagreeing image (or of the first image when all agree) to that path.
    """
    from eqfpga.golden import network

    t0 = time.perf_counter()
    hw = _hardware(sim, ck, images, lanes, jobs, progress)
    pred, counts = network.predict(images, ck.params, ck.config)
    wall = time.perf_counter() - t0
    class_bad, count_bad = compare(hw, pred, counts)
    bad = np.union1d(class_bad, count_bad)
    n = len(images)
    report = {
        "simulator": sim, "config": ck.config.name, "lanes": lanes, "images": n,
        "first_index": first_index, "jobs": hw.jobs,
        "accuracy": float(np.mean(hw.prediction == labels)),
        "golden_accuracy": float(np.mean(pred == labels)),
        "class_agreement": 1 - len(class_bad) / n,
        "spike_count_agreement": 1 - len(count_bad) / n,
        "mismatches": [int(first_index + i) for i in bad],
        "cycles": {"min": int(hw.cycles.min()), "mean": float(hw.cycles.mean()),
                   "max": int(hw.cycles.max())},
        "clock_cycles": int(hw.clock_cycles),
        "sim_seconds": hw.sim_seconds,
        "wall_seconds": wall,
        "cycles_per_second": hw.clock_cycles / hw.sim_seconds if hw.sim_seconds else 0.0,
        "cycles_per_second_all_jobs": hw.clock_cycles / hw.wall_seconds if hw.wall_seconds else 0.0,
        "clock_hz": clock_hz,
        "images_per_second_at_clock": clock_hz / float(hw.cycles.mean()),
    }
    for fmt, path in (("vcd", vcd), ("fst", fst)):
        if path:
            which = int(bad[0]) if len(bad) else 0
            report[f"{fmt}_file"] = str(_dump(sim, ck, images[which], lanes, Path(path), fmt))
            report[f"{fmt}_image"] = first_index + which
    return report


def format_report(r: dict) -> str:
    """The report as the lines ``eqfpga simulate`` prints."""
    mism = r["mismatches"]
    lines = [
        f"{r['images']} images on {r['simulator']} ({r['config']}, P={r['lanes']}, {r['jobs']} job(s))",
        f"  accuracy            {r['accuracy']:.2%}   (golden {r['golden_accuracy']:.2%})",
        f"  agreement           class {r['class_agreement']:.2%}, spike counts "
        f"{r['spike_count_agreement']:.2%}"
        + ("" if not mism else f"   MISMATCH on image(s) {', '.join(map(str, mism[:20]))}"
           + (" ..." if len(mism) > 20 else "")),
        f"  cycles per image    min {r['cycles']['min']}, mean {r['cycles']['mean']:.0f}, "
        f"max {r['cycles']['max']}",
        f"  simulation          {r['cycles_per_second'] / 1e6:.2f} M cycles/s per process, "
        f"{r['cycles_per_second_all_jobs'] / 1e6:.2f} M cycles/s in all, {r['wall_seconds']:.1f} s wall",
        f"  at {r['clock_hz'] / 1e6:g} MHz          {r['images_per_second_at_clock']:,.0f} images/s",
    ]
    for fmt in ("vcd", "fst"):
        if f"{fmt}_file" in r:
            lines.append(f"  waveform            image {r[fmt + '_image']} -> {r[fmt + '_file']}")
    return "\n".join(lines)
