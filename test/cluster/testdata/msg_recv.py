# A job's process that receives N messages through its node's endpoint
# and prints each as "got <sender> <payload>", then "done".
import sys
sys.path.insert(0, sys.argv[1])
import ferrymsg

n = int(sys.argv[2])
with ferrymsg.connect() as c:
    print("ready", c.id, flush=True)
    for _ in range(n):
        sender, payload = c.recv(timeout=60)
        print("got", sender, payload.decode(), flush=True)
print("done", flush=True)
