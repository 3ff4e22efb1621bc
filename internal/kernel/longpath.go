package kernel

// Paths longer than PATH_MAX: the kernel refuses them whole (open, chdir:
// ENAMETOOLONG) and cannot report them (readlink of /proc/PID/fd/N,
// /proc/PID/cwd: ENAMETOOLONG), although a process can hold such a
// directory as its cwd or an fd. OpenLong opens one a piece at a time
// (openat from the last piece); DirPath finds one by walking ".." up from
// an open directory, naming each step by the entry of the parent that is
// the child (dev and inode), as a userspace getcwd does.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// PathMax is PATH_MAX (include/uapi/linux/limits.h): the longest path a
// system call takes, counting its terminating NUL.
const PathMax = unix.PathMax

// maxDepth bounds DirPath's walk (a loop in a broken filesystem).
const maxDepth = 1 << 16

// SplitLongPath cuts path into pieces of fewer than max bytes each, at
// slashes, such that opening the first and then each next one relative to
// the last (openat) reaches path: the first keeps a leading "/", the others
// are relative. A path already short enough is one piece. A single
// component of max bytes or more cannot be cut (the kernel would refuse it
// anyway: NAME_MAX is far smaller).
func SplitLongPath(path string, max int) ([]string, error) {
	if len(path) < max {
		return []string{path}, nil
	}
	var out []string
	rest := path
	for len(rest) >= max {
		// The last slash that leaves a piece shorter than max (a piece
		// ends before its slash; the next starts after it).
		cut := strings.LastIndexByte(rest[:max], '/')
		if cut == 0 && rest[0] == '/' {
			cut = -1 // "/" + a component too long
		}
		if cut < 0 {
			return nil, fmt.Errorf("path has a component of %d bytes or more: %w", max, unix.ENAMETOOLONG)
		}
		out = append(out, rest[:cut])
		rest = strings.TrimLeft(rest[cut:], "/")
	}
	if rest != "" {
		out = append(out, rest)
	}
	return out, nil
}

// OpenLong is open(2) for a path that may be longer than PATH_MAX: a
// longer one is opened piece by piece (SplitLongPath), every piece but the
// last as an O_PATH directory, the last with flags and mode. EINTR is
// retried.
func OpenLong(path string, flags int, mode uint32) (int, error) {
	return OpenLongAt(unix.AT_FDCWD, path, flags, mode)
}

// OpenLongAt is OpenLong relative to dirfd (for a relative path).
func OpenLongAt(dirfd int, path string, flags int, mode uint32) (int, error) {
	pieces, err := SplitLongPath(path, PathMax)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	at := dirfd
	for i, p := range pieces {
		last := i == len(pieces)-1
		f, m := unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, uint32(0)
		if last {
			f, m = flags, mode
		}
		fd, err := openatRetry(at, p, f, m)
		if at != dirfd {
			unix.Close(at)
		}
		if err != nil {
			if len(pieces) == 1 {
				return -1, err
			}
			return -1, fmt.Errorf("open piece %d of %d of a %d-byte path: %w", i+1, len(pieces), len(path), err)
		}
		if last {
			return fd, nil
		}
		at = fd
	}
	return -1, errors.New("open of an empty path") // SplitLongPath gives at least one piece
}

func openatRetry(dirfd int, path string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, path, flags, mode)
		if err == unix.EINTR {
			continue
		}
		return fd, err
	}
}

// Dirent is one entry of a directory as getdents64 reports it.
type Dirent struct {
	Ino  uint64
	Type uint8 // DT_*
	Name string
}

// ParseDirents decodes a buffer filled by getdents64 (struct
// linux_dirent64, include/linux/dirent.h: d_ino u64, d_off s64, d_reclen
// u16, d_type u8, d_name NUL-terminated, the record padded to d_reclen).
func ParseDirents(buf []byte) ([]Dirent, error) {
	var out []Dirent
	for len(buf) > 0 {
		if len(buf) < 19 {
			return nil, fmt.Errorf("getdents64: truncated record of %d bytes", len(buf))
		}
		reclen := int(binary.LittleEndian.Uint16(buf[16:18]))
		if reclen < 20 || reclen > len(buf) {
			return nil, fmt.Errorf("getdents64: record length %d of %d bytes left", reclen, len(buf))
		}
		name := buf[19:reclen]
		if i := strings.IndexByte(string(name), 0); i >= 0 {
			name = name[:i]
		}
		out = append(out, Dirent{Ino: binary.LittleEndian.Uint64(buf[0:8]), Type: buf[18], Name: string(name)})
		buf = buf[reclen:]
	}
	return out, nil
}

