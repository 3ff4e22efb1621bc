package feature

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"ferry/internal/kernel"
)

// uffdFeatureProbes are the UFFD_FEATURE_* bits reported as probes of their
// own; uffdFeatureNames names every bit for the userfaultfd probe's detail.
var uffdFeatureProbes = []struct {
	name string
	bit  uint64
	why  string // what lacking it means, for Missing
}{
	{ProbeUffdWPAsync, kernel.UFFD_FEATURE_WP_ASYNC, "kernel < 6.7: no fault-free write tracking"},
	{ProbeUffdWPUnpopulated, kernel.UFFD_FEATURE_WP_UNPOPULATED, "kernel < 6.4 or no PTE markers: unpopulated pages not tracked"},
	{ProbeUffdMissingShmem, kernel.UFFD_FEATURE_MISSING_SHMEM, "shared memory cannot be filled lazily"},
	{ProbeUffdMissingHugetlb, kernel.UFFD_FEATURE_MISSING_HUGETLBFS, "hugetlbfs memory cannot be filled lazily"},
	{ProbeUffdEventFork, kernel.UFFD_FEATURE_EVENT_FORK, "a fork during postcopy loses registration"},
	{ProbeUffdEventRemap, kernel.UFFD_FEATURE_EVENT_REMAP, "mremap during postcopy goes unseen"},
	{ProbeUffdEventRemove, kernel.UFFD_FEATURE_EVENT_REMOVE, "MADV_DONTNEED during postcopy goes unseen"},
	{ProbeUffdEventUnmap, kernel.UFFD_FEATURE_EVENT_UNMAP, "munmap during postcopy goes unseen"},
}

var uffdFeatureNames = []struct {
	bit  uint64
	name string
}{
	{kernel.UFFD_FEATURE_PAGEFAULT_FLAG_WP, "PAGEFAULT_FLAG_WP"},
	{kernel.UFFD_FEATURE_EVENT_FORK, "EVENT_FORK"},
	{kernel.UFFD_FEATURE_EVENT_REMAP, "EVENT_REMAP"},
	{kernel.UFFD_FEATURE_EVENT_REMOVE, "EVENT_REMOVE"},
	{kernel.UFFD_FEATURE_MISSING_HUGETLBFS, "MISSING_HUGETLBFS"},
	{kernel.UFFD_FEATURE_MISSING_SHMEM, "MISSING_SHMEM"},
	{kernel.UFFD_FEATURE_EVENT_UNMAP, "EVENT_UNMAP"},
	{kernel.UFFD_FEATURE_SIGBUS, "SIGBUS"},
	{kernel.UFFD_FEATURE_THREAD_ID, "THREAD_ID"},
	{kernel.UFFD_FEATURE_MINOR_HUGETLBFS, "MINOR_HUGETLBFS"},
	{kernel.UFFD_FEATURE_MINOR_SHMEM, "MINOR_SHMEM"},
	{kernel.UFFD_FEATURE_EXACT_ADDRESS, "EXACT_ADDRESS"},
	{kernel.UFFD_FEATURE_WP_HUGETLBFS_SHMEM, "WP_HUGETLBFS_SHMEM"},
	{kernel.UFFD_FEATURE_WP_UNPOPULATED, "WP_UNPOPULATED"},
	{kernel.UFFD_FEATURE_POISON, "POISON"},
	{kernel.UFFD_FEATURE_WP_ASYNC, "WP_ASYNC"},
	{kernel.UFFD_FEATURE_MOVE, "MOVE"},
}

func uffdFeatureString(f uint64) string {
	var names []string
	for _, n := range uffdFeatureNames {
		if f&n.bit != 0 {
			names = append(names, n.name)
			f &^= n.bit
		}
	}
	if f != 0 {
		names = append(names, fmt.Sprintf("%#x", f))
	}
	return strings.Join(names, " ")
}

// openUffd creates a userfaultfd (kernel faults included, non-blocking,
// close-on-exec) and completes the UFFDIO_API handshake for features.
func openUffd(features uint64) (int, uint64, error) {
	fd, err := kernel.Userfaultfd(unix.O_CLOEXEC | unix.O_NONBLOCK)
	if err != nil {
		return -1, 0, err
	}
	api := kernel.UffdioAPIArg{API: kernel.UFFD_API, Features: features}
	if err := kernel.UffdioAPI(fd, &api); err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	return fd, api.Features, nil
}

// mmapAnon maps private anonymous memory without transparent huge pages, so
// that touching one page populates exactly one page.
func mmapAnon(pages int) ([]byte, error) {
	mem, err := unix.Mmap(-1, 0, pages*os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}
	if err := unix.Madvise(mem, unix.MADV_NOHUGEPAGE); err != nil {
		unix.Munmap(mem)
		return nil, os.NewSyscallError("madvise(MADV_NOHUGEPAGE)", err)
	}
	return mem, nil
}

