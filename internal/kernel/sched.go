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

// membarrier commands (include/uapi/linux/membarrier.h). GET_REGISTRATIONS
// (Linux 6.3) answers with the REGISTER_* bits the process registered.
const (
	MEMBARRIER_CMD_QUERY                                = 0
	MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED            = 1 << 2
	MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED           = 1 << 4
	MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE = 1 << 6
	MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ      = 1 << 8
	MEMBARRIER_CMD_GET_REGISTRATIONS                    = 1 << 9
)

// MembarrierRegisterCmds are the registration commands, in the order a
// restore replays them.
var MembarrierRegisterCmds = []uint64{
	MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED,
	MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
	MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE,
	MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ,
}

// Capabilities (include/uapi/linux/capability.h): capget/capset take a
// header and two data words (capabilities 0-31, 32-63) of effective,
// permitted, inheritable.
const (
	LINUX_CAPABILITY_VERSION_3 = 0x20080522
	SECBIT_KEEP_CAPS           = 1 << 4
)

// CapsetArgs returns the header and data of capset(2) for 64-bit sets, as
// the bytes an injected call reads (header 8 bytes, then 2 × 12 bytes).
func CapsetArgs(eff, prm, inh uint64) (hdr, data []byte) {
	hdr = make([]byte, 8)
	putU32(hdr[0:], LINUX_CAPABILITY_VERSION_3)
	data = make([]byte, 24)
	for i := 0; i < 2; i++ {
		sh := uint(32 * i)
		putU32(data[i*12:], uint32(eff>>sh))
		putU32(data[i*12+4:], uint32(prm>>sh))
		putU32(data[i*12+8:], uint32(inh>>sh))
	}
	return hdr, data
}

func putU32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}
