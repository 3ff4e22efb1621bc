package procfs

import (
	"bytes"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Mount is one line of /proc/PID/mountinfo.
type Mount struct {
	ID, ParentID int
	Dev          uint64 // unix.Mkdev form
	Root         string // the mount's root within its filesystem
	Point        string // where it is mounted, in the reader's view
}

// Mountinfo reads /proc/PID/mountinfo.
func Mountinfo(pid int) ([]Mount, error) {
	path := pidPath(pid, "mountinfo")
	b, err := readSmall(path, false)
	if err != nil {
		return nil, err
	}
	return parseMountinfo(b, path)
}

func parseMountinfo(b []byte, path string) ([]Mount, error) {
	var out []Mount
	for n := 1; len(b) > 0; n++ {
		var line []byte
		line, b = nextLine(b)
		if len(line) == 0 {
			continue
		}
		f := bytes.Fields(line)
		if len(f) < 5 {
			return nil, lineErr(path, n, "%d fields in %q", len(f), line)
		}
		id, err1 := strconv.Atoi(string(f[0]))
		parent, err2 := strconv.Atoi(string(f[1]))
		maj, min, ok := strings.Cut(string(f[2]), ":")
		ma, err3 := strconv.ParseUint(maj, 10, 32)
		mi, err4 := strconv.ParseUint(min, 10, 32)
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil || !ok {
			return nil, lineErr(path, n, "bad ids in %q", line)
		}
		out = append(out, Mount{ID: id, ParentID: parent, Dev: unix.Mkdev(uint32(ma), uint32(mi)),
			Root: unescapeOctal(string(f[3])), Point: unescapeOctal(string(f[4]))})
	}
	return out, nil
}

// unescapeOctal undoes the kernel's \ooo escapes of space, tab, newline
// and backslash in mountinfo paths.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
