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
	"sync"
)

// Tracer runs functions on a single goroutine locked to its OS thread.
// The work channel is never closed (a Do racing with Close would panic
// sending on it); Close closes quit instead.
type Tracer struct {
	work chan func()
	quit chan struct{} // closed by the first Close
	done chan struct{} // closed when the goroutine has ended
	once sync.Once
}

// NewTracer starts the tracing goroutine. Close stops it.
func NewTracer() *Tracer {
	t := &Tracer{work: make(chan func()), quit: make(chan struct{}), done: make(chan struct{})}
	go t.loop()
	return t
}

func (t *Tracer) loop() {
	// The thread is never unlocked: when the goroutine exits the runtime
	// destroys it, so no other goroutine inherits a thread with tracees.
	runtime.LockOSThread()
	defer close(t.done)
	for {
		select {
		case f := <-t.work:
			f()
		case <-t.quit:
			return
		}
	}
}

// ErrClosed is wrapped in the error of Do after Close.
var ErrClosed = errors.New("tracer closed")

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
	case <-t.quit:
		return fmt.Errorf("ptrace: %w", ErrClosed)
	default:
	}
	select {
	case t.work <- wrapped:
	case <-t.quit:
		return fmt.Errorf("ptrace: %w", ErrClosed)
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-ch
}

// Close stops the tracer goroutine after the work already running and
// waits for it to end. Later calls of Do fail with ErrClosed; Close may
// be called again (and from several goroutines), it only waits then.
func (t *Tracer) Close() {
	t.once.Do(func() { close(t.quit) })
	<-t.done
}