// FindEntry returns the name under which directory dirfd (open for
// reading) holds the inode dev:ino, other than "." and "..". Entries whose
// d_ino is ino are tried first; then, for a mount point (whose entry
// names the directory underneath), every directory entry is stat'ed.
func FindEntry(dirfd int, dev, ino uint64) (string, error) {
	var ents []Dirent
	buf := make([]byte, 64<<10)
	if _, err := unix.Seek(dirfd, 0, 0); err != nil {
		return "", os.NewSyscallError("lseek", err)
	}
	for {
		n, err := unix.Getdents(dirfd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return "", os.NewSyscallError("getdents64", err)
		}
		if n == 0 {
			break
		}
		e, err := ParseDirents(buf[:n])
		if err != nil {
			return "", err
		}
		ents = append(ents, e...)
	}
	is := func(name string) bool {
		var st unix.Stat_t
		return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Dev == dev && st.Ino == ino
	}
	for _, e := range ents {
		if e.Name != "." && e.Name != ".." && e.Ino == ino && is(e.Name) {
			return e.Name, nil
		}
	}
	for _, e := range ents {
		if e.Name != "." && e.Name != ".." && (e.Type == unix.DT_DIR || e.Type == unix.DT_UNKNOWN) && e.Ino != ino && is(e.Name) {
			return e.Name, nil
		}
	}
	return "", fmt.Errorf("no entry is inode %d:%d: %w", dev, ino, unix.ENOENT)
}

// JoinReversed builds an absolute path from its components listed from
// the last to the first (the order a walk up finds them in).
func JoinReversed(names []string) string {
	if len(names) == 0 {
		return "/"
	}
	var b strings.Builder
	for i := len(names) - 1; i >= 0; i-- {
		b.WriteByte('/')
		b.WriteString(names[i])
	}
	return b.String()
}

// DirPath returns the absolute path (from the caller's root) of the
// directory open as fd, of any length, by walking ".." up to the root. A
// removed directory (or one inside a removed directory) has none: ENOENT.
func DirPath(fd int) (string, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", os.NewSyscallError("fstat", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return "", fmt.Errorf("not a directory: %w", unix.ENOTDIR)
	}
	cur, err := unix.Dup(fd)
	if err != nil {
		return "", os.NewSyscallError("dup", err)
	}
	defer func() { unix.Close(cur) }()
	var names []string
	for range maxDepth {
		up, err := openatRetry(cur, "..", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", fmt.Errorf("open .. at depth %d: %w", len(names), err)
		}
		var ust unix.Stat_t
		if err := unix.Fstat(up, &ust); err != nil {
			unix.Close(up)
			return "", os.NewSyscallError("fstat", err)
		}
		if ust.Dev == st.Dev && ust.Ino == st.Ino {
			unix.Close(up)
			return JoinReversed(names), nil // the root: its own parent
		}
		name, err := FindEntry(up, st.Dev, st.Ino)
		if err != nil {
			unix.Close(up)
			return "", fmt.Errorf("directory at depth %d is not in its parent (removed?): %w", len(names), err)
		}
		names = append(names, name)
		unix.Close(cur)
		cur, st = up, ust
	}
	return "", fmt.Errorf("deeper than %d directories", maxDepth)
}

// ProcDirPath is DirPath of the directory a /proc magic link (such as
// /proc/PID/cwd or /proc/PID/fd/N) leads to: opening the link does not go
// through its text, so it works where readlink gives ENAMETOOLONG.
func ProcDirPath(link string) (string, error) {
	fd, err := openatRetry(unix.AT_FDCWD, link, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", &os.PathError{Op: "open", Path: link, Err: err}
	}
	defer unix.Close(fd)
	p, err := DirPath(fd)
	if err != nil {
		return "", fmt.Errorf("path of %s: %w", link, err)
	}
	return p, nil
}

// StatLong is stat(2) (symlinks followed) for a path that may be longer
// than PATH_MAX (opened O_PATH piece by piece, then fstat).
func StatLong(path string, st *unix.Stat_t) error {
	if len(path) < PathMax {
		return unix.Stat(path, st)
	}
	fd, err := OpenLong(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fstat(fd, st)
}
