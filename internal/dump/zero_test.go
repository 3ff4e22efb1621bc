package dump

import (
	"fmt"
	"testing"
)

func TestNonZeroRuns(t *testing.T) {
	const ps = 4096
	page := func(v byte) []byte { b := make([]byte, ps); b[ps-1] = v; return b }
	cat := func(ps ...[]byte) []byte {
		var out []byte
		for _, p := range ps {
			out = append(out, p...)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"all zero", cat(page(0), page(0)), "[]"},
		{"all data", cat(page(1), page(2)), "[0x1000+8192]"},
		{"hole in the middle", cat(page(1), page(0), page(3)), "[0x1000+4096 0x3000+4096]"},
		{"leading zero", cat(page(0), page(1)), "[0x2000+4096]"},
	} {
		var got []string
		for _, r := range nonZeroRuns(0x1000, tc.data, ps) {
			got = append(got, fmt.Sprintf("%#x+%d", r.addr, len(r.data)))
		}
		if s := fmt.Sprint(got); s != tc.want && !(tc.want == "[]" && len(got) == 0) {
			t.Errorf("%s: nonZeroRuns = %s, want %s", tc.name, s, tc.want)
		}
	}
}

func BenchmarkIsZero(b *testing.B) {
	buf := make([]byte, 4<<20)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		isZero(buf)
	}
}
