package bench

import (
	"context"
	"errors"
	"os"
	"strconv"
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

// BenchmarkProcessVMReadv reads the present memory of a frozen workload
// with process_vm_readv, in cache-sized pieces and in the dump's.
func BenchmarkProcessVMReadv(b *testing.B) {
	needRoot(b)
	for _, mib := range []int{mib64, gib1} {
		for _, piece := range []int{CacheChunk, ChunkSize} {
			b.Run(strconv.Itoa(mib)+"MiB/"+readvName(piece), func(b *testing.B) {
				skipLarge(b, mib)
				ctx := context.Background()
				w := startWorkload(b, mib, 200*time.Millisecond)
				tr := newTracer(b)
				buf := NewBuffer(piece)
				n, _, err := ReadvLimit(ctx, tr, w.PID(), buf, nil)
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(n)
				var spent time.Duration
				for b.Loop() {
					// Freezing and thawing are not part of the figure.
					b.StopTimer()
					_, d, err := ReadvLimit(ctx, tr, w.PID(), buf, nil)
					if err != nil {
						b.Fatal(err)
					}
					spent += d
					b.StartTimer()
				}
				b.ReportMetric(float64(n)*float64(b.N)/spent.Seconds()/1e6, "readv-MB/s")
			})
		}
	}
}

// BenchmarkFreshMemoryWrite fills new anonymous memory (mmap included,
// munmap not) by each method of FreshMethods.
func BenchmarkFreshMemoryWrite(b *testing.B) {
	src := NewBuffer(ChunkSize)
	fill := map[string]func(size int) (time.Duration, error){
		"copy":      func(size int) (time.Duration, error) { return FreshWrite(size, src) },
		"writev":    func(size int) (time.Duration, error) { return WritevFresh(size, RecordSize, src) },
		"uffd-copy": func(size int) (time.Duration, error) { return UffdCopyFresh(size, RecordSize, src) },
	}
	for _, mib := range []int{mib64, gib1} {
		for _, m := range FreshMethods {
			b.Run(strconv.Itoa(mib)+"MiB/"+m, func(b *testing.B) {
				skipLarge(b, mib)
				size := mib << 20
				// Warm up: the first touch of memory the VM gave back is slower.
				if _, err := fill[m](size); errors.Is(err, ErrNoUserfaultfd) {
					b.Skip(err)
				} else if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(size))
				var spent time.Duration
				for b.Loop() {
					// The timer would count the munmap; report the fill alone.
					d, err := fill[m](size)
					if err != nil {
						b.Fatal(err)
					}
					spent += d
				}
				b.ReportMetric(float64(size)*float64(b.N)/spent.Seconds()/1e6, "fill-MB/s")
			})
		}
	}
}
