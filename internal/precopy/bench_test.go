package precopy

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"ferry/internal/dump"
	"ferry/internal/image"
)

// BenchmarkFreeze migrates a 64 MiB process that dirties 4 MiB/s, with a
// plain dump ("full") and with precopy rounds before it ("precopy"), into
// memory. Reported: freeze-ms, the median time from the freeze to the
// complete image (the process's downtime on the source side); image-MiB,
// the pages the freeze carried; sent-MiB, the pages sent in rounds. ns/op
// is the whole source side (rounds and dump); SetBytes is the process's
// memory, so MB/s reads as migrated memory per second.
func BenchmarkFreeze(b *testing.B) {
	needRoot(b)
	const mib = 64
	for _, pre := range []bool{false, true} {
		name := "full"
		if pre {
			name = "precopy"
		}
		b.Run(name, func(b *testing.B) {
			tr := newTracer(b)
			ctx := context.Background()
			b.SetBytes(mib << 20)
			var freezes []time.Duration
			var image, sent int64
			for b.Loop() {
				b.StopTimer()
				c := startChurn(b, "64", "4096", "0")
				b.StartTimer()
				var sess *Session
				opts := dump.Options{Leave: dump.Frozen}
				if pre {
					var err error
					if sess, err = Start(ctx, tr, c.pid, Options{}); err != nil {
						b.Fatal(err)
					}
					st, err := sess.Run(ctx, &discard{})
					if err != nil {
						b.Fatal(err)
					}
					sent += st.Bytes
					opts.Precopy = sess
				}
				res, err := dump.Dump(ctx, tr, c.pid, newMemSink(b), opts)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				freezes = append(freezes, res.FreezeTime)
				image += res.Stats.PageBytes
				res.Held.Kill(ctx)
				if sess != nil {
					sess.Close()
				}
				c.cmd.Process.Kill()
				c.cmd.Wait()
				b.StartTimer()
			}
			slices.Sort(freezes)
			n := float64(len(freezes))
			b.ReportMetric(float64(freezes[len(freezes)/2].Microseconds())/1000, "freeze-ms")
			b.ReportMetric(float64(image)/n/(1<<20), "image-MiB")
			b.ReportMetric(float64(sent)/n/(1<<20), "sent-MiB")
		})
	}
}

// discard is a PageSender that copies pages into a scratch buffer and
// drops them, like a sender copying them into a socket.
type discard struct{ buf []byte }

func (d *discard) SendPages(pid int, addr uint64, data []byte) error {
	if len(d.buf) < len(data) {
		d.buf = make([]byte, len(data))
	}
	copy(d.buf, data)
	return nil
}

// newMemSink returns an image writer into a buffer large enough for a
// 64 MiB image, so that growing it does not count.
func newMemSink(tb testing.TB) *image.Writer {
	buf := bytes.NewBuffer(make([]byte, 0, 80<<20))
	w, err := image.NewWriter(buf)
	if err != nil {
		tb.Fatal(err)
	}
	return w
}
