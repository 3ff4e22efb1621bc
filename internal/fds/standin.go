package fds

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"ferry/internal/image"
)

// A removed directory, FIFO or device node that a process still holds
// (an fd, or its cwd) is carried as a stand-in: a new node of the same
// type, mode, owner and device number made at the old path, opened, and
// removed again, so /proc shows the same "PATH (deleted)". Directories
// on the way that no longer exist are made for the while and removed
// too. When the path is taken again by a new file, the stand-in gets a
// fresh name beside it (the /proc link then shows that name).

// standInLocked returns an O_PATH fd of the stand-in for the removed node
// (dev, ino) last seen at path, making it once per node: every fd and cwd
// that named the node gets a description of the same new one. The
// Restorer owns the file.
func (r *Restorer) standInLocked(path string, mode uint32, rdev uint64, uid, gid uint32, dev, ino uint64) (*os.File, error) {
	id := image.ObjectID(dev, ino)
	if f := r.objs[id]; f != nil {
		return f, nil
	}
	fd, used, err := makeStandIn(path, mode, rdev, uid, gid)
	if err != nil {
		return nil, fmt.Errorf("stand-in for removed %s %s: %w", fileType(mode), path, err)
	}
	if used != path {
		r.log.Warn("path of a removed node is taken; its stand-in has another name", "path", path, "stand_in", used)
	}
	f := r.keepLocked(fd, used+deletedSuffix)
	r.objs[id] = f
	return f, nil
}

// makeStandIn makes the node at path (or a fresh name beside it), opens
// it O_PATH and removes it and the parents it had to make. It returns the
// fd and the name it used.
func makeStandIn(path string, mode uint32, rdev uint64, uid, gid uint32) (int, string, error) {
	var made []string // parents made here, innermost last
	defer func() {
		for i := len(made) - 1; i >= 0; i-- {
			_ = unix.Rmdir(made[i])
		}
	}()
	var missing []string
	for dir := filepath.Dir(path); dir != "/" && dir != "."; dir = filepath.Dir(dir) {
		if _, err := os.Lstat(dir); err == nil {
			break
		}
		missing = append(missing, dir)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := unix.Mkdir(missing[i], 0o700); err != nil {
			return -1, "", fmt.Errorf("make parent %s: %w", missing[i], err)
		}
		made = append(made, missing[i])
	}
	name := path
	err := mknode(name, mode, rdev)
	for i := 0; errors.Is(err, unix.EEXIST) && i < 10; i++ {
		var rnd [6]byte
		_, _ = rand.Read(rnd[:])
		name = path + ".ferry-" + hex.EncodeToString(rnd[:])
		err = mknode(name, mode, rdev)
	}
	if err != nil {
		return -1, "", err
	}
	remove := func() error {
		if mode&unix.S_IFMT == unix.S_IFDIR {
			return unix.Rmdir(name)
		}
		return unix.Unlink(name)
	}
	if err := unix.Lchown(name, int(uid), int(gid)); err != nil {
		_ = remove()
		return -1, "", fmt.Errorf("chown %s: %w", name, err)
	}
	if err := unix.Chmod(name, mode&0o7777); err != nil {
		_ = remove()
		return -1, "", fmt.Errorf("chmod %s: %w", name, err)
	}
	fd, err := openRetry(name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		_ = remove()
		return -1, "", fmt.Errorf("open %s: %w", name, err)
	}
	if err := remove(); err != nil {
		unix.Close(fd)
		return -1, "", fmt.Errorf("remove %s again: %w", name, err)
	}
	return fd, name, nil
}

// mknode makes a directory, FIFO, character or block device node at name.
func mknode(name string, mode uint32, rdev uint64) error {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return unix.Mkdir(name, 0o700)
	case unix.S_IFIFO:
		return unix.Mkfifo(name, 0o600)
	case unix.S_IFCHR:
		return unix.Mknod(name, unix.S_IFCHR|0o600, int(rdev))
	case unix.S_IFBLK:
		return unix.Mknod(name, unix.S_IFBLK|0o600, int(rdev))
	}
	return fmt.Errorf("cannot make a stand-in for a %s", fileType(mode))
}

// prepareGoneLocked opens a description of the stand-in for a removed
// directory or character device, with the recorded flags and offset.
func (r *Restorer) prepareGoneLocked(rec *image.FD) error {
	sf, err := r.standInLocked(rec.Path, rec.Mode, rec.Rdev, rec.UID, rec.GID, rec.Dev, rec.Ino)
	if err != nil {
		return err
	}
	flags := openFlags(rec.Flags)
	if rec.Kind == image.FDDir {
		flags |= unix.O_DIRECTORY
	}
	fd, err := openRetry(selfFDPath(RawFD(sf)), flags, 0)
	if err != nil {
		return fmt.Errorf("open stand-in of %s: %w", rec.Path, err)
	}
	f := r.keepLocked(fd, rec.Path+deletedSuffix)
	if rec.Offset != 0 {
		if _, err := unix.Seek(fd, rec.Offset, 0); err != nil {
			r.log.Warn("cannot restore offset", "path", rec.Path, "offset", rec.Offset, "err", err)
		}
	}
	if err := r.setStatusFlags(fd, rec.Flags); err != nil {
		return err
	}
	r.files[rec.Desc] = f
	return nil
}

// prepareCwdsLocked makes the stand-ins for removed working directories.
func (r *Restorer) prepareCwdsLocked() error {
	for _, p := range r.procs {
		g := p.CwdGone
		if g == nil {
			continue
		}
		if g.Mode&unix.S_IFMT != unix.S_IFDIR {
			return fmt.Errorf("pid %d: removed cwd %s has mode %o, not a directory", p.PID, p.Cwd, g.Mode)
		}
		if _, err := r.standInLocked(p.Cwd, g.Mode, 0, g.UID, g.GID, g.Dev, g.Ino); err != nil {
			return fmt.Errorf("pid %d cwd: %w", p.PID, err)
		}
	}
	return nil
}

// Cwd returns, for a process whose working directory had been removed
// (image.Process.CwdGone), an O_PATH file of its stand-in for fchdir;
// nil otherwise. Valid until Close.
func (r *Restorer) Cwd(pid int) *os.File {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.byPID[pid]
	if p == nil || p.CwdGone == nil {
		return nil
	}
	return r.objs[image.ObjectID(p.CwdGone.Dev, p.CwdGone.Ino)]
}
