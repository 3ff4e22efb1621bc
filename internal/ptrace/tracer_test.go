package ptrace

import (
	"context"
	"errors"
	"sync"
	"testing"
)

func TestTracerClose(t *testing.T) {
	tests := []struct {
		name   string
		closes int // Close calls before Do
	}{
		{"once", 1},
		{"twice", 2},
		{"three times", 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracer()
			ran := false
			if err := tr.Do(context.Background(), func() error { ran = true; return nil }); err != nil || !ran {
				t.Fatalf("Do before Close: ran=%v err=%v", ran, err)
			}
			for i := 0; i < tc.closes; i++ {
				tr.Close() // must not panic on a repeated call
			}
			ran = false
			err := tr.Do(context.Background(), func() error { ran = true; return nil })
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("Do after Close: err = %v, want ErrClosed", err)
			}
			if ran {
				t.Fatal("Do after Close ran its function")
			}
		})
	}
}

// TestTracerCloseConcurrent closes a tracer while other goroutines call
// Do and Close: nothing may panic, and every Do either runs or fails with
// ErrClosed.
func TestTracerCloseConcurrent(t *testing.T) {
	tr := NewTracer()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				if err := tr.Do(context.Background(), func() error { return nil }); err != nil && !errors.Is(err, ErrClosed) {
					t.Errorf("Do: %v", err)
					return
				}
			}
		}()
		go func() { defer wg.Done(); tr.Close() }()
	}
	wg.Wait()
}
