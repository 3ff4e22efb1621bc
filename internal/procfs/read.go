package procfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrMalformed is wrapped by every error that reports text the parsers do not
// understand.
var ErrMalformed = errors.New("malformed")

// lineErr reports a parse error on line (1-based) of path.
func lineErr(path string, line int, format string, args ...any) error {
	return fmt.Errorf("procfs: %s line %d: %w: %s", path, line, ErrMalformed, fmt.Sprintf(format, args...))
}

// fileErr reports a parse error in path that is not tied to one line.
func fileErr(path string, format string, args ...any) error {
	return fmt.Errorf("procfs: %s: %w: %s", path, ErrMalformed, fmt.Sprintf(format, args...))
}

// osErr wraps an error from the OS; a *fs.PathError already names the file.
func osErr(op, path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("procfs: %w", err)
	}
	return fmt.Errorf("procfs: %s %s: %w", op, path, err)
}

// pidPath returns "/proc/PID/name" without fmt.
func pidPath(pid int, name string) string {
	b := make([]byte, 0, 16+len(name))
	b = append(b, "/proc/"...)
	b = strconv.AppendInt(b, int64(pid), 10)
	b = append(b, '/')
	b = append(b, name...)
	return string(b)
}

// taskPath returns "/proc/PID/task/TID/name".
func taskPath(pid, tid int, name string) string {
	b := make([]byte, 0, 32+len(name))
	b = append(b, "/proc/"...)
	b = strconv.AppendInt(b, int64(pid), 10)
	b = append(b, "/task/"...)
	b = strconv.AppendInt(b, int64(tid), 10)
	b = append(b, '/')
	b = append(b, name...)
	return string(b)
}

// bufPool holds read buffers. seq_file hands out at most one buffer's worth
// (a page, unless a single record is larger) per read(2), so a big maps file
// takes several reads; reusing the buffer keeps the hot readers from
// allocating it again on every call.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// maxPooled is the largest buffer kept for reuse: one huge smaps should
// not pin its buffer for the life of the process.
const maxPooled = 4 << 20

// maxFileSize bounds how much of one /proc file is read; smaps of a process
// with a million VMAs stays well below it.
const maxFileSize = 1 << 30

// withFile reads the whole of path into a pooled buffer (see readInto for
// single) and calls parse on it. parse must not keep b (or sub-slices of
// it) after it returns.
func withFile(path string, single bool, parse func(b []byte) error) error {
	bp := bufPool.Get().(*[]byte)
	b, err := readInto(path, *bp, single)
	if cap(b) > cap(*bp) && cap(b) <= maxPooled {
		*bp = b[:cap(b)]
	}
	defer bufPool.Put(bp)
	if err != nil {
		return err
	}
	return parse(b)
}

// eachLine reads the whole of path (a multi-record file) and calls f on
// each non-blank line after the first skip (column titles). An error from
// f is reported with the file and line number.
func eachLine(path string, skip int, f func(line []byte) error) error {
	return withFile(path, false, func(b []byte) error {
		for n := 1; len(b) > 0; n++ {
			var line []byte
			line, b = nextLine(b)
			if n <= skip || len(trimSpace(line)) == 0 {
				continue
			}
			if err := f(line); err != nil {
				return lineErr(path, n, "%v in %q", err, line)
			}
		}
		return nil
	})
}

// readInto reads path to EOF into buf (grown as needed) and returns the
// filled slice. Every read asks for all the room left in buf.
//
// single says the file is a seq_file made with single_open (stat, status,
// fdinfo, comm, personality): the kernel formats the whole text at once
// and a read with room to spare returns all of it, so the read(2) that
// would only report EOF is skipped. Multi-record files (maps, smaps,
// timers, children) come a buffer page at a time and are read to EOF.
func readInto(path string, buf []byte, single bool) ([]byte, error) {
	fd, err := openRetry(path, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return nil, osErr("open", path, &fs.PathError{Op: "open", Path: path, Err: err})
	}
	defer unix.Close(fd)
	buf = buf[:cap(buf)]
	n := 0
	for {
		if n == len(buf) {
			if len(buf) >= maxFileSize {
				return nil, fileErr(path, "larger than %d bytes", maxFileSize)
			}
			nb := make([]byte, 2*len(buf))
			copy(nb, buf[:n])
			buf = nb
		}
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return buf[:0], osErr("read", path, &fs.PathError{Op: "read", Path: path, Err: err})
		}
		if m == 0 || single && m < len(buf)-n {
			return buf[:n+m], nil
		}
		n += m
	}
}

func openRetry(path string, flags int) (int, error) {
	for {
		fd, err := unix.Open(path, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// readSmall reads a short file (comm, personality, children…) into a fresh
// slice.
func readSmall(path string, single bool) ([]byte, error) {
	b, err := readInto(path, make([]byte, 512), single)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// readlink wraps os.Readlink with our error prefix.
func readlink(path string) (string, error) {
	s, err := os.Readlink(path)
	if err != nil {
		return "", osErr("readlink", path, err)
	}
	return s, nil
}

// readDirInts lists the numeric names in dir (fd, task), sorted.
func readDirInts(dir string) ([]int, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, osErr("open", dir, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, osErr("readdir", dir, err)
	}
	out := make([]int, 0, len(names))
	for _, n := range names {
		v, err := strconv.Atoi(n)
		if err != nil {
			return nil, fileErr(dir, "entry %q is not a number", n)
		}
		out = append(out, v)
	}
	slices.Sort(out)
	return out, nil
}
