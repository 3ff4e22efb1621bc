"""ferrymsg: the Python client of ferry's in-job message endpoint.

Standard library only. A process of a ferry job connects to its node's
endpoint (a unix SOCK_SEQPACKET socket at /run/ferry/msg.sock, or
$FERRY_MSG_SOCKET) and sends messages of up to 64 KiB to other processes
by their location-independent id, "<job>.<pid>" such as "n1-4.101". The
protocol is specified in the Go package ferry/msg (msg/doc.go).

    import ferrymsg
    with ferrymsg.connect() as c:
        c.send("n1-4.101", b"hello")      # blocks until delivered
        sender, payload = c.recv()         # blocks until a message

A connection is not thread-safe.
"""

import os
import re
import select
import socket
import struct
import time

DEFAULT_PATH = "/run/ferry/msg.sock"
PATH_ENV = "FERRY_MSG_SOCKET"
MAX_PAYLOAD = 64 * 1024
MAX_ID = 255
VERSION = 1

_HDR = struct.Struct("<2sBBI")  # magic, version, type, seq
_HELLO, _SEND, _MSG, _RESULT, _ERROR = 1, 2, 3, 4, 5
_MAX_PACKET = _HDR.size + 1 + MAX_ID + MAX_PAYLOAD
_MAX_TEXT = 1024
_ID_RE = re.compile(r"\A[A-Za-z0-9._-]+\.(0|[1-9][0-9]{0,9})\Z")


class Error(Exception):
    """Base of this module's errors."""


class WouldBlock(Error, BlockingIOError):
    """A non-blocking call found nothing to do now."""


class TooBig(Error):
    """A payload over 64 KiB; nothing was sent."""


class BadID(Error, ValueError):
    """Not an id."""


class ProtocolError(Error):
    """The node broke the protocol; the connection is unusable."""


class Closed(Error):
    """The connection is closed."""


class Undeliverable(Error):
    """The node refused the message; .id, .code and .text say why."""

    def __init__(self, id, code, text):
        super().__init__("send to %s: %s" % (id, text or "code %d" % code))
        self.id, self.code, self.text = id, code, text


class UnknownID(Undeliverable):
    """The cluster knows no process with that id."""


class ReceiverEnded(Undeliverable):
    """The receiver has ended."""


class Unreachable(Undeliverable):
    """Held and retried until the node's deadline, not delivered."""


class Malformed(Undeliverable):
    """The node says our packet was malformed."""


class Denied(Undeliverable):
    """Not allowed to send to that id."""


class PayloadRefused(Undeliverable, TooBig):
    """The node refused the payload as too big."""


_BY_CODE = {1: UnknownID, 2: ReceiverEnded, 3: Unreachable, 4: PayloadRefused, 5: Malformed, 6: Denied}


def _deadline(timeout):
    return None if timeout is None else time.monotonic() + timeout


def _left(deadline):
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def parse_id(s):
    """Check that s is an id ("<job>.<pid>") and return it."""
    if not isinstance(s, str) or len(s.encode()) > MAX_ID or not _ID_RE.match(s) \
            or int(s.rsplit(".", 1)[1]) > 2**31 - 1:
        raise BadID("bad id %r: want <job>.<pid>" % (s,))
    return s


def self_id():
    """This process's id from $FERRY_JOB and getpid(), without connecting."""
    job = os.environ.get("FERRY_JOB")
    if not job:
        raise BadID("FERRY_JOB is not set (not in a ferry job?)")
    return parse_id("%s.%d" % (job, os.getpid()))


def connect(path=None, timeout=10.0):
    """Connect to the endpoint and read the node's HELLO."""
    return Conn(path, timeout)


