package kernel

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Thread says how OnThread prepares the OS thread fn runs on.
type Thread struct {
	// Root, if set, is the thread's root directory (chroot: needs
	// CAP_SYS_CHROOT), for binding a unix socket to a name whose path
	// must not be made in the real file system: the name is the string
	// bind is given, the file lives under Root.
	Root string
	// Dir, if set, is the thread's working directory, for system calls
	// that take a path relative to it and nothing else (a unix socket
	// bound to a relative name is reached only from its directory). The
	// thread stops sharing the process's working directory
	// (unshare(CLONE_FS)): the process's own never changes.
	Dir string
	// OwnFiles gives the thread a copy of the process's fd table
	// (unshare(CLONE_FILES)): it may put files at numbers the process
	// uses, and its table goes with it.
	OwnFiles bool
	// IDs, if set, are the thread's effective uid and gid, for system
	// calls whose result records who made them (SO_PEERCRED keeps the
	// effective ids of whoever called connect, listen or socketpair).
	// Credentials are per thread in the kernel: the raw setresgid and
	// setresuid change this thread only.
	IDs *IDs
}

// IDs are an effective uid and gid.
type IDs struct{ UID, GID uint32 }

// OnThread runs fn on an OS thread of its own set up as t says. The thread
// is not given back to the Go scheduler: it ends with fn. With nothing to
// set up (no Dir, IDs the caller's already) fn runs where it is.
func OnThread(t Thread, fn func() error) error {
	if t.IDs != nil && t.IDs.UID == uint32(unix.Geteuid()) && t.IDs.GID == uint32(unix.Getegid()) {
		t.IDs = nil
	}
	if t.Root == "" && t.Dir == "" && t.IDs == nil && !t.OwnFiles {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread exits with this goroutine.
		errc <- t.setUp(fn)
	}()
	return <-errc
}

func (t Thread) setUp(fn func() error) error {
	if t.OwnFiles {
		if err := unix.Unshare(unix.CLONE_FILES); err != nil {
			return fmt.Errorf("a thread of its own fd table: %w", os.NewSyscallError("unshare(CLONE_FILES)", err))
		}
	}
	if t.Root != "" || t.Dir != "" {
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			return fmt.Errorf("a thread of its own working directory: %w", os.NewSyscallError("unshare(CLONE_FS)", err))
		}
	}
	if t.Root != "" {
		if err := unix.Chroot(t.Root); err != nil {
			return fmt.Errorf("enter %s as root: %w", t.Root, os.NewSyscallError("chroot", err))
		}
		if err := unix.Chdir("/"); err != nil {
			return os.NewSyscallError("chdir", err)
		}
	}
	if t.Dir != "" {
		if err := unix.Chdir(t.Dir); err != nil {
			return fmt.Errorf("enter %s: %w", t.Dir, os.NewSyscallError("chdir", err))
		}
	}
	if t.IDs != nil {
		keep := ^uintptr(0) // -1: leave the id as it is
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, keep, uintptr(t.IDs.GID), keep); e != 0 {
			return fmt.Errorf("effective gid %d: %w", t.IDs.GID, os.NewSyscallError("setresgid", e))
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, keep, uintptr(t.IDs.UID), keep); e != 0 {
			return fmt.Errorf("effective uid %d: %w", t.IDs.UID, os.NewSyscallError("setresuid", e))
		}
	}
	return fn()
}
