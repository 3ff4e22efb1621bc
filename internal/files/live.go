package files

import (
	"slices"
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
	if fds, err := procfs.FDs(pid); err == nil {
		for _, fd := range fds {
			if l, err := procfs.FDLink(pid, fd); err == nil && strings.HasPrefix(l, "/") {
				if p, deleted := procfs.TrimDeleted(l); !deleted {
					out = append(out, p)
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
