// Package dirty tracks which pages of another process's private memory it
// writes, the building block of precopy migration: send memory while the
// process runs, then re-send what it dirtied, round after round.
//
// Soft-dirty bits are not available on the kernels ferry targets, so the
// tracking uses a userfaultfd in asynchronous write-protect mode
// (UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED): a write to a
// protected page just drops the protection in the page table, nobody is
// notified and the writer never waits. PAGEMAP_SCAN on /proc/PID/pagemap
// (PM_SCAN_WP_MATCHING, category PAGE_IS_WRITTEN) then reports the
// unprotected pages and protects them again in one pass.
//
// What belongs here: creating that userfaultfd inside the target, deciding
// which VMAs are tracked, and the scans. What does not: reading or sending
// the pages, freezing, and any precopy policy (when to stop iterating).
//
// Tracked are the writable private VMAs, anonymous or file-backed (async
// write-protect accepts any memory type). Shared mappings are not: other
// processes can write them through mappings of their own.
//
// Limits, all of which the caller handles with a final Scan while the
// process is frozen:
//   - VMAs that appear after Start (mmap, brk growth beyond the tracked
//     range, mremap, which drops the registration since ferry does not ask
//     for UFFD_FEATURE_EVENT_REMAP, or mprotect from read-only to writable)
//     are found by comparing /proc/PID/maps with the tracked set: Scan
//     registers them and reports them whole, as if every page were written.
//     A VMA created and unmapped between two scans leaves no trace, which is
//     right: its memory is gone.
//   - A page discarded with MADV_DONTNEED after being reported is reported
//     again (checked on 6.18 by TestDiscarded), so precopy sends its zeros.
//   - exec replaces the address space: the userfaultfd and the pagemap fd
//     stay bound to the old one, and Scan fails.
//   - Registering a large untouched range installs protection markers in
//     page tables, costing about 2 MiB of page tables per GiB.
package dirty

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"

	"golang.org/x/sys/unix"

	"ferry/internal/kernel"
	"ferry/internal/procfs"
	"ferry/internal/ptrace"
)

// Range is a run of pages [Start, End) in the target's address space.
type Range struct{ Start, End uint64 }

// ErrUnsupported is returned by Start when the kernel lacks asynchronous
// userfaultfd write-protection or PAGEMAP_SCAN (Linux < 6.7).
var ErrUnsupported = errors.New("userfaultfd async write-protect tracking unsupported")

// wantFeatures are the userfaultfd features the tracking depends on:
// WP_ASYNC so writers never wait, WP_UNPOPULATED so pages not yet
// populated at protection time are tracked too.
const wantFeatures = kernel.UFFD_FEATURE_WP_ASYNC | kernel.UFFD_FEATURE_WP_UNPOPULATED

// scanFlags make PAGEMAP_SCAN re-protect what it reports and fail with
// EPERM on a VMA not registered on an async userfaultfd, instead of
// silently skipping it.
const scanFlags = kernel.PM_SCAN_WP_MATCHING | kernel.PM_SCAN_CHECK_WPASYNC

// Vector sizes for PAGEMAP_SCAN output, in regions.
const (
	minVec = 256
	maxVec = 1 << 16 // 1.5 MiB; a fuller scan continues from WalkEnd
)

// Tracker tracks writes to a process's private memory. Its methods may be
// called from any goroutine.
type Tracker struct {
	pid      int
	log      *slog.Logger
	pageSize uint64

	mu sync.Mutex // guards the fields below
	// uffd is ferry's copy of the target's userfaultfd, the only one; -1
	// once closed.
	uffd    int
	pagemap *procfs.Pagemap
	// tracked holds the address ranges registered for write-protection,
	// sorted and coalesced. A VMA inside it is assumed registered; a scan
	// that meets one that is not (EPERM) treats it as new.
	tracked []Range
	vec     []kernel.PageRegion
}

