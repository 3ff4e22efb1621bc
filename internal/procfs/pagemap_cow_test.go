package procfs

import "testing"

func TestCowShared(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    uint64
		want bool
	}{
		{"absent", 0, false},
		{"exclusive anon", PagemapPresent | PagemapExclusive | 7, false},
		{"shared anon", PagemapPresent | 7, true},
		{"file page", PagemapPresent | PagemapFileShared | 7, false},
		{"swapped", PagemapSwapped, false},
	} {
		if got := CowShared(tc.e); got != tc.want {
			t.Errorf("%s: CowShared(%#x) = %v, want %v", tc.name, tc.e, got, tc.want)
		}
	}
	if AnyCowShared([]uint64{0, PagemapPresent | PagemapExclusive}) {
		t.Errorf("AnyCowShared of exclusive pages = true")
	}
	if !AnyCowShared([]uint64{0, PagemapPresent}) {
		t.Errorf("AnyCowShared with a shared page = false")
	}
}
