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
	"time"

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
		// The entry's hash covers exactly its Size bytes, even if a
		// writer appends meanwhile: the sender checks them again as it
		// sends them (changed content is told, not mistaken for damage).
		d := sha256.New()
		if _, err := io.CopyN(d, f, st.Size); err != nil {
			return Entry{}, fmt.Errorf("hash %s: %w", path, err)
		}
		sum = hex.EncodeToString(d.Sum(nil))
		var after unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &after); err == nil && key(&after) == k && !racy(&st) {
			h.mu.Lock()
			h.seen[k] = sum
			h.dirty = true
			h.mu.Unlock()
		}
	}
	e.SHA256 = sum
	return e, nil
}

// racyWindow: a file modified this recently may be modified again
// without its modification time changing (timestamps advance by clock
// ticks): its hash is not cached.
const racyWindow = 2 * time.Second

func racy(st *unix.Stat_t) bool {
	return time.Since(time.Unix(st.Mtim.Sec, st.Mtim.Nsec)) < racyWindow
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
	// Owner, if set, is the job's owner (not root): a missing file is
	// created only where it could have created it, and only if it could
	// have owned it as the source has it.
	Owner *Owner
	// Forbidden lists directories no manifest path may point into: the
	// node's own state.
	Forbidden []string
	mu        sync.Mutex
	open      map[int]*part
	created   []string
	// ours: paths this migration created (missing here before): they may
	// be overwritten when the job changed them since.
	ours map[string]bool
	// Rewrite maps a job's path to where its copy is here (Differs).
	Rewrite map[string]string
}

// part is a file being received: a temporary name in its directory,
// renamed over its name once complete.
type part struct {
	f         *os.File
	dir       *os.File
	tmp, name string
	dst       string // the whole path, for the report and Undo
	replace   bool   // may replace what is at name (ours, or the cache)
}

