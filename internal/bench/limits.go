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
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/kernel"
	"ferry/internal/procfs"
	"ferry/internal/ptrace"
)

// ChunkSize is as much as dump reads with one process_vm_readv, and the
// size of the source buffer of the fresh-memory measurements.
const ChunkSize = 8 << 20

// CacheChunk is a piece small enough to stay in the CPU's caches: reading
// another process's memory into it is faster than into ChunkSize.
const CacheChunk = 256 << 10

// RecordSize is the page payload of one image record, which restore writes
// with one process_vm_writev (image's writeChunk).
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

// ReadvLimit freezes pid (as a dump does), reads every present page of
// its private anonymous memory with process_vm_readv in pieces of
// len(buf), and thaws it. It returns the bytes read and the time spent
// reading, freezing excluded: the rate at which a dump can get at the
// memory. If sink is set, each piece is also written to it, inside the
// timing: a dump's path with nothing else in it.
func ReadvLimit(ctx context.Context, t *ptrace.Tracer, pid int, buf []byte, sink io.Writer) (int64, time.Duration, error) {
	var n int64
	var d time.Duration
	err := t.Do(ctx, func() error {
		fz, err := ptrace.Freeze(pid, time.Second, slog.New(slog.DiscardHandler))
		if err != nil {
			return err
		}
		n, d, err = readPresent(pid, buf, sink)
		if terr := fz.Thaw(false); err == nil {
			err = terr
		}
		return err
	})
	return n, d, err
}

// readPresent reads the present pages of pid's private anonymous mappings.
func readPresent(pid int, buf []byte, sink io.Writer) (int64, time.Duration, error) {
	maps, err := procfs.Maps(pid)
	if err != nil {
		return 0, 0, err
	}
	pm, err := procfs.OpenPagemap(pid)
	if err != nil {
		return 0, 0, err
	}
	defer pm.Close()
	ps := uint64(os.Getpagesize())
	var total int64
	var spent time.Duration
	var ents []uint64
	for _, m := range maps {
		if !m.Anonymous() || m.Shared || !m.Read {
			continue
		}
		if ents, err = pm.Read(m.Start, m.End, ents); err != nil {
			return 0, 0, err
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
				piece := buf[:min(end-a, uint64(len(buf)))]
				start := time.Now()
				got, err := unix.ProcessVMReadv(pid, []unix.Iovec{iovec(piece)},
					[]unix.RemoteIovec{{Base: uintptr(a), Len: len(piece)}}, 0)
				if err == nil && got == len(piece) && sink != nil {
					_, err = sink.Write(piece)
				}
				spent += time.Since(start)
				if err != nil {
					return 0, 0, fmt.Errorf("read %#x of %d: %w", a, pid, err)
				}
				if got != len(piece) {
					return 0, 0, fmt.Errorf("process_vm_readv at %#x: %d of %d bytes", a, got, len(piece))
				}
				total += int64(got)
				a += uint64(got)
			}
			i = j
		}
	}
	if total == 0 {
		return 0, 0, errors.New("no present anonymous pages to read")
	}
	return total, spent, nil
}

func iovec(b []byte) unix.Iovec {
	v := unix.Iovec{Base: &b[0]}
	v.SetLen(len(b))
	return v
}

// mapFresh maps size bytes of new private anonymous memory, untouched.
func mapFresh(size int) ([]byte, error) {
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}
	return b, nil
}

// FreshWrite maps size bytes of new anonymous memory and copies src into
// it again and again until it is full: the rate at which a restore can
// fill a new address space. The time covers the mmap and the copy (every
// page faulted in, zeroed and overwritten), not the munmap after.
func FreshWrite(size int, src []byte) (time.Duration, error) {
	start := time.Now()
	b, err := mapFresh(size)
	if err != nil {
		return 0, err
	}
	for off := 0; off < size; off += len(src) {
		copy(b[off:], src)
	}
	d := time.Since(start)
	return d, unix.Munmap(b)
}

// WritevFresh is FreshWrite through process_vm_writev into this process's
// own new memory, chunk bytes per call, as restore writes the new process.
func WritevFresh(size, chunk int, src []byte) (time.Duration, error) {
	chunk = min(chunk, len(src))
	start := time.Now()
	b, err := mapFresh(size)
	if err != nil {
		return 0, err
	}
	pid := os.Getpid()
	for off := 0; off < size; off += chunk {
		n := min(chunk, size-off)
		got, err := unix.ProcessVMWritev(pid, []unix.Iovec{iovec(src[:n])},
			[]unix.RemoteIovec{{Base: addrOf(b[off:]), Len: n}}, 0)
		if err == nil && got != n {
			err = fmt.Errorf("%d of %d bytes", got, n)
		}
		if err != nil {
			unix.Munmap(b)
			return 0, os.NewSyscallError("process_vm_writev", err)
		}
	}
	d := time.Since(start)
	return d, unix.Munmap(b)
}

// UffdCopyFresh is FreshWrite through UFFDIO_COPY, chunk bytes per call:
// the kernel allocates each page and copies into it without zeroing it
// first, which neither a page fault nor process_vm_writev avoids. It fails
// with an error wrapping ErrNoUserfaultfd where userfaultfd is off.
func UffdCopyFresh(size, chunk int, src []byte) (time.Duration, error) {
	chunk = min(chunk, len(src))
	start := time.Now()
	b, err := mapFresh(size)
	if err != nil {
		return 0, err
	}
	defer unix.Munmap(b)
	fd, err := kernel.Userfaultfd(unix.O_CLOEXEC)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrNoUserfaultfd, err)
	}
	defer unix.Close(fd)
	api := kernel.UffdioAPIArg{API: kernel.UFFD_API}
	if err := kernel.UffdioAPI(fd, &api); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrNoUserfaultfd, err)
	}
	reg := kernel.UffdioRegisterArg{Range: kernel.UffdioRange{Start: uint64(addrOf(b)), Len: uint64(size)},
		Mode: kernel.UFFDIO_REGISTER_MODE_MISSING}
	if err := kernel.UffdioRegister(fd, &reg); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrNoUserfaultfd, err)
	}
	for off := 0; off < size; {
		n := min(chunk, size-off)
		arg := kernel.UffdioCopyArg{Dst: uint64(addrOf(b[off:])), Src: &src[0], Len: uint64(n)}
		err := kernel.UffdioCopy(fd, &arg)
		if arg.Copy > 0 {
			off += int(arg.Copy)
		}
		switch {
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return 0, err
		case arg.Copy <= 0:
			return 0, fmt.Errorf("UFFDIO_COPY at offset %d copied %d", off, arg.Copy)
		}
	}
	return time.Since(start), nil
}

// ErrNoUserfaultfd is wrapped by UffdCopyFresh's error when userfaultfd
// cannot be used.
var ErrNoUserfaultfd = errors.New("userfaultfd unavailable")

// TmpfsWrite writes size bytes from src to a new file in dir, in writes of
// 512 KiB (the image writer's buffer), as a dump writes its image, and
// removes the file after. The file's pages are new memory too.
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
