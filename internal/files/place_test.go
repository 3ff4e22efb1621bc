package files

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCheckPath(t *testing.T) {
	state := []string{"/var/lib/ferry"}
	tests := []struct {
		path string
		why  string // "" when admitted
	}{
		{"/run/ferry/scratch/data", ""},
		{"/var/lib/ferry-other/x", ""},
		{"/var/lib/ferryx", ""},
		{"data/file", "relative"},
		{"", "relative"},
		{"./x", "relative"},
		{"/run/../etc/shadow", `".."`},
		{"/run/ferry/..", `".."`},
		{"/run//x", "not clean"},
		{"/run/./x", "not clean"},
		{"/run/x/", "not clean"},
		{"/var/lib/ferry", "state directory"},
		{"/var/lib/ferry/pki/node.key", "state directory"},
		{"/var/lib/ferry/files/abc", "state directory"},
	}
	for _, tc := range tests {
		err := CheckPath(tc.path, state)
		switch {
		case tc.why == "" && err != nil:
			t.Errorf("CheckPath(%q) = %v, want admitted", tc.path, err)
		case tc.why != "" && err == nil:
			t.Errorf("CheckPath(%q) admitted it, want refused (%s)", tc.path, tc.why)
		case tc.why != "" && (!strings.Contains(err.Error(), tc.why) || !strings.Contains(err.Error(), "\""+tc.path+"\"") ||
			!errors.Is(err, ErrRefused)):
			t.Errorf("CheckPath(%q) = %q, want it to say %s and name the path, wrapping ErrRefused", tc.path, err, tc.why)
		}
	}
}

func TestOwnerMay(t *testing.T) {
	o := &Owner{UID: 1001, GID: 1001, Groups: []uint32{27}}
	tests := []struct {
		name     string
		uid, gid uint32
		mode     uint32
		want     uint32
		ok       bool
	}{
		{"own dir", 1001, 1001, 0o700, permWrite | permSearch, true},
		{"own dir, read only", 1001, 1001, 0o500, permWrite | permSearch, false},
		{"own dir, search only", 1001, 1001, 0o100, permSearch, true},
		{"owner bits decide for the owner", 1001, 1001, 0o077, permSearch, false},
		{"group dir", 0, 27, 0o770, permWrite | permSearch, true},
		{"primary group dir", 0, 1001, 0o750, permWrite | permSearch, false},
		{"others' bits", 0, 0, 0o755, permSearch, true},
		{"root's dir", 0, 0, 0o755, permWrite | permSearch, false},
		{"sticky world-writable", 0, 0, 0o1777, permWrite | permSearch, true},
		{"group bits decide for the group", 0, 27, 0o707, permSearch, false},
	}
	for _, tc := range tests {
		st := &unix.Stat_t{Uid: tc.uid, Gid: tc.gid, Mode: unix.S_IFDIR | tc.mode}
		if got := o.may(st, tc.want); got != tc.ok {
			t.Errorf("%s: may(%o %d:%d, %o) = %v, want %v", tc.name, tc.mode, tc.uid, tc.gid, tc.want, got, tc.ok)
		}
	}
}

// entry describes content to arrive at path, owned as given.
func entry(path, content string, uid, gid uint32, mode uint32) Entry {
	sum := sha256.Sum256([]byte(content))
	return Entry{Path: path, Size: int64(len(content)), Mode: mode, UID: uid, GID: gid, SHA256: hex.EncodeToString(sum[:])}
}

func receive(s *Store, e Entry, content string) error {
	if err := s.Begin(0, e, Missing); err != nil {
		return err
	}
	if err := s.Write(0, 0, []byte(content)); err != nil {
		return err
	}
	return s.Finish(0, e)
}

