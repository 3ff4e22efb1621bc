package bench

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/image"
	"ferry/internal/kernel"
	"ferry/internal/procfs"
	"ferry/internal/ptrace"
)

// ChunkSize is the size of the source buffer of the fresh-memory
// measurements, and a large process_vm_readv piece.
const ChunkSize = 8 << 20

// CacheChunk is a piece small enough to stay in the CPU's caches: reading
// another process's memory into it is faster than into ChunkSize.
const CacheChunk = 256 << 10

// RecordSize is the page payload of one image record, the unit in which
// restore gets pages from an image.
const RecordSize = 64 << 10

// NewBuffer returns size bytes of memory that has been written, so that
// using it as a source or destination costs no page faults.
func NewBuffer(size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7 + i>>12)
	}
	return b
}

// Readv is one ReadvLimit measurement.
type Readv struct {
	Bytes int64         // present pages read
	Read  time.Duration // reading them
	// Freeze is how long seizing and stopping every thread took, as a
	// dump's freeze does.
	Freeze time.Duration
}

// ReadvLimit freezes pid (as a dump does), reads every present page of its
// private anonymous memory with process_vm_readv in pieces of piece bytes
// spread over threads goroutines (each with a buffer of its own, already
// touched), and thaws it. Read is the time the reading took, freezing and
// finding the pages excluded: the rate at which a dump can get at the
// memory.
func ReadvLimit(ctx context.Context, t *ptrace.Tracer, pid, piece, threads int) (Readv, error) {
	bufs := make([][]byte, max(threads, 1))
	for i := range bufs {
		bufs[i] = NewBuffer(piece)
	}
	var r Readv
	var err error
	r.Freeze, err = WhileFrozen(ctx, t, pid, func() error {
		var err error
		r.Bytes, r.Read, err = readPresent(pid, bufs)
		return err
	})
	return r, err
}

// WhileFrozen freezes every thread of pid as a dump does, runs f (on the
// tracer thread), and thaws pid again. It returns how long freezing took.
// Measurements run under it so that the workload's own verification
// passes do not compete with them for the CPUs, as they cannot with a
// dump.
func WhileFrozen(ctx context.Context, t *ptrace.Tracer, pid int, f func() error) (time.Duration, error) {
	var d time.Duration
	err := t.Do(ctx, func() error {
		start := time.Now()
		fz, err := ptrace.Freeze(pid, time.Second, slog.New(slog.DiscardHandler))
		if err != nil {
			return err
		}
		d = time.Since(start)
		err = f()
		if terr := fz.Thaw(false); err == nil {
			err = terr
		}
		return err
	})
	return d, err
}

// readPresent reads the present pages of pid's private anonymous mappings,
// in pieces of len(bufs[i]), with one goroutine per buffer.
func readPresent(pid int, bufs [][]byte) (int64, time.Duration, error) {
	pieces, total, err := presentPieces(pid, len(bufs[0]))
	if err != nil {
		return 0, 0, err
	}
	if total == 0 {
		return 0, 0, errors.New("no present anonymous pages to read")
	}
	errs := make([]error, len(bufs))
	var wg sync.WaitGroup
	start := time.Now()
	for i, buf := range bufs {
		wg.Go(func() {
			for k := i; k < len(pieces); k += len(bufs) {
				rv := pieces[k]
				got, err := unix.ProcessVMReadv(pid, []unix.Iovec{iovec(buf[:rv.Len])}, []unix.RemoteIovec{rv}, 0)
				if err == nil && got != rv.Len {
					err = fmt.Errorf("%d of %d bytes", got, rv.Len)
				}
				if err != nil {
					errs[i] = fmt.Errorf("process_vm_readv %#x of %d: %w", rv.Base, pid, err)
					return
				}
			}
		})
	}
	wg.Wait()
	d := time.Since(start)
	return total, d, errors.Join(errs...)
}

