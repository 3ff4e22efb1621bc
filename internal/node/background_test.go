package node

import (
	"log/slog"
	"sync"
	"testing"
	"time"
)

// TestWaitBackground checks that the node's shutdown wait covers the
// goroutines started with goBg, and gives up after its bound.
func TestWaitBackground(t *testing.T) {
	tests := []struct {
		name    string
		release bool // the goroutine ends when quit is closed
		want    bool
	}{
		{"ends on quit", true, true},
		{"still running", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := &Node{log: slog.New(slog.DiscardHandler), quit: make(chan struct{})}
			stuck := make(chan struct{})
			defer close(stuck)
			ended := false
			n.goBg(func() {
				if tc.release {
					<-n.quit
				} else {
					<-stuck
				}
				time.Sleep(20 * time.Millisecond) // Run must wait for this too
				ended = true
			})
			close(n.quit)
			if got := n.waitBackground(300 * time.Millisecond); got != tc.want {
				t.Fatalf("waitBackground = %v, want %v", got, tc.want)
			}
			if tc.want && !ended {
				t.Fatal("waitBackground returned before the goroutine ended")
			}
		})
	}
}

// TestLocalJobArrivalRace reads an incoming job's channels, as
// handleCommitted and handleArrival do, while the migration sets them
// (run with -race).
func TestLocalJobArrivalRace(t *testing.T) {
	j := &localJob{done: make(chan struct{})}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				_ = j.resolvedDone()
				_ = j.agentDoneChan()
			}
		}()
	}
	j.expectArrival()
	wg.Wait()
	if j.agentDoneChan() == nil {
		t.Fatal("no agentDone after expectArrival")
	}
	select {
	case <-j.resolvedDone():
		t.Fatal("resolved is closed before the migration was decided")
	default:
	}
}
