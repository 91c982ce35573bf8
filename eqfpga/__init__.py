"""eqfpga: FPGA hardware for spiking neural networks that learn on the chip with
Equilibrium Propagation."""

__version__ = "0.1.0"
