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
// private mappings, minus those still shared with the backing file.
func (c *collector) writePages(ctx context.Context, ap *asyncPages) error {
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
		if !want {
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
		runStart := -1
		flush := func(end int) error {
			for addr := v.Start + uint64(runStart)*ps; addr < v.Start+uint64(end)*ps; {
				n := min(v.Start+uint64(end)*ps-addr, readChunk)
				buf, err := ap.buffer()
				if err != nil {
					return fmt.Errorf("write pages: %w", err)
				}
				if err := ptrace.ReadMem(pid, addr, buf[:n]); err != nil {
					ap.free <- buf
					return fmt.Errorf("read memory %#x+%d of %d: %w", addr, n, pid, err)
				}
				ap.submit(pid, addr, buf[:n])
				addr += n
			}
			return nil
		}
		for j, e := range ents {
			keep := procfs.Present(e) || procfs.Swapped(e)
			if keep && skipFile && procfs.IsFileOrShared(e) && !procfs.Swapped(e) {
				keep = false
			}
			switch {
			case keep && runStart < 0:
				runStart = j
			case !keep && runStart >= 0:
				if err := flush(j); err != nil {
					return err
				}
				runStart = -1
			}
		}
		if runStart >= 0 {
			if err := flush(len(ents)); err != nil {
				return err
			}
		}
	}
	return nil
}

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}
