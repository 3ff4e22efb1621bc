package restore

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"ferry/internal/image"
	"ferry/internal/kernel"
	"ferry/internal/procfs"
	"ferry/internal/ptrace"
)

// A lazy restore (Options.Lazy) is the destination half of a postcopy
// migration (package postcopy). The image's lazy records name private
// anonymous VMAs whose data pages stayed on the source. They are mapped
// like any VMA but left empty, and as the very last step before the
// processes run each process creates a userfaultfd (injected, taken out
// with pidfd_getfd like the one that fills memory, see uffd.go) on which
// those VMAs are registered in MISSING mode with the non-cooperative
// events a pager needs to follow the process's own munmap, madvise,
// mremap and fork. Result.Lazy hands the userfaultfds to the caller, who
// must serve them (postcopy.StartPager) or kill the processes.
//
// Registering last means nothing the restore does can fault on lazy memory
// and wait for a pager that does not run yet. The one thing the kernel
// writes on its own during the restore, each thread's rseq area, travels
// eagerly in the image (see dump/lazy.go). Anything else that touched a
// lazy data page would have filled it with zeros: the pages are checked
// just before registering and such an image is refused.
//
// Options.StagedLazy uses the same registration for the pages a precopy
// staged on the destination (staged.go): the lazy VMAs are then the
// image's private anonymous VMAs, their runs the staged pages the image
// did not write, and the caller serves them from the Staged
// (postcopy.ServeLocal).

// lazyFeatures are the userfaultfd events a pager follows: without them a
// process that forks, mremaps, munmaps or discards lazy memory would see
// zeros or stale pages.
const lazyFeatures = kernel.UFFD_FEATURE_EVENT_FORK | kernel.UFFD_FEATURE_EVENT_REMAP |
	kernel.UFFD_FEATURE_EVENT_REMOVE | kernel.UFFD_FEATURE_EVENT_UNMAP

// lazyIoctls must be allowed on every registered range.
const lazyIoctls = kernel.UFFD_IOCTL_COPY | kernel.UFFD_IOCTL_ZEROPAGE | kernel.UFFD_IOCTL_WAKE

// LazyProcess is a restored process whose lazy memory is still on the
// source (Options.Lazy).
type LazyProcess struct {
	// PID is the restored process; ImagePID its PID in the image, by
	// which the source knows it.
	PID      int
	ImagePID int
	// Uffd is ferry's userfaultfd for the process (close-on-exec,
	// non-blocking; the process holds no copy), with VMAs registered in
	// MISSING mode. It belongs to the caller once Restore has returned.
	// Closing it unserved leaves zeros where data belongs: kill the
	// process first.
	Uffd int
	// VMAs are the registered VMAs and their data pages, as in the image.
	VMAs []image.LazyVMA
}

// CloseLazy closes every userfaultfd of r.Lazy that a pager did not take.
// Kill the processes first.
func (r *Result) CloseLazy() {
	for i := range r.Lazy {
		if r.Lazy[i].Uffd >= 0 {
			unix.Close(r.Lazy[i].Uffd)
			r.Lazy[i].Uffd = -1
		}
	}
}

// addLazy collects a lazy record; a VMA may span several records.
func addLazy(lazy map[int][]image.LazyVMA, rec *image.Record) {
	vs := lazy[rec.PID]
	if n := len(vs); n > 0 && vs[n-1].Start == rec.Lazy.Start && vs[n-1].End == rec.Lazy.End {
		vs[n-1].Runs = append(vs[n-1].Runs, rec.Lazy.Runs...)
		return
	}
	lazy[rec.PID] = append(vs, rec.Lazy)
}

// checkLazyImage refuses to restore a lazy image without a pager.
func checkLazyImage(opts Options, lazy map[int][]image.LazyVMA) error {
	if len(lazy) > 0 && !opts.Lazy {
		return fmt.Errorf("the image is lazy (postcopy): private memory of %d processes is still on the source; restore it with Lazy and serve it with a pager", len(lazy))
	}
	return nil
}

