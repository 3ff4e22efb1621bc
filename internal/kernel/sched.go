package kernel

import "golang.org/x/sys/unix"

// IOPRIO_WHO_PROCESS selects one thread for ioprio_get/ioprio_set
// (include/uapi/linux/ioprio.h).
const IOPRIO_WHO_PROCESS = 1

// IoprioGet wraps ioprio_get(IOPRIO_WHO_PROCESS, tid).
func IoprioGet(tid int) (int, error) {
	r, _, e := unix.Syscall(unix.SYS_IOPRIO_GET, IOPRIO_WHO_PROCESS, uintptr(tid), 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// IoprioSet wraps ioprio_set(IOPRIO_WHO_PROCESS, tid, prio).
func IoprioSet(tid, prio int) error {
	_, _, e := unix.Syscall(unix.SYS_IOPRIO_SET, IOPRIO_WHO_PROCESS, uintptr(tid), uintptr(prio))
	if e != 0 {
		return e
	}
	return nil
}

// prctl options read and set by injection (include/uapi/linux/prctl.h).
const (
	PR_GET_TIMERSLACK      = 30
	PR_SET_TIMERSLACK      = 29
	PR_GET_THP_DISABLE     = 42
	PR_SET_THP_DISABLE     = 41
	PR_GET_CHILD_SUBREAPER = 37
	PR_SET_CHILD_SUBREAPER = 36
	PR_MCE_KILL            = 33
	PR_MCE_KILL_GET        = 34
	PR_MCE_KILL_SET        = 1
	PR_MCE_KILL_CLEAR      = 0
	PR_MCE_KILL_DEFAULT    = 2
)
