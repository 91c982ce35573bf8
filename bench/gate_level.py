"""Gate-level check: the synthesized iCE40 netlist classifies test images as golden does.

    python bench/gate_level.py [--images 100]

Synthesizes the shipped UP5K accelerator with Yosys (``synth_ice40 -dsp``: LUTs, carries,
flip-flops, EBR, the four SPRAMs, DSPs), simulates the netlist on Yosys's ``cells_sim.v``
models in the Verilator harness that ``eqfpga simulate`` uses, and compares every image's
class and output spike counts with the golden model. Both compiles take long (the netlist is
tens of thousands of cells): run it from here, not from the test suite.
Prints a table and writes ``bench/results/gate_level_CONFIG.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from eqfpga import checkpoint, data
from eqfpga.boards import targets
from eqfpga.golden import network
from eqfpga.sim import gate_level, simulate, verilator

RESULTS = Path(__file__).resolve().parent / "results"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--lanes", type=int, default=targets.get_board("icebreaker").lanes,
                    help="lanes (default: the iCEBreaker build's)")
    a = ap.parse_args()
    ck = checkpoint.load(checkpoint.shipped())
    c = ck.config
    t0 = time.perf_counter()
    b = gate_level.build(c, a.lanes, progress=print)
    build_s = time.perf_counter() - t0
    test = data.load("test")
    x, y = test.images[:a.images], test.labels[:a.images]
    hw = verilator.run(b, x, ck.params, jobs=2)
    pred, counts = network.predict(x, ck.params, c)
    class_bad, count_bad = simulate.compare(hw, pred, counts)
    r = {"config": c.name, "lanes": a.lanes, "images": a.images, "build_seconds": build_s,
         "class_mismatches": [int(i) for i in class_bad], "count_mismatches": [int(i) for i in count_bad],
         "accuracy": float((hw.prediction == y).mean()), "cycles_per_second": hw.clock_cycles / hw.sim_seconds}
    print("| images | class = golden | spike counts = golden | accuracy | gate-level cycles/s |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {a.images} | {a.images - len(class_bad)}/{a.images} | {a.images - len(count_bad)}/{a.images} | "
          f"{r['accuracy']:.2%} | {r['cycles_per_second'] / 1e3:.0f} k |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"gate_level_{c.name}.json").write_text(json.dumps(r, indent=2) + "\n")


if __name__ == "__main__":
    main()