// startLazy registers the lazy VMAs of every live process; t.res.Lazy
// gets one entry per process that has any.
func (t *tree) startLazy(live []*builder) error {
	for pid := range t.lazy {
		if b := t.byPID[pid]; b == nil || b.p.Zombie {
			return fmt.Errorf("lazy memory for pid %d, which the image does not hold alive: %w", pid, image.ErrMalformed)
		}
	}
	for _, b := range live {
		vmas := t.lazy[b.p.PID]
		if len(vmas) == 0 {
			continue
		}
		ufd, err := b.startLazy(vmas)
		if err != nil {
			return fmt.Errorf("process %d: lazy memory: %w", b.p.PID, err)
		}
		t.res.Lazy = append(t.res.Lazy, LazyProcess{PID: b.pid, ImagePID: b.p.PID, Uffd: ufd, VMAs: vmas})
	}
	return nil
}

// closeLazy closes the userfaultfds of a restore that failed before they
// were handed over; afterwards (a held tree) they are the caller's.
func (t *tree) closeLazy() {
	if t.res.Held == nil {
		t.res.CloseLazy()
	}
}

// startLazy creates b's lazy userfaultfd and registers vmas on it. It runs
// after finish: the thread's registers and mask are final, and a fresh
// injector puts them back.
func (b *builder) startLazy(vmas []image.LazyVMA) (ufd int, err error) {
	for _, v := range vmas {
		if !b.hasAnonVMA(v.Start, v.End) {
			return -1, fmt.Errorf("lazy VMA %#x-%#x is not a private anonymous VMA of the image: %w", v.Start, v.End, image.ErrMalformed)
		}
	}
	in, err := ptrace.NewInjector(b.pid, b.lead.Addr)
	if err != nil {
		return -1, err
	}
	defer func() {
		if rerr := in.Restore(); err == nil && rerr != nil {
			unix.Close(ufd)
			ufd, err = -1, rerr
		}
	}()
	tfd, err := in.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK)
	if err != nil {
		return -1, fmt.Errorf("userfaultfd in the target: %w", err)
	}
	ufd, err = in.Pull(b.pid, tfd)
	if err != nil {
		return -1, err
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(ufd)
		}
	}()
	api := kernel.UffdioAPIArg{API: kernel.UFFD_API, Features: lazyFeatures}
	if err := kernel.UffdioAPI(ufd, &api); err != nil {
		return -1, fmt.Errorf("userfaultfd events fork/remap/remove/unmap: %w", err)
	}
	if err := b.checkUntouched(vmas); err != nil {
		return -1, err
	}
	for _, v := range vmas {
		reg := kernel.UffdioRegisterArg{Range: kernel.UffdioRange{Start: v.Start, Len: v.End - v.Start},
			Mode: kernel.UFFDIO_REGISTER_MODE_MISSING}
		if err := kernel.UffdioRegister(ufd, &reg); err != nil {
			return -1, fmt.Errorf("register %#x-%#x: %w", v.Start, v.End, err)
		}
		if reg.Ioctls&lazyIoctls != lazyIoctls {
			return -1, fmt.Errorf("register %#x-%#x: copy, zeropage and wake are not all allowed (ioctls %#x)", v.Start, v.End, reg.Ioctls)
		}
	}
	ok = true
	return ufd, nil
}

func (b *builder) hasAnonVMA(start, end uint64) bool {
	for i := range b.p.VMAs {
		v := &b.p.VMAs[i]
		if v.Start == start && v.End == end {
			return v.Kind == image.VMAAnon && !v.Shared
		}
	}
	return false
}

// checkUntouched fails if a lazy data page is already populated: the
// kernel filled it with zeros when something touched it during the
// restore, and the source's content would never replace it.
func (b *builder) checkUntouched(vmas []image.LazyVMA) error {
	pm, err := procfs.OpenPagemap(b.pid)
	if err != nil {
		return err
	}
	defer pm.Close()
	ps := uint64(os.Getpagesize())
	var ents []uint64
	for _, v := range vmas {
		for _, r := range v.Runs {
			if ents, err = pm.Read(r.Addr, r.Addr+r.Pages*ps, ents); err != nil {
				return err
			}
			for i, e := range ents {
				if procfs.Present(e) || procfs.Swapped(e) {
					return fmt.Errorf("the restore touched lazy page %#x before it could be served (zero-filled): unsupported", r.Addr+uint64(i)*ps)
				}
			}
		}
	}
	return nil
}
