package restore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"ferry/internal/image"
	"ferry/internal/ptrace"
)

// System V shared memory: each segment the tree attached is found again,
// if it still exists as it was (same id, key, size, creator and creation
// time: on the machine of the dump, not removed), or made again under its
// id (kernel.shm_next_id) with its permissions and the recorded content;
// then every attachment is made again with shmat at its address, and a
// segment that had been removed (IPC_RMID) is removed again once all are.

// segment is one System V segment of the restore.
type segment struct {
	shm     *image.SysVShm
	made    bool // made again here (removed again if the restore fails)
	removed bool
}

// shmFlags of shmat (include/uapi/linux/shm.h).
const (
	shmRdonly = 0o10000
	shmRemap  = 0o40000
	shmExec   = 0o100000
)

// shmAttachCall returns the shmat that attaches the segment of VMA i (the
// first of the attachment) at its address, with the rights the whole
// attachment had: write if any of its VMAs may be made writable, exec if
// any is executable (protect gives each VMA its own protection).
func (b *builder) shmAttachCall(i int) (ptrace.Call, error) {
	v := &b.p.VMAs[i]
	if v.Shm == nil {
		return ptrace.Call{}, fmt.Errorf("mapping %#x: System V segment not recorded: %w", v.Start, image.ErrMalformed)
	}
	seg, err := b.tree.segment(v)
	if err != nil {
		return ptrace.Call{}, err
	}
	mayWrite, exec := false, false
	for j := i; j < len(b.p.VMAs); j++ {
		w := &b.p.VMAs[j]
		if w.Kind != image.VMASysV || w.Shm == nil || w.Shm.ID != v.Shm.ID || (j > i && w.Offset == 0) {
			break
		}
		mayWrite = mayWrite || w.MayWrite || w.Prot&unix.PROT_WRITE != 0
		exec = exec || w.Prot&unix.PROT_EXEC != 0
	}
	flags := uint64(shmRemap)
	if !mayWrite {
		flags |= shmRdonly
	}
	if exec {
		flags |= shmExec
	}
	return ptrace.Call{Nr: unix.SYS_SHMAT, Args: [6]uint64{uint64(seg.shm.ID), v.Start, flags}}, nil
}

// segment returns the segment VMA v attaches, found or made again.
func (t *tree) segment(v *image.VMA) (*segment, error) {
	if seg := t.segments[v.Shm.ID]; seg != nil {
		return seg, nil
	}
	if t.segments == nil {
		t.segments = map[int]*segment{}
	}
	want := v.Shm
	seg := &segment{shm: want}
	var ds unix.SysvShmDesc
	_, err := unix.SysvShmCtl(want.ID, unix.IPC_STAT, &ds)
	switch {
	case err == nil && ds.Perm.Key == want.Key && ds.Segsz == want.Size && ds.Cpid == want.CPID && ds.Ctime == want.Ctime:
		// The very segment: its content is there, and whoever else
		// attaches it shares it with the restored tree as before.
		seg.removed = ds.Perm.Mode&0o1000 != 0
	case err == nil:
		return nil, fmt.Errorf("System V segment %d: the id is another segment's here (key %#x, %d bytes)", want.ID, ds.Perm.Key, ds.Segsz)
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.EIDRM):
		if err := t.makeSegment(seg, v.FileID); err != nil {
			return nil, fmt.Errorf("System V segment %d: %w", want.ID, err)
		}
	default:
		return nil, fmt.Errorf("System V segment %d: %w", want.ID, os.NewSyscallError("shmctl(IPC_STAT)", err))
	}
	t.segments[want.ID] = seg
	return seg, nil
}

// makeSegment makes seg again under its id, with its owner, mode and the
// content of object fileID.
func (t *tree) makeSegment(seg *segment, fileID string) error {
	want := seg.shm
	content := t.fr.Object(fileID)
	if content == nil {
		content = t.objects[fileID]
	}
	if content == nil {
		return fmt.Errorf("content %s missing from the image", fileID)
	}
	key := int(want.Key)
	if want.Removed {
		key = unix.IPC_PRIVATE // a removed segment's key is gone
	}
	if key != unix.IPC_PRIVATE {
		if id, err := unix.SysvShmGet(key, 0, 0); err == nil {
			return fmt.Errorf("key %#x belongs to segment %d here", want.Key, id)
		}
	}
	// The next segment made gets this id (then the kernel forgets it).
	if err := os.WriteFile("/proc/sys/kernel/shm_next_id", []byte(strconv.Itoa(want.ID)), 0); err != nil {
		return fmt.Errorf("ask for id %d (kernel.shm_next_id): %w", want.ID, err)
	}
	id, err := unix.SysvShmGet(key, int(want.Size), int(want.Mode&0o777)|unix.IPC_CREAT|unix.IPC_EXCL)
	if err != nil {
		return fmt.Errorf("make it again: %w", os.NewSyscallError("shmget", err))
	}
	seg.made = true
	if id != want.ID {
		unix.SysvShmCtl(id, unix.IPC_RMID, nil)
		return fmt.Errorf("made again as %d: its id is taken", id)
	}
	var ds unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err != nil {
		return os.NewSyscallError("shmctl(IPC_STAT)", err)
	}
	ds.Perm.Uid, ds.Perm.Gid, ds.Perm.Mode = want.UID, want.GID, want.Mode&0o777
	if _, err := unix.SysvShmCtl(id, unix.IPC_SET, &ds); err != nil {
		return os.NewSyscallError("shmctl(IPC_SET)", err)
	}
	mem, err := unix.SysvShmAttach(id, 0, 0)
	if err != nil {
		return os.NewSyscallError("shmat", err)
	}
	defer unix.SysvShmDetach(mem)
	if _, err := content.ReadAt(mem[:want.Size], 0); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("fill it: %w", err)
	}
	seg.removed = false
	return nil
}

// removeSegments removes again, once attached, the segments that had
// been removed.
func (t *tree) removeSegments() error {
	for id, seg := range t.segments {
		if !seg.shm.Removed || seg.removed {
			continue
		}
		if _, err := unix.SysvShmCtl(id, unix.IPC_RMID, nil); err != nil {
			return fmt.Errorf("System V segment %d: %w", id, os.NewSyscallError("shmctl(IPC_RMID)", err))
		}
		seg.removed = true
	}
	return nil
}

// dropSegments removes the segments made again by a restore that failed.
func (t *tree) dropSegments() {
	for id, seg := range t.segments {
		if seg.made && !seg.removed {
			unix.SysvShmCtl(id, unix.IPC_RMID, nil)
		}
	}
}