// Admit checks every path of a manifest (CheckPath) before anything of
// it is looked at here.
func (s *Store) Admit(m []Entry) error {
	for _, e := range m {
		if err := CheckPath(e.Path, s.Forbidden); err != nil {
			return err
		}
	}
	return nil
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

// Begin prepares to receive entry i with verdict v: a missing file at its
// path, a differing one in the cache.
func (s *Store) Begin(i int, e Entry, v Verdict) error {
	if err := CheckPath(e.Path, s.Forbidden); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open == nil {
		s.open = map[int]*part{}
	}
	if s.Rewrite == nil {
		s.Rewrite = map[string]string{}
	}
	var p *part
	if v == Differs {
		if err := os.MkdirAll(s.CacheDir, 0o700); err != nil {
			return err
		}
		dir, err := os.Open(s.CacheDir)
		if err != nil {
			return err
		}
		p = &part{dir: dir, name: e.SHA256, dst: filepath.Join(s.CacheDir, e.SHA256), replace: true}
	} else {
		if err := checkOwnership(e, s.Owner); err != nil {
			return err
		}
		parent := filepath.Dir(e.Path)
		dir, err := openDir(parent, s.Owner, true)
		if err != nil {
			return fmt.Errorf("receive %s: %w", e.Path, err)
		}
		if s.Owner != nil {
			var st unix.Stat_t
			if err := unix.Fstat(int(dir.Fd()), &st); err != nil {
				dir.Close()
				return fmt.Errorf("receive %s: %w", e.Path, os.NewSyscallError("fstat", err))
			}
			if !s.Owner.may(&st, permWrite|permSearch) {
				dir.Close()
				return fmt.Errorf("receive %s: uid %d may not write %s: %w", e.Path, s.Owner.UID, parent, ErrRefused)
			}
		}
		p = &part{dir: dir, name: filepath.Base(e.Path), dst: e.Path, replace: s.ours[e.Path]}
	}
	// A fresh temporary file, never one that was there: whoever may write
	// the directory could have left a link to another file under its name.
	p.tmp = p.name + ".ferry-part"
	dfd := int(p.dir.Fd())
	if err := unix.Unlinkat(dfd, p.tmp, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		p.dir.Close()
		return fmt.Errorf("receive %s: remove an old %s: %w", e.Path, p.tmp, err)
	}
	fd, err := unix.Openat(dfd, p.tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, e.Mode&0o777)
	if err != nil {
		p.dir.Close()
		return fmt.Errorf("receive %s: %w", e.Path, os.NewSyscallError("openat", err))
	}
	p.f = os.NewFile(uintptr(fd), filepath.Join(filepath.Dir(p.dst), p.tmp))
	if v == Differs {
		s.Rewrite[e.Path] = p.dst
	}
	s.open[i] = p
	return nil
}

// Write stores content of entry i at off.
func (s *Store) Write(i int, off int64, p []byte) error {
	s.mu.Lock()
	pt := s.open[i]
	s.mu.Unlock()
	if pt == nil {
		return fmt.Errorf("file %d was not announced", i)
	}
	_, err := pt.f.WriteAt(p, off)
	return err
}

// take removes entry i's part from those being received.
func (s *Store) take(i int) (*part, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.open[i]
	if p == nil {
		return nil, fmt.Errorf("file %d was not announced", i)
	}
	delete(s.open, i)
	return p, nil
}

// Drop forgets entry i, received in part: the sender found it changed
// while it sent it (the job still ran and wrote it), and a later phase
// sends it again.
func (s *Store) Drop(i int) error {
	p, err := s.take(i)
	if err != nil {
		return err
	}
	p.f.Close()
	unix.Unlinkat(int(p.dir.Fd()), p.tmp, 0)
	p.dir.Close()
	return nil
}

// Finish verifies entry i against its hash and puts it in place, with the
// owner, mode and modification time it has on the source.
func (s *Store) Finish(i int, e Entry) error {
	p, err := s.take(i)
	if err != nil {
		return err
	}
	defer p.dir.Close()
	defer p.f.Close()
	dfd := int(p.dir.Fd())
	d := sha256.New()
	if _, err := io.Copy(d, io.NewSectionReader(p.f, 0, e.Size)); err != nil {
		unix.Unlinkat(dfd, p.tmp, 0)
		return err
	}
	if hex.EncodeToString(d.Sum(nil)) != e.SHA256 {
		unix.Unlinkat(dfd, p.tmp, 0)
		return fmt.Errorf("content of %s does not match its hash", e.Path)
	}
	// Owner first: chown clears the setuid and setgid bits.
	if err := p.f.Chown(int(e.UID), int(e.GID)); err != nil {
		unix.Unlinkat(dfd, p.tmp, 0)
		return fmt.Errorf("receive %s: %w", e.Path, err)
	}
	if err := p.f.Chmod(os.FileMode(e.Mode&0o777) | unixModeBits(e.Mode)); err != nil {
		unix.Unlinkat(dfd, p.tmp, 0)
		return fmt.Errorf("receive %s: %w", e.Path, err)
	}
	kernel.Futimens(int(p.f.Fd()), e.MtimeNs, e.MtimeNs)
	flags := uint(unix.RENAME_NOREPLACE)
	if p.replace {
		flags = 0
	}
	if err := unix.Renameat2(dfd, p.tmp, dfd, p.name, flags); err != nil {
		unix.Unlinkat(dfd, p.tmp, 0)
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("receive %s: something else appeared there meanwhile: %w", e.Path, err)
		}
		return fmt.Errorf("receive %s: %w", e.Path, os.NewSyscallError("renameat2", err))
	}
	s.mu.Lock()
	if !slices.Contains(s.created, p.dst) {
		s.created = append(s.created, p.dst)
	}
	if p.dst == e.Path {
		if s.ours == nil {
			s.ours = map[string]bool{}
		}
		s.ours[e.Path] = true
	}
	s.mu.Unlock()
	return nil
}

// unixModeBits turns the setuid, setgid and sticky bits of a stat mode
// into os.FileMode's.
func unixModeBits(m uint32) os.FileMode {
	var out os.FileMode
	if m&unix.S_ISUID != 0 {
		out |= os.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		out |= os.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		out |= os.ModeSticky
	}
	return out
}

// Undo removes what the store created (the migration did not commit),
// reaching each file's directory as it was created: without following a
// symbolic link.
func (s *Store) Undo() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.open {
		p.f.Close()
		unix.Unlinkat(int(p.dir.Fd()), p.tmp, 0)
		p.dir.Close()
	}
	s.open = nil
	for _, p := range s.created {
		if dir, err := openDir(filepath.Dir(p), nil, false); err == nil {
			unix.Unlinkat(int(dir.Fd()), filepath.Base(p), 0)
			dir.Close()
		}
	}
	s.created = nil
}
