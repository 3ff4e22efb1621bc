package kernel

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// InDir runs fn on an OS thread of its own whose working directory is dir,
// for system calls that take a path relative to it and nothing else (a
// unix socket bound to a relative name is reached only from its
// directory). The thread stops sharing the process's working directory
// (unshare(CLONE_FS)) and is not given back to the Go scheduler: it ends
// with fn, and the process's own working directory never changes.
func InDir(dir string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread exits with this goroutine.
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("a thread of its own working directory: %w", os.NewSyscallError("unshare(CLONE_FS)", err))
			return
		}
		if err := unix.Chdir(dir); err != nil {
			errc <- fmt.Errorf("enter %s: %w", dir, os.NewSyscallError("chdir", err))
			return
		}
		errc <- fn()
	}()
	return <-errc
}
