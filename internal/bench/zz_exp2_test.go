package bench

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"ferry/internal/ptrace"
)

func TestExpReadv(t *testing.T) {
	cmd := exec.Command("/tmp/scratch/ferry-bin", "workload", "--mem", "1024", "--rate", "0", "--threads", "1")
	w, err := StartWorkload(context.Background(), cmd, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	tr := ptrace.NewTracer()
	defer tr.Close()
	for _, chunk := range []int{64 << 10, 256 << 10, 1 << 20, 8 << 20, 64 << 20} {
		buf := NewBuffer(chunk)
		var ds []time.Duration
		var n int64
		for range 5 {
			nn, d, err := ReadvLimit(context.Background(), tr, w.PID(), buf)
			if err != nil {
				t.Fatal(err)
			}
			n = nn
			ds = append(ds, d)
		}
		slices.Sort(ds)
		t.Logf("chunk %6d KiB: %.1f ms %.2f GB/s (min %.1f max %.1f)", chunk>>10, ms(ds[2]), gbps(n, ds[2]), ms(ds[0]), ms(ds[4]))
	}
	_ = os.Getpid
}
