package files

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestCheckAndStore(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	write := func(dir, name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The source's view, and the destination's: "same" identical,
	// "other" different, "gone" missing. Paths are compared as given, so
	// each file is described at the destination's path.
	h := &Hasher{Cache: filepath.Join(t.TempDir(), "cache.json")}
	var m []Entry
	for _, f := range []struct{ name, content string }{{"same", "alike"}, {"other", "source's"}, {"gone", "only here"}} {
		e, err := h.Describe(write(src, f.name, f.content))
		if err != nil {
			t.Fatal(err)
		}
		e.Path = filepath.Join(dst, f.name)
		m = append(m, e)
	}
	if err := h.Save(); err != nil {
		t.Fatal(err)
	}
	write(dst, "same", "alike")
	write(dst, "other", "destination's own")

	want := []Verdict{Have, Differs, Missing}
	got := (&Hasher{}).Check(m)
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Check(%s) = %v, want %v", filepath.Base(m[i].Path), got[i], want[i])
		}
	}

	st := &Store{CacheDir: filepath.Join(t.TempDir(), "cache")}
	contents := map[int]string{1: "source's", 2: "only here"}
	for i, c := range contents {
		if err := st.Begin(i, m[i], got[i]); err != nil {
			t.Fatal(err)
		}
		if err := st.Write(i, 0, []byte(c)); err != nil {
			t.Fatal(err)
		}
		if err := st.Finish(i, m[i]); err != nil {
			t.Fatal(err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "other")); string(b) != "destination's own" {
		t.Errorf("the destination's different file was changed to %q", b)
	}
	cached := st.Rewrite[m[1].Path]
	if b, _ := os.ReadFile(cached); string(b) != "source's" {
		t.Errorf("the source's version kept at %q holds %q", cached, b)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "gone")); string(b) != "only here" {
		t.Errorf("the missing file was created with %q", b)
	}
	if fi, _ := os.Stat(filepath.Join(dst, "gone")); fi == nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("the missing file's mode is not kept: %v", fi)
	}
	// A migration that does not commit leaves nothing behind.
	st.Undo()
	if _, err := os.Stat(filepath.Join(dst, "gone")); !os.IsNotExist(err) {
		t.Errorf("Undo left the created file: %v", err)
	}
}

func TestStoreRefusesWrongContent(t *testing.T) {
	dir := t.TempDir()
	e := Entry{Path: filepath.Join(dir, "f"), Size: 3, Mode: 0o600,
		SHA256: "0000000000000000000000000000000000000000000000000000000000000000"}
	st := &Store{CacheDir: filepath.Join(dir, "cache")}
	if err := st.Begin(0, e, Missing); err != nil {
		t.Fatal(err)
	}
	st.Write(0, 0, []byte("abc"))
	if err := st.Finish(0, e); err == nil {
		t.Fatal("content that does not match its hash was accepted")
	}
	if _, err := os.Stat(e.Path); !os.IsNotExist(err) {
		t.Errorf("a file with the wrong content was put in place")
	}
}

// TestSettleForgetsEarlierPhase: a file that differed in the phase before
// the freeze (the job was writing it) and matches in the frozen phase is
// used where it is, not from the cache.
func TestSettleForgetsEarlierPhase(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out")
	os.WriteFile(path, []byte("v2"), 0o600)
	h := &Hasher{}
	now, err := h.Describe(path)
	if err != nil {
		t.Fatal(err)
	}
	old := now
	old.SHA256, old.Size = "00", 2 // what the source saw before
	st := &Store{CacheDir: filepath.Join(dir, "cache"), Rewrite: map[string]string{}}
	if v := st.Settle(old, Differs); v != Differs {
		t.Fatalf("first phase: %v", v)
	}
	st.Rewrite[path] = filepath.Join(dir, "cache", "00") // as Begin would
	if v := st.Settle(now, h.Check([]Entry{now})[0]); v != Have {
		t.Fatalf("frozen phase: %v, want Have", v)
	}
	if to, ok := st.Rewrite[path]; ok {
		t.Errorf("the job would reopen its file from %s", to)
	}
}

// TestRacyNotCached: the hash of a file modified a moment ago is not
// remembered (it may change again within the same timestamp); one left
// alone for longer is.
func TestRacyNotCached(t *testing.T) {
	dir := t.TempDir()
	fresh := filepath.Join(dir, "fresh")
	old := filepath.Join(dir, "old")
	os.WriteFile(fresh, []byte("just written"), 0o600)
	os.WriteFile(old, []byte("written long ago"), 0o600)
	then := time.Now().Add(-time.Hour)
	os.Chtimes(old, then, then)
	h := &Hasher{}
	for _, p := range []string{fresh, old} {
		if _, err := h.Describe(p); err != nil {
			t.Fatal(err)
		}
	}
	if len(h.seen) != 1 {
		t.Fatalf("%d hashes remembered, want 1 (the old file's): %v", len(h.seen), h.seen)
	}
}
