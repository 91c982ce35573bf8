"""The host link's protocol engine in front of the accelerator.

Hardware twin of :class:`eqfpga.golden.host_link.Device`: for the same received bytes it sends
the same bytes back (the protocol, the resync rule, the repeat rule and the commands are
specified there). A frame's payload is collected in a buffer and executed only once its CRC
has checked, so a damaged frame never touches the weights or the image.

A repeated frame is answered from the registers that the first copy's reply came from: the
reply's kind and code, the error code, the prediction and the accelerator's spike counts (they
stay until its next start). They hold still until the next frame executes, because the frames
whose reply could not be rebuilt that way (INFO, READ, COUNTERS: constants, words read through
the port, live counters) make the link forget the last frame, and are executed again.

Bytes that arrive while a frame executes (``receiving`` low) are dropped and counted; a host
waits for each reply (or the timeout) before it sends the next frame. ``receiving`` is also low
for the cycle after each byte taken and for the first cycle of receiving again after a reply
(it comes from a register), and a byte sent is followed by a cycle without ``valid``:
a UART never delivers bytes that close together, and the gap lets every decision about a byte
use registered comparisons (the host link's state logic was the longest path on the UP5K).
The receiver and the reply transmitter are separate state machines for the same reason.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from eqfpga.config import LFSR_BITS
from eqfpga.golden.host_link import crc32_register as golden_crc32_register
from eqfpga.golden.host_link import (HASH_BYTES, MAX_PAYLOAD, MAX_READ, NAK, SYNC, TRAIN_OVERHEAD, Cmd,
                                     Error, Geometry)
from eqfpga.hw.accelerator import Accelerator
from eqfpga.hw.flow import valid_signature

__all__ = ["HostLink", "crc32_byte"]


def crc32_byte(register, byte):
    """The CRC-32 shift register ``register`` after ``byte``, as a flat XOR network.

    The golden bitwise update is linear over GF(2) in ``register ^ byte``; its columns are
    derived here from :func:`eqfpga.golden.host_link.crc32_register`, the only definition of
    the CRC.
    """
    v = register ^ Cat(byte, Const(0, 24))
    columns = [golden_crc32_register(b"\x00", 1 << i) for i in range(32)]
    bits = []
    for j in range(32):
        taps = [v[i] for i in range(32) if (columns[i] >> j) & 1]
        bit = taps[0]
        for t in taps[1:]:
            bit = bit ^ t
        bits.append(bit)
    return Cat(*bits)


def _complement_byte(register, k):
    """Byte ``k`` of the CRC a frame carries: the complemented register, little-endian."""
    return ~register.word_select(k, 8)


class Reply(enum.Enum, shape=3):
    """What a reply carries; its code, length and payload bytes follow from this."""

    ERROR = 0      #: NAK with the error code
    INFO = 1       #: the INFO constants
    COUNTERS = 2   #: frames, CRC errors, dropped bytes (as they were), samples
    RESULT = 3     #: prediction and output spike counts of the last sample
    EMPTY = 4      #: no payload (WRITE, SHIFTS)
    WORDS = 5      #: READ: words read through the accelerator's port


class HostLink(wiring.Component):
    """Executes host frames on ``accelerator`` (which becomes a submodule).

    Parameters
    ----------
    accelerator : Accelerator
    timeout : int
        Clock cycles without a byte after which a partial frame is dropped.

    Members
    -------
    rx : ``In(valid_signature(8))``
        Received bytes.
    tx : ``Out(stream.Signature(8))``
        Bytes to send.
    receiving : ``Out(1)``
        Bytes are being taken (not executing a frame or sending a reply).
    prediction : ``Out(range(outputs))``
        The class of the last classified or trained sample (for LEDs).
    """

    def __init__(self, accelerator: Accelerator, *, timeout: int):
        if not isinstance(accelerator, Accelerator):
            raise TypeError(f"HostLink drives an Accelerator, not {accelerator!r}")
        c = accelerator.config
        if c.outputs > 15:
            raise ValueError("the reply to CLASSIFY holds at most 15 output counts")
        if c.pixels + TRAIN_OVERHEAD > MAX_PAYLOAD:
            raise ValueError(f"a TRAIN frame of {c.pixels} pixels (plus model hash and label) "
                             f"exceeds the {MAX_PAYLOAD}-byte frame buffer: at most "
                             f"{MAX_PAYLOAD - TRAIN_OVERHEAD} pixels")
        if c.free_steps > 255:
            raise ValueError("spike counts are sent as bytes: free_steps must be at most 255")
        self._acc = accelerator
        self._geometry = Geometry(c, accelerator.lanes)
        self._timeout = timeout
        super().__init__({
            "rx": In(valid_signature(8)),
            "tx": Out(stream.Signature(8)),
            "receiving": Out(1),
            "prediction": Out(range(c.outputs)),
        })

    @property
    def geometry(self) -> Geometry:
        return self._geometry

    def elaborate(self, platform):
        m = Module()
        acc, g = self._acc, self._geometry
        c = g.config
        m.submodules.accelerator = acc
        wb = g.word_bytes

        m.submodules.buffer = buf = memory.Memory(shape=8, depth=MAX_PAYLOAD, init=[])
        buf_wr = buf.write_port()
        buf_rd = buf.read_port(transparent_for=())

        # -- counters and settings -------------------------------------------------------
        frames, crc_errors, dropped, samples = (Signal(32, name=n) for n in
                                                ("frames", "crc_errors", "dropped", "samples"))
        shifts = [Signal(range(LFSR_BITS + 1), name=f"shift_{n}", init=getattr(c, f"{n}_shift"))
                  for n in ("w1", "w2", "b1", "b2")]
        # The accelerator uses them as they are: they change only in SHIFTS_SET, never while
        # it is busy.
        m.d.comb += [acc.shifts.w1.eq(shifts[0]), acc.shifts.w2.eq(shifts[1]),
                     acc.shifts.b1.eq(shifts[2]), acc.shifts.b2.eq(shifts[3])]

        # -- receive -----------------------------------------------------------------------
        cmd = Signal(8)
        seq = Signal(8)
        # A length over MAX_PAYLOAD drops the frame at LEN1 (from the byte itself), so the
        # register need not hold more.
        length = Signal(range(MAX_PAYLOAD + 1))
        idx = Signal(range(MAX_PAYLOAD + 1))
        # One CRC register and network for both directions: the receiver and the transmitter
        # never take or send a byte the CRC covers in the same cycle (the receiver waits in
        # SEND while a reply goes out). rx_state_q, which picks the byte, is high whenever a
        # byte is taken and low while a reply is sent (the receiver left its receiving states
        # at least two cycles before the reply's first byte).
        # No reset: it is set before every frame and every reply, so its set can use the
        # flip-flops' synchronous set rather than an input of each bit's LUT.
        crc = Signal(32, reset_less=True)
        crc_init, crc_step = Signal(), Signal()
        quiet = Signal(range(self._timeout + 1))
        byte = self.rx.payload
        got = Signal()
        rx_state = Signal()             # the receiver is in a state that takes bytes
        # ... a cycle ago: receiving comes from registers, not from the state decoding. The lag
        # is safe: every move from a receiving state to another state is on a byte taken, and
        # the cycle after a byte is not receiving anyway (rx_hold).
        rx_state_q = Signal()
        m.d.sync += rx_state_q.eq(rx_state)
        rx_hold = Signal()              # the cycle after a byte: not receiving
        m.d.sync += rx_hold.eq(got)
        m.d.comb += [self.receiving.eq(rx_state_q & ~rx_hold), got.eq(self.rx.valid & self.receiving)]
        with m.If(crc_init):
            m.d.sync += crc.eq(0xFFFFFFFF)
        with m.Elif(crc_step):
            m.d.sync += crc.eq(crc32_byte(crc, Mux(rx_state_q, self.rx.payload, self.tx.payload)))
        # Compared a cycle ahead (idx, length and crc change only when a byte is taken).
        payload_last = Signal()         # the next payload byte is the last
        m.d.sync += payload_last.eq(idx + 1 == length)
        crc_ok = Signal()               # the CRC's bytes so far matched
        len_over, len_zero = Signal(), Signal()     # the length bytes say > MAX_PAYLOAD, 0
        # quiet == timeout, a cycle ahead: quiet restarts at a byte, else counts up to timeout
        timed_out = Signal()
        m.d.sync += timed_out.eq(~got & ((quiet == self._timeout - 1) | (quiet == self._timeout)))
        with m.If(self.rx.valid & ~self.receiving):
            m.d.sync += dropped.eq(dropped + 1)

        # -- the last frame executed (the repeat rule) ---------------------------------------
        last_seq = Signal(8)
        last_crc = Signal(32)
        last_valid = Signal()           # a frame is remembered
        # Registered: seq and crc hold still from the frame's last payload byte on, at
        # least two cycles before CRC_CHECK, where these decide.
        repeat = Signal()               # the frame being received has the remembered seq and CRC
        m.d.sync += repeat.eq(last_valid & (seq == last_seq) & (crc == last_crc))
        reports = Signal()              # cmd only reports (INFO, READ, COUNTERS): not remembered
        m.d.sync += reports.eq((cmd == Cmd.INFO) | (cmd == Cmd.READ) | (cmd == Cmd.COUNTERS))

        # -- reply -------------------------------------------------------------------------
        # A reply is its kind: the code is NAK or cmd | 0x80, the length follows from the kind,
        # and a short payload is read where it lies (the error code, the INFO constants, the
        # counters, the accelerator's results) rather than copied into a register file.
        reply_src = Signal(Reply)
        dropped_then = Signal(32)       # the dropped-byte count when COUNTERS executed
        reply_cmd = Signal(8)
        # Replies are short (READ's words the longest), and so are these: LUTs on the UP5K.
        reply_n = range(max(MAX_READ * wb, len(g.info()), 16, 1 + c.outputs) + 1)
        reply_len = Signal(reply_n)
        reply_len16 = Signal(16)        # as the header sends it
        m.d.comb += reply_len16.eq(reply_len)
        reply_last = Signal(reply_n)    # index of the payload's last byte
        reply_empty = Signal()          # reply_len == 0
        out_i = Signal(reply_n)
        word = Signal(wb * 8)
        word_i = Signal(range(wb + 1))

        # -- execution ---------------------------------------------------------------------
        # The accelerator's port strobes come from registers, not from the state decoding: a
        # write (read) happens the cycle after W_PORT (P_READ), then addr moves to the next word.
        port_we, port_re = Signal(), Signal()
        sel = Signal(8)
        addr = Signal(16)
        m.d.comb += [acc.port.sel.eq(sel), acc.port.addr.eq(addr), acc.port.wdata.eq(word),
                     acc.port.we.eq(port_we), acc.port.re.eq(port_re)]
        m.d.sync += [port_we.eq(0), port_re.eq(0)]
        with m.If(port_we | port_re):
            m.d.sync += addr.eq(addr + 1)
        # WRITE's word count (at most what a frame holds) or READ's (a byte)
        count = Signal(range(max((MAX_PAYLOAD - 11) // wb, 255) + 1))
        rem = Signal(range(MAX_PAYLOAD - 11 + 1))     # WRITE's word bytes not yet counted
        rem_step, rem_ge, rem_zero = Signal(), Signal(), Signal()
        err = Signal(range(max(Error) + 1))
        with m.Switch(reply_src):
            for kind, n in ((Reply.ERROR, 1), (Reply.INFO, len(g.info())), (Reply.COUNTERS, 16),
                            (Reply.RESULT, 1 + c.outputs), (Reply.EMPTY, 0)):
                with m.Case(kind):
                    m.d.sync += [reply_len.eq(n), reply_last.eq(n - 1), reply_empty.eq(n == 0)]
            with m.Case(Reply.WORDS):
                n = count[:(MAX_READ).bit_length()]     # count is 1 .. MAX_READ here
                m.d.sync += [reply_len.eq(n * wb), reply_last.eq(n * wb - 1), reply_empty.eq(0)]
        label = Signal(range(c.outputs))
        model_hash = Array(Const(b, 8) for b in g.model_hash)
        pixel = Signal(range(c.pixels + 1))
        # The accelerator's start comes from a register as well: it fans out widely inside.
        acc_start = Signal()
        m.d.sync += acc_start.eq(0)
        m.d.comb += [acc.start.eq(acc_start), acc.train.eq(cmd == Cmd.TRAIN), acc.label.eq(label)]
        new_shifts = Array(Signal(range(LFSR_BITS + 1), name=f"new_shift_{n}")
                           for n in ("w1", "w2", "b1", "b2"))
        # The range check is pipelined (depth from sel; addr + count; the comparison), so the
        # states that use it come three cycles after count is final (the *_SETTLE states): the
        # adder and the comparator are kept off the paths of the state decoding.
        depth = Signal(16)
        end = Signal(17)
        past_end = Signal()
        m.d.sync += [depth.eq(Mux(sel < 5, Array(Const(g.depth(s), 16) for s in range(8))[sel[:3]], 0)),
                     end.eq(addr + count), past_end.eq(end > depth)]
        info = Array(Const(b, 8) for b in g.info())

        fetch = Signal(range(4))       # cycles the buffer address has been held
        buf_q = Signal(8)
        m.d.sync += buf_q.eq(buf_rd.data)
        # Checks the executing states make, each registered from registers that have held
        # still for at least a cycle when they are used.
        buf_bad_shift, buf_bad_hash, buf_bad_label = Signal(), Signal(), Signal()
        count_one, count_bad, pixel_last, pixel_ready = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [buf_bad_shift.eq(buf_q > LFSR_BITS),
                     buf_bad_hash.eq(buf_q != model_hash[idx[:3]]),
                     buf_bad_label.eq(buf_q >= c.outputs),
                     count_one.eq(count == 1),
                     count_bad.eq((count == 0) | (count > MAX_READ)),
                     pixel_last.eq(pixel == c.pixels - 1),
                     pixel_ready.eq(acc.pixels.ready)]
        is_write, is_shifts = Signal(), Signal()
        m.d.sync += [is_write.eq(cmd == Cmd.WRITE), is_shifts.eq(cmd == Cmd.SHIFTS)]
        # length is final when the frame executes (two cycles or more after LEN1)
        len_is = {n: Signal(name=f"len_is_{n}")
                  for n in (0, 4, HASH_BYTES + 4, c.pixels, c.pixels + TRAIN_OVERHEAD)}
        len_short = Signal()
        m.d.sync += [len_is[n].eq(length == n) for n in len_is]
        m.d.sync += len_short.eq(length < 11 + wb)

        def read_buffer(i):
            m.d.comb += buf_rd.addr.eq(i)

        def reply(kind):
            # reply_src and reply_cmd change only here (err only in nak): a repeated frame is
            # answered from them, and a colliding frame's cmd must not change that reply
            code = NAK if kind == Reply.ERROR else cmd | 0x80
            m.d.sync += [reply_src.eq(kind), reply_cmd.eq(code), send.eq(1)]
            m.next = "SEND"

        def nak(e: Error):
            m.d.sync += err.eq(e)
            reply(Reply.ERROR)

        tx_crc_on = Signal()            # the byte offered is one the CRC covers
        # (the receiving states below set crc_step for each byte they take)
        m.d.comb += crc_step.eq(self.tx.valid & self.tx.ready & tx_crc_on)

        tx_gap = Signal()               # the cycle after a byte sent: valid stays low
        m.d.sync += tx_gap.eq(self.tx.valid & self.tx.ready)
        out_last = Signal()             # the next payload byte sent is the reply's last
        m.d.sync += out_last.eq(out_i == reply_last)

        def offer(value, crc=True):
            """Offer ``value``; a context that runs when it is taken."""
            m.d.comb += [self.tx.payload.eq(value), self.tx.valid.eq(~tx_gap),
                         tx_crc_on.eq(crc)]
            return m.If(self.tx.ready & ~tx_gap)

        def emit(value, nxt, crc=True):
            with offer(value, crc):
                m.next = nxt

        def range_check(prefix, then, bad_length=Const(0)):
            """States PREFIX_SETTLE0/1 (the pipelined check catches up with count) and
            PREFIX_RANGE (NAK if ``bad_length``, or if addr + count passes the tensor's end;
            else ``then()``)."""
            with m.State(f"{prefix}_SETTLE0"):
                m.next = f"{prefix}_SETTLE1"
            with m.State(f"{prefix}_SETTLE1"):
                m.next = f"{prefix}_RANGE"
            with m.State(f"{prefix}_RANGE"):
                with m.If(bad_length):
                    nak(Error.BAD_LENGTH)
                with m.Elif(past_end):
                    nak(Error.BAD_ADDRESS)
                with m.Else():
                    then()

        tx_idle = Signal()              # the transmitter is waiting for a reply to send
        send = Signal()                 # a reply is ready: set by the receiver, cleared by the transmitter

        with m.FSM(name="rx_fsm"):
            with m.State("HUNT"):
                m.d.comb += rx_state.eq(1)
                with m.If(got):
                    with m.If(byte == SYNC):
                        m.d.comb += crc_init.eq(1)
                        m.d.sync += quiet.eq(0)
                        m.next = "CMD"
                    with m.Else():
                        m.d.sync += dropped.eq(dropped + 1)

            def receive(state, action):
                with m.State(state):
                    m.d.comb += rx_state.eq(1)
                    with m.If(got):
                        m.d.sync += quiet.eq(0)
                        action()
                    with m.Elif(timed_out):
                        m.next = "HUNT"
                    with m.Else():
                        m.d.sync += quiet.eq(quiet + 1)

            def on_cmd():
                m.d.comb += crc_step.eq(1)
                m.d.sync += cmd.eq(byte)
                m.next = "SEQ"

            def on_seq():
                m.d.comb += crc_step.eq(1)
                m.d.sync += seq.eq(byte)
                m.next = "LEN0"

            def on_len0():
                m.d.comb += crc_step.eq(1)
                m.d.sync += length[:8].eq(byte)
                m.next = "LEN1"

            def on_len1():
                n = Cat(length[:8], byte)
                m.d.comb += crc_step.eq(1)
                m.d.sync += [length[8:].eq(byte), idx.eq(0),
                             len_over.eq(n > MAX_PAYLOAD), len_zero.eq(n == 0)]
                m.next = "LEN_CHECK"

            def on_payload():
                m.d.comb += [buf_wr.addr.eq(idx), buf_wr.data.eq(byte), buf_wr.en.eq(1)]
                m.d.comb += crc_step.eq(1)
                m.d.sync += idx.eq(idx + 1)
                with m.If(payload_last):
                    m.next = "CRC0"

            def on_crc(k):
                """The CRC's byte ``k``, compared; CRC_CHECK decides."""
                def action():
                    matches = byte == _complement_byte(crc, k)
                    m.d.sync += crc_ok.eq(matches if k == 0 else crc_ok & matches)
                    m.next = f"CRC{k + 1}" if k < 3 else "CRC_CHECK"
                return action

            for state, action in (("CMD", on_cmd), ("SEQ", on_seq), ("LEN0", on_len0),
                                  ("LEN1", on_len1), ("PAYLOAD", on_payload),
                                  *((f"CRC{k}", on_crc(k)) for k in range(4))):
                receive(state, action)

            with m.State("LEN_CHECK"):
                with m.If(len_over):
                    m.next = "HUNT"
                with m.Elif(len_zero):
                    m.next = "CRC0"
                with m.Else():
                    m.next = "PAYLOAD"

            # The frame is done: execute it, answer a repeat, or drop it. A cycle after its last
            # byte (no byte can come in that cycle), so that the comparison of that byte is
            # registered: with the counters and the repeat rule's registers behind it, this was
            # the UP5K's longest path.
            with m.State("CRC_CHECK"):
                with m.If(crc_ok):
                    m.d.sync += frames.eq(frames + 1)
                    with m.If(repeat):
                        m.next = "REPEAT"
                    with m.Else():
                        m.d.sync += [idx.eq(0), last_seq.eq(seq), last_crc.eq(crc),
                                     last_valid.eq(~reports)]
                        m.next = "EXEC"
                with m.Else():
                    m.d.sync += crc_errors.eq(crc_errors + 1)
                    m.next = "HUNT"

            with m.State("REPEAT"):
                # the reply's registers still hold the first copy's reply
                m.d.sync += send.eq(1)
                m.next = "SEND"

            with m.State("EXEC"):
                with m.Switch(cmd):
                    with m.Case(Cmd.INFO):
                        with m.If(~len_is[0]):
                            nak(Error.BAD_LENGTH)
                        with m.Else():
                            reply(Reply.INFO)
                    with m.Case(Cmd.COUNTERS):
                        with m.If(~len_is[0]):
                            nak(Error.BAD_LENGTH)
                        with m.Else():
                            m.d.sync += dropped_then.eq(dropped)
                            reply(Reply.COUNTERS)
                    with m.Case(Cmd.SHIFTS):
                        with m.If(~len_is[HASH_BYTES + 4]):
                            nak(Error.BAD_LENGTH)
                        with m.Else():
                            m.d.sync += [idx.eq(0), fetch.eq(0)]
                            m.next = "HASH"
                    with m.Case(Cmd.WRITE):
                        with m.If(len_short):
                            nak(Error.BAD_LENGTH)
                        with m.Else():
                            m.d.sync += [idx.eq(0), fetch.eq(0), rem.eq(length - 11), count.eq(0),
                                         rem_step.eq(0)]
                            m.next = "HASH"
                    with m.Case(Cmd.READ):
                        with m.If(~len_is[4]):
                            nak(Error.BAD_LENGTH)
                        with m.Else():
                            m.d.sync += [idx.eq(0), fetch.eq(0)]
                            m.next = "READ_ARGS"
                    with m.Case(Cmd.CLASSIFY):
                        with m.If(~len_is[c.pixels]):
                            nak(Error.BAD_LENGTH)
                        with m.Else():
                            m.d.sync += [idx.eq(0), fetch.eq(0), pixel.eq(0)]
                            m.next = "PIXELS"
                    with m.Case(Cmd.TRAIN):
                        with m.If(~len_is[c.pixels + TRAIN_OVERHEAD]):
                            nak(Error.BAD_LENGTH)
                        with m.Else():
                            m.d.sync += [idx.eq(0), fetch.eq(0), pixel.eq(0)]
                            m.next = "HASH"
                    with m.Default():
                        nak(Error.UNKNOWN_COMMAND)

            # Executing states read the frame buffer one byte at a time: the address (idx)
            # is held for four cycles, the byte is used from a register (buf_q) and the checks
            # on it from registers too (buf_*), so neither the block RAM's slow output nor a
            # comparator sits in front of the state logic (paths that limited Fmax).
            def consume():
                """Within ``state``: a context that runs once buf_q holds buffer[idx] and
                the buf_* checks are of that byte."""
                read_buffer(idx)
                with m.If(fetch != 3):
                    m.d.sync += fetch.eq(fetch + 1)
                return m.If(fetch == 3)

            # WRITE, SHIFTS and TRAIN start with the model hash.
            with m.State("HASH"):
                with consume():
                    m.d.sync += [fetch.eq(0), idx.eq(idx + 1)]
                    with m.If(buf_bad_hash):
                        nak(Error.WRONG_MODEL)
                    with m.Elif(idx == HASH_BYTES - 1):
                        with m.If(is_write):
                            m.next = "W_HEADER"
                        with m.Elif(is_shifts):
                            m.next = "SHIFTS"
                        with m.Else():
                            m.next = "LABEL"

            # SHIFTS: four bytes, each at most LFSR_BITS, all or nothing.
            with m.State("SHIFTS"):
                with consume():
                    m.d.sync += [fetch.eq(0), idx.eq(idx + 1), new_shifts[idx[:2]].eq(buf_q)]
                    with m.If(buf_bad_shift):
                        nak(Error.BAD_SHIFT)
                    with m.Elif(idx == HASH_BYTES + 3):
                        m.next = "SHIFTS_SET"
            with m.State("SHIFTS_SET"):
                m.d.sync += [shifts[i].eq(new_shifts[i]) for i in range(4)]
                reply(Reply.EMPTY)

            # WRITE: (model hash,) sel and addr, then the word count by repeated subtraction
            # (no divider), then the words.
            with m.State("W_HEADER"):
                with consume():
                    m.d.sync += [fetch.eq(0), idx.eq(idx + 1)]
                    with m.Switch(idx):
                        with m.Case(8):
                            m.d.sync += sel.eq(buf_q)
                        with m.Case(9):
                            m.d.sync += addr[:8].eq(buf_q)
                        with m.Default():
                            m.d.sync += addr[8:].eq(buf_q)
                            m.next = "W_COUNT"
            with m.State("W_COUNT"):
                # a subtraction every other cycle; the cycles between compare rem
                m.d.sync += [rem_step.eq(~rem_step), rem_ge.eq(rem >= wb), rem_zero.eq(rem == 0)]
                with m.If(rem_step):
                    with m.If(rem_ge):
                        m.d.sync += [rem.eq(rem - wb), count.eq(count + 1)]
                    with m.Elif(~rem_zero):
                        nak(Error.BAD_LENGTH)
                    with m.Else():
                        m.next = "W_SETTLE0"

            def first_word():
                m.d.sync += [idx.eq(11), word_i.eq(0)]
                m.next = "W_BYTES"
            range_check("W", first_word)
            with m.State("W_BYTES"):
                with consume():
                    m.d.sync += [fetch.eq(0), idx.eq(idx + 1), word_i.eq(word_i + 1),
                                 word.eq(Cat(word[8:], buf_q))]
                    with m.If(word_i == wb - 1):
                        m.next = "W_PORT"
            with m.State("W_PORT"):
                m.d.sync += [port_we.eq(1), count.eq(count - 1), word_i.eq(0)]
                with m.If(count_one):
                    reply(Reply.EMPTY)
                with m.Else():
                    m.next = "W_BYTES"

            # READ: sel, addr, n; then the reply streams words read through the port.
            with m.State("READ_ARGS"):
                with consume():
                    m.d.sync += [fetch.eq(0), idx.eq(idx + 1)]
                    with m.Switch(idx):
                        with m.Case(0):
                            m.d.sync += sel.eq(buf_q)
                        with m.Case(1):
                            m.d.sync += addr[:8].eq(buf_q)
                        with m.Case(2):
                            m.d.sync += addr[8:].eq(buf_q)
                        with m.Default():
                            m.d.sync += count.eq(buf_q)
                            m.next = "READ_SETTLE0"
            range_check("READ", lambda: reply(Reply.WORDS), bad_length=count_bad)

            # TRAIN: (model hash,) label; CLASSIFY / TRAIN: pixels into the accelerator, run,
            # reply.
            with m.State("LABEL"):
                with consume():
                    m.d.sync += [fetch.eq(0), idx.eq(TRAIN_OVERHEAD)]
                    with m.If(buf_bad_label):
                        nak(Error.BAD_LABEL)
                    with m.Else():
                        m.d.sync += label.eq(buf_q)
                        m.next = "PIXELS"
            with m.State("PIXELS"):
                with consume():
                    # pixel_ready is the accelerator's ready: it changes only when it takes a
                    # pixel, and pixels are at least four cycles apart
                    m.d.comb += [acc.pixels.payload.eq(buf_q), acc.pixels.valid.eq(pixel_ready)]
                    with m.If(pixel_ready):
                        m.d.sync += [fetch.eq(0), idx.eq(idx + 1), pixel.eq(pixel + 1)]
                        with m.If(pixel_last):
                            m.next = "START"
            with m.State("START"):
                m.d.sync += acc_start.eq(1)
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(acc.done):
                    m.d.sync += [samples.eq(samples + 1), self.prediction.eq(acc.prediction)]
                    reply(Reply.RESULT)

            with m.State("SEND"):
                with m.If(~send & tx_idle):
                    m.next = "HUNT"

        # The reply: header (with the request's seq), payload, CRC.
        with m.FSM(name="tx_fsm"):
            with m.State("IDLE"):
                m.d.comb += tx_idle.eq(1)
                with m.If(send):
                    m.d.sync += send.eq(0)
                    m.next = "H0"
            with m.State("H0"):
                m.d.comb += crc_init.eq(1)
                m.d.sync += [out_i.eq(0), word_i.eq(0)]
                emit(SYNC, "H1", crc=False)
            with m.State("H1"):
                emit(reply_cmd, "H_SEQ")
            with m.State("H_SEQ"):
                emit(seq, "H2")
            with m.State("H2"):
                emit(reply_len16[:8], "H3")
            with m.State("H3"):
                with m.If(reply_empty):
                    emit(reply_len16[8:], "C0")
                with m.Elif(reply_src == Reply.WORDS):
                    emit(reply_len16[8:], "P_READ")
                with m.Else():
                    emit(reply_len16[8:], "P_SMALL")
            with m.State("P_SMALL"):
                i = out_i[:4]
                results = Array([self.prediction, *(acc.spike_counts[k] for k in range(c.outputs))])
                with m.Switch(reply_src):
                    with m.Case(Reply.ERROR):
                        m.d.comb += self.tx.payload.eq(err)
                    with m.Case(Reply.INFO):
                        m.d.comb += self.tx.payload.eq(info[i])
                    with m.Case(Reply.COUNTERS):
                        m.d.comb += self.tx.payload.eq(
                            Cat(frames, crc_errors, dropped_then, samples).word_select(i, 8))
                    with m.Case(Reply.RESULT):
                        m.d.comb += self.tx.payload.eq(results[i])
                m.d.comb += [self.tx.valid.eq(~tx_gap), tx_crc_on.eq(1)]
                with m.If(self.tx.ready & ~tx_gap):
                    m.d.sync += out_i.eq(out_i + 1)
                    with m.If(out_last):
                        m.next = "C0"
            with m.State("P_READ"):
                m.d.sync += port_re.eq(1)
                m.next = "P_WAIT"
            with m.State("P_WAIT"):
                with m.If(acc.port.rvalid):
                    m.d.sync += [word.eq(acc.port.rdata), word_i.eq(0)]
                    m.next = "P_WORD"
            with m.State("P_WORD"):
                with offer(word[:8]):
                    m.d.sync += [word.eq(word >> 8),
                                 word_i.eq(word_i + 1), out_i.eq(out_i + 1)]
                    with m.If(out_last):
                        m.next = "C0"
                    with m.Elif(word_i == wb - 1):
                        m.next = "P_READ"
            for k in range(4):
                with m.State(f"C{k}"):
                    emit(_complement_byte(crc, k), f"C{k + 1}" if k < 3 else "IDLE", crc=False)
        return m
