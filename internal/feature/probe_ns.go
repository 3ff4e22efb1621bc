package feature

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// probeNamespaces starts helpers in new PID, mount and network namespaces,
// and one that, as PID 1 of a new PID namespace, forks with clone3 set_tid.
// The namespaces die with the helpers.
func probeNamespaces(ctx context.Context) []Probe {
	res := newResults(ProbeClone3SetTID, ProbeNewPID, ProbeNewNS, ProbeNewNet, ProbeNewIPC)

	caps, capErr := effectiveCaps()
	capNote := "caller's capabilities unknown"
	if capErr == nil {
		capNote = fmt.Sprintf("caller has CAP_SYS_ADMIN=%s CAP_CHECKPOINT_RESTORE=%s",
			yesNo(hasCap(caps, unix.CAP_SYS_ADMIN)), yesNo(hasCap(caps, unix.CAP_CHECKPOINT_RESTORE)))
	}

	selfNet, _ := os.Readlink("/proc/self/ns/net")
	selfMnt, _ := os.Readlink("/proc/self/ns/mnt")
	selfIPC, _ := os.Readlink("/proc/self/ns/ipc")
	for _, ns := range []struct {
		name  string
		flag  uintptr
		check func(f map[string]string) error
	}{
		{ProbeNewPID, unix.CLONE_NEWPID, func(f map[string]string) error {
			if f["pid"] != "1" {
				return fmt.Errorf("helper is PID %s in its new namespace, want 1", f["pid"])
			}
			return nil
		}},
		{ProbeNewNS, unix.CLONE_NEWNS, func(f map[string]string) error {
			if f["mnt"] == "" || f["mnt"] == selfMnt {
				return fmt.Errorf("helper's mount namespace %q is not new", f["mnt"])
			}
			return nil
		}},
		{ProbeNewNet, unix.CLONE_NEWNET, func(f map[string]string) error {
			if f["net"] == "" || f["net"] == selfNet {
				return fmt.Errorf("helper's network namespace %q is not new", f["net"])
			}
			return nil
		}},
		{ProbeNewIPC, unix.CLONE_NEWIPC, func(f map[string]string) error {
			if f["ipc"] == "" || f["ipc"] == selfIPC {
				return fmt.Errorf("helper's IPC namespace %q is not new", f["ipc"])
			}
			return nil
		}},
	} {
		f, err := runHelperOnce(ctx, "ns", ns.flag)
		switch {
		case errors.Is(err, unix.EPERM):
			res.missing(ns.name, "clone refused: needs CAP_SYS_ADMIN", err)
		case errors.Is(err, unix.EINVAL):
			res.missing(ns.name, "clone = EINVAL: namespace type not configured", err)
		case err != nil:
			res.failed(ns.name, err)
		default:
			if err := ns.check(f); err != nil {
				res.failed(ns.name, err)
			} else {
				res.available(ns.name, "started a child in a new namespace")
			}
		}
	}

	f, err := runHelperOnce(ctx, "clone3", unix.CLONE_NEWPID)
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			res.missing(ProbeClone3SetTID, "cannot create the PID namespace to test in; "+capNote, err)
		} else {
			res.failed(ProbeClone3SetTID, err)
		}
		return res.done(nil)
	}
	v := f["clone3"]
	if cerr, isErr := fieldErrno(v); isErr {
		switch {
		case errors.Is(cerr, unix.ENOSYS):
			res.missing(ProbeClone3SetTID, "clone3 = ENOSYS (kernel < 5.3)", nil)
		case errors.Is(cerr, unix.E2BIG), errors.Is(cerr, unix.EINVAL):
			res.missing(ProbeClone3SetTID, "clone3 rejects set_tid (kernel < 5.5)", cerr)
		case errors.Is(cerr, unix.EPERM):
			res.missing(ProbeClone3SetTID, "set_tid refused; "+capNote, nil)
		default:
			res.failed(ProbeClone3SetTID, fmt.Errorf("clone3: %w", cerr))
		}
		return res.done(nil)
	}
	if v != "ok" {
		res.failed(ProbeClone3SetTID, fmt.Errorf("clone3 helper: %s", v))
		return res.done(nil)
	}
	if got, _ := strconv.Atoi(f["pid"]); got != helperClone3Tid {
		res.failed(ProbeClone3SetTID, fmt.Errorf("clone3(set_tid=[%d]) made PID %s", helperClone3Tid, f["pid"]))
		return res.done(nil)
	}
	res.available(ProbeClone3SetTID, fmt.Sprintf("clone3(set_tid=[%d]) in a new PID namespace got PID %d; %s",
		helperClone3Tid, helperClone3Tid, capNote))
	return res.done(nil)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
