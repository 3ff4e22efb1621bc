// Package files decides which of a migrating job's files must travel: the
// regular files it has open and the files it maps (its executable and
// libraries among them). The source lists them with their size and
// SHA-256; the destination checks by content whether it already has each
// one at the same path and asks only for the missing or different ones.
// A missing file is created at its path (the job's scratch directory is
// the usual case: each node has its own disk behind the same path); a
// file that exists but differs is kept in the node's file cache and the
// job's copy is reopened from there, so nothing on the destination is
// overwritten.
//
// What belongs here: the manifest, hashing with a cache keyed by
// (device, inode, size, mtime), the destination's check and store. What
// does not: carrying the bytes (package migrate) and reopening the files
// (package restore, through a path rewrite).
package files

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"

	"golang.org/x/sys/unix"

	"ferry/internal/image"
	"ferry/internal/kernel"
)

// Entry is one file of the manifest.
type Entry struct {
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	Mode    uint32 `json:"mode"`
	UID     uint32 `json:"uid"`
	GID     uint32 `json:"gid"`
	MtimeNs int64  `json:"mtime_ns"`
	SHA256  string `json:"sha256"`
}

// Paths lists the regular files a checkpoint refers to by path: open
// files (not deleted ones, which travel in the image), file mappings and
// executables.
func Paths(c *image.Checkpoint) []string {
	set := map[string]bool{}
	for _, p := range c.Processes {
		if p.Exe != "" {
			set[p.Exe] = true
		}
		for _, v := range p.VMAs {
			if v.Kind == image.VMAFile && v.Path != "" {
				set[v.Path] = true
			}
		}
		for _, fd := range p.FDs {
			if fd.Kind == image.FDFile && fd.Path != "" && !fd.Unlinked {
				set[fd.Path] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Hasher computes SHA-256 of files, remembering results by device, inode,
// size and modification time in a small JSON file (if Cache is set).
type Hasher struct {
	Cache string
	mu    sync.Mutex // guards seen
	seen  map[string]string
	dirty bool
}

func key(st *unix.Stat_t) string {
	return fmt.Sprintf("%x:%x:%d:%d.%d", st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec)
}

func (h *Hasher) load() {
	if h.seen != nil {
		return
	}
	h.seen = map[string]string{}
	if h.Cache == "" {
		return
	}
	if b, err := os.ReadFile(h.Cache); err == nil {
		json.Unmarshal(b, &h.seen)
	}
}

// Save writes the cache back.
func (h *Hasher) Save() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.Cache == "" || !h.dirty {
		return nil
	}
	b, err := json.Marshal(h.seen)
	if err != nil {
		return err
	}
	tmp := h.Cache + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, h.Cache)
}

// Describe stats and hashes path. A path that is not a regular file is
// an error wrapping ErrNotRegular.
func (h *Hasher) Describe(path string) (Entry, error) {
	// Look before opening: opening a FIFO or a device could block or
	// have effects.
	if fi, err := os.Stat(path); err != nil {
		return Entry{}, err
	} else if !fi.Mode().IsRegular() {
		return Entry{}, fmt.Errorf("%s: %w", path, ErrNotRegular)
	}
	f, err := kernel.OpenNoATime(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
	if err != nil {
		return Entry{}, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return Entry{}, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return Entry{}, fmt.Errorf("%s: %w", path, ErrNotRegular)
	}
	e := Entry{Path: path, Size: st.Size, Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid,
		MtimeNs: st.Mtim.Sec*1e9 + st.Mtim.Nsec}
	k := key(&st)
	h.mu.Lock()
	h.load()
	sum, ok := h.seen[k]
	h.mu.Unlock()
	if !ok {
		d := sha256.New()
		if _, err := io.Copy(d, f); err != nil {
			return Entry{}, fmt.Errorf("hash %s: %w", path, err)
		}
		sum = hex.EncodeToString(d.Sum(nil))
		h.mu.Lock()
		h.seen[k] = sum
		h.dirty = true
		h.mu.Unlock()
	}
	e.SHA256 = sum
	return e, nil
}

// ErrNotRegular is wrapped for paths that are not regular files.
var ErrNotRegular = errors.New("not a regular file")

// Manifest describes every path once; paths that vanished or are not
// regular files are left out (the restore reports them if they matter).
func (h *Hasher) Manifest(paths []string) []Entry {
	var out []Entry
	seen := map[string]bool{}
	for _, p := range paths {
		if seen[p] {
			continue
		}
		seen[p] = true
		if e, err := h.Describe(p); err == nil {
			out = append(out, e)
		}
	}
	return out
}

// Verdict is the destination's answer for one entry.
type Verdict int

const (
	Have    Verdict = iota // the same content is at the same path here
	Missing                // nothing at the path here: create it there
	Differs                // something else at the path: keep ours in the cache
)

// Check compares the manifest with this node's files.
func (h *Hasher) Check(m []Entry) []Verdict {
	out := make([]Verdict, len(m))
	for i, e := range m {
		local, err := h.Describe(e.Path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			out[i] = Missing
		case err != nil:
			out[i] = Differs
		case local.Size != e.Size || local.SHA256 != e.SHA256:
			out[i] = Differs
		default:
			out[i] = Have
		}
	}
	return out
}

// Store receives the content of files the destination lacks. One Store
// serves every file phase of a migration (one while the job runs, one
// while it is frozen).
type Store struct {
	CacheDir string // where files that differ here are kept
	mu       sync.Mutex
	open     map[int]*os.File
	final    map[int]string
	created  []string
	// ours: paths this migration created (missing here before): they may
	// be overwritten when the job changed them since.
	ours map[string]bool
	// Rewrite maps a job's path to where its copy is here (Differs).
	Rewrite map[string]string
}

// Settle adjusts a verdict for what this migration already did: a file it
// created may be replaced (Missing, not Differs), and a differing file
// whose content is already in the cache needs no transfer (Have; the
// job's path is pointed at the cached copy).
//
// It also forgets what an earlier phase decided for the path: a file that
// differed while the job still ran (it was writing it) and is the same
// now is used where it is.
func (s *Store) Settle(e Entry, v Verdict) Verdict {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.Rewrite, e.Path)
	if v != Differs {
		return v
	}
	if s.ours[e.Path] {
		return Missing
	}
	cached := filepath.Join(s.CacheDir, e.SHA256)
	if fi, err := os.Stat(cached); err == nil && fi.Size() == e.Size {
		if s.Rewrite == nil {
			s.Rewrite = map[string]string{}
		}
		s.Rewrite[e.Path] = cached
		return Have
	}
	return v
}

// Begin prepares to receive entry i with verdict v.
func (s *Store) Begin(i int, e Entry, v Verdict) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open == nil {
		s.open, s.final = map[int]*os.File{}, map[int]string{}
	}
	if s.Rewrite == nil {
		s.Rewrite = map[string]string{}
	}
	dst := e.Path
	if v == Differs {
		if err := os.MkdirAll(s.CacheDir, 0o700); err != nil {
			return err
		}
		dst = filepath.Join(s.CacheDir, e.SHA256)
		s.Rewrite[e.Path] = dst
	} else if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("create the directory of %s: %w", dst, err)
	}
	tmp := dst + ".ferry-part"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, os.FileMode(e.Mode&0o777))
	if err != nil {
		return fmt.Errorf("receive %s: %w", e.Path, err)
	}
	s.open[i], s.final[i] = f, dst
	return nil
}

