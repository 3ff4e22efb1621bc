package files

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// LivePaths lists the files a running process maps or has open, by path,
// as its /proc shows them: the manifest before the freeze, when the
// checkpoint's own list is not there yet.
func LivePaths(pid int) []string {
	var out []string
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/maps"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) >= 6 && strings.HasPrefix(f[5], "/") && !strings.HasSuffix(line, "(deleted)") {
				out = append(out, f[5])
			}
		}
	}
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(l, "/") &&
				!strings.HasSuffix(l, " (deleted)") {
				out = append(out, l)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
