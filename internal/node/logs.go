package node

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// logFile is one standard stream of a job, kept whole in a file where a
// byte's offset is its position in the stream since the job started. The
// offset is what makes output continuous across migrations: the new node
// holds the same bytes at the same offsets, and a follower resumes from
// the offset it has.
type logFile struct {
	mu   sync.Mutex // guards the fields below
	f    *os.File
	size int64
	// closed: no more bytes will come here (the job exited or moved).
	closed bool
	wake   chan struct{} // closed and replaced on every change
}

func openLog(path string) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	return &logFile{f: f, wake: make(chan struct{})}, nil
}

func (l *logFile) changedLocked() {
	close(l.wake)
	l.wake = make(chan struct{})
}

// append adds stream bytes at the end.
func (l *logFile) append(p []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.f.WriteAt(p, l.size); err != nil {
		return err
	}
	l.size += int64(len(p))
	l.changedLocked()
	return nil
}

// writeAt writes stream bytes a previous node captured at their offset
// off, ahead of what this node appends later.
func (l *logFile) writeAt(off int64, p []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.f.WriteAt(p, off); err != nil {
		return err
	}
	if end := off + int64(len(p)); end > l.size {
		l.size = end
	}
	l.changedLocked()
	return nil
}

func (l *logFile) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		l.changedLocked()
	}
}

// readAt returns bytes from off (up to max), the wake channel to wait on
// for more, and whether the stream is closed.
func (l *logFile) readAt(off int64, max int) ([]byte, <-chan struct{}, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if off > l.size {
		return nil, l.wake, l.closed, fmt.Errorf("offset %d beyond the stream's %d bytes", off, l.size)
	}
	n := min(int64(max), l.size-off)
	if n == 0 {
		return nil, l.wake, l.closed, nil
	}
	b := make([]byte, n)
	if _, err := l.f.ReadAt(b, off); err != nil && err != io.EOF {
		return nil, l.wake, l.closed, err
	}
	return b, l.wake, l.closed, nil
}

// span returns the stream from offset from to its current end, and that
// end.
func (l *logFile) span(from int64) ([]byte, int64, error) {
	l.mu.Lock()
	size := l.size
	l.mu.Unlock()
	if from > size {
		return nil, size, fmt.Errorf("log offset %d beyond its %d bytes", from, size)
	}
	b := make([]byte, size-from)
	if _, err := l.f.ReadAt(b, from); err != nil && err != io.EOF {
		return nil, size, err
	}
	return b, size, nil
}
