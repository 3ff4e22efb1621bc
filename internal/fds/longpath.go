package fds

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"ferry/internal/kernel"
	"ferry/internal/procfs"
)

// fdLink reads the /proc link of fd num of pid. For a path longer than the
// kernel can report (readlink gives ENAMETOOLONG past PATH_MAX) it finds
// the path instead (longFDPath).
func fdLink(pid, num int) (string, error) {
	link, err := os.Readlink(fdPath(pid, num))
	if err == nil || !errors.Is(err, unix.ENAMETOOLONG) {
		return link, err
	}
	p, lerr := longFDPath(pid, num)
	if lerr != nil {
		return "", fmt.Errorf("%w: %w", err, lerr)
	}
	return p, nil
}

// longFDPath finds the path of fd num of pid when it is longer than
// PATH_MAX: a directory's by walking up from it (kernel.DirPath); a
// non-directory's only as an entry of a directory the process holds (its
// working directory, its root, a directory fd), since a file does not know
// its parent.
func longFDPath(pid, num int) (string, error) {
	link := fdPath(pid, num)
	var st unix.Stat_t
	if err := unix.Stat(link, &st); err != nil {
		return "", os.NewSyscallError("stat", err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		p, err := kernel.ProcDirPath(link)
		if err != nil {
			return "", fmt.Errorf("a directory whose path is longer than PATH_MAX, and walking up from it failed: %w", err)
		}
		return p, nil
	}
	if st.Nlink == 0 {
		return "", fmt.Errorf("a removed %s whose former path is longer than PATH_MAX: ferry cannot tell its directory", fileType(st.Mode))
	}
	dirs := []string{fmt.Sprintf("/proc/%d/cwd", pid), fmt.Sprintf("/proc/%d/root", pid)}
	if nums, err := procfs.FDs(pid); err == nil {
		for _, n := range nums {
			if n != num {
				dirs = append(dirs, fdPath(pid, n))
			}
		}
	}
	for _, d := range dirs {
		if p, ok := entryIn(d, st.Dev, st.Ino); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("a %s whose path is longer than PATH_MAX, and not directly in the working directory or a directory the process has open: ferry cannot find the path of a non-directory from the file itself", fileType(st.Mode))
}

// entryIn returns the path of inode dev:ino as an entry of the directory
// the /proc link dir leads to, if it is one.
func entryIn(dir string, dev, ino uint64) (string, bool) {
	var dst unix.Stat_t
	if unix.Stat(dir, &dst) != nil || dst.Mode&unix.S_IFMT != unix.S_IFDIR {
		return "", false // only directories are opened (no FIFO, device or leased file)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", false
	}
	defer unix.Close(fd)
	name, err := kernel.FindEntry(fd, dev, ino)
	if err != nil {
		return "", false
	}
	base, err := os.Readlink(selfFDPath(fd))
	if errors.Is(err, unix.ENAMETOOLONG) {
		base, err = kernel.DirPath(fd)
	}
	if err != nil || len(base) == 0 || base[0] != '/' || strings.HasSuffix(base, deletedSuffix) {
		return "", false
	}
	if base == "/" {
		return "/" + name, true
	}
	return base + "/" + name, true
}
