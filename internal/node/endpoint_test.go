package node

import (
	"bytes"
	"errors"
	"net"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// seqpacketPair is a connected SOCK_SEQPACKET pair: the node's side as a
// *net.UnixConn, the process's as a raw fd.
func seqpacketPair(t *testing.T) (*net.UnixConn, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "node side")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); unix.Close(fds[1]) })
	return c.(*net.UnixConn), fds[1]
}

// TestEndpointPauseCarry: a process's packets go out in order; once its
// job is paused for a migration nothing more enters its socket, what
// comes waits in the node and is exported in order; the destination's
// adopt puts it after what the agent re-queued from the old socket.
func TestEndpointPauseCarry(t *testing.T) {
	var eps endpoints
	c, proc := seqpacketPair(t)
	eps.mu.Lock()
	p := eps.proc("n1-1.5", "n1-1")
	p.gen = 1
	e := &epConn{c: c, p: p, drain: make(chan chan struct{}, 1)}
	p.conn = e
	eps.mu.Unlock()
	done := make(chan struct{})
	go func() { defer close(done); eps.write(e) }()
	read := func() []byte {
		b := make([]byte, 100)
		n, _, err := unix.Recvfrom(proc, b, 0)
		if err != nil {
			t.Fatal(err)
		}
		return b[:n]
	}
	eps.push("n1-1.5", "n1-1", []byte("one"))
	eps.push("n1-1.5", "n1-1", []byte("two"))
	if a, b := read(), read(); string(a) != "one" || string(b) != "two" {
		t.Fatalf("read %q, %q", a, b)
	}
	// The reader goroutine's part of a pause, done at once here.
	go func() { d := <-e.drain; close(d) }()
	ids := eps.pause("n1-1")
	if len(ids) != 1 {
		t.Fatalf("pause named %v", ids)
	}
	for _, id := range ids {
		if id != "n1-1.5" {
			t.Fatalf("pause named %v", ids)
		}
	}
	eps.push("n1-1.5", "n1-1", []byte("three"))
	eps.push("n1-1.5", "n1-1", []byte("four"))
	eps.result("n1-1.5", 1, 7, 0, "")
	eps.result("n1-1.5", 0, 8, 0, "") // an older connection's: dropped
	if _, _, err := unix.Recvfrom(proc, make([]byte, 100), unix.MSG_DONTWAIT); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("a paused job's socket got a packet (err %v)", err)
	}
	out := eps.export("n1-1")
	if len(out) != 1 || len(out[0].Queue) != 3 || string(out[0].Queue[0]) != "three" || string(out[0].Queue[1]) != "four" || out[0].Gen != 1 {
		t.Fatalf("export %+v", out)
	}
	eps.forget("n1-1")
	<-done

	// The destination: the agent's connection came first with what was
	// unread in the old socket; the carried queue goes after it.
	var dst endpoints
	dst.mu.Lock()
	q := dst.proc("n1-1.5", "n1-1")
	q.queue = [][]byte{[]byte("unread")}
	dst.mu.Unlock()
	dst.adopt("n1-1", out)
	dst.mu.Lock()
	defer dst.mu.Unlock()
	want := [][]byte{[]byte("unread"), []byte("three"), []byte("four"), out[0].Queue[2]}
	if len(q.queue) != len(want) || q.gen != 1 {
		t.Fatalf("adopted queue %q gen %d", q.queue, q.gen)
	}
	for i := range want {
		if !bytes.Equal(q.queue[i], want[i]) {
			t.Fatalf("adopted queue %q, want %q", q.queue, want)
		}
	}
}
