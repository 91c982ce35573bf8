"""Build every board (or those named) and tabulate resources, Fmax and throughput.

    python bench/board_builds.py [icebreaker ulx3s-85f ...]

Runs what ``eqfpga build --board NAME`` runs, keeps going when a board does not fit or misses
timing (that is a result too), prints a table and writes ``bench/results/board_builds.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from eqfpga.boards import build, targets

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("boards", nargs="*", metavar="BOARD",
                    help=f"boards to build (default: all of {', '.join(targets.BOARDS)})")
    names = ap.parse_args(argv).boards or list(targets.BOARDS)
    unknown = [n for n in names if n not in targets.BOARDS]
    if unknown:   # before any build: a typo should not cost the boards named before it
        ap.error(f"unknown board{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                 f"(known: {', '.join(sorted(targets.BOARDS))})")
    results = {}
    for name in names:
        board = targets.get_board(name)
        out = Path("build/boards") / name
        try:
            r = build.build(board, out, cycles=build.measured_cycles(board))
            r["ok"], r["error"] = True, None
        except targets.BoardError as e:
            path = out / "build_report.json"
            r = json.loads(path.read_text()) if path.exists() else {"board": name}
            r["ok"], r["error"] = False, str(e)
        results[name] = r
        print(build.format_report(r) if "utilization" in r else name, "\n ", r["error"] or "ok")
    print("\n| board | LUT | FF | EBR | SPRAM | DSP | Fmax / target MHz | inferences/s | training samples/s | result |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        u = r.get("utilization", {})

        def cell(k):
            return f"{u[k]['used']}/{u[k]['available']}" if k in u and u[k]["used"] is not None else "-"
        fmax = f"{r['fmax']:.1f} / {r['target_mhz']:g}" if r.get("fmax") else "-"
        print(f"| {name} | {cell('LUT')} | {cell('FF')} | {cell('EBR')} | {cell('SPRAM')} | "
              f"{cell('DSP')} | {fmax} | {r.get('inferences_per_second', 0):,.0f} | "
              f"{r.get('training_samples_per_second', 0):,.0f} | {'ok' if r['ok'] else r['error']} |")
    RESULTS.mkdir(exist_ok=True)
    old = json.loads((RESULTS / "board_builds.json").read_text()) if (RESULTS / "board_builds.json").exists() else {}
    old.update(results)
    (RESULTS / "board_builds.json").write_text(json.dumps(old, indent=2) + "\n")


if __name__ == "__main__":
    main()
