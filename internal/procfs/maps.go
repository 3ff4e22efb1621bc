package procfs

import (
	"bytes"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Mapping is one line of /proc/PID/maps: one VMA.
type Mapping struct {
	Start, End uint64 // [Start, End), page-aligned

	// Permissions as the kernel prints them. Shared is VM_MAYSHARE ('s'),
	// which a MAP_SHARED mapping of a file opened read-only also has.
	Read, Write, Exec, Shared bool
	Prot                      int // unix.PROT_READ|PROT_WRITE|PROT_EXEC bits; PROT_NONE is 0

	Offset uint64 // file offset in bytes (vm_pgoff << PAGE_SHIFT)
	Dev    uint64 // unix.Mkdev(major, minor) of the backing file; 0 when anonymous
	Inode  uint64

	// Path is the backing file's path with any " (deleted)" suffix removed.
	// It is empty for anonymous and special mappings. The kernel prints a
	// '\n' in a path as the four bytes `\012` and does not escape anything
	// else, so Path is what was printed, not a guaranteed file name: open
	// MapFilesPath to reach the file itself.
	Path string
	// Deleted reports that the kernel printed the " (deleted)" suffix. A
	// file whose real name ends in " (deleted)" looks the same.
	Deleted bool
	// Name is set instead of Path for the kernel's bracketed names:
	// "[heap]", "[stack]", "[vdso]", "[vvar]", "[vvar_vclock]",
	// "[vsyscall]", "[uprobes]", "[anon:NAME]", "[anon_shmem:NAME]".
	Name string
}

// Len returns the size of the mapping in bytes.
func (m *Mapping) Len() uint64 { return m.End - m.Start }

// Anonymous reports memory backed by no file: plain anonymous mappings,
// [heap], [stack] and [anon:NAME]. Shared anonymous memory is backed by a
// shmem file (see SharedAnon) and the kernel's special mappings are not
// counted.
func (m *Mapping) Anonymous() bool { return m.Inode == 0 && m.Path == "" && !m.Special() }

// SharedAnon reports a MAP_SHARED|MAP_ANONYMOUS mapping (or a shared
// mapping of /dev/zero, which the kernel turns into the same thing): the
// kernel backs it with an unlinked shmem file it names "/dev/zero", or
// "[anon_shmem:NAME]" once named with PR_SET_VMA_ANON_NAME.
func (m *Mapping) SharedAnon() bool {
	return m.Shared && (m.Deleted && m.Path == "/dev/zero" || strings.HasPrefix(m.Name, "[anon_shmem:"))
}

// Special reports one of the kernel's own mappings that cannot be recreated
// with mmap and cannot be split: [vdso], [vvar], [vvar_vclock], [vsyscall],
// [uprobes].
func (m *Mapping) Special() bool {
	switch m.Name {
	case "[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]", "[uprobes]":
		return true
	}
	return false
}

// Maps reads /proc/PID/maps. The kernel produces it a page at a time, so
// the result is only consistent if the target is frozen.
func Maps(pid int) ([]Mapping, error) {
	path := pidPath(pid, "maps")
	var out []Mapping
	err := withFile(path, false, func(b []byte) error {
		var err error
		out, err = parseMaps(b, path)
		return err
	})
	return out, err
}

const deletedSuffix = " (deleted)"

// TrimDeleted strips the " (deleted)" suffix the kernel appends to the path
// of an unlinked file (in maps, fd links, exe) and reports whether it did.
func TrimDeleted(s string) (string, bool) {
	if strings.HasSuffix(s, deletedSuffix) {
		return s[:len(s)-len(deletedSuffix)], true
	}
	return s, false
}

// parseMaps parses the text of a maps file; path is only used in errors.
//
// Kernel format (fs/proc/task_mmu.c, show_vma_header_prefix):
//
//	"%08lx-%08lx %c%c%c%c %08llx %02x:%02x %lu "
//
// then, if the VMA has a name, padding to column 73 and the name. A line
// without a name ends in the space after the inode.
func parseMaps(b []byte, path string) ([]Mapping, error) {
	out := make([]Mapping, 0, bytes.Count(b, []byte{'\n'})+1)
	var prev string // paths repeat on consecutive lines; share the string
	for n := 1; len(b) > 0; n++ {
		var line []byte
		line, b = nextLine(b)
		if len(line) == 0 {
			continue
		}
		out = append(out, Mapping{})
		if err := parseMapsLine(line, &out[len(out)-1], &prev); err != nil {
			return nil, lineErr(path, n, "%v in %q", err, line)
		}
	}
	return out, nil
}

// parseMapsLine fills m from one maps line. *prev is the previous line's
// Path, reused when this line names the same file.
func parseMapsLine(line []byte, m *Mapping, prev *string) error {
	rest, err := parseMapsHeader(line, m)
	if err != nil {
		return err
	}
	name := trimSpace(rest)
	if len(name) == 0 {
		return nil
	}
	if name[0] == '[' && name[len(name)-1] == ']' {
		m.Name = internSpecial(name)
		return nil
	}
	if bytes.HasSuffix(name, []byte(deletedSuffix)) {
		m.Deleted = true
		name = name[:len(name)-len(deletedSuffix)]
	}
	if string(name) != *prev {
		*prev = string(name)
	}
	m.Path = *prev
	return nil
}

// parseMapsHeader fills the fixed fields of m from one maps or smaps header
// line and returns what follows the inode (the padded name, if any).
func parseMapsHeader(line []byte, m *Mapping) ([]byte, error) {
	f, rest := nextField(line)
	dash := bytes.IndexByte(f, '-')
	if dash < 0 {
		return nil, errorString("no '-' in address range")
	}
	var err error
	if m.Start, err = parseHex(f[:dash]); err != nil {
		return nil, errorString("bad start address")
	}
	if m.End, err = parseHex(f[dash+1:]); err != nil {
		return nil, errorString("bad end address")
	}
	if m.End < m.Start {
		return nil, errorString("end below start")
	}

	f, rest = nextField(rest)
	if len(f) != 4 {
		return nil, errorString("bad permissions")
	}
	for i, want := range [4]byte{'r', 'w', 'x', 's'} {
		switch f[i] {
		case want:
		case '-':
			continue
		case 'p':
			if i == 3 {
				continue
			}
			return nil, errorString("bad permissions")
		default:
			return nil, errorString("bad permissions")
		}
		switch i {
		case 0:
			m.Read, m.Prot = true, m.Prot|unix.PROT_READ
		case 1:
			m.Write, m.Prot = true, m.Prot|unix.PROT_WRITE
		case 2:
			m.Exec, m.Prot = true, m.Prot|unix.PROT_EXEC
		case 3:
			m.Shared = true
		}
	}

	f, rest = nextField(rest)
	if m.Offset, err = parseHex(f); err != nil {
		return nil, errorString("bad offset")
	}

	f, rest = nextField(rest)
	colon := bytes.IndexByte(f, ':')
	if colon < 0 {
		return nil, errorString("bad device")
	}
	major, err1 := parseHex(f[:colon])
	minor, err2 := parseHex(f[colon+1:])
	if err1 != nil || err2 != nil || major > 0xfff || minor > 0xfffff {
		return nil, errorString("bad device")
	}
	m.Dev = unix.Mkdev(uint32(major), uint32(minor))

	f, rest = nextField(rest)
	if m.Inode, err = parseUint(f); err != nil {
		return nil, errorString("bad inode")
	}
	return rest, nil
}

type errorString string

func (e errorString) Error() string { return string(e) }

// internSpecial returns a constant string for the common bracketed names so
// that they cost no allocation.
func internSpecial(b []byte) string {
	for _, s := range [...]string{"[heap]", "[stack]", "[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]", "[uprobes]"} {
		if string(b) == s {
			return s
		}
	}
	return string(b)
}

// MapFilesPath returns /proc/PID/map_files/START-END, the link through which
// the file behind a mapping can be opened even when it was unlinked. The
// kernel names the entry with lower-case hex without 0x or padding.
func MapFilesPath(pid int, start, end uint64) string {
	b := make([]byte, 0, 64)
	b = append(b, "/proc/"...)
	b = strconv.AppendInt(b, int64(pid), 10)
	b = append(b, "/map_files/"...)
	b = strconv.AppendUint(b, start, 16)
	b = append(b, '-')
	b = strconv.AppendUint(b, end, 16)
	return string(b)
}
