package procfs

import "testing"

func TestMarker(t *testing.T) {
	for _, tc := range []struct {
		e    uint64
		want bool
	}{
		{0x420000000000003f, true},  // uffd-wp marker on an unpopulated page, as 6.18 shows it
		{0x4000000000000020, false}, // swap type 0, offset 1
		{0x4000000000000000, false}, // swapped, type hidden (no CAP_SYS_ADMIN)
		{0x810000000012345f, false}, // present: bits 0-4 are the PFN's
		{0x000000000000001f, false},
	} {
		if got := Marker(tc.e); got != tc.want {
			t.Errorf("Marker(%#x) = %v, want %v", tc.e, got, tc.want)
		}
	}
}
