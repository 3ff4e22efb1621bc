"""Test of ferrymsg against msgtest's fake endpoint, run by
clients/python/gotest (which sets FERRY_MSG_SOCKET and the rules for
the ids used here). Prints "POLL <id>" before it polls, so that the driver
injects a message only then; prints PASS at the end."""

import os
import select
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ferrymsg  # noqa: E402


def expect(exc, fn, *args):
    try:
        fn(*args)
    except exc as e:
        return e
    raise AssertionError("%s%r: no %s" % (fn.__name__, args, exc.__name__))


def main():
    c = ferrymsg.connect()
    me = "t1-1.%d" % os.getpid()
    assert c.id == me, (c.id, me)

    # ids
    for good in ["n1-4.101", "n1-4.0", "a.b-c.2147483647"]:
        assert ferrymsg.parse_id(good) == good
    for bad in ["", "n1-4", ".1", "n1-4.", "n1-4.01", "n1 4.1", "n1-4.2147483648", "a" * 254 + ".1"]:
        expect(ferrymsg.BadID, ferrymsg.parse_id, bad)
    os.environ["FERRY_JOB"] = "n1-4"
    assert ferrymsg.self_id() == "n1-4.%d" % os.getpid()

    expect(ferrymsg.WouldBlock, c.recv_nb)
    assert isinstance(expect(ferrymsg.WouldBlock, c.recv_nb), BlockingIOError)

    # round trip, 64 KiB exactly, 64 KiB + 1 refused
    c.send(me, b"hello")
    assert c.recv() == (me, b"hello")
    big = bytes(i * 7 % 256 for i in range(ferrymsg.MAX_PAYLOAD))
    c.send(me, big)
    assert c.recv(timeout=10) == (me, big)
    e = expect(ferrymsg.TooBig, c.send, me, big + b"!")
    assert "65537" in str(e), e

    # the node's refusals
    e = expect(ferrymsg.UnknownID, c.send, "nobody.1", b"x")
    assert "nobody.1" in str(e) and isinstance(e, ferrymsg.Undeliverable), e
    expect(ferrymsg.ReceiverEnded, c.send, "ended.1", b"x")
    expect(ferrymsg.Unreachable, c.send, "far.1", b"x")
    expect(ferrymsg.Denied, c.send, "denied.1", b"x")
    expect(ferrymsg.BadID, c.send, "nodot", b"x")

    # non-blocking send, outcome later
    seq = c.send_nb(me, b"nb")
    c.result(seq, timeout=10)
    assert c.pending() == 1
    assert c.recv_nb() == (me, b"nb")

    # select wakes when a message arrives
    r, _, _ = select.select([c], [], [], 0)
    assert not r, "readable with nothing sent"
    print("POLL", c.id, flush=True)
    r, _, _ = select.select([c], [], [], 10)
    assert r, "select did not wake"
    assert c.recv_nb() == ("n2-1.7", b"woke")
    expect(ferrymsg.WouldBlock, c.recv_nb)

    # a malformed packet from the node
    e = expect(ferrymsg.ProtocolError, c.send, "garbage.1", b"x")
    assert "magic" in str(e), e
    expect(ferrymsg.ProtocolError, c.send, me, b"x")
    c.close()
    expect(ferrymsg.Error, c.recv)
    print("PASS")


if __name__ == "__main__":
    main()
