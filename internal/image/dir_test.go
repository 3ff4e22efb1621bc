package image

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeDir(t testing.TB, dir string, opts CreateOptions, pages []byte) {
	t.Helper()
	dw, err := CreateWith(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer dw.Abort()
	if err := errors.Join(
		dw.WriteState(testCheckpoint()),
		dw.WriteFileData("obj:1:2", 0, []byte("memfd")),
		dw.WritePages(100, 0x600000, pages),
	); err != nil {
		t.Fatal(err)
	}
	if err := dw.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestDirRoundTrip(t *testing.T) {
	for _, opts := range []CreateOptions{{}, {Sync: true}} {
		dir := filepath.Join(t.TempDir(), "img", "nested")
		pages := pattern(5*testPage, 3)
		writeDir(t, dir, opts, pages)

		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 || entries[0].Name() != FileName {
			t.Errorf("sync=%v: directory holds %v, want only %s", opts.Sync, entries, FileName)
		}
		if fi, err := os.Stat(filepath.Join(dir, FileName)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("sync=%v: image file mode %v, %v; want 0600", opts.Sync, fi.Mode(), err)
		}

		dr, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		got, err := drain(dr.Reader)
		dr.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 || got[0].State == nil || string(got[1].Data) != "memfd" || string(got[2].Data) != string(pages) {
			t.Errorf("sync=%v: read back %d records that differ from what was written", opts.Sync, len(got))
		}
		if dr.Path() != filepath.Join(dir, FileName) {
			t.Errorf("Path() = %q", dr.Path())
		}
	}
}

// An image only appears when Close succeeds; until then, and after Abort
// or a failed Close, a directory holds no image and no leftovers.
func TestDirIsAllOrNothing(t *testing.T) {
	t.Run("not visible before Close", func(t *testing.T) {
		dir := t.TempDir()
		dw, err := Create(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := dw.WriteState(testCheckpoint()); err != nil {
			t.Fatal(err)
		}
		_, err = Open(dir)
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "no ferry image in "+dir+" (only the unfinished image .ferry.img.") {
			t.Errorf("Open during write: %v", err)
		}
		if err := dw.Abort(); err != nil {
			t.Fatal(err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("after Abort the directory holds %v", entries)
		}
		if err := dw.Close(); err == nil {
			t.Error("Close after Abort succeeded")
		}
	})

	t.Run("abort after close keeps the image", func(t *testing.T) {
		dir := t.TempDir()
		writeDir(t, dir, CreateOptions{}, pattern(testPage, 0)) // defers Abort
		dr, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		dr.Close()
	})

	t.Run("failed close leaves nothing", func(t *testing.T) {
		dir := t.TempDir()
		dw, err := Create(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := dw.Close(); err == nil || !strings.Contains(err.Error(), "no state record") {
			t.Errorf("Close without state = %v", err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("after a failed Close the directory holds %v", entries)
		}
	})

	t.Run("replaces an old image only on Close", func(t *testing.T) {
		dir := t.TempDir()
		writeDir(t, dir, CreateOptions{}, pattern(testPage, 1))
		dw, err := Create(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := errors.Join(dw.WriteState(testCheckpoint()), dw.WritePages(101, 0x10000, pattern(testPage, 2))); err != nil {
			t.Fatal(err)
		}
		pagesOf := func() int {
			dr, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer dr.Close()
			got, err := drain(dr.Reader)
			if err != nil {
				t.Fatal(err)
			}
			return got[len(got)-1].PID
		}
		if pid := pagesOf(); pid != 100 {
			t.Errorf("while the new image is written, Open sees pages of pid %d, want the old image's 100", pid)
		}
		if err := dw.Close(); err != nil {
			t.Fatal(err)
		}
		if pid := pagesOf(); pid != 101 {
			t.Errorf("after Close, Open sees pages of pid %d, want the new image's 101", pid)
		}
	})
}

func TestOpenErrors(t *testing.T) {
	base := t.TempDir()
	empty := filepath.Join(base, "empty")
	garbage := filepath.Join(base, "garbage")
	for _, d := range []string{empty, garbage} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(garbage, FileName), []byte("#!/bin/sh\necho hi\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		dir  string
		want error
		msg  string
	}{
		{filepath.Join(base, "missing"), fs.ErrNotExist, "image: no ferry image in " + filepath.Join(base, "missing") + " (no such directory)"},
		{empty, fs.ErrNotExist, "image: no ferry image in " + empty + ": "},
		{garbage, ErrBadMagic, filepath.Join(garbage, FileName) + ": image: header at offset 0: bad magic"},
	}
	for _, tt := range tests {
		_, err := Open(tt.dir)
		if !errors.Is(err, tt.want) || !strings.HasPrefix(err.Error(), tt.msg) {
			t.Errorf("Open(%q) = %v, want %v starting %q", tt.dir, err, tt.want, tt.msg)
		}
	}
}

// BenchmarkDirReadPages reads a 256 MiB image file back (from the page
// cache: the file was just written), as a restore does.
func BenchmarkDirReadPages(b *testing.B) {
	const total = 256 << 20
	dir := b.TempDir()
	writeDir(b, dir, CreateOptions{}, pattern(total, 5))
	b.SetBytes(total)
	for b.Loop() {
		dr, err := Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			rec, err := dr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if rec.Type == RecordPages {
				n += len(rec.Data)
			}
		}
		dr.Close()
		if n != total {
			b.Fatalf("read %d page bytes, want %d", n, total)
		}
	}
}

// BenchmarkDirWritePages writes a 256 MiB image file, without fsync.
func BenchmarkDirWritePages(b *testing.B) {
	const total = 256 << 20
	dir := b.TempDir()
	pages := pattern(total, 5)
	b.SetBytes(total)
	for b.Loop() {
		writeDir(b, dir, CreateOptions{}, pages)
	}
}
