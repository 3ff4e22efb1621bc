package workload

import (
	"testing"
	"time"
)

func TestProgressRoundTrip(t *testing.T) {
	at := time.Date(2025, 6, 1, 12, 0, 0, 123e6, time.UTC)
	tests := []Progress{
		{Tick: 1, PID: 4242, MemMiB: 256, OK: true},
		{Tick: 7, PID: 1, MemMiB: 8, Dirtied: 819, Verified: 3, OK: true, Time: at},
		{Tick: 9, PID: 4242, MemMiB: 256, Dirtied: 6553, Verified: 7, Time: at,
			Err: "page 1234 gen 7: content mismatch at byte 16 (holds page 1234 gen 6)"},
		{Tick: 9, PID: 2, MemMiB: 1, Err: `odd "quoted" text, tick=3 ok=true` + "\n\ttab"},
		{Done: true, OK: true, Tick: 12, Verified: 11},
	}
	for _, want := range tests {
		line := want.String()
		got, ok := ParseLine(line + "\n")
		if !ok {
			t.Errorf("ParseLine(%q) failed", line)
			continue
		}
		if !got.Time.Equal(want.Time) {
			t.Errorf("ParseLine(%q).Time = %v, want %v", line, got.Time, want.Time)
		}
		got.Time = want.Time
		if got != want {
			t.Errorf("ParseLine(%q) = %+v, want %+v", line, got, want)
		}
	}
}

func TestParseLine(t *testing.T) {
	tests := []struct {
		line string
		want Progress
		ok   bool
	}{
		{"tick=3 pid=10 mem=8MiB dirtied=5 verified=2 ok=true",
			Progress{Tick: 3, PID: 10, MemMiB: 8, Dirtied: 5, Verified: 2, OK: true}, true},
		{"  tick=3 pid=10 mem=8 dirtied=5 verified=2 ok=true  \r\n",
			Progress{Tick: 3, PID: 10, MemMiB: 8, Dirtied: 5, Verified: 2, OK: true}, true},
		{"tick=4 newkey=whatever ok=false err=\"page 1 gen 2: content mismatch\"",
			Progress{Tick: 4, Err: "page 1 gen 2: content mismatch"}, true},
		{"done tick=12 verified=11", Progress{Done: true, OK: true, Tick: 12, Verified: 11}, true},
		{"", Progress{}, false},
		{"goroutine 1 [running]:", Progress{}, false},
		{"panic: runtime error", Progress{}, false},
		{"done", Progress{}, false},
		{"tick=3 pid=10", Progress{}, false},                     // no ok
		{"pid=10 ok=true", Progress{}, false},                    // no tick
		{"tick=-1 ok=true", Progress{}, false},                   // bad number
		{"tick=3 mem=lotsMiB ok=true", Progress{}, false},        // bad number
		{"tick=3 ok=yes", Progress{}, false},                     // bad bool
		{"tick=3 time=noon ok=true", Progress{}, false},          // bad time
		{`tick=3 ok=false err="unterminated`, Progress{}, false}, // bad quote
		{`tick=3 ok=false err="a"b`, Progress{}, false},          // junk after quote
		{"tick=3 =1 ok=true", Progress{}, false},                 // empty key
	}
	for _, tt := range tests {
		got, ok := ParseLine(tt.line)
		if ok != tt.ok || got != tt.want {
			t.Errorf("ParseLine(%q) = %+v, %v; want %+v, %v", tt.line, got, ok, tt.want, tt.ok)
		}
	}
}
