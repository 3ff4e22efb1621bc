package feature

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"ferry/internal/kernel"
	"ferry/internal/procfs"
)

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// parseRelease returns the major and minor version of a uname release such
// as "6.18.44-fc-v769".
func parseRelease(rel string) (major, minor int, ok bool) {
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	digits := strings.IndexFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' })
	if digits >= 0 {
		parts[1] = parts[1][:digits]
	}
	minor, err2 := strconv.Atoi(parts[1])
	return major, minor, err1 == nil && err2 == nil
}

// kernelAtLeast reports whether the running kernel is major.minor or newer.
func kernelAtLeast(major, minor int) bool {
	ma, mi, ok := parseRelease(kernelRelease())
	return ok && (ma > major || ma == major && mi >= minor)
}

// probeMachine reports the page size and the vDSO layout (CRIU 3.17 trips
// over 6.18's [vvar] + [vvar_vclock] + [vdso]; ferry moves all of them).
func probeMachine(ctx context.Context) []Probe {
	ps := os.Getpagesize()
	out := []Probe{{Name: ProbePageSize, Status: Available, Detail: fmt.Sprintf("%d bytes", ps)}}
	vdso := Probe{Name: ProbeVDSO}
	areas, err := specialMappings(os.Getpid())
	switch {
	case err != nil:
		vdso.Status, vdso.Err = Error, err
	case !hasArea(areas, "[vdso]"):
		vdso.Status, vdso.Detail = Missing, "no [vdso] mapping"
	default:
		vdso.Status = Available
		var parts []string
		contiguous := true
		for i, a := range areas {
			parts = append(parts, fmt.Sprintf("%s %d pages", a.name, (a.end-a.start)/uint64(ps)))
			if i > 0 && areas[i-1].end != a.start && a.name != "[vsyscall]" {
				contiguous = false
			}
		}
		vdso.Detail = strings.Join(parts, ", ")
		if contiguous {
			vdso.Detail += " (contiguous: move together with mremap)"
		}
	}
	return append(out, vdso)
}

type mapping struct {
	start, end uint64
	name       string
}

func hasArea(areas []mapping, name string) bool {
	for _, a := range areas {
		if a.name == name {
			return true
		}
	}
	return false
}

// specialMappings returns the [vvar*] and [vdso] mappings of pid, in
// address order ([vsyscall] is fixed and not reported).
func specialMappings(pid int) ([]mapping, error) {
	maps, err := procfs.Maps(pid)
	if err != nil {
		return nil, err
	}
	var out []mapping
	for _, m := range maps {
		if strings.HasPrefix(m.Name, "[vvar") || m.Name == "[vdso]" {
			out = append(out, mapping{start: m.Start, end: m.End, name: m.Name})
		}
	}
	return out, nil
}

// Capability numbers (include/uapi/linux/capability.h) and what lacking
// each one costs ferry.
var capProbes = []struct {
	name  string
	bit   uint
	costs string
}{
	{ProbeCapSysAdmin, unix.CAP_SYS_ADMIN, "no new PID/mount/network namespaces; set_tid only with CAP_CHECKPOINT_RESTORE"},
	{ProbeCapCheckpointRestore, unix.CAP_CHECKPOINT_RESTORE, "set_tid and PR_SET_MM_MAP exe changes need CAP_SYS_ADMIN instead"},
	{ProbeCapSysPtrace, unix.CAP_SYS_PTRACE, "only same-uid targets; userfaultfd limited to user-mode faults"},
	{ProbeCapSysResource, unix.CAP_SYS_RESOURCE, "pipes cannot grow past fs.pipe-max-size, hard rlimits cannot be raised, " +
		"single-field PR_SET_MM_* fail (PR_SET_MM_MAP is unaffected)"},
}

// effectiveCaps returns the calling thread's effective capability set.
func effectiveCaps() (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, os.NewSyscallError("capget", err)
	}
	return uint64(data[0].Effective) | uint64(data[1].Effective)<<32, nil
}

func hasCap(set uint64, bit uint) bool { return set&(1<<bit) != 0 }

// largePipeSize is the pipe size the "large pipes" capability is about.
const largePipeSize = 2 << 20

// probeCapabilities reports ferry's effective capabilities and tries to grow
// a pipe past 1 MiB, which needs fs.pipe-max-size or CAP_SYS_RESOURCE.
func probeCapabilities(ctx context.Context) []Probe {
	var out []Probe
	set, err := effectiveCaps()
	for _, c := range capProbes {
		p := Probe{Name: c.name}
		switch {
		case err != nil:
			p.Status, p.Err = Error, err
		case hasCap(set, c.bit):
			p.Status, p.Detail = Available, "effective"
		default:
			p.Status, p.Detail = Missing, "not effective: "+c.costs
		}
		out = append(out, p)
	}
	return append(out, probeLargePipe())
}

func probeLargePipe() Probe {
	p := Probe{Name: ProbeLargePipes}
	maxSize := "unknown"
	if b, err := os.ReadFile("/proc/sys/fs/pipe-max-size"); err == nil {
		maxSize = strings.TrimSpace(string(b))
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		p.Status, p.Err = Error, os.NewSyscallError("pipe2", err)
		return p
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	got, err := unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, largePipeSize)
	switch {
	case errors.Is(err, unix.EPERM):
		p.Status = Missing
		p.Detail = fmt.Sprintf("F_SETPIPE_SZ(%d) = EPERM: fs.pipe-max-size is %s and CAP_SYS_RESOURCE is not effective",
			largePipeSize, maxSize)
	case errors.Is(err, unix.EBUSY):
		p.Status = Missing
		p.Detail = "F_SETPIPE_SZ = EBUSY: per-user pipe-user-pages limit reached"
	case err != nil:
		p.Status, p.Err = Error, os.NewSyscallError("fcntl(F_SETPIPE_SZ)", err)
	default:
		p.Status = Available
		p.Detail = fmt.Sprintf("grew a pipe to %d bytes (fs.pipe-max-size %s)", got, maxSize)
	}
	return p
}

// probePrctl asks for the size of struct prctl_mm_map, which only kernels
// with CONFIG_CHECKPOINT_RESTORE answer; nothing changes.
func probePrctl(ctx context.Context) []Probe {
	p := Probe{Name: ProbeSetMMMap}
	size, err := prctlMMMapSize()
	switch {
	case errors.Is(err, unix.EINVAL):
		p.Status, p.Detail = Missing, "PR_SET_MM_MAP_SIZE = EINVAL: CONFIG_CHECKPOINT_RESTORE is off"
	case err != nil:
		p.Status, p.Err = Error, err
	case size != kernel.PrctlMMMapSize:
		p.Status = Error
		p.Err = fmt.Errorf("kernel's struct prctl_mm_map is %d bytes, kernel.PrctlMMMap %d", size, kernel.PrctlMMMapSize)
	default:
		p.Status, p.Detail = Available, fmt.Sprintf("PR_SET_MM_MAP_SIZE: struct prctl_mm_map is %d bytes", size)
	}
	return []Probe{p}
}
