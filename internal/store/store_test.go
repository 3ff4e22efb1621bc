package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestRoundTripAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.db")
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	type rec struct{ A string }
	if err := d.Put(Jobs, "n1-1", rec{"x"}); err != nil {
		t.Fatal(err)
	}
	if n, _ := d.Next("job"); n != 1 {
		t.Errorf("first counter value %d, want 1", n)
	}
	d.Next("job")
	d.Close()
	d, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var r rec
	if ok, err := d.Get(Jobs, "n1-1", &r); !ok || err != nil || r.A != "x" {
		t.Errorf("Get after reopen = %v %v %+v", ok, err, r)
	}
	if n, _ := d.Next("job"); n != 3 {
		t.Errorf("counter after reopen %d, want 3", n)
	}
	if err := d.Delete(Jobs, "n1-1"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := d.Get(Jobs, "n1-1", &r); ok {
		t.Error("deleted key still there")
	}
}

func TestSecondOpenerRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.db")
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := Open(path); !errors.Is(err, ErrLocked) {
		t.Errorf("second Open: %v, want ErrLocked", err)
	}
}

func TestCorruptAndForeign(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.db")
	os.WriteFile(bad, []byte(strings.Repeat("not a database ", 1000)), 0o600)
	if _, err := Open(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("Open of garbage: %v, want an error naming the file", err)
	}
	// A newer schema is refused, not misread.
	p := filepath.Join(dir, "new.db")
	d, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	d.db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte(meta)).Put([]byte("schema"), []byte("99")) })
	d.Close()
	if _, err := Open(p); err == nil || !strings.Contains(err.Error(), "schema version") {
		t.Errorf("Open of a newer schema: %v", err)
	}
}
