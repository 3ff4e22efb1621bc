package bench

import (
	"context"
	"fmt"
	"os"
	"time"

	"ferry/internal/dump"
	"ferry/internal/image"
	"ferry/internal/ptrace"
	"ferry/internal/restore"
)

// DumpSample is one timed checkpoint. The phases are told apart by the
// calls dump makes on its image sink, so the engine needs no hooks:
//
//	Collect    from the call to the state record: checks, freeze, registers,
//	           memory layout, fds
//	Pages      from the state record to the image's Close: reading memory
//	           and writing it to the image
//	WriteImage the part of Pages spent inside the sink's WritePages:
//	           checksum and copy into the image file (an engine that reads
//	           and writes at once overlaps this with reading)
//	Close      trailer, flush, rename
//	Release    after the image is complete: thaw, or kill and wait for the death
type DumpSample struct {
	Total, Freeze time.Duration
	PageBytes     int64 // memory bytes in the image
	ImageBytes    int64

	Collect, Pages, WriteImage, Close, Release time.Duration
	// Prealloc is the image file's preallocation, done before the freeze
	// (as `ferry dump` does) and not part of Total.
	Prealloc time.Duration
}

// timedSink is an image sink that notes when dump calls it. dump may call
// WritePages from a goroutine of its own, but one at a time and before
// Close: inPages needs no lock, and is read after Dump returns.
type timedSink struct {
	*image.DirWriter
	state      time.Time // WriteState returned
	inPages    time.Duration
	closeStart time.Time
	closeEnd   time.Time
}

func (s *timedSink) WriteState(c *image.Checkpoint) error {
	err := s.DirWriter.WriteState(c)
	s.state = time.Now()
	return err
}

func (s *timedSink) WritePages(pid int, addr uint64, data []byte) error {
	start := time.Now()
	err := s.DirWriter.WritePages(pid, addr, data)
	s.inPages += time.Since(start)
	return err
}

func (s *timedSink) Close() error {
	s.closeStart = time.Now()
	err := s.DirWriter.Close()
	s.closeEnd = time.Now()
	return err
}

// Dump checkpoints pid into a new image in dir, removing whatever dir held
// first (outside the timing: freeing a large old image costs time the
// checkpoint itself does not), and times it. With leave == dump.Kill the
// process is gone afterwards and the result's Kept files are the caller's
// to pass to Restore and close.
func Dump(ctx context.Context, t *ptrace.Tracer, pid int, dir string, leave dump.Leave) (DumpSample, *dump.Result, error) {
	if err := os.RemoveAll(dir); err != nil {
		return DumpSample{}, nil, err
	}
	pre := time.Now()
	dw, err := image.CreateWith(dir, image.CreateOptions{Preallocate: dump.EstimateSize(pid)})
	if err != nil {
		return DumpSample{}, nil, err
	}
	prealloc := time.Since(pre)
	defer dw.Abort()
	sink := &timedSink{DirWriter: dw}
	start := time.Now()
	res, err := dump.Dump(ctx, t, pid, sink, dump.Options{Leave: leave, KeepFiles: leave == dump.Kill})
	end := time.Now()
	if err != nil {
		return DumpSample{}, nil, fmt.Errorf("dump pid %d: %w", pid, err)
	}
	return DumpSample{
		Total:      end.Sub(start),
		Freeze:     res.FreezeTime,
		PageBytes:  res.Stats.PageBytes,
		ImageBytes: res.Stats.TotalBytes,
		Collect:    sink.state.Sub(start),
		Pages:      sink.closeStart.Sub(sink.state),
		WriteImage: sink.inPages,
		Close:      sink.closeEnd.Sub(sink.closeStart),
		Release:    end.Sub(sink.closeEnd),
		Prealloc:   prealloc,
	}, res, nil
}

// RestoreSample is one timed restore, with the engine's own phases:
//
//	Setup     mapping the image and reading its state, the seed process,
//	          clone3 with the PID, address space cleared, vDSO moved, every
//	          VMA mapped (restore's own phase timings)
//	Fill      pages checked and written into the new process
//	Finish    protections, fds, threads, signals, registers, detach
//
// Each boundary is uncertain by the pages of one read, a fraction of a
// millisecond, plus what a reading-ahead engine holds in its buffers.
type RestoreSample struct {
	Total     time.Duration
	PID       int
	PageBytes int64

	Setup, Fill, Finish time.Duration
}

// Restore restores the image in dir and times it. inherit is the Kept map
// of the dump that wrote the image; Restore does not close it, so one dump
// can be restored many times. The restored process runs on as a child of
// the caller, who kills it with KillRestored.
func Restore(ctx context.Context, t *ptrace.Tracer, dir string, inherit map[string]*os.File) (RestoreSample, error) {
	// As `ferry restore` does it: the image file is mapped, pages go to
	// the kernel straight from the mapping.
	start := time.Now()
	dr, err := image.OpenMapped(dir)
	if err != nil {
		return RestoreSample{}, err
	}
	defer dr.Close()
	res, err := restore.Restore(ctx, t, dr.Reader, restore.Options{Inherit: inherit})
	end := time.Now()
	if err != nil {
		return RestoreSample{}, fmt.Errorf("restore from %s: %w", dir, err)
	}
	s := RestoreSample{Total: end.Sub(start), PID: res.PID, PageBytes: int64(res.Bytes)}
	for _, p := range res.Phases {
		switch p.Name {
		case "pages":
			s.Fill += p.Took
		case "state":
			s.Finish += p.Took
		default:
			s.Setup += p.Took
		}
	}
	// Opening and mapping the image, and reading its state, count as setup.
	if rest := s.Total - s.Setup - s.Fill - s.Finish; rest > 0 {
		s.Setup += rest
	}
	return s, nil
}
