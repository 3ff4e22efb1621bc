# A job's process that receives numbered messages through its node's
# endpoint (the Python client) and checks them as msgrecv does: from each
# sender 1, 2, 3, ... then "end N". Prints "ready <id>", "ok <sender> <N>"
# per sender that ended, or "error ..." and exits 1. Like msgrecv, it
# sends "ack K" every 25 messages and "final K" at the end.
import sys
sys.path.insert(0, sys.argv[1])
import ferrymsg

senders = int(sys.argv[2]) if len(sys.argv) > 2 else 1
last = {}
ended = 0
with ferrymsg.connect() as c:
    print("ready", c.id, flush=True)
    while ended < senders:
        sender, payload = c.recv()
        s = payload.decode()
        if s.startswith("end "):
            if s[4:] != str(last.get(sender, 0)):
                print("error", sender, "ended at", s[4:], "last received", last.get(sender, 0), flush=True)
                sys.exit(1)
            c.send(sender, ("final %d" % (last.get(sender, 0) // 25 * 25)).encode())
            print("ok", sender, s[4:], flush=True)
            ended += 1
            continue
        if not s.isdigit() or int(s) != last.get(sender, 0) + 1:
            print("error from", sender, repr(s), "after", last.get(sender, 0), flush=True)
            sys.exit(1)
        last[sender] = int(s)
        if last[sender] % 25 == 0:
            c.send(sender, ("ack %d" % last[sender]).encode())