// Start creates a userfaultfd in the target, registers its writable
// private VMAs for asynchronous write-protection and protects them all.
// From then on Scan reports what the process writes; it can be thawed and
// run. Must run on the tracer thread with every thread of pid frozen (fz).
func Start(pid int, fz *ptrace.Frozen, log *slog.Logger) (*Tracker, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("pid", pid)
	if fz == nil || fz.PID != pid || len(fz.TIDs) == 0 {
		return nil, fmt.Errorf("dirty: process %d is not frozen", pid)
	}
	ufd, err := takeUffd(pid, fz.TIDs[0])
	if err != nil {
		return nil, err
	}
	api := kernel.UffdioAPIArg{API: kernel.UFFD_API, Features: wantFeatures}
	if err := kernel.UffdioAPI(ufd, &api); err != nil {
		unix.Close(ufd)
		if errors.Is(err, unix.EINVAL) {
			return nil, fmt.Errorf("dirty: %w: UFFDIO_API refused WP_ASYNC|WP_UNPOPULATED: %w", ErrUnsupported, err)
		}
		return nil, fmt.Errorf("dirty: %w", err)
	}
	pm, err := procfs.OpenPagemap(pid)
	if err != nil {
		unix.Close(ufd)
		return nil, fmt.Errorf("dirty: %w", err)
	}
	t := &Tracker{pid: pid, log: log, pageSize: uint64(os.Getpagesize()), uffd: ufd, pagemap: pm,
		vec: make([]kernel.PageRegion, minVec)}
	maps, err := procfs.Maps(pid)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("dirty: %w", err)
	}
	var n int
	for _, m := range maps {
		if !trackable(&m) {
			continue
		}
		if err := t.protectLocked(Range{m.Start, m.End}); err != nil {
			// Scan retries it and reports it whole meanwhile.
			log.Debug("VMA not tracked", "start", m.Start, "end", m.End, "path", m.Path, "name", m.Name, "err", err)
			continue
		}
		n++
	}
	// PAGEMAP_SCAN is checked once here rather than failing every Scan.
	if _, err := t.scanLocked(nil, Range{}); errors.Is(err, unix.ENOTTY) {
		t.Close()
		return nil, fmt.Errorf("dirty: %w: no PAGEMAP_SCAN", ErrUnsupported)
	}
	log.Debug("write tracking started", "vmas", n, "ranges", len(t.tracked))
	return t, nil
}

// takeUffd has thread tid of pid create a userfaultfd (it belongs to the
// creator's mm), takes a copy with pidfd_getfd and closes the target's, so
// that ferry holds the only one and tracking ends when ferry closes it.
func takeUffd(pid, tid int) (ufd int, err error) {
	addr, _, err := ptrace.FindSyscall(pid)
	if err != nil {
		return -1, fmt.Errorf("dirty: %w", err)
	}
	in, err := ptrace.NewInjector(tid, addr)
	if err != nil {
		return -1, fmt.Errorf("dirty: %w", err)
	}
	defer func() {
		if rerr := in.Restore(); rerr != nil && err == nil {
			unix.Close(ufd)
			ufd, err = -1, fmt.Errorf("dirty: %w", rerr)
		}
	}()
	// UFFD_USER_MODE_ONLY spares the target the CAP_SYS_PTRACE that
	// kernel-mode faults need; async write-protection never delivers a
	// fault to a handler, so it changes nothing else.
	flags := uint64(unix.O_CLOEXEC | unix.O_NONBLOCK)
	tfd, err := in.Syscall(unix.SYS_USERFAULTFD, flags|kernel.UFFD_USER_MODE_ONLY)
	if errors.Is(err, unix.EINVAL) { // before 5.11
		tfd, err = in.Syscall(unix.SYS_USERFAULTFD, flags)
	}
	if err != nil {
		return -1, fmt.Errorf("dirty: userfaultfd in process %d: %w", pid, err)
	}
	if ufd, err = in.Pull(pid, tfd); err != nil {
		return -1, fmt.Errorf("dirty: %w", err)
	}
	return ufd, nil
}

// trackable reports a VMA whose writes are tracked: writable and private.
// The kernel's special mappings are never writable from user space.
func trackable(m *procfs.Mapping) bool {
	return m.Write && !m.Shared && !m.Special()
}

// protectLocked registers r for asynchronous write-protection, protects
// it and adds it to the tracked set. t.mu must be held.
func (t *Tracker) protectLocked(r Range) error {
	rng := kernel.UffdioRange{Start: r.Start, Len: r.End - r.Start}
	if err := kernel.UffdioRegister(t.uffd, &kernel.UffdioRegisterArg{Range: rng, Mode: kernel.UFFDIO_REGISTER_MODE_WP}); err != nil {
		return err
	}
	if err := kernel.UffdioWriteprotect(t.uffd, &kernel.UffdioWriteprotectArg{Range: rng, Mode: kernel.UFFDIO_WRITEPROTECT_MODE_WP}); err != nil {
		return err
	}
	t.tracked = addRange(t.tracked, r)
	return nil
}

