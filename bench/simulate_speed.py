"""Speed of ``eqfpga simulate``: the whole test set, and cocotb against a bare Verilator loop.

    python bench/simulate_speed.py [--images 10000] [--jobs 2] [--compare 500]

1. Runs the shipped network on ``--images`` test images exactly as ``eqfpga simulate`` does
   (``--jobs`` processes), with the golden comparison, and times it end to end.
2. On the first ``--compare`` images, one process each: the cocotb run (clock in the Verilog
   harness, Python at image boundaries) against the same harness in a bare Verilator C++ loop
   (``sim/bare_loop.cpp``, no cocotb, no Python); both must give the same predictions.
Prints a table and writes ``bench/results/simulate_speed_CONFIG.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np

from eqfpga import checkpoint, data
from eqfpga.sim import simulate, verilator

RESULTS = Path(__file__).resolve().parent / "results"


def bare_loop(exe: Path, job_dir: Path, count: int, n_params: int, config) -> dict:
    out = subprocess.run([str(exe), f"+count={count}", f"+n_params={n_params}",
                          f"+shifts={verilator.shift_word(config)}",
                          f"+images={job_dir / 'images.hex'}", f"+labels={job_dir / 'labels.hex'}",
                          f"+params={job_dir / 'params.hex'}"],
                         capture_output=True, text=True, check=True).stdout.split("\n")
    rows = [l.split() for l in out if l and not l.startswith("clock_cycles")]
    last = next(l for l in out if l.startswith("clock_cycles")).split()
    return {"prediction": np.array([int(r[1]) for r in rows]),
            "cycles": np.array([int(r[2]) for r in rows]),
            "clock_cycles": int(last[1]), "seconds": float(last[3])}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--compare", type=int, default=500, help="images for cocotb vs bare loop")
    ap.add_argument("--clock-mhz", type=float, default=30.0)
    a = ap.parse_args()

    ck = checkpoint.load(checkpoint.shipped())
    c = ck.config
    test = data.load("test")
    b = verilator.build(c)
    exe = verilator.build_bare_loop(c)

    t0 = time.perf_counter()
    full = simulate.simulate(ck, test.images[:a.images], test.labels[:a.images].astype(int),
                             jobs=a.jobs, clock_hz=a.clock_mhz * 1e6)
    full_wall = time.perf_counter() - t0
    print(simulate.format_report(full))

    work = verilator.cache_dir() / "runs" / f"bench-{os.getpid()}"
    n = a.compare
    hw = verilator.run(b, test.images[:n], ck.params, jobs=1, work_dir=work)
    bare = bare_loop(exe, work / "job0", n, len(verilator.param_words(b, ck.params)), c)
    same = bool((bare["prediction"] == hw.prediction).all() and (bare["cycles"] == hw.cycles).all())
    cocotb_rate = hw.clock_cycles / hw.sim_seconds
    bare_rate = bare["clock_cycles"] / bare["seconds"]

    result = {
        "config": c.name, "lanes": b.lanes, "machine_cpus": os.cpu_count(),
        "full_test_set": {"images": a.images, "jobs": full["jobs"], "wall_seconds": full_wall,
                          "class_agreement": full["class_agreement"],
                          "spike_count_agreement": full["spike_count_agreement"],
                          "accuracy": full["accuracy"], "cycles": full["cycles"],
                          "cycles_per_second_per_process": full["cycles_per_second"],
                          "cycles_per_second_all_jobs": full["cycles_per_second_all_jobs"],
                          "images_per_second_at_clock": full["images_per_second_at_clock"],
                          "clock_hz": full["clock_hz"]},
        "one_process": {"images": n, "cocotb_cycles_per_second": cocotb_rate,
                        "bare_cycles_per_second": bare_rate, "ratio": cocotb_rate / bare_rate,
                        "same_results": same, "clock_cycles": hw.clock_cycles},
    }
    print()
    print(f"| run | images | wall | simulated cycles/s |")
    print(f"|---|---:|---:|---:|")
    print(f"| eqfpga simulate, {full['jobs']} jobs | {a.images} | {full_wall:.0f} s | "
          f"{full['cycles_per_second_all_jobs'] / 1e6:.2f} M (all jobs) |")
    print(f"| cocotb + Verilator, 1 process | {n} | {hw.sim_seconds:.1f} s | {cocotb_rate / 1e6:.2f} M |")
    print(f"| bare Verilator C++ loop, 1 process | {n} | {bare['seconds']:.1f} s | {bare_rate / 1e6:.2f} M |")
    print(f"cocotb / bare = {cocotb_rate / bare_rate:.2f}; same predictions and cycles: {same}")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"simulate_speed_{c.name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
