package feature

import "context"

// Probe names, for Require and Capability.Needs.
const (
	ProbePageSize = "page size"
	ProbeVDSO     = "vDSO layout"

	ProbePtrace          = "ptrace"
	ProbePidfdOpen       = "pidfd_open"
	ProbePidfdGetfd      = "pidfd_getfd"
	ProbePidfdSendSignal = "pidfd_send_signal"
	ProbeProcessVMReadv  = "process_vm_readv"
	ProbeProcessVMWritev = "process_vm_writev"
	ProbeProcMemWrite    = "/proc/PID/mem write"
	ProbeRseq            = "rseq"
	ProbeRseqConfig      = "PTRACE_GET_RSEQ_CONFIGURATION"
	ProbeRaiseHardRlimit = "raise hard rlimit"

	ProbeClone3SetTID = "clone3 set_tid"
	ProbeNewPID       = "CLONE_NEWPID"
	ProbeNewNS        = "CLONE_NEWNS"
	ProbeNewNet       = "CLONE_NEWNET"
	ProbeNewIPC       = "CLONE_NEWIPC"

	ProbeUserfaultfd    = "userfaultfd"
	ProbeDevUserfaultfd = "/dev/userfaultfd"
	// Probes named after UFFD_FEATURE_* bits are listed in uffdFeatures.
	ProbeUffdWPAsync        = "UFFD_FEATURE_WP_ASYNC"
	ProbeUffdWPUnpopulated  = "UFFD_FEATURE_WP_UNPOPULATED"
	ProbeUffdMissingShmem   = "UFFD_FEATURE_MISSING_SHMEM"
	ProbeUffdMissingHugetlb = "UFFD_FEATURE_MISSING_HUGETLBFS"
	ProbeUffdEventFork      = "UFFD_FEATURE_EVENT_FORK"
	ProbeUffdEventRemap     = "UFFD_FEATURE_EVENT_REMAP"
	ProbeUffdEventRemove    = "UFFD_FEATURE_EVENT_REMOVE"
	ProbeUffdEventUnmap     = "UFFD_FEATURE_EVENT_UNMAP"
	ProbeUffdMissingFaults  = "uffd MISSING faults"
	ProbePagemapScan        = "PAGEMAP_SCAN"
	ProbeUffdWPTracking     = "uffd-wp write tracking"
	ProbeSoftDirty          = "soft-dirty"

	ProbeCapSysAdmin          = "CAP_SYS_ADMIN"
	ProbeCapCheckpointRestore = "CAP_CHECKPOINT_RESTORE"
	ProbeCapSysPtrace         = "CAP_SYS_PTRACE"
	ProbeCapSysResource       = "CAP_SYS_RESOURCE"
	ProbeLargePipes           = "F_SETPIPE_SZ > 1 MiB"

	ProbeSetMMMap        = "PR_SET_MM_MAP"
	ProbeChildSubreaper  = "PR_SET_CHILD_SUBREAPER"
	ProbeTimerRestoreIDs = "PR_TIMER_CREATE_RESTORE_IDS"
)

// Capability names.
const (
	CapCheckpointRestore = "checkpoint/restore"
	CapSamePID           = "same PID on restore"
	CapPrecopy           = "precopy migration (uffd-wp dirty tracking)"
	CapPostcopy          = "postcopy migration (userfaultfd MISSING faults)"
	CapSoftDirty         = "soft-dirty tracking"
	CapPIDNamespace      = "per-job PID namespace"
	CapNetNamespace      = "per-job network namespace"
	CapLargePipes        = "large pipes (>1 MiB)"
	CapRaiseRlimits      = "restore rlimits above the restorer's hard limits"
	CapTimerIDs          = "POSIX timers keep their IDs"
	CapRseq              = "rseq registration restored"
)

// capabilityNeeds lists, in report order, what each capability needs.
var capabilityNeeds = []struct {
	name  string
	needs []string
}{
	{CapCheckpointRestore, []string{ProbePtrace, ProbePidfdOpen, ProbePidfdGetfd,
		ProbeProcessVMReadv, ProbeProcMemWrite, ProbeSetMMMap}},
	// The old copy must be reaped at once for its PID to be free again.
	{CapSamePID, []string{ProbeClone3SetTID, ProbeChildSubreaper}},
	{CapPrecopy, []string{ProbeUserfaultfd, ProbeUffdWPAsync, ProbeUffdWPUnpopulated,
		ProbePagemapScan, ProbeUffdWPTracking}},
	// The userfaultfd is created in the target and pulled out with
	// pidfd_getfd; without the events a fork, mremap, MADV_DONTNEED or
	// munmap during postcopy would be filled with stale or zero pages.
	{CapPostcopy, []string{ProbeUserfaultfd, ProbeUffdMissingFaults, ProbePidfdGetfd,
		ProbeUffdEventFork, ProbeUffdEventRemap, ProbeUffdEventRemove, ProbeUffdEventUnmap}},
	{CapSoftDirty, []string{ProbeSoftDirty}},
	// A job's init gets a PID, mount and IPC namespace of its own.
	{CapPIDNamespace, []string{ProbeNewPID, ProbeNewNS, ProbeNewIPC, ProbeClone3SetTID}},
	{CapNetNamespace, []string{ProbeNewNet}},
	{CapLargePipes, []string{ProbeLargePipes}},
	{CapRaiseRlimits, []string{ProbeRaiseHardRlimit}},
	{CapTimerIDs, []string{ProbeTimerRestoreIDs}},
	{CapRseq, []string{ProbeRseq, ProbeRseqConfig}},
}

// probeGroups run in this order; each returns every probe it owns, with
// Status Error for those it could not finish.
var probeGroups = []func(context.Context) []Probe{
	probeMachine,
	probeCapabilities,
	probeProcess,
	probePrctl,
	probeSelftest,
	probeNamespaces,
	probeUserfaultfd,
}

func deriveCapabilities(probes []Probe) []Capability {
	status := make(map[string]Status, len(probes))
	for _, p := range probes {
		status[p.Name] = p.Status
	}
	caps := make([]Capability, 0, len(capabilityNeeds))
	for _, c := range capabilityNeeds {
		cp := Capability{Name: c.name, Needs: append([]string(nil), c.needs...)}
		for _, n := range c.needs {
			if status[n] != Available {
				cp.Missing = append(cp.Missing, n)
			}
		}
		cp.Available = len(cp.Missing) == 0
		caps = append(caps, cp)
	}
	return caps
}