// Scan returns the page ranges written since Start or the previous Scan,
// sorted and coalesced, and protects them again. Writable private VMAs
// that appeared since are registered and reported whole. The process may
// run meanwhile: a page written during the scan is reported now or by the
// next Scan. Only a Scan of a frozen process gives a complete answer.
//
// After an error the written set is unknown (pages reported before the
// error were protected again): the caller must treat all memory as
// written, or give up.
func (t *Tracker) Scan() ([]Range, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.uffd < 0 {
		return nil, errors.New("dirty: tracker closed")
	}
	maps, err := procfs.Maps(t.pid)
	if err != nil {
		return nil, fmt.Errorf("dirty: %w", err)
	}
	var out []Range
	var now []Range // the tracked set as this scan finds it
	for _, m := range maps {
		if !trackable(&m) {
			continue
		}
		r := Range{m.Start, m.End}
		if covers(t.tracked, r) {
			out, err = t.scanLocked(out, r)
			if err == nil {
				now = addRange(now, r)
				continue
			}
			if !errors.Is(err, unix.EPERM) {
				return nil, fmt.Errorf("dirty: scan %#x-%#x: %w", r.Start, r.End, err)
			}
			// Not registered: replaced since the last scan (munmap+mmap
			// at the same place, or mremap).
		}
		// New to us: everything in it counts as written.
		out = append(out, r)
		if err := t.protectLocked(r); err != nil {
			t.log.Debug("new VMA not tracked; reported whole", "start", r.Start, "end", r.End, "path", m.Path, "err", err)
			continue
		}
		now = addRange(now, r)
	}
	// Forget what is no longer mapped, so that a VMA mapped there later
	// counts as new.
	t.tracked = now
	return coalesce(out), nil
}

// scanLocked runs PAGEMAP_SCAN over r, appending written pages to out and
// protecting them again. The output vector grows when a walk fills it;
// the walk goes on from where it stopped. t.mu must be held.
func (t *Tracker) scanLocked(out []Range, r Range) ([]Range, error) {
	arg := kernel.PmScanArg{
		Flags:        scanFlags,
		Start:        r.Start,
		End:          r.End,
		CategoryMask: kernel.PAGE_IS_WRITTEN,
		ReturnMask:   kernel.PAGE_IS_WRITTEN,
	}
	fd := int(t.pagemap.Fd())
	for {
		arg.SetVec(t.vec)
		n, err := kernel.PagemapScan(fd, &arg)
		if err != nil {
			return out, err
		}
		for _, pr := range t.vec[:n] {
			out = append(out, Range{pr.Start, pr.End})
		}
		if arg.WalkEnd >= arg.End {
			return out, nil
		}
		if arg.WalkEnd <= arg.Start && n == 0 {
			return out, fmt.Errorf("PAGEMAP_SCAN made no progress at %#x", arg.Start)
		}
		if n == len(t.vec) && len(t.vec) < maxVec {
			t.vec = make([]kernel.PageRegion, 2*len(t.vec))
		}
		arg.Start = arg.WalkEnd
	}
}

// Close unregisters every tracked range, which removes the remaining
// write-protection, and closes the userfaultfd; the process is left as it
// was. It is safe to call more than once.
func (t *Tracker) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.uffd < 0 {
		return nil
	}
	var first error
	for _, r := range t.tracked {
		rng := kernel.UffdioRange{Start: r.Start, Len: r.End - r.Start}
		// ENOMEM: part of the range was unmapped meanwhile; ESRCH: the
		// process is gone. Closing the userfaultfd ends tracking anyway.
		err := kernel.UffdioUnregister(t.uffd, &rng)
		if err != nil && !errors.Is(err, unix.ENOMEM) && !errors.Is(err, unix.ESRCH) && first == nil {
			first = fmt.Errorf("dirty: unregister %#x-%#x: %w", r.Start, r.End, err)
		}
	}
	unix.Close(t.uffd)
	t.uffd = -1
	t.tracked = nil
	if err := t.pagemap.Close(); err != nil && first == nil {
		first = fmt.Errorf("dirty: %w", err)
	}
	return first
}

// addRange adds r to the sorted, coalesced set rs. Adding in address
// order, as Start and Scan do, is the cheap case.
func addRange(rs []Range, r Range) []Range {
	if n := len(rs); n == 0 || rs[n-1].End < r.Start {
		return append(rs, r)
	} else if rs[n-1].Start <= r.Start {
		rs[n-1].End = max(rs[n-1].End, r.End)
		return rs
	}
	return coalesce(append(rs, r))
}

// covers reports whether the sorted, coalesced set rs contains all of r.
func covers(rs []Range, r Range) bool {
	i, found := slices.BinarySearchFunc(rs, r.Start, func(x Range, a uint64) int {
		switch {
		case x.End <= a:
			return -1
		case x.Start > a:
			return 1
		}
		return 0
	})
	return found && rs[i].End >= r.End
}

// coalesce sorts rs and merges overlapping or adjacent ranges.
func coalesce(rs []Range) []Range {
	slices.SortFunc(rs, func(a, b Range) int {
		switch {
		case a.Start < b.Start:
			return -1
		case a.Start > b.Start:
			return 1
		}
		return 0
	})
	out := rs[:0]
	for _, r := range rs {
		if len(out) > 0 && out[len(out)-1].End >= r.Start {
			out[len(out)-1].End = max(out[len(out)-1].End, r.End)
			continue
		}
		out = append(out, r)
	}
	return out
}