class Conn:
    """A connection to the node's message endpoint."""

    def __init__(self, path=None, timeout=10.0):
        path = path or os.environ.get(PATH_ENV) or DEFAULT_PATH
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._seq = 0
        self._queue = []          # (from, payload) read but not yet returned
        self._outcomes = {}       # seq -> None (waiting) or (id, code, text)
        self._to = {}             # seq -> destination
        self._broken = None
        try:
            self._sock.connect(path)
            b = self._read(timeout)
            if b is None:
                raise ProtocolError("%s: no HELLO within %ss" % (path, timeout))
            typ = b[3]
            body = b[_HDR.size:]
            if typ != _HELLO or len(body) < 5 or body[4] == 0 or len(body) != 5 + body[4]:
                raise ProtocolError("%s: first packet is not a valid HELLO" % path)
            self.max_payload = min(struct.unpack_from("<I", body)[0], MAX_PAYLOAD)
            self.id = parse_id(body[5:].decode())
        except BadID as e:
            self._sock.close()
            raise ProtocolError("HELLO: %s" % e) from None
        except BaseException:
            self._sock.close()
            raise

    # -- sending -------------------------------------------------------

    def send(self, to, payload, timeout=None):
        """Send payload (bytes) to id to and wait for the node's outcome:
        returns once delivered, raises Undeliverable (UnknownID, ...).
        If timeout (seconds) passes first: WouldBlock, and the message may
        still be delivered."""
        seq = self._send(to, payload, block=True)
        return self.result(seq, timeout)

    def send_nb(self, to, payload):
        """Send without blocking (WouldBlock if the socket is full, nothing
        sent); returns the sequence number whose outcome result() gives."""
        return self._send(to, payload, block=False)

    def _send(self, to, payload, block):
        self._check()
        parse_id(to)
        payload = bytes(payload)
        if len(payload) > self.max_payload:
            raise TooBig("send to %s: payload of %d bytes, limit %d" % (to, len(payload), self.max_payload))
        self._seq = self._seq % (2**32 - 1) + 1
        dst = to.encode()
        pkt = _HDR.pack(b"FM", VERSION, _SEND, self._seq) + bytes([len(dst)]) + dst + payload
        try:
            self._sock.sendmsg([pkt], [], 0 if block else socket.MSG_DONTWAIT)
        except BlockingIOError:
            raise WouldBlock("send to %s: the socket is full" % to) from None
        except (BrokenPipeError, ConnectionResetError):
            self._fail(Closed("the node closed the connection"))
        self._outcomes[self._seq] = None
        self._to[self._seq] = to
        return self._seq

    def result(self, seq, timeout=None):
        """Wait for the outcome of message seq (timeout None: forever;
        0: do not wait, WouldBlock if not yet known)."""
        if seq not in self._outcomes:
            raise Error("no outcome pending for message %d" % seq)
        deadline = _deadline(timeout)
        while self._outcomes[seq] is None:
            if self._broken:
                del self._outcomes[seq], self._to[seq]
                raise self._broken
            self._read_one(_left(deadline))
        to, code, text = self._outcomes.pop(seq)
        del self._to[seq]
        if code:
            raise _BY_CODE.get(code, Undeliverable)(to, code, text)

    # -- receiving -----------------------------------------------------

    def recv(self, timeout=None):
        """Wait for a message; returns (sender id, payload bytes)."""
        deadline = _deadline(timeout)
        while not self._queue:
            if self._broken:
                raise self._broken
            self._read_one(_left(deadline))
        return self._queue.pop(0)

    def recv_nb(self):
        """A message if one is waiting, else WouldBlock."""
        return self.recv(timeout=0)

    def pending(self):
        """Messages read off the socket (by send or result) and queued:
        they do not make fileno() readable."""
        return len(self._queue)

    def fileno(self):
        """The socket, for select/poll (readable: call recv_nb until
        WouldBlock; also before waiting, if pending() > 0)."""
        return self._sock.fileno()

    def close(self):
        if not self._broken:
            self._broken = Closed("connection closed")
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- internals -----------------------------------------------------

    def _check(self):
        if self._broken:
            raise self._broken

    def _fail(self, err):
        if not self._broken:
            self._broken = err
        raise self._broken

    def _read(self, timeout):
        """One packet's bytes, or None if none came within timeout."""
        if timeout is not None:
            r, _, _ = select.select([self._sock], [], [], timeout)
            if not r:
                return None
        try:
            b, _, flags, _ = self._sock.recvmsg(_MAX_PACKET)
        except BlockingIOError:
            return None
        except OSError as e:
            self._fail(Closed("recvmsg: %s" % e))
        if not b:
            self._fail(Closed("the node closed the connection"))
        if flags & socket.MSG_TRUNC:
            self._fail(ProtocolError("packet over %d bytes (truncated on receipt)" % _MAX_PACKET))
        if len(b) < _HDR.size:
            self._fail(ProtocolError("%d bytes, shorter than the %d-byte header" % (len(b), _HDR.size)))
        magic, version, _, _ = _HDR.unpack_from(b)
        if magic != b"FM":
            self._fail(ProtocolError("bad magic %r" % magic))
        if version != VERSION:
            self._fail(ProtocolError("node speaks version %d, this module %d" % (version, VERSION)))
        return b

    def _read_one(self, timeout):
        b = self._read(timeout)
        if b is None:
            raise WouldBlock("nothing to read")
        _, _, typ, seq = _HDR.unpack_from(b)
        body = b[_HDR.size:]
        if typ == _HELLO:
            if len(body) < 5 or body[5:5 + body[4]].decode(errors="replace") != self.id:
                self._fail(ProtocolError("HELLO again, not with id %s" % self.id))
        elif typ == _MSG:
            if not body or body[0] == 0 or len(body) < 1 + body[0] or len(body) - 1 - body[0] > MAX_PAYLOAD:
                self._fail(ProtocolError("MSG: id length does not match the packet"))
            sender = body[1:1 + body[0]].decode(errors="replace")
            try:
                parse_id(sender)
            except BadID as e:
                self._fail(ProtocolError("MSG: sender: %s" % e))
            self._queue.append((sender, bytes(body[1 + body[0]:])))
        elif typ in (_RESULT, _ERROR):
            if len(body) < 4:
                self._fail(ProtocolError("short RESULT or ERROR"))
            code, n = struct.unpack_from("<HH", body)
            if n > _MAX_TEXT or len(body) != 4 + n:
                self._fail(ProtocolError("text length does not match the packet"))
            text = body[4:].decode(errors="replace")
            if typ == _ERROR:
                self._fail(ProtocolError("node reports code %d: %s" % (code, text)))
            if self._outcomes.get(seq, 1) is not None:
                self._fail(ProtocolError("RESULT for message %d, which is not waiting for one" % seq))
            self._outcomes[seq] = (self._to[seq], code, text)
        else:
            self._fail(ProtocolError("unknown packet type %d" % typ))