// Write stores content of entry i at off.
func (s *Store) Write(i int, off int64, p []byte) error {
	s.mu.Lock()
	f := s.open[i]
	s.mu.Unlock()
	if f == nil {
		return fmt.Errorf("file %d was not announced", i)
	}
	_, err := f.WriteAt(p, off)
	return err
}

// Finish verifies entry i against its hash and puts it in place.
func (s *Store) Finish(i int, e Entry) error {
	s.mu.Lock()
	f, dst := s.open[i], s.final[i]
	delete(s.open, i)
	s.mu.Unlock()
	if f == nil {
		return fmt.Errorf("file %d was not announced", i)
	}
	defer f.Close()
	d := sha256.New()
	if _, err := io.Copy(d, io.NewSectionReader(f, 0, e.Size)); err != nil {
		return err
	}
	if hex.EncodeToString(d.Sum(nil)) != e.SHA256 {
		os.Remove(f.Name())
		return fmt.Errorf("content of %s does not match its hash", e.Path)
	}
	f.Chown(int(e.UID), int(e.GID))
	f.Chmod(os.FileMode(e.Mode))
	mt := unix.NsecToTimespec(e.MtimeNs)
	unix.UtimesNanoAt(unix.AT_FDCWD, f.Name(), []unix.Timespec{mt, mt}, 0)
	if err := os.Rename(f.Name(), dst); err != nil {
		return err
	}
	s.mu.Lock()
	if !slices.Contains(s.created, dst) {
		s.created = append(s.created, dst)
	}
	if dst == e.Path {
		if s.ours == nil {
			s.ours = map[string]bool{}
		}
		s.ours[e.Path] = true
	}
	s.mu.Unlock()
	return nil
}

// Undo removes what the store created (the migration did not commit).
func (s *Store) Undo() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.open {
		f.Close()
		os.Remove(f.Name())
	}
	for _, p := range s.created {
		os.Remove(p)
	}
	s.created = nil
}
