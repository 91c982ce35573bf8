// The harness (built with EQFPGA_EXTERNAL_CLOCK) in a bare Verilator C++ loop: the reference
// for how fast the simulation could run with no cocotb and no Python at all.
//   bare_loop +count=N +n_params=M +shifts=S +images=F +labels=F +params=F
// prints one line per sample ("index prediction cycles"), then "clock_cycles C seconds S".
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "Veqfpga_harness.h"
#include "verilated.h"

static unsigned long plusarg(VerilatedContext* ctx, const char* name) {
    const char* match = ctx->commandArgsPlusMatch(name);
    if (!match || !*match) {
        std::fprintf(stderr, "bare_loop: missing +%s\n", name);
        std::exit(2);
    }
    return std::strtoul(match + std::strlen(name) + 1, nullptr, 10);
}

int main(int argc, char** argv) {
    auto* ctx = new VerilatedContext;
    ctx->commandArgs(argc, argv);
    auto* top = new Veqfpga_harness{ctx};
    top->count = plusarg(ctx, "count=");
    top->n_params = plusarg(ctx, "n_params=");
    top->train_mode = 0;
    top->shifts = plusarg(ctx, "shifts=");
    top->clk = 0;
    top->go = 1;
    top->eval();
    unsigned long long cycles = 0;
    auto t0 = std::chrono::steady_clock::now();
    while (!top->finished) {
        top->clk = 1;
        top->eval();
        if (top->sample_done)
            std::printf("%u %u %u\n", top->sample_index, top->prediction, top->cycles);
        top->clk = 0;
        top->eval();
        ++cycles;
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("clock_cycles %llu seconds %.6f\n", cycles, seconds);
    top->final();
    delete top;
    delete ctx;
    return 0;
}
