package procfs

import (
	"errors"
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

// TestDataRunsNoScan checks that a PAGEMAP_SCAN the file does not know
// (ENOTTY, as on kernels before 6.7) is reported as ErrNoScan, the error
// callers fall back on, even though the kernel package wraps the errno.
func TestDataRunsNoScan(t *testing.T) {
	tests := []struct {
		name string
		open func(t *testing.T) *os.File
	}{
		{"regular file", func(t *testing.T) *os.File {
			f, err := os.CreateTemp(t.TempDir(), "pagemap")
			if err != nil {
				t.Fatal(err)
			}
			return f
		}},
		{"/dev/null", func(t *testing.T) *os.File {
			f, err := os.Open(os.DevNull)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pm := &Pagemap{f: tc.open(t), pageSize: uint64(os.Getpagesize())}
			defer pm.Close()
			_, err := pm.DataRuns(0, pm.pageSize, nil)
			if !errors.Is(err, ErrNoScan) {
				t.Fatalf("DataRuns on a %s: err = %v, want ErrNoScan", tc.name, err)
			}
		})
	}
}