// TestStoreRefusals: each way a file that arrives is refused, and that
// nothing is created then.
func TestStoreRefusals(t *testing.T) {
	me := uint32(os.Getuid())
	other := me + 1
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755) // t.TempDir's own parent is 0700
	os.Chmod(dir, 0o755)
	state := filepath.Join(dir, "state")
	os.Mkdir(state, 0o700)
	elsewhere := filepath.Join(dir, "elsewhere")
	os.Mkdir(elsewhere, 0o777)
	os.Symlink(elsewhere, filepath.Join(dir, "link"))
	closed := filepath.Join(dir, "closed")
	os.Mkdir(closed, 0o755)
	os.Chown(closed, int(other), int(other))
	open := filepath.Join(dir, "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	tests := []struct {
		name  string
		owner *Owner
		e     Entry
		why   string
	}{
		{"through a symlink", nil, entry(filepath.Join(dir, "link", "f"), "x", me, me, 0o644), "symbolic link"},
		{"through a symlink, as a user", &Owner{UID: me, GID: me}, entry(filepath.Join(dir, "link", "f"), "x", me, me, 0o644), "symbolic link"},
		{"a directory the owner may not write", &Owner{UID: me + 2, GID: me + 2}, entry(filepath.Join(closed, "f"), "x", me+2, me+2, 0o644), "may not write"},
		{"a missing directory under one the owner may not write", &Owner{UID: me + 2, GID: me + 2},
			entry(filepath.Join(closed, "sub", "f"), "x", me+2, me+2, 0o644), "may not create"},
		{"another user's file", &Owner{UID: me + 2, GID: me + 2}, entry(filepath.Join(open, "f"), "x", other, me+2, 0o644), "belongs to uid"},
		{"a group the owner is not in", &Owner{UID: me + 2, GID: me + 2}, entry(filepath.Join(open, "g"), "x", me+2, other, 0o644), "not one of"},
		{"the state directory", nil, entry(filepath.Join(state, "pki", "node.key"), "x", me, me, 0o600), "state directory"},
		{"a relative path", nil, entry("relative/f", "x", me, me, 0o644), "relative"},
		{"..", nil, entry(open+"/../state/f", "x", me, me, 0o644), `".."`},
	}
	for _, tc := range tests {
		s := &Store{CacheDir: filepath.Join(state, "files"), Owner: tc.owner, Forbidden: []string{state}}
		err := receive(s, tc.e, "x")
		if err == nil || !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%s: receive %s = %v, want refused (%s)", tc.name, tc.e.Path, err, tc.why)
		}
		s.Undo()
	}
	for _, d := range []string{elsewhere, closed, open, state} {
		ents, _ := os.ReadDir(d)
		if len(ents) > 0 {
			t.Errorf("refused files left %d entries in %s", len(ents), d)
		}
	}
	if err := (&Store{Forbidden: []string{state}}).Admit([]Entry{{Path: "/ok"}, {Path: filepath.Join(state, "x")}}); err == nil {
		t.Errorf("Admit of a manifest with a path in the state directory: nil, want refused")
	}
}

// TestStoreAsOwner: a file for a job's owner is created where it may
// write, with the owner and mode it had, and its new directories are the
// owner's.
func TestStoreAsOwner(t *testing.T) {
	me := uint32(os.Getuid())
	owner := &Owner{UID: me, GID: uint32(os.Getgid())}
	if me == 0 {
		owner = &Owner{UID: 4242, GID: 4242} // root can give it to anyone
	}
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o777)
	s := &Store{CacheDir: filepath.Join(dir, "cache"), Owner: owner}
	e := entry(filepath.Join(dir, "new", "deep", "f"), "content", owner.UID, owner.GID, 0o640)
	if err := receive(s, e, "content"); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(e.Path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != owner.UID || st.Gid != owner.GID || st.Mode&0o7777 != 0o640 {
		t.Errorf("%s: %d:%d mode %o, want %d:%d mode 640", e.Path, st.Uid, st.Gid, st.Mode&0o7777, owner.UID, owner.GID)
	}
	if err := unix.Stat(filepath.Join(dir, "new"), &st); err != nil || st.Uid != owner.UID {
		t.Errorf("the directory made for the file: uid %d (%v), want %d", st.Uid, err, owner.UID)
	}
	if b, _ := os.ReadFile(e.Path); string(b) != "content" {
		t.Errorf("%s = %q", e.Path, b)
	}
	s.Undo()
	if _, err := os.Stat(e.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Undo %s: %v, want it gone", e.Path, err)
	}
}
