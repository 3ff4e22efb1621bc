package dump

import (
	"context"
	"fmt"
	"io"
	"os"

	"ferry/internal/fds"
	"ferry/internal/image"
	"ferry/internal/procfs"
	"ferry/internal/ptrace"
)

// readChunk bounds one process_vm_readv and one WritePages call;
// pageBuffers of them are in flight between reading and writing.
const (
	readChunk   = 4 << 20
	pageBuffers = 3
)

// writeObjects stores the content of shared memory objects and unlinked
// files as FileData. All-zero chunks are skipped; a final empty record at
// the object's size tells restore how large to make it.
func writeObjects(w Sink, cols []*collector, dumper *fds.Dumper) error {
	objs := map[string]*os.File{}
	for _, c := range cols {
		for id, f := range c.objects {
			if _, ok := objs[id]; !ok {
				objs[id] = f
			}
		}
	}
	for id, f := range dumper.Objects() {
		if _, ok := objs[id]; !ok {
			objs[id] = f
		}
	}
	buf := make([]byte, 1<<20)
	for id, f := range objs {
		var off int64
		for {
			n, err := f.ReadAt(buf, off)
			if n > 0 && !isZero(buf[:n]) {
				if werr := w.WriteFileData(id, off, buf[:n]); werr != nil {
					return fmt.Errorf("write content of %s: %w", id, werr)
				}
			}
			off += int64(n)
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("read content of %s: %w", id, err)
			}
		}
		if err := w.WriteFileData(id, off, nil); err != nil {
			return err
		}
	}
	return nil
}

// wantPages reports whether a VMA's pages are stored as Pages records and,
// if so, whether file-backed pages (bit 61) are skipped.
func wantPages(v *image.VMA) (want, skipFilePages bool) {
	switch v.Kind {
	case image.VMAAnon:
		return true, false
	case image.VMAFile, image.VMAMemfd:
		if v.Shared {
			return false, false // the file holds the content
		}
		return true, true // only pages that differ from the file
	}
	return false, false
}

// writePages streams the pages that hold data: present or swapped pages of
// private mappings, minus those still shared with the backing file. With a
// precopy plan (nil without), pages the destination holds are skipped and
// those it holds an older copy of are written whatever they hold.
func (c *collector) writePages(ctx context.Context, ap *asyncPages, plan PagePlan) error {
	pid := c.fz.PID
	pm, err := procfs.OpenPagemap(pid)
	if err != nil {
		return err
	}
	defer pm.Close()
	ps := uint64(os.Getpagesize())
	var pmBuf []uint64
	for i := range c.proc.VMAs {
		v := &c.proc.VMAs[i]
		want, skipFile := wantPages(v)
		// Zero pages of anonymous memory read back as zeros when absent:
		// they are not stored. (A zero page of a file mapping differs from
		// the file and must be.)
		skipZero := v.Kind == image.VMAAnon
		if !want || c.lazy && isLazyVMA(v) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		ents, err := pm.Read(v.Start, v.End, pmBuf)
		if err != nil {
			return fmt.Errorf("pagemap of %#x-%#x: %w", v.Start, v.End, err)
		}
		pmBuf = ents
		inh := v.Inherited
		// Pages shared copy-on-write stay shared in a process that runs
		// on (--leave-running, a failed migration): not pinned.
		readMem := ptrace.ReadMem
		if procfs.AnyCowShared(ents) {
			readMem = ptrace.ReadMemShared
		}
		runStart, runKind := -1, runNone
		flush := func(end int) error {
			for addr := v.Start + uint64(runStart)*ps; addr < v.Start+uint64(end)*ps; {
				n := min(v.Start+uint64(end)*ps-addr, readChunk)
				buf, err := ap.buffer()
				if err != nil {
					return fmt.Errorf("write pages: %w", err)
				}
				data := buf[:n]
				if runKind == runZero {
					clear(data) // discarded since it was sent: zeros
				} else if err := readMem(pid, addr, data); err != nil {
					ap.free <- buf
					return fmt.Errorf("read memory %#x+%d of %d: %w", addr, n, pid, err)
				}
				var runs []pageRun
				if skipZero && runKind == runData {
					runs = nonZeroRuns(addr, data, int(ps))
				} else {
					runs = []pageRun{{addr, data}}
				}
				ap.submit(pid, buf, runs)
				addr += n
			}
			return nil
		}
		st, stEnd := PageNotSent, v.End
		for j, e := range ents {
			if plan != nil {
				if addr := v.Start + uint64(j)*ps; j == 0 || addr >= stEnd {
					st, stEnd = plan.At(addr)
				}
			}
			kind := pageRunKind(e, v.Kind == image.VMAAnon, skipFile, st)
			if len(inh) > 0 {
				addr := v.Start + uint64(j)*ps
				for len(inh) > 0 && inh[0][1] <= addr {
					inh = inh[1:]
				}
				if len(inh) > 0 && inh[0][0] <= addr {
					kind = runNone // the parent's page, shared again by fork
				}
			}
			if kind == runKind {
				continue
			}
			if runKind != runNone {
				if err := flush(j); err != nil {
					return err
				}
			}
			runStart, runKind = j, kind
		}
		if runKind != runNone {
			if err := flush(len(ents)); err != nil {
				return err
			}
		}
	}
	return nil
}

// nonZeroRuns splits data (pages starting at addr) into runs of pages that
// are not entirely zero.
func nonZeroRuns(addr uint64, data []byte, ps int) []pageRun {
	var runs []pageRun
	start := -1
	for off := 0; off < len(data); off += ps {
		zero := isZero(data[off : off+ps])
		switch {
		case !zero && start < 0:
			start = off
		case zero && start >= 0:
			runs = append(runs, pageRun{addr + uint64(start), data[start:off]})
			start = -1
		}
	}
	if start >= 0 {
		runs = append(runs, pageRun{addr + uint64(start), data[start:]})
	}
	return runs
}
