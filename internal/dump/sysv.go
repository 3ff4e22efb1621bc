package dump

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"ferry/internal/image"
	"ferry/internal/procfs"
)

// System V shared memory (shmat): an IPC object of its own, with an id,
// a key, permissions and a creator, which the mapping's inode numbers
// (the shmid). The dump records it as shmctl(IPC_STAT) shows it, and its
// content as FileData, like shared anonymous memory.

func isSysV(m *procfs.Mapping) bool { return m.Deleted && strings.HasPrefix(m.Path, "/SYSV") }

// shmDest is SHM_DEST in shm_perm.mode: the segment was removed
// (IPC_RMID) and goes with its last detach.
const shmDest = 0o1000

// sysvSegment returns the segment m attaches. Its IPC namespace must be
// ferry's (shmctl reaches only ferry's own).
func sysvSegment(pid int, m *procfs.Mapping) (*image.SysVShm, error) {
	self, err1 := os.Readlink("/proc/self/ns/ipc")
	theirs, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/ipc", pid))
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("pid %d: IPC namespace: %w", pid, err)
	}
	if self != theirs {
		return nil, fmt.Errorf("pid %d maps System V shared memory at %#x of another IPC namespace (%s): %w",
			pid, m.Start, theirs, ErrUnsupported)
	}
	id := int(m.Inode)
	var ds unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err != nil {
		return nil, fmt.Errorf("pid %d: System V segment %d mapped at %#x: %w", pid, id, m.Start, os.NewSyscallError("shmctl(IPC_STAT)", err))
	}
	return &image.SysVShm{ID: id, Key: ds.Perm.Key, Size: ds.Segsz, Mode: ds.Perm.Mode & 0o777,
		UID: ds.Perm.Uid, GID: ds.Perm.Gid, CPID: ds.Cpid, Ctime: ds.Ctime, Removed: ds.Perm.Mode&shmDest != 0}, nil
}

// checkSysVAttach makes sure the VMAs of each attachment in vmas cover
// their segment from its start, one after the other: restore attaches a
// segment whole (shmat) and then gives each part its protection; a
// segment partly unmapped since is refused.
func checkSysVAttach(pid int, vmas []image.VMA) error {
	for i := 0; i < len(vmas); i++ {
		v := &vmas[i]
		if v.Kind != image.VMASysV {
			continue
		}
		if v.Offset != 0 {
			return fmt.Errorf("pid %d maps System V segment %d at %#x from offset %#x (partly unmapped): %w",
				pid, v.Shm.ID, v.Start, v.Offset, ErrUnsupported)
		}
		end := v.End
		for i+1 < len(vmas) && vmas[i+1].Kind == image.VMASysV && vmas[i+1].Shm.ID == v.Shm.ID &&
			vmas[i+1].Start == end && vmas[i+1].Offset == end-v.Start {
			i++
			end = vmas[i].End
		}
		if pageUp(v.Shm.Size) != end-v.Start {
			return fmt.Errorf("pid %d maps %#x of System V segment %d (%#x bytes) at %#x (partly unmapped): %w",
				pid, end-v.Start, v.Shm.ID, v.Shm.Size, v.Start, ErrUnsupported)
		}
	}
	return nil
}

func pageUp(n uint64) uint64 {
	ps := uint64(os.Getpagesize())
	return (n + ps - 1) &^ (ps - 1)
}
