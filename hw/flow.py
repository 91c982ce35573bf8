"""Valid-qualified flows: the stream shape of pipelined units that cannot stall.

The arithmetic units of this package accept one item per cycle and deliver results a fixed
number of cycles later, so their flows have no ``ready``. ``stream.Signature(...,
always_ready=True)`` would say the same, but its constant ``ready`` member cannot be a port of
a top-level design in Amaranth 0.5 (``convert`` rejects it, amaranth-lang/amaranth#1574), and
the units are meant to be converted on their own for cocotb tests. The member names are those
of :class:`amaranth.lib.stream.Signature`, so moving to it later only changes the signature.
"""

from amaranth.hdl import ShapeLike
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

__all__ = ["valid_signature"]


def valid_signature(payload_shape: ShapeLike) -> wiring.Signature:
    """Signature with ``payload: Out(payload_shape)`` and ``valid: Out(1)``, no ``ready``.

    The payload is meaningful only in cycles where ``valid`` is high; the receiver must take
    it in that cycle.
    """
    return wiring.Signature({"payload": Out(payload_shape), "valid": Out(1)})
