"""real_python: a CPython interpreter checkpointed mid-run.

The script builds a dict, a list and a bytearray, opens a file, and runs a
background thread that keeps counting. After go it checks the data against
digests taken before the checkpoint, the thread is still counting, the file
offset is kept, and prints PASS or FAIL like the C programs.
"""
import hashlib
import os
import sys
import threading
import time

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("check failed: " + msg, flush=True)


def digest(obj):
    return hashlib.sha256(repr(obj).encode()).hexdigest()


class Counter(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.n = 0
        self.stop = False

    def run(self):
        while not self.stop:
            self.n += 1
            if self.n % 1000 == 0:
                time.sleep(0.001)


def main():
    pid = os.getpid()
    data = {i: str(i) * 3 for i in range(100000)}
    squares = [i * i for i in range(200000)]
    blob = bytearray(os.urandom(1 << 20))
    d_data, d_squares, d_blob = digest(sorted(data.items())), digest(squares), hashlib.sha256(blob).hexdigest()

    with open("py.txt", "w") as f:
        f.write("".join("line %d\n" % i for i in range(1000)))
    fh = open("py.txt")
    fh.readline()
    fh.readline()
    pos = fh.tell()

    counter = Counter()
    counter.start()
    while counter.n == 0:
        time.sleep(0.001)

    os.write(3, b"R")
    os.close(3)
    go = os.environ["ZDTM_GO"]
    while not os.path.exists(go):
        time.sleep(0.005)

    check(os.getpid() == pid, "pid %d, want %d" % (os.getpid(), pid))
    check(digest(sorted(data.items())) == d_data, "dict changed")
    check(digest(squares) == d_squares, "list changed")
    check(hashlib.sha256(blob).hexdigest() == d_blob, "bytearray changed")
    check(fh.tell() == pos, "file position %d, want %d" % (fh.tell(), pos))
    check(fh.readline() == "line 2\n", "next line of the file is wrong")
    n0 = counter.n
    deadline = time.monotonic() + 5
    while counter.n <= n0 + 10000 and time.monotonic() < deadline:
        time.sleep(0.01)
    check(counter.n > n0 + 10000, "thread stopped counting (%d -> %d)" % (n0, counter.n))
    counter.stop = True
    counter.join(5)
    check(not counter.is_alive(), "thread did not finish")
    data[-1] = "new"
    squares.append(-1)
    check(len(data) == 100001 and len(squares) == 200001, "containers broken")

    if failures:
        print("FAIL: %s" % failures[0] + (" (and %d more)" % (len(failures) - 1) if len(failures) > 1 else ""), flush=True)
        sys.exit(1)
    print("PASS", flush=True)


if __name__ == "__main__":
    main()
