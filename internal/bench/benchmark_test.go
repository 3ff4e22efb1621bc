package bench

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"ferry/internal/dump"
)

// Benchmarks of the engine on real processes (the workload, idle, holding
// the given memory) and of the limits they are bound by. Throughput is
// bytes of memory pages per second. `ferry bench` reports the same
// figures as medians with ratios; these are the go test view.

const (
	mib64 = 64
	gib1  = 1024
)

func skipLarge(b *testing.B, mib int) {
	if mib >= gib1 && testing.Short() {
		b.Skip("1 GiB benchmark skipped in -short mode")
	}
}

func benchmarkDump(b *testing.B, mib int) {
	needRoot(b)
	skipLarge(b, mib)
	ctx := context.Background()
	w := startWorkload(b, mib, 200*time.Millisecond)
	tr := newTracer(b)
	img := imageDir(b)
	warm, _, err := Dump(ctx, tr, w.PID(), img, dump.Running)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(warm.PageBytes)
	var freeze time.Duration
	for b.Loop() {
		b.StopTimer()
		// Freeing the previous image is not part of a dump.
		if err := os.RemoveAll(img); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		s, _, err := Dump(ctx, tr, w.PID(), img, dump.Running)
		if err != nil {
			b.Fatal(err)
		}
		freeze += s.Freeze
	}
	b.ReportMetric(ms(freeze/time.Duration(b.N)), "freeze-ms/op")
}

func benchmarkRestore(b *testing.B, mib int) {
	needRoot(b)
	skipLarge(b, mib)
	ctx := context.Background()
	w := startWorkload(b, mib, 200*time.Millisecond)
	tr := newTracer(b)
	img := imageDir(b)
	s, res, err := Dump(ctx, tr, w.PID(), img, dump.Kill)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		for _, f := range res.Kept {
			f.Close()
		}
	})
	w.Reap()
	b.SetBytes(s.PageBytes)
	for b.Loop() {
		rs, err := Restore(ctx, tr, img, res.Kept)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if rs.PID != w.PID() {
			b.Errorf("restored pid %d, want %d", rs.PID, w.PID())
		}
		if _, err := w.Next(ctx, 10*time.Second); err != nil {
			b.Errorf("restored process: %v", err)
		}
		if err := KillRestored(rs.PID); err != nil {
			b.Fatal(err)
		}
		if _, err := w.Drain(quiet); err != nil {
			b.Fatal(err)
		}
		if b.Failed() {
			b.FailNow()
		}
		b.StartTimer()
	}
}

func BenchmarkDump64M(b *testing.B)    { benchmarkDump(b, mib64) }
func BenchmarkRestore64M(b *testing.B) { benchmarkRestore(b, mib64) }
func BenchmarkDump1G(b *testing.B)     { benchmarkDump(b, gib1) }
func BenchmarkRestore1G(b *testing.B)  { benchmarkRestore(b, gib1) }

// threadCounts are 1 and, on a machine with more, every CPU.
func threadCounts() []int {
	if n := runtime.NumCPU(); n > 1 {
		return []int{1, n}
	}
	return []int{1}
}

// BenchmarkProcessVMReadv reads the present memory of a frozen workload
// with process_vm_readv: in cache-sized pieces and in large ones, and in
// cache-sized pieces on every CPU.
func BenchmarkProcessVMReadv(b *testing.B) {
	needRoot(b)
	ways := []readvWay{{CacheChunk, 1}, {ChunkSize, 1}}
	if n := threadCounts(); len(n) > 1 {
		ways = append(ways, readvWay{CacheChunk, n[1]})
	}
	for _, mib := range []int{mib64, gib1} {
		for _, rw := range ways {
			b.Run(strconv.Itoa(mib)+"MiB/"+strings.TrimPrefix(rw.name(), readvPrefix), func(b *testing.B) {
				skipLarge(b, mib)
				ctx := context.Background()
				w := startWorkload(b, mib, 200*time.Millisecond)
				tr := newTracer(b)
				rv, err := ReadvLimit(ctx, tr, w.PID(), rw.piece, rw.threads)
				if err != nil {
					b.Fatal(err)
				}
				n := rv.Bytes
				b.SetBytes(n)
				var spent time.Duration
				for b.Loop() {
					// The timer counts freezing, thawing and finding the
					// pages too; readv-MB/s counts the reads alone.
					rv, err := ReadvLimit(ctx, tr, w.PID(), rw.piece, rw.threads)
					if err != nil {
						b.Fatal(err)
					}
					spent += rv.Read
				}
				b.ReportMetric(float64(n)*float64(b.N)/spent.Seconds()/1e6, "readv-MB/s")
			})
		}
	}
}

// BenchmarkFreshMemoryWrite fills new anonymous memory by each of
// FillMethods, on one thread and on every CPU.
func BenchmarkFreshMemoryWrite(b *testing.B) {
	src := NewBuffer(ChunkSize)
	for _, mib := range []int{mib64, gib1} {
		for _, m := range FillMethods {
			for _, n := range threadCounts() {
				b.Run(strconv.Itoa(mib)+"MiB/"+strings.TrimPrefix(fillName(m, n), fillPrefix), func(b *testing.B) {
					skipLarge(b, mib)
					size := mib << 20
					// Warm up: the first touch of memory the VM gave back is slower.
					if _, err := FillFresh(m, size, n, src); errors.Is(err, ErrNoUserfaultfd) {
						b.Skip(err)
					} else if err != nil {
						b.Fatal(err)
					}
					b.SetBytes(int64(size))
					var spent time.Duration
					for b.Loop() {
						d, err := FillFresh(m, size, n, src)
						if err != nil {
							b.Fatal(err)
						}
						spent += d
					}
					// The timer counts the munmap too; fill-MB/s does not.
					b.ReportMetric(float64(size)*float64(b.N)/spent.Seconds()/1e6, "fill-MB/s")
				})
			}
		}
	}
}