// probeUserfaultfd exercises userfaultfd on private mappings of this
// process: the API handshake by syscall and by /dev/userfaultfd, a MISSING
// fault resolved with UFFDIO_COPY, PAGEMAP_SCAN, and async write-protect
// tracking read back with PAGEMAP_SCAN.
func probeUserfaultfd(ctx context.Context) []Probe {
	names := []string{ProbeUserfaultfd, ProbeDevUserfaultfd}
	for _, f := range uffdFeatureProbes {
		names = append(names, f.name)
	}
	names = append(names, ProbeUffdMissingFaults, ProbePagemapScan, ProbeUffdWPTracking)
	res := newResults(names...)

	supported, ok := probeUffdSyscall(res)
	probeDevUffd(res)
	for _, f := range uffdFeatureProbes {
		switch {
		case !ok:
			res.missing(f.name, "no userfaultfd", nil)
		case supported&f.bit != 0:
			res.available(f.name, "offered by UFFDIO_API")
		default:
			res.missing(f.name, "not offered by UFFDIO_API: "+f.why, nil)
		}
	}
	if ok {
		probeUffdMissing(ctx, res)
	} else {
		res.missing(ProbeUffdMissingFaults, "no userfaultfd", nil)
	}
	probePagemapScan(res)
	switch {
	case !ok:
		res.missing(ProbeUffdWPTracking, "no userfaultfd", nil)
	case supported&kernel.UFFD_FEATURE_WP_ASYNC == 0:
		res.missing(ProbeUffdWPTracking, "needs UFFD_FEATURE_WP_ASYNC", nil)
	default:
		probeUffdWP(res, supported)
	}
	return res.done(ctx.Err())
}

func probeUffdSyscall(res *results) (supported uint64, ok bool) {
	fd, supported, err := openUffd(0)
	switch {
	case errors.Is(err, unix.ENOSYS):
		res.missing(ProbeUserfaultfd, "ENOSYS: CONFIG_USERFAULTFD is off", nil)
		return 0, false
	case errors.Is(err, unix.EPERM):
		res.missing(ProbeUserfaultfd, "EPERM: kernel-mode faults need CAP_SYS_PTRACE or vm.unprivileged_userfaultfd=1", err)
		return 0, false
	case err != nil:
		res.failed(ProbeUserfaultfd, err)
		return 0, false
	}
	unix.Close(fd)
	res.available(ProbeUserfaultfd, "UFFDIO_API offers "+uffdFeatureString(supported))
	return supported, true
}

func probeDevUffd(res *results) {
	dev, err := unix.Open("/dev/userfaultfd", unix.O_RDWR|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		res.missing(ProbeDevUserfaultfd, "no /dev/userfaultfd (kernel < 5.11 or no device node)", nil)
		return
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		res.missing(ProbeDevUserfaultfd, "/dev/userfaultfd not accessible", err)
		return
	case err != nil:
		res.failed(ProbeDevUserfaultfd, os.NewSyscallError("open /dev/userfaultfd", err))
		return
	}
	defer unix.Close(dev)
	fd, err := kernel.UserfaultfdIocNew(dev, unix.O_CLOEXEC|unix.O_NONBLOCK)
	if err != nil {
		res.failed(ProbeDevUserfaultfd, err)
		return
	}
	defer unix.Close(fd)
	api := kernel.UffdioAPIArg{API: kernel.UFFD_API}
	if err := kernel.UffdioAPI(fd, &api); err != nil {
		res.failed(ProbeDevUserfaultfd, err)
		return
	}
	res.available(ProbeDevUserfaultfd, "USERFAULTFD_IOC_NEW + UFFDIO_API")
}

