package fds

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"ferry/internal/image"
	"ferry/internal/kernel"
	"ferry/internal/procfs"
)

// inotify and fanotify: what the kernel shows of them (fdinfo: each
// watch's inode as a file handle, its mask and, for inotify, its watch
// descriptor) is enough to make them again elsewhere, by path. Events
// already queued cannot be given to a new instance: a descriptor with
// events not yet read is refused.

// fillNotifyLocked records the watches (inotify) or marks (fanotify) of
// ds, resolving each watched inode to a path.
func (d *Dumper) fillNotifyLocked(pc *procCache, ds *desc, unsupported func(string, string) error) error {
	r := &ds.rec
	if err := queuedEvents(ds.fd, func(detail string) error { return unsupported(r.Kind, detail) }); err != nil {
		return err
	}
	fi, err := procfs.FDInfo(pc.pid, r.Num)
	if err != nil {
		return err
	}
	mounts, err := procfs.Mountinfo(os.Getpid())
	if err != nil {
		return err
	}
	if r.Kind == image.FDInotify {
		for _, w := range fi.Inotify {
			path, err := handlePath(mounts, w.Dev, w.Ino, w.HandleType, w.Handle)
			if err != nil {
				return unsupported("inotify watch", fmt.Sprintf("wd %d: %v", w.WD, err))
			}
			r.Watches = append(r.Watches, image.NotifyMark{WD: w.WD, Path: path, Mask: uint64(w.Mask)})
		}
		slices.SortFunc(r.Watches, func(a, b image.NotifyMark) int { return a.WD - b.WD })
		return nil
	}
	fan := fi.Fanotify
	if fan == nil {
		return fmt.Errorf("fanotify fdinfo without its group line")
	}
	r.FanFlags, r.FanEventFlags = fan.Flags, fan.EventFlags
	// fdinfo lists the newest mark first: record them oldest first, the
	// order a restore adds them in.
	for _, m := range slices.Backward(fan.Marks) {
		var path string
		var err error
		switch m.Kind {
		case procfs.FanMarkInode:
			path, err = handlePath(mounts, m.Dev, m.Ino, m.HandleType, m.Handle)
		case procfs.FanMarkMount:
			i := slices.IndexFunc(mounts, func(mt procfs.Mount) bool { return mt.ID == m.MntID })
			if i < 0 {
				err = fmt.Errorf("mount %d is not in ferry's view", m.MntID)
			} else {
				path = mounts[i].Point
			}
		case procfs.FanMarkFS:
			path, err = mountOf(mounts, m.Dev)
		}
		if err != nil {
			return unsupported("fanotify mark", err.Error())
		}
		r.Watches = append(r.Watches, image.NotifyMark{Kind: m.Kind, Path: path, Mask: m.Mask, IgnoredMask: m.IgnoredMask, MFlags: m.MFlags})
	}
	return nil
}

// queuedEvents returns refuse(detail) when events are queued on fd.
func queuedEvents(fd int, refuse func(detail string) error) error {
	n, err := unix.IoctlGetInt(fd, kernel.FIONREAD)
	if err != nil {
		return os.NewSyscallError("ioctl(FIONREAD)", err)
	}
	if n > 0 {
		return refuse(fmt.Sprintf("%d bytes of events queued, not yet read (a new instance cannot be given them)", n))
	}
	return nil
}

// mountOf returns a mount point of the filesystem dev.
func mountOf(mounts []procfs.Mount, dev uint64) (string, error) {
	for _, mt := range mounts {
		if mt.Dev == dev && mt.Root == "/" {
			return mt.Point, nil
		}
	}
	for _, mt := range mounts {
		if mt.Dev == dev {
			return mt.Point, nil
		}
	}
	return "", fmt.Errorf("no mount of device %d:%d in ferry's view", unix.Major(dev), unix.Minor(dev))
}

// handlePath opens a watched inode by its file handle and returns a path
// that leads to it now.
func handlePath(mounts []procfs.Mount, dev, ino uint64, htype int, handle []byte) (string, error) {
	if len(handle) == 0 {
		return "", errors.New("the kernel gave no file handle for the watched inode")
	}
	mp, err := mountOf(mounts, dev)
	if err != nil {
		return "", err
	}
	mfd, err := unix.Open(mp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0) // not O_PATH: EBADF
	if err != nil {
		return "", fmt.Errorf("open mount %s: %w", mp, err)
	}
	defer unix.Close(mfd)
	fd, err := unix.OpenByHandleAt(mfd, unix.NewFileHandle(int32(htype), handle), unix.O_PATH|unix.O_CLOEXEC)
	if err != nil {
		return "", fmt.Errorf("open_by_handle_at on %s: %w", mp, err)
	}
	defer unix.Close(fd)
	link, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return "", err
	}
	if strings.HasSuffix(link, deletedSuffix) || !filepath.IsAbs(link) {
		return "", fmt.Errorf("the watched inode %d has no path (%s)", ino, link)
	}
	var st, lst unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", err
	}
	if err := unix.Stat(link, &lst); err != nil || lst.Ino != st.Ino || lst.Dev != st.Dev {
		return "", fmt.Errorf("the path %s of watched inode %d leads elsewhere", link, ino)
	}
	return link, nil
}

