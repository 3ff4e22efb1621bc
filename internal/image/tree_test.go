package image

import (
	"errors"
	"testing"
)

func TestCheckSessions(t *testing.T) {
	type P = Process
	cases := []struct {
		name  string
		procs []*P
		order []int // CreationOrder's PIDs
		ok    bool
	}{
		{"root in an outside session, child inherits",
			[]*P{{PID: 10, SID: 1}, {PID: 11, PPID: 10, SID: 1}}, []int{10, 11}, true},
		{"child leads its own",
			[]*P{{PID: 10, SID: 1}, {PID: 11, PPID: 10, SID: 11}, {PID: 12, PPID: 11, SID: 11}}, []int{10, 11, 12}, true},
		{"leader's children in old and new session: old first",
			[]*P{{PID: 10, SID: 1}, {PID: 11, PPID: 10, SID: 11}, {PID: 13, PPID: 11, SID: 11}, {PID: 12, PPID: 11, SID: 1}},
			[]int{10, 11, 12, 13}, true},
		{"root leads, a child kept the outside session",
			[]*P{{PID: 10, SID: 10}, {PID: 11, PPID: 10, SID: 10}, {PID: 12, PPID: 10, SID: 1}}, []int{10, 12, 11}, true},
		{"two outside sessions",
			[]*P{{PID: 10, SID: 1}, {PID: 11, PPID: 10, SID: 2}}, []int{10, 11}, false},
		{"a session led by a sibling: not inheritable",
			[]*P{{PID: 10, SID: 1}, {PID: 11, PPID: 10, SID: 11}, {PID: 12, PPID: 10, SID: 11}}, []int{10, 11, 12}, false},
		{"a group led outside that is not the root's",
			[]*P{{PID: 10, SID: 1, PGID: 5}, {PID: 11, PPID: 10, SID: 1, PGID: 6}}, []int{10, 11}, false},
		{"the root's outside group",
			[]*P{{PID: 10, SID: 1, PGID: 5}, {PID: 11, PPID: 10, SID: 1, PGID: 5}}, []int{10, 11}, true},
		{"parent missing",
			[]*P{{PID: 10, SID: 1}, {PID: 12, PPID: 11, SID: 1}}, []int{10, 12}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []int
			for _, p := range CreationOrder(tc.procs) {
				got = append(got, p.PID)
			}
			if len(got) != len(tc.order) {
				t.Fatalf("CreationOrder = %v, want %v", got, tc.order)
			}
			for i := range got {
				if got[i] != tc.order[i] {
					t.Fatalf("CreationOrder = %v, want %v", got, tc.order)
				}
			}
			err := CheckSessions(tc.procs)
			if (err == nil) != tc.ok {
				t.Fatalf("CheckSessions = %v, want ok %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrSession) && !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v is neither ErrSession nor ErrMalformed", err)
			}
		})
	}
}
