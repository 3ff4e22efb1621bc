// Package ptrace drives traced processes: it freezes and thaws threads,
// reads and writes their registers, and injects system calls into them by
// pointing rip at a `syscall` instruction in their vDSO and single-stepping.
//
// Linux ties a tracee to the tracing thread, so every ptrace call must come
// from one OS thread. A Tracer owns a goroutine locked to its OS thread;
// all work that calls ptrace or waits for tracees runs there via Tracer.Do.
// Nothing in this package knows about images or checkpoints.
package ptrace

import (
	"context"
	"errors"
	"fmt"
	"runtime"
)

// Tracer runs functions on a single goroutine locked to its OS thread.
type Tracer struct {
	work chan func()
	done chan struct{}
}

// NewTracer starts the tracing goroutine. Close stops it.
func NewTracer() *Tracer {
	t := &Tracer{work: make(chan func()), done: make(chan struct{})}
	go t.loop()
	return t
}

func (t *Tracer) loop() {
	// The thread is never unlocked: when the goroutine exits the runtime
	// destroys it, so no other goroutine inherits a thread with tracees.
	runtime.LockOSThread()
	defer close(t.done)
	for f := range t.work {
		f()
	}
}

// ErrClosed is returned by Do after Close.
var ErrClosed = errors.New("ptrace: tracer closed")

// Do runs f on the tracer thread and returns its error. It waits for f even
// if ctx is cancelled once f has started (f must watch ctx itself).
func (t *Tracer) Do(ctx context.Context, f func() error) (err error) {
	ch := make(chan error, 1)
	wrapped := func() {
		defer func() {
			if r := recover(); r != nil {
				ch <- fmt.Errorf("ptrace: panic on tracer thread: %v", r)
			}
		}()
		ch <- f()
	}
	select {
	case t.work <- wrapped:
	case <-t.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-ch
}

// Close stops the tracer goroutine after pending work.
func (t *Tracer) Close() {
	close(t.work)
	<-t.done
}