// presentPieces lists the present pages of pid's private anonymous
// mappings (those a dump stores) as ranges of at most piece bytes.
func presentPieces(pid, piece int) ([]unix.RemoteIovec, int64, error) {
	maps, err := procfs.Maps(pid)
	if err != nil {
		return nil, 0, err
	}
	pm, err := procfs.OpenPagemap(pid)
	if err != nil {
		return nil, 0, err
	}
	defer pm.Close()
	ps := uint64(os.Getpagesize())
	var out []unix.RemoteIovec
	var total int64
	var ents []uint64
	for _, m := range maps {
		if !m.Anonymous() || m.Shared || !m.Read {
			continue
		}
		if ents, err = pm.Read(m.Start, m.End, ents); err != nil {
			return nil, 0, err
		}
		for i := 0; i < len(ents); {
			if !procfs.Present(ents[i]) {
				i++
				continue
			}
			j := i
			for j < len(ents) && procfs.Present(ents[j]) {
				j++
			}
			for a, end := m.Start+uint64(i)*ps, m.Start+uint64(j)*ps; a < end; {
				n := min(end-a, uint64(piece))
				out = append(out, unix.RemoteIovec{Base: uintptr(a), Len: int(n)})
				total += int64(n)
				a += n
			}
			i = j
		}
	}
	return out, total, nil
}

func iovec(b []byte) unix.Iovec {
	v := unix.Iovec{Base: &b[0]}
	v.SetLen(len(b))
	return v
}

// Ways of filling fresh memory, each writing src again and again into new
// anonymous memory.
const (
	// FillCopy copies with the CPU; every page faults on first write and
	// the kernel zeroes it before the copy overwrites it.
	FillCopy = "copy"
	// FillWritev uses process_vm_writev of RecordSize pieces into this
	// process's own memory, as restore writes a new process: the kernel
	// faults pages in itself, without a trap per page, then copies.
	FillWritev = "writev"
	// FillUffdCopy uses UFFDIO_COPY of RecordSize pieces: the kernel
	// allocates each page and copies into it without zeroing it first.
	FillUffdCopy = "uffd-copy"
)

// FillMethods are the ways of filling fresh memory that are measured; the
// fastest, on one thread or on all, is a restore's limit.
var FillMethods = []string{FillCopy, FillWritev, FillUffdCopy}

// ErrNoUserfaultfd is wrapped by the error of a FillUffdCopy measurement
// where userfaultfd cannot be used.
var ErrNoUserfaultfd = errors.New("userfaultfd unavailable")

// FillFresh maps size bytes of new private anonymous memory and fills it
// from src by method, the work split over threads goroutines. The time
// covers the mmap and the filling, not the munmap after.
func FillFresh(method string, size, threads int, src []byte) (time.Duration, error) {
	threads = max(threads, 1)
	var fill func(dst []byte) error
	var done func()
	switch method {
	case FillCopy:
		fill = func(dst []byte) error {
			for off := 0; off < len(dst); off += len(src) {
				copy(dst[off:], src)
			}
			return nil
		}
	case FillWritev:
		pid := os.Getpid()
		fill = func(dst []byte) error { return writevInto(pid, dst, src) }
	case FillUffdCopy:
		// The userfaultfd is set up inside the timing: restore would have
		// to do the same.
	default:
		return 0, fmt.Errorf("unknown fill method %q", method)
	}
	start := time.Now()
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return 0, os.NewSyscallError("mmap", err)
	}
	defer unix.Munmap(b)
	if method == FillUffdCopy {
		var fd int
		if fd, err = uffdFor(b); err != nil {
			return 0, err
		}
		done = func() { unix.Close(fd) }
		fill = func(dst []byte) error { return uffdCopyInto(fd, dst, src) }
	}
	// Split on page boundaries.
	part := (size/threads + os.Getpagesize() - 1) &^ (os.Getpagesize() - 1)
	errs := make([]error, threads)
	var wg sync.WaitGroup
	for i := range threads {
		lo, hi := min(i*part, size), min((i+1)*part, size)
		if lo == hi {
			continue
		}
		wg.Go(func() { errs[i] = fill(b[lo:hi]) })
	}
	wg.Wait()
	d := time.Since(start)
	if done != nil {
		done()
	}
	return d, errors.Join(errs...)
}

func writevInto(pid int, dst, src []byte) error {
	for off := 0; off < len(dst); off += RecordSize {
		n := min(RecordSize, len(dst)-off, len(src))
		got, err := unix.ProcessVMWritev(pid, []unix.Iovec{iovec(src[:n])},
			[]unix.RemoteIovec{{Base: addrOf(dst[off:]), Len: n}}, 0)
		if err == nil && got != n {
			err = fmt.Errorf("%d of %d bytes", got, n)
		}
		if err != nil {
			return os.NewSyscallError("process_vm_writev", err)
		}
	}
	return nil
}

