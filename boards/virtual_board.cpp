// The virtual board: the whole board top (UART included) in Verilator, its UART pins bridged
// to a pseudo-terminal, so that `eqfpga run --port /dev/pts/N` talks to it as to a board.
//   virtual_board +divisor=N [+ptyfile=PATH]
// prints "pty PATH" once the terminal is ready. The host's bytes are sent on uart_rx at N
// clock cycles per bit (8N1); uart_tx is decoded the same way and written back.
// When both directions have been quiet for a while it waits on the terminal between bursts
// of cycles, so an idle board costs almost no CPU.
#include <fcntl.h>
#include <poll.h>
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "Veqfpga_board.h"
#include "verilated.h"

static unsigned long plusarg(VerilatedContext* ctx, const char* name, unsigned long dflt) {
    const char* m = ctx->commandArgsPlusMatch(name);
    return (m && *m) ? std::strtoul(m + std::strlen(name) + 1, nullptr, 10) : dflt;
}

int main(int argc, char** argv) {
    auto* ctx = new VerilatedContext;
    ctx->commandArgs(argc, argv);
    const unsigned divisor = plusarg(ctx, "divisor=", 8);

    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) || unlockpt(master)) { std::perror("pty"); return 2; }
    const char* name = ptsname(master);
    // Keep the slave open ourselves, raw, so a host that closes it does not end the board.
    int slave = open(name, O_RDWR | O_NOCTTY);
    struct termios t;
    tcgetattr(slave, &t);
    cfmakeraw(&t);
    tcsetattr(slave, TCSANOW, &t);
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
    const char* file = ctx->commandArgsPlusMatch("ptyfile=");
    if (file && *file) {
        FILE* f = std::fopen(file + std::strlen("+ptyfile="), "w");
        if (f) { std::fprintf(f, "%s\n", name); std::fclose(f); }
    }
    std::printf("pty %s\n", name);
    std::fflush(stdout);

    auto* top = new Veqfpga_board{ctx};
    top->uart_rx = 1;
    top->clk = 0;
    top->rst = 0;
    top->eval();

    // host -> device: the frame of the byte being sent, one bit every `divisor` cycles
    unsigned rx_bits = 0, rx_left = 0, rx_timer = 0;
    // device -> host: a receiver like golden/uart.py
    int tx_state = 0;  // 0 hunt, 1 in byte
    unsigned tx_timer = 0, tx_bit = 0, tx_byte = 0;
    unsigned long long quiet = 0;
    const unsigned long long idle_after = 2000000ULL;

    for (;;) {
        if (rx_left == 0) {
            unsigned char b;
            ssize_t n = read(master, &b, 1);
            if (n == 1) {
                rx_bits = (1u << 9) | (unsigned(b) << 1);  // start 0, data LSB first, stop 1
                rx_left = 10;
                rx_timer = divisor;
                quiet = 0;
            }
        }
        if (rx_left) {
            top->uart_rx = rx_bits & 1;
            if (--rx_timer == 0) {
                rx_bits >>= 1;
                rx_timer = divisor;
                if (--rx_left == 0) top->uart_rx = 1;
            }
        }
        top->clk = 1;
        top->eval();
        top->clk = 0;
        top->eval();

        const unsigned line = top->uart_tx;
        if (tx_state == 0) {
            if (!line) { tx_state = 1; tx_timer = divisor / 2; tx_bit = 0; tx_byte = 0; quiet = 0; }
        } else if (--tx_timer == 0) {
            tx_timer = divisor;
            if (tx_bit == 0 && line) {
                tx_state = 0;                       // a glitch, not a start bit
            } else if (tx_bit >= 1 && tx_bit <= 8) {
                tx_byte |= line << (tx_bit - 1);
            } else if (tx_bit == 9) {
                if (line) {
                    unsigned char b = tx_byte;
                    while (write(master, &b, 1) != 1) usleep(100);
                }
                tx_state = 0;
            }
            ++tx_bit;
        }

        if (++quiet > idle_after && rx_left == 0 && tx_state == 0) {
            struct pollfd p = {master, POLLIN, 0};
            poll(&p, 1, 5);
            if (p.revents & POLLIN) quiet = 0;
        }
    }
}
