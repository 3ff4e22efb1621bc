package restore

import (
	"reflect"
	"strings"
	"testing"

	"ferry/internal/image"
)

func TestSemAfterKill(t *testing.T) {
	tests := []struct {
		vals []uint16
		sum  []int
		want []uint16
		err  string
	}{
		{vals: []uint16{8, 9, 4}, sum: []int{2, -4, -3}, want: []uint16{10, 5, 1}},
		{vals: []uint16{0}, sum: []int{0}, want: []uint16{0}},
		{vals: []uint16{2}, sum: []int{-3}, err: "out of range"},
		{vals: []uint16{32767}, sum: []int{1}, err: "out of range"},
	}
	for _, tt := range tests {
		got, err := semAfterKill(tt.vals, tt.sum)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("semAfterKill(%v, %v): err %v, want %q", tt.vals, tt.sum, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("semAfterKill(%v, %v) = %v, %v; want %v", tt.vals, tt.sum, got, err, tt.want)
		}
	}
}

func TestSemSums(t *testing.T) {
	sets := []image.SemSet{{ID: 5, Values: []uint16{8, 9, 4}, PIDs: []int32{2, 3, 1}}}
	proc := func(pid int, u ...image.SemUndo) *builder {
		return &builder{p: &image.Process{PID: pid, SemUndo: u}}
	}
	tests := []struct {
		name string
		sets []image.SemSet
		live []*builder
		want map[int][]int
		err  bool
	}{
		{name: "three processes", sets: sets, live: []*builder{
			proc(1, image.SemUndo{Set: 5, Adj: []int16{0, 0, -3}}),
			proc(2, image.SemUndo{Set: 5, Adj: []int16{2, 0, 0}}),
			proc(3, image.SemUndo{Set: 5, Adj: []int16{0, -4, 0}}),
		}, want: map[int][]int{5: {2, -4, -3}}},
		{name: "unknown set", sets: sets, live: []*builder{proc(1, image.SemUndo{Set: 6, Adj: []int16{1, 0, 0}})}, err: true},
		{name: "wrong size", sets: sets, live: []*builder{proc(1, image.SemUndo{Set: 5, Adj: []int16{1}})}, err: true},
		{name: "pids missing", sets: []image.SemSet{{ID: 5, Values: []uint16{1}}}, err: true},
	}
	for _, tt := range tests {
		got, err := semSums(tt.sets, tt.live)
		if tt.err {
			if err == nil {
				t.Errorf("%s: no error", tt.name)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}
}
