package dump

import (
	"fmt"

	"ferry/internal/kernel"
	"ferry/internal/procfs"
	"ferry/internal/ptrace"
)

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
// shared memory that cannot be (see sysvSegment).
func checkMaps(pid int) error {
	maps, err := procfs.Maps(pid)
	if err != nil {
		return err
	}
	for _, m := range maps {
		if isSysV(&m) {
			if _, err := sysvSegment(pid, &m); err != nil {
				return err
			}
		}
		if m.Path == kernel.AioRingMapsPath && m.Deleted {
			if _, _, err := aioRing(pid, m.Start); err != nil {
				return err
			}
		}
	}
	return nil
}
