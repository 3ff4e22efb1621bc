package postcopy

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/dump"
	"ferry/internal/image"
	"ferry/internal/ptrace"
	"ferry/internal/restore"
)

// TestServeLocal serves a lazy restore from ServeOptions.Read (reading the
// frozen source through the function, not process_vm_readv) inside this
// process: the workload runs on while it fills, then verifies its memory.
// Pages Read reports as holding nothing (zeros) become zero pages.
func TestServeLocal(t *testing.T) {
	needRoot(t)
	defer checkNoPagerGoroutines(t)
	ctx := context.Background()
	w := startWorkload(t, 16, 8, 1, 50*time.Millisecond)
	tr := newTracer(t)
	dres, img := lazyDump(t, tr, w.PID(), w.Reap)
	last, err := w.Drain(100 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	res := restoreLazy(t, tr, dres, img)
	var reads atomic.Int64
	read := func(pid int, addr uint64, buf []byte) error {
		reads.Add(1)
		if pid != w.PID() {
			return errors.New("unknown pid")
		}
		return ptrace.ReadMem(pid, addr, buf)
	}
	st, err := ServeLocal(ctx, res.Lazy, read, LocalOptions{Log: testLog()})
	if err != nil {
		t.Fatal(err)
	}
	if reads.Load() == 0 || st.PagesCopied == 0 || st.ResidualEnded.IsZero() {
		t.Errorf("%d reads; pager stats look wrong: %+v", reads.Load(), st)
	}
	t.Logf("%d reads, %d pages copied, %d zero, %d faults, in %v", reads.Load(), st.PagesCopied, st.ZeroPages, st.Faults,
		st.ResidualEnded.Sub(st.Started))
	for start := last.Verified; last.Verified < start+2; {
		p, err := w.Next(ctx, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if p.Tick != last.Tick+1 {
			t.Fatalf("restored copy printed tick %d after %d", p.Tick, last.Tick)
		}
		last = p
	}
}

// TestServeLocalReadFails: when Read fails, ServeLocal kills the
// processes (they cannot get their memory) and says so.
func TestServeLocalReadFails(t *testing.T) {
	needRoot(t)
	defer checkNoPagerGoroutines(t)
	w := startWorkload(t, 16, 0, 1, 50*time.Millisecond)
	tr := newTracer(t)
	dres, img := lazyDump(t, tr, w.PID(), w.Reap)
	res := restoreLazy(t, tr, dres, img)
	var reads atomic.Int64
	read := func(pid int, addr uint64, buf []byte) error {
		if reads.Add(1) > 8 {
			return errors.New("test: the pages are gone")
		}
		return ptrace.ReadMem(pid, addr, buf)
	}
	_, err := ServeLocal(context.Background(), res.Lazy, read, LocalOptions{Log: testLog()})
	if err == nil || !strings.Contains(err.Error(), "the pages are gone") || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("ServeLocal = %v, want the read error and the processes killed", err)
	}
	t.Logf("ServeLocal: %v", err)
	pid := res.Lazy[0].PID
	var ws unix.WaitStatus
	got, err := unix.Wait4(pid, &ws, 0, nil)
	if err != nil || got != pid || !ws.Signaled() || ws.Signal() != unix.SIGKILL {
		t.Fatalf("restored process %d: wait4 = %d, %v, status %v; want killed", pid, got, err, ws)
	}
}

// restoreLazy restores img lazily under new PIDs, with no transfer yet.
// Cleanup kills the restored processes (ServeLocal closes the
// userfaultfds).
func restoreLazy(t *testing.T, tr *ptrace.Tracer, dres *dump.Result, img []byte) *restore.Result {
	t.Helper()
	ir, err := image.NewReaderBytes(img)
	if err != nil {
		t.Fatal(err)
	}
	inherit := inheritPipes(t, dres)
	res, err := restore.Restore(context.Background(), tr, ir, restore.Options{NewPIDs: true, Lazy: true, Inherit: inherit})
	closeAll(inherit)
	if err != nil {
		t.Fatal(err)
	}
	lazy := res.Lazy
	t.Cleanup(func() {
		for _, lp := range lazy {
			unix.Kill(lp.PID, unix.SIGKILL)
		}
		killRestored(res)
	})
	if len(res.Lazy) != 1 {
		t.Fatalf("%d lazy processes, want 1", len(res.Lazy))
	}
	return res
}
