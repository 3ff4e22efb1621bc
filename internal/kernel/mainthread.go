package kernel

import "runtime"

// The main goroutine keeps the main OS thread, the thread-group leader,
// for itself (a LockOSThread in an init function lasts into main), so no
// other goroutine ever runs there. Several goroutines change the thread
// they lock and never unlock it (OnThread's unshare(CLONE_FILES) and
// unshare(CLONE_FS), setresuid, setns, PR_SET_PDEATHSIG), counting on
// the runtime to end the thread with them. The runtime cannot end the
// leader: it parks it instead, with the change still on it. And the
// kernel reads the leader when it is asked about the process by its PID:
// pidfd_getfd on ferry's PID reads the leader's fd table, so a leader
// with a table of its own made files ferry opened later invisible to it
// (a restore failed now and then with "pidfd_getfd in target: bad file
// descriptor" when such a goroutine happened to run on the main thread).
func init() { runtime.LockOSThread() }
