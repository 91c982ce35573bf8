"""cocotb test run inside the Verilator simulation of ``eqfpga_harness.sv`` (one job of a run).

The job is described by the JSON in ``$EQFPGA_JOB`` (see :func:`eqfpga.sim.verilator._job`).
Python wakes up once per sample, when ``sample_done`` rises, and appends one line to the
results file: ``index prediction packed_spike_counts cycles spikes``.
"""

import json
import os
import time
from collections import deque

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge


@cocotb.test()
async def run_samples(dut):
    job = json.loads(os.environ["EQFPGA_JOB"])
    count = job["count"]
    dut.count.value = count
    dut.n_params.value = job["n_params"]
    dut.train_mode.value = job["train"]
    dut.shifts.value = job["shifts"]
    for name in ("port_sel", "port_addr", "port_wdata", "port_we", "port_re"):
        getattr(dut, name).value = 0
    if job.get("trace"):
        cocotb.start_soon(record_trace(dut, job["trace"]))
    dut.go.value = 1
    t0 = time.perf_counter()
    with open(job["results"], "w") as out:
        for i in range(count):
            await RisingEdge(dut.sample_done)
            await ReadOnly()
            out.write(f"{int(dut.sample_index.value)} {int(dut.prediction.value)} "
                      f"{int(dut.spike_counts.value)} {int(dut.cycles.value)} "
                      f"{int(dut.spikes.value)}\n")
            out.flush()
    await RisingEdge(dut.finished)
    seconds = time.perf_counter() - t0
    if job["read_back"]:
        await read_back(dut, job)
    with open(job["summary"], "w") as f:
        json.dump({"clock_cycles": int(dut.clock_cycles.value), "seconds": seconds}, f)


async def read_back(dut, job):
    """Every word of every tensor through the host port, one read per cycle: ``sel addr word``.
    Inputs change on the falling edge; ``rdata`` is read once the rising edge has settled,
    whenever ``rvalid`` says a word is there (W1's read latency may be 2: each tensor's reads
    are drained before the next tensor's begin, so that two answers never meet)."""
    with open(job["words"], "w") as out:
        for sel, depth in job["read_back"]:
            pending = deque()
            for addr in [*range(depth), *[None] * 3]:
                await FallingEdge(dut.clk)
                dut.port_sel.value = sel
                dut.port_re.value = int(addr is not None)
                if addr is not None:
                    dut.port_addr.value = addr
                    pending.append(addr)
                await RisingEdge(dut.clk)
                await ReadOnly()
                if int(dut.port_rvalid.value):
                    out.write(f"{sel} {pending.popleft()} {int(dut.port_rdata.value)}\n")
            assert not pending, "the host port did not answer every read"


async def record_trace(dut, path):
    """Every time step's spikes: ``sample payload`` (the accelerator's trace word) per line."""
    with open(path, "w") as out:
        while True:
            await RisingEdge(dut.trace_valid)
            await ReadOnly()
            out.write(f"{int(dut.sample_index.value)} {int(dut.trace_payload.value)}\n")
            out.flush()
