package dump

import (
	"errors"
	"os"
	"testing"

	"ferry/internal/image"
)

func TestCheckSysVAttach(t *testing.T) {
	ps := uint64(os.Getpagesize())
	shm := &image.SysVShm{ID: 7, Size: 2*ps + 100} // three pages when attached
	vma := func(start, end, off uint64) image.VMA {
		return image.VMA{Kind: image.VMASysV, Start: start, End: end, Offset: off, Shm: shm}
	}
	base := uint64(0x7f0000000000)
	tests := []struct {
		name string
		vmas []image.VMA
		ok   bool
	}{
		{"whole", []image.VMA{vma(base, base+3*ps, 0)}, true},
		{"split by mprotect", []image.VMA{vma(base, base+ps, 0), vma(base+ps, base+3*ps, ps)}, true},
		{"two attachments", []image.VMA{vma(base, base+3*ps, 0), {Kind: image.VMAAnon, Start: base + 3*ps, End: base + 4*ps},
			vma(base+4*ps, base+7*ps, 0)}, true},
		{"head unmapped", []image.VMA{vma(base+ps, base+3*ps, ps)}, false},
		{"tail unmapped", []image.VMA{vma(base, base+2*ps, 0)}, false},
		{"hole", []image.VMA{vma(base, base+ps, 0), vma(base+2*ps, base+3*ps, 2*ps)}, false},
	}
	for _, tt := range tests {
		err := checkSysVAttach(1, tt.vmas)
		if (err == nil) != tt.ok || err != nil && !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: %v, want ok=%v (or ErrUnsupported)", tt.name, err, tt.ok)
		}
	}
}
