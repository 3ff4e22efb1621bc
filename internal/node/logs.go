package node

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// logFile is one standard stream of a job, kept whole in a file where a
// byte's offset is its position in the stream since the job started. The
// offset is what makes output continuous across migrations: the new node
// holds the same bytes at the same offsets, and a follower resumes from
// the offset it has.
//
// The job's init appends to the file (package job); the node reads it,
// and writes at their offsets the bytes a previous node captured. The
// file's size is the stream's length.
type logFile struct {
	path string
	mu   sync.Mutex // guards the fields below
	// f is open while bytes may come; once closed, readers open the
	// file for each read (a node holds no descriptor per ended job).
	f *os.File
	// closed: no more bytes will come here (the job exited or moved).
	closed bool
	wake   chan struct{} // closed and replaced on every change
	wd     int32         // inotify watch, 0 if none
}

// openLog opens a job's log; fresh truncates it (a new job or arrival).
func openLog(path string, fresh bool) (*logFile, error) {
	flags := os.O_RDWR | os.O_CREATE
	if fresh {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return nil, err
	}
	return &logFile{path: path, f: f, wake: make(chan struct{})}, nil
}

func (l *logFile) changedLocked() {
	close(l.wake)
	l.wake = make(chan struct{})
}

// changed wakes the readers waiting for more.
func (l *logFile) changed() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.changedLocked()
}

// writeAt writes stream bytes a previous node captured at their offset
// off, ahead of what the job appends later.
func (l *logFile) writeAt(off int64, p []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, done, err := l.fileLocked(os.O_RDWR)
	if err != nil {
		return err
	}
	defer done()
	if _, err := f.WriteAt(p, off); err != nil {
		return err
	}
	l.changedLocked()
	return nil
}

func (l *logFile) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		if l.f != nil {
			l.f.Close()
			l.f = nil
		}
		l.changedLocked()
	}
}

// fileLocked returns the log's file: the open one, or (after close) one
// opened for the caller, which calls done when finished.
func (l *logFile) fileLocked(flag int) (*os.File, func(), error) {
	if l.f != nil {
		return l.f, func() {}, nil
	}
	f, err := os.OpenFile(l.path, flag, 0)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

func (l *logFile) sizeLocked() (int64, error) {
	var st os.FileInfo
	var err error
	if l.f != nil {
		st, err = l.f.Stat()
	} else {
		st, err = os.Stat(l.path)
	}
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// readAt returns bytes from off (up to max), the wake channel to wait on
// for more, and whether the stream is closed.
func (l *logFile) readAt(off int64, max int) ([]byte, <-chan struct{}, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	size, err := l.sizeLocked()
	if err != nil {
		return nil, l.wake, l.closed, err
	}
	if off > size {
		return nil, l.wake, l.closed, fmt.Errorf("offset %d beyond the stream's %d bytes", off, size)
	}
	n := min(int64(max), size-off)
	if n == 0 {
		return nil, l.wake, l.closed, nil
	}
	f, done, err := l.fileLocked(os.O_RDONLY)
	if err != nil {
		return nil, l.wake, l.closed, err
	}
	defer done()
	b := make([]byte, n)
	k, err := f.ReadAt(b, off)
	if err != nil && err != io.EOF {
		return nil, l.wake, l.closed, err
	}
	return b[:k], l.wake, l.closed, nil
}

// span returns the stream from offset from to its current end, and that
// end.
func (l *logFile) span(from int64) ([]byte, int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	size, err := l.sizeLocked()
	if err != nil {
		return nil, 0, err
	}
	if from > size {
		return nil, size, fmt.Errorf("log offset %d beyond its %d bytes", from, size)
	}
	f, done, err := l.fileLocked(os.O_RDONLY)
	if err != nil {
		return nil, size, err
	}
	defer done()
	b := make([]byte, size-from)
	k, err := f.ReadAt(b, from)
	if err != nil && err != io.EOF {
		return nil, size, err
	}
	return b[:k], from + int64(k), nil
}

// logWatch wakes the readers of a log when its init appends to it, by
// inotify: the node does not see the bytes go by.
type logWatch struct {
	f   *os.File
	mu  sync.Mutex // guards wds
	wds map[int32]*logFile
}

func newLogWatch() (*logWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("watch job logs: %w", os.NewSyscallError("inotify_init1", err))
	}
	return &logWatch{f: os.NewFile(uintptr(fd), "inotify"), wds: map[int32]*logFile{}}, nil
}

func (w *logWatch) add(l *logFile, path string) {
	if w == nil {
		return
	}
	wd, err := unix.InotifyAddWatch(int(w.f.Fd()), path, unix.IN_MODIFY)
	if err != nil {
		return // readers still look twice a second
	}
	w.mu.Lock()
	w.wds[int32(wd)] = l
	w.mu.Unlock()
	l.mu.Lock()
	l.wd = int32(wd)
	l.mu.Unlock()
}

// remove stops watching l (its job ended or left).
func (w *logWatch) remove(l *logFile) {
	if w == nil || l == nil {
		return
	}
	l.mu.Lock()
	wd := l.wd
	l.wd = 0
	l.mu.Unlock()
	if wd == 0 {
		return
	}
	w.mu.Lock()
	delete(w.wds, wd)
	w.mu.Unlock()
	unix.InotifyRmWatch(int(w.f.Fd()), uint32(wd))
}

// run delivers the events until Close.
func (w *logWatch) run() {
	buf := make([]byte, 64<<10)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			// Closed (the node stops), or broken: readers fall back to
			// looking twice a second.
			return
		}
		for p := buf[:n]; len(p) >= unix.SizeofInotifyEvent; {
			wd := int32(binary.NativeEndian.Uint32(p[0:4]))
			nameLen := binary.NativeEndian.Uint32(p[12:16])
			p = p[min(len(p), unix.SizeofInotifyEvent+int(nameLen)):]
			w.mu.Lock()
			l := w.wds[wd]
			w.mu.Unlock()
			if l != nil {
				l.changed()
			}
		}
	}
}

func (w *logWatch) Close() error { return w.f.Close() }
