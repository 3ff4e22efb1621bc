package job

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

func TestLookPath(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(a, "data"), nil, 0o644)
	os.WriteFile(filepath.Join(b, "data"), nil, 0o755)
	os.WriteFile(filepath.Join(b, "prog"), nil, 0o755)
	os.Mkdir(filepath.Join(a, "prog"), 0o755)
	tests := []struct {
		name, path, want string
	}{
		{"prog", a + ":" + b, filepath.Join(b, "prog")}, // a directory is not it
		{"data", a + ":" + b, filepath.Join(b, "data")}, // nor a file that is not executable
		{"prog", ":" + b, filepath.Join(b, "prog")},     // the empty element (.) is skipped
		{"prog", a, ""},  // not there
		{"prog", "", ""}, // no PATH
	}
	for _, tc := range tests {
		got, err := lookPath(tc.name, tc.path)
		if tc.want == "" {
			if !errors.Is(err, exec.ErrNotFound) {
				t.Errorf("lookPath(%q, %q) = %q, %v, want exec.ErrNotFound", tc.name, tc.path, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("lookPath(%q, %q) = %q, %v, want %q", tc.name, tc.path, got, err, tc.want)
		}
	}
}

func TestCredArgs(t *testing.T) {
	c := &Cred{UID: 1001, GID: 1002, Groups: []uint32{1002, 27}}
	want := []string{"--uid", "1001", "--gid", "1002", "--groups", "1002,27"}
	if got := c.args(); !slices.Equal(got, want) {
		t.Errorf("Cred.args() = %q, want %q", got, want)
	}
}
