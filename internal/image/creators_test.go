package image

import "testing"

func TestCreators(t *testing.T) {
	// T (subreaper) → S (zombie, session leader) → C, C reparented to T.
	zombieLeader := func(subreaper bool) []*Process {
		return []*Process{
			{PID: 10, PPID: 1, PGID: 10, SID: 5, ChildSubreaper: subreaper},
			{PID: 11, PPID: 10, PGID: 11, SID: 11, Zombie: true},
			{PID: 12, PPID: 10, PGID: 11, SID: 11},
			{PID: 13, PPID: 10, PGID: 10, SID: 5},
		}
	}
	tests := []struct {
		name  string
		procs []*Process
		want  map[int]int
	}{
		{"zombie leader, subreaper parent", zombieLeader(true), map[int]int{11: 10, 12: 11, 13: 10}},
		{"no subreaper: not from the leader", zombieLeader(false), map[int]int{11: 10, 12: 10, 13: 10}},
		{"live leader: its parent", []*Process{
			{PID: 10, PPID: 1, SID: 5, ChildSubreaper: true},
			{PID: 11, PPID: 10, SID: 11},
			{PID: 12, PPID: 10, SID: 11},
		}, map[int]int{11: 10, 12: 10}},
	}
	for _, tt := range tests {
		got := Creators(tt.procs)
		if len(got) != len(tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
			continue
		}
		for pid, c := range tt.want {
			if got[pid] != c {
				t.Errorf("%s: process %d made by %d, want %d", tt.name, pid, got[pid], c)
			}
		}
	}
	if err := CheckSessions(zombieLeader(true)); err != nil {
		t.Errorf("CheckSessions with a zombie leader and a subreaper: %v", err)
	}
	if err := CheckSessions(zombieLeader(false)); err == nil {
		t.Error("CheckSessions with a zombie leader and no subreaper: no error")
	}
}
