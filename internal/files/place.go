package files

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Where a Store may put a file that arrives with a migration. A manifest
// comes from the source node; its paths are checked before anything is
// looked at (CheckPath), and a file is created only in a directory the
// job's owner could have created it in, reached without following any
// symbolic link, and owned as the owner could have owned it.

// ErrRefused is wrapped by every refusal of a manifest path or of where a
// file would be created.
var ErrRefused = errors.New("refused")

// Owner is the user whose job the files are for, when it is not root:
// what that user could not have written on this node is refused.
type Owner struct {
	UID, GID uint32
	Groups   []uint32
}

func (o *Owner) inGroup(gid uint32) bool { return o.GID == gid || slices.Contains(o.Groups, gid) }

// Permission bits asked of a directory.
const (
	permWrite  = 2
	permSearch = 1
)

// may reports whether o has every bit of want on a file with st, by its
// mode bits (POSIX ACLs are not consulted: a directory writable only
// through an ACL is refused).
func (o *Owner) may(st *unix.Stat_t, want uint32) bool {
	var bits uint32
	switch {
	case st.Uid == o.UID:
		bits = st.Mode >> 6
	case o.inGroup(st.Gid):
		bits = st.Mode >> 3
	default:
		bits = st.Mode
	}
	return bits&7&want == want
}

// CheckPath refuses a manifest path that is relative, not clean (with
// "..", ".", "//" or a trailing slash), or that points into one of the
// forbidden directories (the node's own state).
func CheckPath(p string, forbidden []string) error {
	switch {
	case !filepath.IsAbs(p):
		return fmt.Errorf("manifest path %q is relative: %w", p, ErrRefused)
	case slices.Contains(strings.Split(p, "/"), ".."):
		return fmt.Errorf("manifest path %q contains \"..\": %w", p, ErrRefused)
	case filepath.Clean(p) != p:
		return fmt.Errorf("manifest path %q is not clean (it would be %q): %w", p, filepath.Clean(p), ErrRefused)
	}
	for _, d := range forbidden {
		d = filepath.Clean(d)
		if d != "" && (p == d || strings.HasPrefix(p, d+"/") || d == "/") {
			return fmt.Errorf("manifest path %q is in the node's state directory %s: %w", p, d, ErrRefused)
		}
	}
	return nil
}

// openDir opens directory dir (absolute and clean), one component at a
// time from /, never following a symbolic link. With create, missing
// directories are made (mode 0755, owned by o if set). With o set, o must
// be able to search every directory on the way and, where one is made,
// write its parent: it fails as o's own mkdir -p would, with an error
// wrapping ErrRefused.
func openDir(dir string, o *Owner, create bool) (*os.File, error) {
	fd, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("open /", err)
	}
	at := "/"
	comps := strings.Split(strings.TrimPrefix(dir, "/"), "/")
	if dir == "/" {
		comps = nil
	}
	for _, c := range comps {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return nil, os.NewSyscallError("fstat "+at, err)
		}
		if o != nil && !o.may(&st, permSearch) {
			unix.Close(fd)
			return nil, fmt.Errorf("uid %d may not search %s: %w", o.UID, at, ErrRefused)
		}
		next := filepath.Join(at, c)
		nfd, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) && create {
			if o != nil && !o.may(&st, permWrite|permSearch) {
				unix.Close(fd)
				return nil, fmt.Errorf("uid %d may not create %s: it may not write %s: %w", o.UID, next, at, ErrRefused)
			}
			if err := unix.Mkdirat(fd, c, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
				unix.Close(fd)
				return nil, fmt.Errorf("create directory %s: %w", next, os.NewSyscallError("mkdirat", err))
			}
			nfd, err = unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err == nil && o != nil {
				if err := unix.Fchown(nfd, int(o.UID), int(o.GID)); err != nil {
					unix.Close(nfd)
					unix.Close(fd)
					return nil, fmt.Errorf("give %s to uid %d: %w", next, o.UID, os.NewSyscallError("fchown", err))
				}
			}
		}
		if err != nil {
			var lst unix.Stat_t
			if unix.Fstatat(fd, c, &lst, unix.AT_SYMLINK_NOFOLLOW) == nil && lst.Mode&unix.S_IFMT == unix.S_IFLNK {
				err = fmt.Errorf("%s is a symbolic link, and files that arrive are never created through one: %w", next, ErrRefused)
			} else {
				err = fmt.Errorf("open directory %s: %w", next, err)
			}
			unix.Close(fd)
			return nil, err
		}
		unix.Close(fd)
		fd, at = nfd, next
	}
	return os.NewFile(uintptr(fd), dir), nil
}

// checkOwnership refuses an entry the owner could not have made: a file
// of another user, or of a group the owner is not in.
func checkOwnership(e Entry, o *Owner) error {
	if o == nil {
		return nil
	}
	if e.UID != o.UID {
		return fmt.Errorf("%s belongs to uid %d on the source, and the job's owner is uid %d: %w", e.Path, e.UID, o.UID, ErrRefused)
	}
	if !o.inGroup(e.GID) {
		return fmt.Errorf("%s has group %d on the source, not one of uid %d's groups: %w", e.Path, e.GID, o.UID, ErrRefused)
	}
	return nil
}
