# A job's process that sends messages through its node's endpoint and
# prints the outcome of each: "sent <i>", or the error's class and text.
import sys
sys.path.insert(0, sys.argv[1])
import ferrymsg

to = sys.argv[2]
with ferrymsg.connect() as c:
    for i in range(1, 4):
        c.send(to, str(i).encode())
        print("sent", i, flush=True)
    for name, dest, payload in [
        ("big", to, b"x" * (64 * 1024 + 1)),
        ("unknown", to.rsplit(".", 1)[0] + ".4000", b"?"),
        ("nojob", "n1-999.100", b"?"),
    ]:
        try:
            c.send(dest, payload)
            print(name, "sent", flush=True)
        except ferrymsg.Error as e:
            print(name, type(e).__name__, e, flush=True)
print("done", flush=True)
