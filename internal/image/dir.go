package image

import (
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"io/fs"
	"os"
	"path/filepath"
)

// FileName is the image file inside an image directory.
const FileName = "ferry.img"

// tempPattern names images being written; Open never reads them.
const tempPattern = ".ferry.img.*.tmp"

// CreateOptions tune CreateWith. The zero value is what Create uses.
type CreateOptions struct {
	// Sync makes Close fsync the image file and then the directory, so
	// the image survives a crash of the machine. It is off by default:
	// a migration consumes the image at once, and images often live on
	// tmpfs, where fsync is pointless.
	Sync bool
	// Preallocate reserves this many bytes for the image file before any
	// record is written (fallocate, keeping the file size). Allocating
	// fresh pages is the slow part of writing an image to tmpfs on these
	// machines; done here, before the process is frozen, it is off the
	// freeze time. Unused space is released by Close. Best effort.
	Preallocate int64
}

// DirWriter writes an image into a directory. Records are written with
// the embedded Writer's methods; Close (not Writer.Close) completes the
// image. Use it as
//
//	dw, err := image.Create(dir)
//	if err != nil { ... }
//	defer dw.Abort() // no-op once Close has succeeded
//	... dw.WriteState, dw.WritePages ...
//	return dw.Close()
type DirWriter struct {
	*Writer
	f     *os.File // the temporary file
	dir   string
	final string
	sync  bool
	done  bool // Close or Abort was called
}

// Create starts an image in dir with default options (no fsync). The
// directory is created (mode 0700) if needed; the image file is created
// mode 0600, since it holds process memory. An existing image in dir is
// replaced only when Close succeeds.
func Create(dir string) (*DirWriter, error) { return CreateWith(dir, CreateOptions{}) }

// CreateWith is Create with options.
func CreateWith(dir string, opts CreateOptions) (*DirWriter, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	f, err := os.CreateTemp(dir, tempPattern)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	if opts.Preallocate > 0 {
		// Best effort: a filesystem without fallocate just writes slower.
		_ = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, opts.Preallocate)
	}
	w, err := NewWriter(f)
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &DirWriter{Writer: w, f: f, dir: dir, final: filepath.Join(dir, FileName), sync: opts.Sync}, nil
}

// Path is where the image will be once Close succeeds.
func (d *DirWriter) Path() string { return d.final }

// Close writes the trailer, flushes, optionally syncs, closes the file
// and renames it into place. On failure the partial file is removed.
func (d *DirWriter) Close() error {
	if d.done {
		return fmt.Errorf("image: %s: already closed or aborted", d.final)
	}
	d.done = true
	tmp := d.f.Name()
	if err := d.Writer.Close(); err != nil {
		d.f.Close()
		os.Remove(tmp)
		return fmt.Errorf("%s: %w", d.final, err)
	}
	var err error
	// Release preallocated space beyond what was written.
	if st, serr := d.f.Stat(); serr == nil {
		err = d.f.Truncate(st.Size())
	}
	if d.sync && err == nil {
		err = d.f.Sync()
	}
	if cerr := d.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, d.final)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("image: writing %s: %w", d.final, err)
	}
	if d.sync {
		if err := syncDir(d.dir); err != nil {
			return fmt.Errorf("image: writing %s: %w", d.final, err)
		}
	}
	return nil
}

// Abort discards the image being written. It does nothing after Close.
func (d *DirWriter) Abort() error {
	if d.done {
		return nil
	}
	d.done = true
	d.f.Close()
	if err := os.Remove(d.f.Name()); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// DirReader reads the image of a directory through the embedded Reader.
type DirReader struct {
	*Reader
	f      *os.File
	path   string
	mapped []byte // the image file, with OpenMapped
}

// Open opens the image in dir and checks its header. An error for a
// directory without an image says "no ferry image in DIR" and matches
// fs.ErrNotExist.
func Open(dir string) (*DirReader, error) {
	path := filepath.Join(dir, FileName)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		hint := ""
		if _, serr := os.Stat(dir); serr != nil {
			hint = " (no such directory)"
		} else if tmps, _ := filepath.Glob(filepath.Join(dir, tempPattern)); len(tmps) > 0 {
			hint = fmt.Sprintf(" (only the unfinished image %s)", filepath.Base(tmps[0]))
		}
		return nil, fmt.Errorf("image: no ferry image in %s%s: %w", dir, hint, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	r, err := NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &DirReader{Reader: r, f: f, path: path}, nil
}

// Path is the image file's path.
func (d *DirReader) Path() string { return d.path }

// Close closes the image file.
func (d *DirReader) Close() error {
	if d.mapped != nil {
		unix.Munmap(d.mapped)
		d.mapped = nil
	}
	return d.f.Close()
}

// OpenMapped is Open for restoring from a local file as fast as possible:
// the image file is mapped, and record Data are slices of the mapping
// (Reader.Stable), valid until Close, so pages go to the kernel without
// being copied through a read buffer.
func OpenMapped(dir string) (*DirReader, error) {
	d, err := Open(dir)
	if err != nil {
		return nil, err
	}
	st, err := d.f.Stat()
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("image: %w", err)
	}
	if st.Size() == 0 {
		return d, nil // Open already refused it; keep its error path
	}
	m, err := unix.Mmap(int(d.f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return d, nil // fall back to reading
	}
	r, err := NewReaderBytes(m)
	if err != nil {
		unix.Munmap(m)
		d.Close()
		return nil, fmt.Errorf("%s: %w", d.path, err)
	}
	d.Reader, d.mapped = r, m
	return d, nil
}
