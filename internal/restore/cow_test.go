package restore

import (
	"fmt"
	"testing"
)

func TestSubtract(t *testing.T) {
	type r = [2]uint64
	for _, tc := range []struct {
		a, cut, want []r
	}{
		{[]r{{0, 10}}, nil, []r{{0, 10}}},
		{[]r{{0, 10}}, []r{{0, 10}}, nil},
		{[]r{{0, 10}}, []r{{2, 4}, {6, 8}}, []r{{0, 2}, {4, 6}, {8, 10}}},
		{[]r{{0, 10}}, []r{{0, 3}}, []r{{3, 10}}},
		{[]r{{0, 10}}, []r{{7, 20}}, []r{{0, 7}}},
		{[]r{{5, 10}}, []r{{0, 2}, {12, 14}}, []r{{5, 10}}},
		{[]r{{0, 4}, {6, 10}}, []r{{3, 7}}, []r{{0, 3}, {7, 10}}},
	} {
		got := subtract(tc.a, tc.cut)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("subtract(%v, %v) = %v, want %v", tc.a, tc.cut, got, tc.want)
		}
	}
}
