package procfs

import (
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestDataRuns compares the PAGEMAP_SCAN runs with a page-by-page read of
// the same memory: a mapping with a few pages written, some of them
// adjacent.
func TestDataRuns(t *testing.T) {
	ps := os.Getpagesize()
	mem, err := unix.Mmap(-1, 0, 64*ps, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	for _, i := range []int{0, 1, 2, 10, 30, 31, 63} {
		mem[i*ps] = 1
	}
	start := uint64(uintptr(unsafe.Pointer(&mem[0])))
	end := start + uint64(64*ps)
	pm, err := OpenPagemap(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	runs, err := pm.DataRuns(start, end, nil)
	if err != nil {
		t.Fatal(err)
	}
	ents, err := pm.Read(start, end, nil)
	if err != nil {
		t.Fatal(err)
	}
	var want [][2]uint64
	for i, e := range ents {
		if !Present(e) && !Swapped(e) {
			continue
		}
		a := start + uint64(i*ps)
		if k := len(want); k > 0 && want[k-1][1] == a {
			want[k-1][1] += uint64(ps)
		} else {
			want = append(want, [2]uint64{a, a + uint64(ps)})
		}
	}
	if len(runs) != len(want) {
		t.Fatalf("DataRuns = %x, page by page %x", runs, want)
	}
	for i := range runs {
		if runs[i] != want[i] {
			t.Fatalf("DataRuns = %x, page by page %x", runs, want)
		}
	}
	if len(want) != 4 {
		t.Errorf("expected 4 runs of written pages, got %x", want)
	}
}