// uffdFor returns a userfaultfd with b registered for missing pages.
func uffdFor(b []byte) (int, error) {
	fd, err := kernel.Userfaultfd(unix.O_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("%w: %w", ErrNoUserfaultfd, err)
	}
	api := kernel.UffdioAPIArg{API: kernel.UFFD_API}
	reg := kernel.UffdioRegisterArg{Range: kernel.UffdioRange{Start: uint64(addrOf(b)), Len: uint64(len(b))},
		Mode: kernel.UFFDIO_REGISTER_MODE_MISSING}
	if err := kernel.UffdioAPI(fd, &api); err == nil {
		err = kernel.UffdioRegister(fd, &reg)
	}
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("%w: %w", ErrNoUserfaultfd, err)
	}
	return fd, nil
}

func uffdCopyInto(fd int, dst, src []byte) error {
	for off := 0; off < len(dst); {
		n := min(RecordSize, len(dst)-off, len(src))
		arg := kernel.UffdioCopyArg{Dst: uint64(addrOf(dst[off:])), Src: &src[0], Len: uint64(n)}
		err := kernel.UffdioCopy(fd, &arg)
		if arg.Copy > 0 {
			off += int(arg.Copy)
		}
		switch {
		case errors.Is(err, unix.EAGAIN):
			continue // the mm changed under the copy; go on from where it got
		case err != nil:
			return err
		case arg.Copy <= 0:
			return fmt.Errorf("UFFDIO_COPY at %#x copied %d", arg.Dst, arg.Copy)
		}
	}
	return nil
}

// TmpfsWrite writes size bytes from src to a new file in dir, in writes of
// 512 KiB (the image writer's buffer), as a dump writes its image, and
// removes the file after. On tmpfs the file's pages are fresh memory too.
func TmpfsWrite(dir string, size int, src []byte) (time.Duration, error) {
	f, err := os.CreateTemp(dir, "ferry-bench-write-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	const piece = 512 << 10
	src = src[:min(piece, len(src))]
	start := time.Now()
	for off := 0; off < size; off += len(src) {
		if _, err := f.Write(src[:min(len(src), size-off)]); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// ImageWrite writes size bytes of pages from src through image.Writer into
// a new image in dir, after a minimal state record, and removes it after:
// a dump's writing half (checksums, buffering, file writes) with no
// process behind it.
func ImageWrite(dir string, size int, src []byte) (time.Duration, error) {
	tmp, err := os.MkdirTemp(dir, "ferry-bench-image-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	dw, err := image.Create(tmp)
	if err != nil {
		return 0, err
	}
	defer dw.Abort()
	const pid = 1
	if err := dw.WriteState(&image.Checkpoint{Root: pid, PageSize: os.Getpagesize(),
		Processes: []*image.Process{{PID: pid}}}); err != nil {
		return 0, err
	}
	addr := uint64(1 << 30)
	for off := 0; off < size; off += len(src) {
		n := min(len(src), size-off) &^ (os.Getpagesize() - 1)
		if n == 0 {
			break
		}
		if err := dw.WritePages(pid, addr, src[:n]); err != nil {
			return 0, err
		}
		addr += uint64(n)
	}
	if err := dw.Close(); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// ImageDecode is one ImageRead measurement.
type ImageDecode struct {
	PageBytes int64
	State     time.Duration // opening the image and decoding its state record
	Total     time.Duration
}

// ImageRead decodes the image in dir with image.Reader, which reads and
// checksums every record, and discards the records: a restore's reading
// half with no process to fill.
func ImageRead(dir string) (ImageDecode, error) {
	var r ImageDecode
	start := time.Now()
	dr, err := image.Open(dir)
	if err != nil {
		return r, err
	}
	defer dr.Close()
	for {
		rec, err := dr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return r, err
		}
		switch rec.Type {
		case image.RecordState:
			r.State = time.Since(start)
		case image.RecordPages:
			r.PageBytes += int64(len(rec.Data))
		}
	}
	r.Total = time.Since(start)
	return r, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC32C checksums buf rounds times with the image format's CRC-32C and
// returns the time taken: every image byte is checksummed once on dump
// and once on restore.
func CRC32C(buf []byte, rounds int) time.Duration {
	start := time.Now()
	var sum uint32
	for range rounds {
		sum = crc32.Update(sum, castagnoli, buf)
	}
	crcSink = sum
	return time.Since(start)
}

// crcSink keeps the checksum loop from being optimised away.
var crcSink uint32

// shmDir is the tmpfs where images go when there is one.
func shmDir() string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		return "/dev/shm"
	}
	return os.TempDir()
}

// onTmpfs reports whether dir is on tmpfs.
func onTmpfs(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Clean(dir), &st); err != nil {
		return false
	}
	return st.Type == unix.TMPFS_MAGIC
}