// probeUffdMissing registers two pages MISSING, fills the second with
// UFFDIO_ZEROPAGE, and has a goroutine write(2) the first into a pipe: the
// kernel faults on it, the fault arrives as a message, UFFDIO_COPY resolves
// it, and the pipe must carry the copied bytes. Closing the userfaultfd
// wakes the writer on any failure path.
func probeUffdMissing(ctx context.Context, res *results) {
	const name = ProbeUffdMissingFaults
	ps := os.Getpagesize()
	fd, _, err := openUffd(0)
	if err != nil {
		res.failed(name, err)
		return
	}
	fdOpen := true
	closeFd := func() {
		if fdOpen {
			unix.Close(fd)
			fdOpen = false
		}
	}
	defer closeFd()

	mem, err := mmapAnon(2)
	if err != nil {
		res.failed(name, err)
		return
	}
	defer unix.Munmap(mem) // after the writer is done: deferred earlier than the wait below
	base := addrOf(mem)
	reg := kernel.UffdioRegisterArg{
		Range: kernel.UffdioRange{Start: base, Len: uint64(2 * ps)},
		Mode:  kernel.UFFDIO_REGISTER_MODE_MISSING,
	}
	if err := kernel.UffdioRegister(fd, &reg); err != nil {
		res.failed(name, err)
		return
	}
	if want := uint64(kernel.UFFD_IOCTL_COPY | kernel.UFFD_IOCTL_ZEROPAGE | kernel.UFFD_IOCTL_WAKE); reg.Ioctls&want != want {
		res.failed(name, fmt.Errorf("registered range allows ioctls %#x, want %#x", reg.Ioctls, want))
		return
	}
	zp := kernel.UffdioZeropageArg{Range: kernel.UffdioRange{Start: base + uint64(ps), Len: uint64(ps)}}
	if err := kernel.UffdioZeropage(fd, &zp); err != nil {
		res.failed(name, err)
		return
	}

	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		res.failed(name, os.NewSyscallError("pipe2", err))
		return
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	const msg = "filled-by-UFFDIO_COPY"
	done := make(chan error, 1)
	go func() {
		_, err := unix.Write(p[1], mem[:len(msg)]) // faults inside the kernel
		done <- err
	}()
	defer func() {
		closeFd() // wakes the writer if the fault is still pending
		<-done
	}()

	fault, err := waitFault(ctx, fd)
	if err != nil {
		res.failed(name, err)
		return
	}
	if fault.Address != base {
		res.failed(name, fmt.Errorf("fault at %#x, want %#x", fault.Address, base))
		return
	}
	src := make([]byte, ps)
	copy(src, msg)
	cp := kernel.UffdioCopyArg{Dst: base, Src: &src[0], Len: uint64(ps)}
	if err := kernel.UffdioCopy(fd, &cp); err != nil {
		res.failed(name, err)
		return
	}
	select {
	case err := <-done:
		done <- err // for the deferred wait
		if err != nil {
			res.failed(name, fmt.Errorf("faulting write: %w", err))
			return
		}
	case <-ctx.Done():
		res.failed(name, fmt.Errorf("faulting write not woken: %w", ctx.Err()))
		return
	}
	got := make([]byte, len(msg))
	if _, err := unix.Read(p[0], got); err != nil || string(got) != msg {
		res.failed(name, fmt.Errorf("pipe carried %q (%v), want %q", got, err, msg))
		return
	}
	if !bytes.Equal(mem[ps:ps+8], make([]byte, 8)) {
		res.failed(name, errors.New("UFFDIO_ZEROPAGE page is not zero"))
		return
	}
	res.available(name, "a kernel-mode fault was reported and resolved by UFFDIO_COPY; UFFDIO_ZEROPAGE works")
}

// waitFault polls a non-blocking userfaultfd until a page fault message
// arrives or ctx is done.
func waitFault(ctx context.Context, fd int) (kernel.UffdPagefault, error) {
	for {
		if err := ctx.Err(); err != nil {
			return kernel.UffdPagefault{}, fmt.Errorf("no fault reported: %w", err)
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, 50)
		if err == unix.EINTR || n == 0 {
			continue
		}
		if err != nil {
			return kernel.UffdPagefault{}, os.NewSyscallError("poll", err)
		}
		var msgs [1]kernel.UffdMsg
		got, err := kernel.ReadUffdMsgs(fd, msgs[:])
		if errors.Is(err, unix.EAGAIN) {
			continue
		}
		if err != nil {
			return kernel.UffdPagefault{}, err
		}
		if got != 1 || msgs[0].Event != kernel.UFFD_EVENT_PAGEFAULT {
			return kernel.UffdPagefault{}, fmt.Errorf("unexpected userfaultfd event %#x", msgs[0].Event)
		}
		return msgs[0].Pagefault(), nil
	}
}

// pagemapScan runs one PAGEMAP_SCAN over [start, end) and returns the
// regions it reported.
func pagemapScan(pm int, start, end uint64, flags, mask uint64) ([]kernel.PageRegion, error) {
	vec := make([]kernel.PageRegion, 64)
	arg := kernel.PmScanArg{
		Flags:        flags,
		Start:        start,
		End:          end,
		CategoryMask: mask,
		ReturnMask:   mask,
	}
	arg.SetVec(vec)
	n, err := kernel.PagemapScan(pm, &arg)
	if err != nil {
		return nil, err
	}
	if arg.WalkEnd != end {
		return nil, fmt.Errorf("PAGEMAP_SCAN stopped at %#x, want %#x", arg.WalkEnd, end)
	}
	return vec[:n], nil
}

