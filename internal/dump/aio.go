package dump

import (
	"fmt"
	"strings"

	"ferry/internal/kernel"
	"ferry/internal/procfs"
	"ferry/internal/ptrace"
)

// sysvShm refuses a System V shared memory segment (shmat): it is an IPC
// object of its own, with an id, a key and permissions, not a memfd; the
// mapping's inode is the shmid.
func sysvShm(pid int, m *procfs.Mapping) error {
	if m.Deleted && strings.HasPrefix(m.Path, "/SYSV") {
		return fmt.Errorf("pid %d maps System V shared memory at %#x (shmid %d, key 0x%s): cannot be checkpointed yet: %w",
			pid, m.Start, m.Inode, strings.TrimPrefix(m.Path, "/SYSV"), ErrUnsupported)
	}
	return nil
}

// aioRing reads and checks the ring of the AIO context mapped at start,
// and the completed events it holds that were not yet reaped.
func aioRing(pid int, start uint64) (kernel.AioRing, []byte, error) {
	b := make([]byte, kernel.AioRingHeaderSize)
	if err := ptrace.ReadMem(pid, start, b); err != nil {
		return kernel.AioRing{}, nil, fmt.Errorf("pid %d: read the AIO ring at %#x: %w", pid, start, err)
	}
	r, err := kernel.ParseAioRing(b)
	if err != nil {
		return r, nil, fmt.Errorf("pid %d: AIO context %#x: %w", pid, start, err)
	}
	var events []byte
	for i := range r.Pending() {
		ev := make([]byte, kernel.IoEventSize)
		if err := ptrace.ReadMem(pid, start+r.EventOffset(i), ev); err != nil {
			return r, nil, fmt.Errorf("pid %d: read the AIO ring at %#x: %w", pid, start, err)
		}
		events = append(events, ev...)
	}
	return r, events, nil
}

// checkMaps refuses, before anything is touched, mappings that cannot be
// carried: an AIO ring that cannot be read or makes no sense, System V
// shared memory.
func checkMaps(pid int) error {
	maps, err := procfs.Maps(pid)
	if err != nil {
		return err
	}
	for _, m := range maps {
		if err := sysvShm(pid, &m); err != nil {
			return err
		}
		if m.Path == kernel.AioRingMapsPath && m.Deleted {
			if _, _, err := aioRing(pid, m.Start); err != nil {
				return err
			}
		}
	}
	return nil
}
