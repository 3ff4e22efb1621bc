# A job's process that sends numbered messages to one receiver in phases,
# over one connection (one sender, one sequence): for each trigger file
# given, it waits until the file exists, then sends the next COUNT
# messages ("m1", "m2", ...), each a blocking send, and prints
# "phase K sent N" (N: sent so far). Errors are printed and end it.
#
#	msg_phases.py LIBDIR RECEIVER COUNT TRIGGER...
import os
import sys
import time
sys.path.insert(0, sys.argv[1])
import ferrymsg

to, count, triggers = sys.argv[2], int(sys.argv[3]), sys.argv[4:]
n = 0
with ferrymsg.connect() as c:
    print("ready", c.id, flush=True)
    for k, trig in enumerate(triggers, 1):
        while not os.path.exists(trig):
            time.sleep(0.02)
        for _ in range(count):
            n += 1
            try:
                c.send(to, ("m%d" % n).encode())
            except ferrymsg.Error as e:
                print("error m%d" % n, type(e).__name__, e, flush=True)
                sys.exit(1)
        print("phase", k, "sent", n, flush=True)
print("done", flush=True)
