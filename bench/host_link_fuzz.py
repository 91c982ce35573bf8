"""Long fuzz of the host link: random byte streams through the RTL against the golden device.

    python bench/host_link_fuzz.py [--examples 200] [--max-pieces 80] [--max-garbage 200] [--seed N]

The property of ``tests/hw/test_host_link.py::test_random_streams_answer_like_golden`` with
many more and longer streams: garbage rich in SYNC bytes, frames of every command (good and
refused), frames sent twice (the repeat rule), frames with a flipped bit or cut short, and
pauses past the inter-byte timeout, fed to :class:`~eqfpga.hw.host_link.HostLink` (Amaranth's
simulator, :data:`~eqfpga.sim.host_link.FUZZ_CONFIG`) and to the golden device; every reply
must be the same bytes, and the parameters, LFSR states and counters read back after each
stream the same. A failure is shrunk by hypothesis to a small stream and printed.

Prints a table of what the streams made the device do and writes
``bench/results/host_link_fuzz.json`` (or ``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, seed, settings

from eqfpga.golden import host_link as golden
from eqfpga.sim import host_link as host_link_sim

RESULTS = Path(__file__).resolve().parent / "results"


def fuzz(examples: int, max_pieces: int, max_garbage: int, seed_value: int) -> dict:
    """Run the property on ``examples`` streams; the totals, and the failure if one."""
    g = golden.Geometry(host_link_sim.FUZZ_CONFIG, host_link_sim.FUZZ_LANES)
    totals, executed = Counter(), Counter()
    strategy = host_link_sim.streams(g, timeout=host_link_sim.FUZZ_TIMEOUT, max_pieces=max_pieces,
                                     max_garbage=max_garbage)

    @seed(seed_value)
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(stream=strategy)
    def prop(stream):
        stats = host_link_sim.compare_stream(*stream)
        totals["streams"] += 1
        totals.update({k: v for k, v in stats.items() if k != "executed"})
        executed.update(stats["executed"])

    t0 = time.perf_counter()
    failure = None
    try:
        prop()
    except AssertionError as e:
        failure = str(e)
    return {"examples": examples, "max_pieces": max_pieces, "max_garbage": max_garbage,
            "seed": seed_value, "config": host_link_sim.FUZZ_CONFIG.name, "lanes": host_link_sim.FUZZ_LANES,
            "timeout_cycles": host_link_sim.FUZZ_TIMEOUT, "wall_seconds": time.perf_counter() - t0,
            "passed": failure is None, "failure": failure, "totals": dict(totals),
            "executed": dict(sorted(executed.items()))}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=200, help="streams to try")
    ap.add_argument("--max-pieces", type=int, default=80, help="most chunks in a stream")
    ap.add_argument("--max-garbage", type=int, default=200, help="most random bytes in a chunk")
    ap.add_argument("--seed", type=int, default=0, help="hypothesis seed")
    ap.add_argument("--json", type=Path, default=RESULTS / "host_link_fuzz.json")
    a = ap.parse_args(argv)
    for name in ("examples", "max_pieces", "max_garbage"):
        if getattr(a, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1, not {getattr(a, name)}")

    result = fuzz(a.examples, a.max_pieces, a.max_garbage, a.seed)
    t = result["totals"]
    print(f"| streams | bytes | good frames | CRC errors | repeats answered | dropped bytes | wall |")
    print(f"|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {t.get('streams', 0)} | {t.get('bytes', 0):,} | {t.get('frames', 0):,} | {t.get('crc_errors', 0):,} "
          f"| {t.get('repeats', 0):,} | {t.get('dropped', 0):,} | {result['wall_seconds']:.0f} s |")
    print()
    print("| executed | frames |")
    print("|---|---:|")
    for k, v in result["executed"].items():
        print(f"| {k} | {v:,} |")
    print()
    print("RTL == golden on every stream" if result["passed"] else f"MISMATCH: {result['failure']}")
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.json}")
    if not result["passed"]:
        raise SystemExit(1)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
