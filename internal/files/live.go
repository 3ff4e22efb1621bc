package files

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"ferry/internal/procfs"
)

// LivePaths lists the files a running process maps or has open, by path,
// as its /proc shows them: the manifest before the freeze, when the
// checkpoint's own list is not there yet.
func LivePaths(pid int) []string {
	var out []string
	if maps, err := procfs.Maps(pid); err == nil {
		for _, m := range maps {
			if strings.HasPrefix(m.Path, "/") && !m.Deleted {
				out = append(out, m.Path)
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