// prepareInotifyLocked makes an inotify instance with the image's
// watches under their watch descriptors. Watch descriptors are handed out
// in increasing order, so gaps are made by adding and removing a watch on
// a scratch directory; the IN_IGNORED events that leaves are read away.
func (r *Restorer) prepareInotifyLocked(rec *image.FD) error {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return os.NewSyscallError("inotify_init1", err)
	}
	f := r.keepLocked(fd, "anon_inode:inotify")
	scratch := ""
	defer func() {
		if scratch != "" {
			os.Remove(scratch)
		}
	}()
	next := 1
	for _, w := range rec.Watches {
		for next < w.WD {
			if scratch == "" {
				if scratch, err = os.MkdirTemp("", "ferry-inotify-"); err != nil {
					return err
				}
			}
			wd, err := unix.InotifyAddWatch(fd, scratch, unix.IN_DELETE_SELF)
			if err != nil {
				return os.NewSyscallError("inotify_add_watch", err)
			}
			if _, err := unix.InotifyRmWatch(fd, uint32(wd)); err != nil {
				return os.NewSyscallError("inotify_rm_watch", err)
			}
			next = wd + 1
		}
		wd, err := unix.InotifyAddWatch(fd, w.Path, uint32(w.Mask))
		if err != nil {
			return fmt.Errorf("watch %s (mask %#x): %w", w.Path, w.Mask, os.NewSyscallError("inotify_add_watch", err))
		}
		if wd != w.WD {
			return fmt.Errorf("watch %s got watch descriptor %d, the image's is %d (two watches of one inode?)", w.Path, wd, w.WD)
		}
		next = wd + 1
	}
	if err := drain(fd); err != nil {
		return err
	}
	if err := r.setStatusFlags(fd, rec.Flags); err != nil {
		return err
	}
	r.files[rec.Desc] = f
	return nil
}

// prepareFanotifyLocked makes a fanotify group with the image's init
// flags and marks.
func (r *Restorer) prepareFanotifyLocked(rec *image.FD) error {
	// The init flags exactly (fdinfo shows them); close-on-exec for
	// ferry's own copy is set apart.
	fd, err := unix.FanotifyInit(uint(rec.FanFlags), uint(rec.FanEventFlags))
	if err != nil {
		return fmt.Errorf("fanotify_init(%#x, %#x): %w", rec.FanFlags, rec.FanEventFlags, os.NewSyscallError("fanotify_init", err))
	}
	unix.CloseOnExec(fd)
	f := r.keepLocked(fd, "anon_inode:[fanotify]")
	for _, m := range rec.Watches {
		var kind uint
		switch m.Kind {
		case procfs.FanMarkMount:
			kind = unix.FAN_MARK_MOUNT
		case procfs.FanMarkFS:
			kind = unix.FAN_MARK_FILESYSTEM
		}
		flags := unix.FAN_MARK_ADD | kind | uint(m.MFlags)
		if m.Mask != 0 {
			if err := unix.FanotifyMark(fd, flags, m.Mask, unix.AT_FDCWD, m.Path); err != nil {
				return fmt.Errorf("mark %s (%s, mask %#x): %w", m.Path, m.Kind, m.Mask, os.NewSyscallError("fanotify_mark", err))
			}
		}
		if m.IgnoredMask != 0 {
			if err := unix.FanotifyMark(fd, flags|unix.FAN_MARK_IGNORED_MASK, m.IgnoredMask, unix.AT_FDCWD, m.Path); err != nil {
				return fmt.Errorf("mark %s (%s, ignored mask %#x): %w", m.Path, m.Kind, m.IgnoredMask, os.NewSyscallError("fanotify_mark", err))
			}
		}
	}
	if err := r.setStatusFlags(fd, rec.Flags); err != nil {
		return err
	}
	r.files[rec.Desc] = f
	return nil
}

// drain reads away every event queued on a non-blocking notification fd.
func drain(fd int) error {
	buf := make([]byte, 4096)
	for {
		_, err := unix.Read(fd, buf)
		if err == unix.EAGAIN {
			return nil
		}
		if err != nil {
			return os.NewSyscallError("read", err)
		}
	}
}
