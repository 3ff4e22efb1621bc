package migrate

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"ferry/internal/files"
)

// TestFilePhaseChangedContent: a file whose content no longer matches
// what its manifest entry says (the job wrote it between the hashing and
// the sending) is dropped by the destination without error in the phase
// before the freeze, and fails the migration in the frozen phase; files
// that did not change are put in place.
func TestFilePhaseChangedContent(t *testing.T) {
	for _, running := range []bool{true, false} {
		t.Run(fmt.Sprintf("running=%v", running), func(t *testing.T) {
			src := t.TempDir()
			dst := t.TempDir()
			steady := filepath.Join(src, "steady")
			changed := filepath.Join(src, "changed")
			os.WriteFile(steady, []byte("the same all along\n"), 0o644)
			os.WriteFile(changed, []byte("written after it was hashed\n"), 0o644)
			// A hash cache that remembers changed's content as it was
			// before the write (same size and time: a rewrite within
			// one clock tick).
			var st unix.Stat_t
			if err := unix.Stat(changed, &st); err != nil {
				t.Fatal(err)
			}
			cache := filepath.Join(t.TempDir(), "hashes")
			k := fmt.Sprintf("%x:%x:%d:%d.%d", st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec)
			b, _ := json.Marshal(map[string]string{k: strings.Repeat("ab", 32)})
			os.WriteFile(cache, b, 0o600)

			a, z := pipe(t)
			s := &sender{c: newConn(a), rep: &Report{}, opts: SendOptions{Hasher: &files.Hasher{Cache: cache}}}
			// The destination stores what it receives under dst: the
			// manifest's paths are rewritten to it on the way.
			store := &files.Store{CacheDir: filepath.Join(dst, "cache"), Rewrite: map[string]string{}}
			got := make(chan error, 1)
			go func() {
				c := newConn(z)
				typ, p, err := c.recv(nil)
				if err != nil || typ != fManifest {
					got <- fmt.Errorf("manifest: %v %v", typ, err)
					return
				}
				var m []files.Entry
				json.Unmarshal(p, &m)
				for i := range m {
					m[i].Path = filepath.Join(dst, filepath.Base(m[i].Path))
				}
				p, _ = json.Marshal(m)
				got <- receiveFiles(c, p, &files.Hasher{}, store)
			}()
			err := s.filePhase([]string{steady, changed}, running)
			if err != nil {
				a.Close() // as a failed migration's source does
			}
			rerr := <-got
			if running && rerr != nil {
				t.Fatalf("destination: %v", rerr)
			}
			if rerr != nil {
				store.Undo() // as a failed migration's destination does
			}
			if running && err != nil {
				t.Fatalf("source, job running: %v", err)
			}
			if !running && (err == nil || !strings.Contains(err.Error(), "changed while the job was frozen")) {
				t.Fatalf("source, job frozen: %v; want the change reported", err)
			}
			if b, _ := os.ReadFile(filepath.Join(dst, "steady")); running && string(b) != "the same all along\n" {
				t.Errorf("steady file on the destination: %q", b)
			}
			if _, err := os.Stat(filepath.Join(dst, "changed")); !os.IsNotExist(err) {
				t.Errorf("the changed file was put in place (%v)", err)
			}
			ents, _ := os.ReadDir(dst)
			for _, e := range ents {
				if strings.HasSuffix(e.Name(), ".ferry-part") {
					t.Errorf("left behind: %s", e.Name())
				}
			}
		})
	}
}
