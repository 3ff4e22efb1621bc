package dump

import "sync"

// asyncPages overlaps reading the frozen process's memory with writing the
// image: the collector fills buffers from a small pool, a goroutine owned
// by asyncPages hands them to the sink. On these machines both halves are
// bounded by memory bandwidth, so two cores do them in about the time of
// the slower one.
type asyncPages struct {
	w    Sink
	jobs chan pagesJob
	free chan []byte
	done chan struct{}

	mu  sync.Mutex
	err error // guards: first sink error
}

// pagesJob is one buffer's worth of pages: runs at addresses, backed by
// consecutive pieces of buf.
type pagesJob struct {
	pid  int
	buf  []byte
	runs []pageRun
}

type pageRun struct {
	addr uint64
	data []byte
}

func newAsyncPages(w Sink, buffers, size int) *asyncPages {
	a := &asyncPages{w: w, jobs: make(chan pagesJob, buffers), free: make(chan []byte, buffers), done: make(chan struct{})}
	for i := 0; i < buffers; i++ {
		a.free <- make([]byte, size)
	}
	go a.loop()
	return a
}

func (a *asyncPages) loop() {
	defer close(a.done)
	for j := range a.jobs {
		for _, r := range j.runs {
			if a.failed() != nil {
				break
			}
			if err := a.w.WritePages(j.pid, r.addr, r.data); err != nil {
				a.mu.Lock()
				a.err = err
				a.mu.Unlock()
			}
		}
		a.free <- j.buf[:cap(j.buf)]
	}
}

func (a *asyncPages) failed() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// buffer returns a free buffer, or the sink's error once it has failed.
func (a *asyncPages) buffer() ([]byte, error) {
	if err := a.failed(); err != nil {
		return nil, err
	}
	return <-a.free, nil
}

// submit queues runs backed by buf (from buffer) for the sink; buf goes
// back to the pool once they are written.
func (a *asyncPages) submit(pid int, buf []byte, runs []pageRun) {
	a.jobs <- pagesJob{pid: pid, buf: buf, runs: runs}
}

// finish waits for every queued write and returns the first error.
func (a *asyncPages) finish() error {
	close(a.jobs)
	<-a.done
	return a.failed()
}
