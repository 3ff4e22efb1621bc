package precopy

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"

	"golang.org/x/sys/unix"

	"ferry/internal/restore"
)

var (
	_ PageSender     = (*Staging)(nil)
	_ restore.Staged = (*Staging)(nil)
)

// Staging keeps, on the destination, the pages received during the rounds
// until restore writes them (restore.Options.Staged). A later page for the
// same address replaces the earlier one in place, so memory use is one
// page per distinct page received — about the size of the process — in
// anonymous mappings of arenaPages pages, plus 4 bytes of index per page.
// Its methods may be called from any goroutine; pages must not be sent
// while a restore reads them. Once sending has stopped, any number of
// goroutines may read (Pages, ReadPage, ReadPages) at once: a restore with
// restore.Options.StagedLazy writes most pages after the process runs, from
// a local postcopy source reading here (postcopy.ServeLocal).
type Staging struct {
	ps int

	mu     sync.RWMutex // guards the fields below
	procs  map[int]map[uint64]*group
	arenas [][]byte // each arenaPages pages, mapped on demand
	slots  int      // pages in use across arenas
	closed bool
}

// arenaPages is the size of one arena mapping, in pages (64 MiB of 4 KiB
// pages). Arenas are MAP_NORESERVE: untouched slots cost nothing.
const arenaPages = 1 << 14

// groupPages pages (2 MiB of 4 KiB pages) share one index block.
const groupPages = 512

// group indexes groupPages consecutive pages of a process: slot+1 of each
// page held, 0 for none.
type group [groupPages]uint32

// NewStaging returns an empty Staging. Close releases its memory.
func NewStaging() *Staging {
	return &Staging{ps: os.Getpagesize(), procs: map[int]map[uint64]*group{}}
}

// SendPages stores whole pages of process pid starting at addr,
// replacing any held for the same addresses.
func (s *Staging) SendPages(pid int, addr uint64, data []byte) error {
	ps := uint64(s.ps)
	if addr%ps != 0 || uint64(len(data))%ps != 0 {
		return fmt.Errorf("precopy: staging %d bytes at %#x: not whole pages", len(data), addr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("precopy: staging closed")
	}
	groups := s.procs[pid]
	if groups == nil {
		groups = map[uint64]*group{}
		s.procs[pid] = groups
	}
	span := ps * groupPages
	var g *group
	gkey := ^uint64(0)
	for off := 0; off < len(data); off += s.ps {
		a := addr + uint64(off)
		if k := a / span; k != gkey {
			gkey = k
			if g = groups[k]; g == nil {
				g = new(group)
				groups[k] = g
			}
		}
		i := (a % span) / ps
		if g[i] == 0 {
			slot, err := s.allocLocked()
			if err != nil {
				return err
			}
			g[i] = uint32(slot) + 1
		}
		copy(s.pageLocked(int(g[i]-1)), data[off:off+s.ps])
	}
	return nil
}

// allocLocked returns a free slot, mapping a new arena when needed.
func (s *Staging) allocLocked() (int, error) {
	if s.slots == len(s.arenas)*arenaPages {
		if s.slots+arenaPages > 1<<32-1 {
			return 0, errors.New("precopy: staging full")
		}
		m, err := unix.Mmap(-1, 0, arenaPages*s.ps, unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
		if err != nil {
			return 0, fmt.Errorf("precopy: staging arena: %w", err)
		}
		s.arenas = append(s.arenas, m)
	}
	s.slots++
	return s.slots - 1, nil
}

func (s *Staging) pageLocked(slot int) []byte {
	a := s.arenas[slot/arenaPages]
	off := (slot % arenaPages) * s.ps
	return a[off : off+s.ps : off+s.ps]
}

// Pages implements restore.Staged: it calls fn for the pages held for pid
// in increasing address order, consecutive pages stored consecutively
// coalesced into one call. data aliases the Staging's memory and stays
// valid until Close.
func (s *Staging) Pages(pid int, fn func(addr uint64, data []byte) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return errors.New("precopy: staging closed")
	}
	groups := s.procs[pid]
	keys := make([]uint64, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	ps := uint64(s.ps)
	var (
		runAddr  uint64
		runSlot  = -1 // first slot of the run
		runPages int
	)
	flush := func() error {
		if runSlot < 0 {
			return nil
		}
		a := s.arenas[runSlot/arenaPages]
		off := (runSlot % arenaPages) * s.ps
		err := fn(runAddr, a[off:off+runPages*s.ps:off+runPages*s.ps])
		runSlot = -1
		return err
	}
	for _, k := range keys {
		g := groups[k]
		for i, v := range g {
			if v == 0 {
				continue
			}
			slot, addr := int(v-1), (k*groupPages+uint64(i))*ps
			if runSlot >= 0 && addr == runAddr+uint64(runPages)*ps && slot == runSlot+runPages &&
				slot/arenaPages == runSlot/arenaPages {
				runPages++
				continue
			}
			if err := flush(); err != nil {
				return err
			}
			runAddr, runSlot, runPages = addr, slot, 1
		}
	}
	return flush()
}

// ReadPage copies the page held for pid at addr (page-aligned) into buf
// (at least a page) and reports whether one is held; false leaves buf
// unchanged, and so does a closed Staging.
func (s *Staging) ReadPage(pid int, addr uint64, buf []byte) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	slot, ok := s.slotLocked(pid, addr)
	if !ok {
		return false
	}
	copy(buf[:s.ps], s.pageLocked(slot))
	return true
}

// ReadPages fills buf (whole pages) with the pages held for pid from addr
// on, zeros where none is held: the shape of postcopy.ServeOptions.Read.
func (s *Staging) ReadPages(pid int, addr uint64, buf []byte) error {
	ps := uint64(s.ps)
	if addr%ps != 0 || uint64(len(buf))%ps != 0 {
		return fmt.Errorf("precopy: read %d staged bytes at %#x: not whole pages", len(buf), addr)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return errors.New("precopy: staging closed")
	}
	for off := 0; off < len(buf); off += s.ps {
		page := buf[off : off+s.ps]
		if slot, ok := s.slotLocked(pid, addr+uint64(off)); ok {
			copy(page, s.pageLocked(slot))
		} else {
			clear(page)
		}
	}
	return nil
}

// slotLocked finds the slot of pid's page at addr.
func (s *Staging) slotLocked(pid int, addr uint64) (int, bool) {
	if s.closed || addr%uint64(s.ps) != 0 {
		return 0, false
	}
	span := uint64(s.ps) * groupPages
	g := s.procs[pid][addr/span]
	if g == nil {
		return 0, false
	}
	v := g[(addr%span)/uint64(s.ps)]
	if v == 0 {
		return 0, false
	}
	return int(v - 1), true
}

// Bytes returns how many bytes of pages the Staging holds.
func (s *Staging) Bytes() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return int64(s.slots) * int64(s.ps)
}

// Close releases the Staging's memory. Data handed out by Pages is
// invalid after it.
func (s *Staging) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var first error
	for _, a := range s.arenas {
		if err := unix.Munmap(a); err != nil && first == nil {
			first = fmt.Errorf("precopy: %w", err)
		}
	}
	s.arenas, s.procs = nil, nil
	return first
}
