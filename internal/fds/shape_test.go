package fds

import (
	"os"
	"testing"
)

// TestDataExtents: the data ranges of a sparse file, as a restore must
// recreate them (no root needed).
func TestDataExtents(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "sparse")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const mb = 1 << 20
	page := make([]byte, 4096)
	for i := range page {
		page[i] = byte(i)
	}
	if err := f.Truncate(4 * mb); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 2 * mb} {
		if _, err := f.WriteAt(page, off); err != nil {
			t.Fatal(err)
		}
	}
	got, err := dataExtents(int(f.Fd()), 4*mb)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 1 && got[0] == [2]int64{0, 4 * mb} {
		t.Skip("this filesystem keeps no holes")
	}
	want := [][2]int64{{0, 4096}, {2 * mb, 2*mb + 4096}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("dataExtents = %v, want %v", got, want)
	}
	empty, err := os.CreateTemp(t.TempDir(), "hole")
	if err != nil {
		t.Fatal(err)
	}
	defer empty.Close()
	empty.Truncate(mb)
	if got, err := dataExtents(int(empty.Fd()), mb); err != nil || len(got) != 0 {
		t.Errorf("dataExtents of an all-hole file = %v, %v; want none", got, err)
	}
}