// regionPages turns regions into page indices relative to base.
func regionPages(regions []kernel.PageRegion, base uint64) []int {
	ps := uint64(os.Getpagesize())
	var pages []int
	for _, r := range regions {
		for a := r.Start; a < r.End; a += ps {
			pages = append(pages, int((a-base)/ps))
		}
	}
	return pages
}

func probePagemapScan(res *results) {
	const name = ProbePagemapScan
	pm, err := unix.Open("/proc/self/pagemap", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		res.failed(name, os.NewSyscallError("open /proc/self/pagemap", err))
		return
	}
	defer unix.Close(pm)
	mem, err := mmapAnon(4)
	if err != nil {
		res.failed(name, err)
		return
	}
	defer unix.Munmap(mem)
	ps := os.Getpagesize()
	mem[0], mem[2*ps] = 1, 1
	base := addrOf(mem)
	regions, err := pagemapScan(pm, base, base+uint64(len(mem)), 0, kernel.PAGE_IS_PRESENT)
	switch {
	case errors.Is(err, unix.ENOTTY):
		res.missing(name, "ENOTTY: no PAGEMAP_SCAN ioctl (kernel < 6.7)", nil)
	case err != nil:
		res.failed(name, err)
	default:
		if got := regionPages(regions, base); fmt.Sprint(got) != "[0 2]" {
			res.failed(name, fmt.Errorf("present pages %v, want [0 2]", got))
			return
		}
		res.available(name, "ioctl on /proc/self/pagemap reported exactly the 2 touched pages of 4")
	}
}

// probeUffdWP is the precopy engine's contract in miniature: write-protect
// 8 populated pages on a WP_ASYNC userfaultfd, write pages 1 and 5, and
// PAGEMAP_SCAN with PM_SCAN_WP_MATCHING must report exactly those and
// re-protect them.
func probeUffdWP(res *results, supported uint64) {
	const name = ProbeUffdWPTracking
	const pages = 8
	ps := os.Getpagesize()
	fd, _, err := openUffd(supported & (kernel.UFFD_FEATURE_WP_ASYNC | kernel.UFFD_FEATURE_WP_UNPOPULATED))
	if err != nil {
		res.failed(name, err)
		return
	}
	defer unix.Close(fd)
	pm, err := unix.Open("/proc/self/pagemap", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		res.failed(name, os.NewSyscallError("open /proc/self/pagemap", err))
		return
	}
	defer unix.Close(pm)
	mem, err := mmapAnon(pages)
	if err != nil {
		res.failed(name, err)
		return
	}
	defer unix.Munmap(mem)
	for i := 0; i < pages; i++ {
		mem[i*ps] = 1
	}
	base, end := addrOf(mem), addrOf(mem)+uint64(len(mem))
	rng := kernel.UffdioRange{Start: base, Len: uint64(len(mem))}
	if err := kernel.UffdioRegister(fd, &kernel.UffdioRegisterArg{Range: rng, Mode: kernel.UFFDIO_REGISTER_MODE_WP}); err != nil {
		res.failed(name, err)
		return
	}
	if err := kernel.UffdioWriteprotect(fd, &kernel.UffdioWriteprotectArg{Range: rng, Mode: kernel.UFFDIO_WRITEPROTECT_MODE_WP}); err != nil {
		res.failed(name, err)
		return
	}
	const track = kernel.PM_SCAN_WP_MATCHING | kernel.PM_SCAN_CHECK_WPASYNC
	if r, err := pagemapScan(pm, base, end, track, kernel.PAGE_IS_WRITTEN); err != nil {
		res.failed(name, err)
		return
	} else if len(r) != 0 {
		res.failed(name, fmt.Errorf("pages %v reported written right after UFFDIO_WRITEPROTECT", regionPages(r, base)))
		return
	}
	mem[1*ps], mem[5*ps] = 2, 2
	r, err := pagemapScan(pm, base, end, track, kernel.PAGE_IS_WRITTEN)
	if err != nil {
		res.failed(name, err)
		return
	}
	if got := regionPages(r, base); fmt.Sprint(got) != "[1 5]" {
		res.failed(name, fmt.Errorf("written pages %v, want [1 5]", got))
		return
	}
	if r, err := pagemapScan(pm, base, end, track, kernel.PAGE_IS_WRITTEN); err != nil || len(r) != 0 {
		res.failed(name, fmt.Errorf("second scan: pages %v (%v), want none: not re-protected", regionPages(r, base), err))
		return
	}
	res.available(name, fmt.Sprintf("wrote pages 1 and 5 of %d write-protected: PAGEMAP_SCAN reported exactly those and re-protected them", pages))
}
