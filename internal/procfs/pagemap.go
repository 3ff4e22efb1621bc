package procfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"ferry/internal/kernel"
)

// Bits of a /proc/PID/pagemap entry (Documentation/admin-guide/mm/pagemap.rst).
// One 64-bit entry per virtual page.
const (
	PagemapPFNMask     = 1<<55 - 1 // bits 0-54: page frame number (swap type/offset when swapped); zero without CAP_SYS_ADMIN
	PagemapSoftDirty   = 1 << 55   // pte is soft-dirty (always 0 here: CONFIG_MEM_SOFT_DIRTY is off)
	PagemapExclusive   = 1 << 56   // page exclusively mapped (anonymous pages not shared with a fork)
	PagemapUffdWP      = 1 << 57   // pte is userfaultfd write-protected
	PagemapGuardRegion = 1 << 58   // page is in a MADV_GUARD_INSTALL region (6.15+)
	PagemapFileShared  = 1 << 61   // page is file-backed or shared anonymous
	PagemapSwapped     = 1 << 62
	PagemapPresent     = 1 << 63
)

// Present reports a page that is in RAM.
func Present(e uint64) bool { return e&PagemapPresent != 0 }

// Swapped reports a page that is in swap.
func Swapped(e uint64) bool { return e&PagemapSwapped != 0 }

// IsFileOrShared reports a page backed by a file or by shared anonymous
// memory (the page cache), as opposed to private anonymous memory.
func IsFileOrShared(e uint64) bool { return e&PagemapFileShared != 0 }

// Exclusive reports a page mapped only by this process.
func Exclusive(e uint64) bool { return e&PagemapExclusive != 0 }

// CowShared reports a private anonymous page in RAM that another process
// maps too (copy-on-write after fork, or KSM). Reading it with
// process_vm_readv pins it, and the kernel unshares a pinned anonymous
// page that is not exclusive: read such pages through /proc/PID/mem.
func CowShared(e uint64) bool { return Present(e) && !Exclusive(e) && !IsFileOrShared(e) }

// AnyCowShared reports whether any entry is CowShared.
func AnyCowShared(ents []uint64) bool {
	for _, e := range ents {
		if CowShared(e) {
			return true
		}
	}
	return false
}

// PFN returns the page frame number of a present page (0 unless the reader
// has CAP_SYS_ADMIN).
func PFN(e uint64) uint64 { return e & PagemapPFNMask }

// Pagemap is an open /proc/PID/pagemap. Entries for a range come from one
// pread: 8 bytes per page, so 1 GiB of address space is 2 MiB read in a
// single call. Not safe for concurrent Close and Read.
type Pagemap struct {
	f        *os.File
	pageSize uint64
}

// OpenPagemap opens /proc/PID/pagemap. The file is bound to pid's mm: it
// keeps working while the process lives even if it execs, and reads fail
// once it has exited.
func OpenPagemap(pid int) (*Pagemap, error) {
	f, err := os.OpenFile(pidPath(pid, "pagemap"), os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, osErr("open", pidPath(pid, "pagemap"), err)
	}
	return &Pagemap{f: f, pageSize: uint64(os.Getpagesize())}, nil
}

// Fd returns the file descriptor, for ioctls such as PAGEMAP_SCAN. It stays
// valid until Close.
func (p *Pagemap) Fd() uintptr { return p.f.Fd() }

// Close closes the file.
func (p *Pagemap) Close() error { return p.f.Close() }

// Read returns the entries for the pages of [start, end), which must be
// page-aligned, reusing dst's storage when it is large enough. Pages above
// the user address space (the [vsyscall] page) have no entries: such a
// range fails with io.EOF.
func (p *Pagemap) Read(start, end uint64, dst []uint64) ([]uint64, error) {
	if start%p.pageSize != 0 || end%p.pageSize != 0 || end < start {
		return nil, fmt.Errorf("procfs: %s: range %#x-%#x: %w", p.f.Name(), start, end, fs.ErrInvalid)
	}
	n := int((end - start) / p.pageSize)
	if cap(dst) < n {
		dst = make([]uint64, n)
	}
	dst = dst[:n]
	if n == 0 {
		return dst, nil
	}
	b := wordsAsBytes(dst)
	off := int64(start/p.pageSize) * 8
	for done := 0; done < len(b); {
		m, err := p.f.ReadAt(b[done:], off+int64(done))
		done += m
		if err != nil && done < len(b) {
			return nil, fmt.Errorf("procfs: pagemap read %#x-%#x: %w", start, end, err)
		}
	}
	return dst, nil
}

// ReadPagemap opens /proc/PID/pagemap, reads the entries of [start, end)
// and closes it again.
func ReadPagemap(pid int, start, end uint64) ([]uint64, error) {
	p, err := OpenPagemap(pid)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	return p.Read(start, end, nil)
}

// ErrNoScan is wrapped when the kernel lacks PAGEMAP_SCAN (Linux < 6.7).
var ErrNoScan = errors.New("PAGEMAP_SCAN not supported")

// DataRuns returns the runs of pages of [start, end) that hold data
// (present or swapped), as [start, end) pairs, in one PAGEMAP_SCAN walk
// instead of reading an entry per page: sparse gigabytes cost almost
// nothing. It fails with ErrNoScan on kernels without the ioctl.
func (p *Pagemap) DataRuns(start, end uint64, out [][2]uint64) ([][2]uint64, error) {
	vec := make([]kernel.PageRegion, 512)
	arg := kernel.PmScanArg{
		Start:             start,
		End:               end,
		CategoryAnyofMask: kernel.PAGE_IS_PRESENT | kernel.PAGE_IS_SWAPPED,
		ReturnMask:        kernel.PAGE_IS_PRESENT | kernel.PAGE_IS_SWAPPED,
	}
	fd := int(p.f.Fd())
	for {
		arg.SetVec(vec)
		n, err := kernel.PagemapScan(fd, &arg)
		if err != nil {
			if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) { // wrapped by os.NewSyscallError
				return out, fmt.Errorf("procfs: %w: %v", ErrNoScan, err)
			}
			return out, fmt.Errorf("procfs: pagemap scan %#x-%#x: %w", start, end, err)
		}
		for _, r := range vec[:n] {
			if k := len(out); k > 0 && out[k-1][1] == r.Start {
				out[k-1][1] = r.End // a region split by its categories
			} else {
				out = append(out, [2]uint64{r.Start, r.End})
			}
		}
		if arg.WalkEnd >= arg.End {
			return out, nil
		}
		if arg.WalkEnd <= arg.Start && n == 0 {
			return out, fmt.Errorf("procfs: pagemap scan made no progress at %#x", arg.Start)
		}
		arg.Start = arg.WalkEnd
	}
}
