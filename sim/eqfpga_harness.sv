`timescale 1ns / 1ns
// Simulation harness around eqfpga_accelerator: the clock, the parameter load and the image
// stream live here, so that the simulator runs without Python between samples.
//
// On `go` the harness
//   1. writes the first `n_params` entries of +params=FILE through the accelerator's host port,
//      one per cycle (each entry is {sel, addr, data}, as eqfpga.sim.verilator.param_words packs
//      them);
//   2. for each of `count` samples: streams INPUTS pixels of +images=FILE (one byte per line,
//      sample after sample), starts the sample (training on the label of +labels=FILE when
//      `train_mode` is set, with the learning `shifts`), and waits for the accelerator's `done`;
//   3. raises `finished`; the host port then follows the port_* inputs.
// `sample_done` is high in the cycle a sample's results appear; they hold until the next sample
// starts, INPUTS cycles later, which is when Python (at image boundaries only) reads them.
//
// The clock is generated here (needs verilator --timing) unless EQFPGA_EXTERNAL_CLOCK is
// defined, in which case a C++ loop drives `clk`.
module eqfpga_harness #(
    parameter int INPUTS = 784,
    parameter int MAX_SAMPLES = 1,
    parameter int MAX_PARAMS = 1,
    parameter int CLASS_BITS = 4,
    parameter int COUNT_BITS = 60,
    parameter int SHIFT_BITS = 20,
    parameter int TRACE_BITS = 172,
    parameter int SEL_BITS = 3,
    parameter int ADDR_BITS = 14,
    parameter int WORD_BITS = 64
) (
`ifdef EQFPGA_EXTERNAL_CLOCK
    input  logic                  clk,
`endif
    input  logic                  go,
    input  logic                  train_mode,
    input  logic [31:0]           count,
    input  logic [31:0]           n_params,
    input  logic [SHIFT_BITS-1:0] shifts,
    output logic                  sample_done,
    output logic [31:0]           sample_index,
    output logic                  finished,
    output logic [63:0]           clock_cycles,
    output logic                  busy,
    output logic [CLASS_BITS-1:0] prediction,
    output logic [COUNT_BITS-1:0] spike_counts,
    output logic [31:0]           cycles,
    output logic [31:0]           spikes,
    output logic                  trace_valid,
    output logic [TRACE_BITS-1:0] trace_payload,
    input  logic [SEL_BITS-1:0]   port_sel,
    input  logic [ADDR_BITS-1:0]  port_addr,
    input  logic [WORD_BITS-1:0]  port_wdata,
    input  logic                  port_we,
    input  logic                  port_re,
    output logic [WORD_BITS-1:0]  port_rdata,
    output logic                  port_rvalid
);
`ifndef EQFPGA_EXTERNAL_CLOCK
    logic clk;
    initial clk = 1'b0;
    always #5 clk = ~clk;
`endif

    localparam int ENTRY_BITS = SEL_BITS + ADDR_BITS + WORD_BITS;

    logic [7:0]            images [MAX_SAMPLES * INPUTS];
    logic [CLASS_BITS-1:0] labels [MAX_SAMPLES];
    logic [ENTRY_BITS-1:0] params [MAX_PARAMS];

    initial begin
        string path;
        if ($value$plusargs("images=%s", path)) $readmemh(path, images);
        if ($value$plusargs("labels=%s", path)) $readmemh(path, labels);
        if ($value$plusargs("params=%s", path)) $readmemh(path, params);
    end

    typedef enum logic [2:0] {IDLE, LOAD, FEED, START, WAIT, FINISHED} state_t;
    state_t      state;
    logic [31:0] param_i, pixel_i, base, sample_i;
    logic [63:0] clock_count;
    initial begin  // power-on state, as the FPGA's registers have it
        state = IDLE;
        {param_i, pixel_i, base, sample_i, clock_count} = '0;
    end

    logic                  pixels_ready, image_ready, done;
    logic [ENTRY_BITS-1:0] entry;
    logic [CLASS_BITS-1:0] label;
    assign entry = params[param_i];
    assign label = labels[sample_i];

    logic                 load_we;
    logic [SEL_BITS-1:0]  acc_sel;
    logic [ADDR_BITS-1:0] acc_addr;
    logic [WORD_BITS-1:0] acc_wdata;
    assign load_we   = state == LOAD;
    assign acc_sel   = load_we ? entry[ENTRY_BITS-1 -: SEL_BITS] : port_sel;
    assign acc_addr  = load_we ? entry[WORD_BITS +: ADDR_BITS] : port_addr;
    assign acc_wdata = load_we ? entry[WORD_BITS-1:0] : port_wdata;

    eqfpga_accelerator accelerator (
        .clk(clk),
        .rst(1'b0),
        .pixels__valid(state == FEED),
        .pixels__payload(images[base + pixel_i]),
        .pixels__ready(pixels_ready),
        .image_ready(image_ready),
        .start(state == START && image_ready),
        .train(train_mode),
        .label(label),
        .shifts(shifts),
        .busy(busy),
        .done(done),
        .prediction(prediction),
        .spike_counts(spike_counts),
        .cycles(cycles),
        .spikes(spikes),
        .trace__valid(trace_valid),
        .trace__payload(trace_payload),
        .port__sel(acc_sel),
        .port__addr(acc_addr),
        .port__wdata(acc_wdata),
        .port__we(load_we || (state == FINISHED && port_we)),
        .port__re(state == FINISHED && port_re),
        .port__rdata(port_rdata),
        .port__rvalid(port_rvalid)
    );

    assign sample_done = state == WAIT && done;
    assign sample_index = sample_i;
    assign finished = state == FINISHED;
    assign clock_cycles = clock_count;

    always_ff @(posedge clk) begin
        clock_count <= clock_count + 64'd1;
        case (state)
            IDLE: if (go) begin
                param_i <= '0;
                sample_i <= '0;
                pixel_i <= '0;
                base <= '0;
                state <= n_params != 0 ? LOAD : count != 0 ? FEED : FINISHED;
            end
            LOAD: begin
                param_i <= param_i + 1;
                if (param_i + 1 == n_params) state <= count != 0 ? FEED : FINISHED;
            end
            FEED: if (pixels_ready) begin
                pixel_i <= pixel_i + 1;
                if (pixel_i + 1 == INPUTS) state <= START;
            end
            START: if (image_ready) state <= WAIT;
            WAIT: if (done) begin
                pixel_i <= '0;
                base <= base + INPUTS;
                sample_i <= sample_i + 1;
                state <= sample_i + 1 == count ? FINISHED : FEED;
            end
            default: if (!go) state <= IDLE;
        endcase
    end
endmodule
