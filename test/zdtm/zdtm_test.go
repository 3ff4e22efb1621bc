package zdtm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/testutil"
)

// testCase is one program of the corpus.
type testCase struct {
	name    string   // subtest and binary name
	src     string   // source in testdata/: *.c built with gcc, *.py run by python3
	dynamic bool     // link dynamically (default: static)
	args    []string // command-line arguments
	// needsTree: the program forks and the checkpoint must take the whole
	// process tree (and reparenting to the harness must be handled).
	needsTree bool
	// stopBeforeDump: the harness SIGSTOPs the program before the dump,
	// checks it is restored stopped, and SIGCONTs it before go.
	stopBeforeDump bool
	// delayBeforeDump: wait this long between ready and dump (for programs
	// that measure how long a syscall in progress took).
	delayBeforeDump time.Duration
	// noCR: not run through the generic checkpoint/restore (the reason);
	// still run by TestPlain.
	noCR string
	// noChain, noLeaveRunning: why the case is not also run through a
	// dump → restore → dump → restore chain, or dump --leave-running
	// (every case is, unless it says why not).
	noChain, noLeaveRunning string
	// alone: why the case's checkpoints must not run beside others'
	// (it changes what ferry sees of the machine for them).
	alone string
}

var layoutArgs = []string{"alpha", "beta gamma", "δέλτα", "", "--flag=x"}

// cases is the corpus. Statically linked unless dynamic: static binaries
// keep the address-space layout small and predictable; the dynamic ones are
// there on purpose (ld.so, libc.so mappings, dynamic TLS).
var cases = []testCase{
	// memory
	{name: "mem_anon", src: "mem_anon.c"},
	{name: "mem_file_private", src: "mem_file_private.c"},
	{name: "mem_file_shared", src: "mem_file_shared.c"},
	{name: "mem_shared_anon", src: "mem_shared_anon.c"},
	{name: "mem_shared_anon_fork", src: "mem_shared_anon_fork.c", needsTree: true},
	{name: "mem_memfd", src: "mem_memfd.c"},
	{name: "mem_heap", src: "mem_heap.c"},
	{name: "mem_stack", src: "mem_stack.c"},
	{name: "mem_layout", src: "mem_layout.c", args: layoutArgs},
	{name: "mem_layout_dyn", src: "mem_layout.c", dynamic: true, args: layoutArgs},
	{name: "mem_prot_none", src: "mem_prot_none.c"},
	{name: "mem_readonly", src: "mem_readonly.c"},
	{name: "mem_aio", src: "mem_aio.c"},
	{name: "mem_sysv_shm", src: "mem_sysv_shm.c", needsTree: true},
	// issue 7
	{name: "mem_madvise", src: "mem_madvise.c"},
	{name: "mem_file_offset", src: "mem_file_offset.c"},
	{name: "mem_file_access", src: "mem_file_access.c"},
	{name: "mem_cow_fork", src: "mem_cow_fork.c", needsTree: true},
	{name: "mem_cow_fork_dyn", src: "mem_cow_fork.c", needsTree: true, dynamic: true},
	{name: "mem_memfd_private2", src: "mem_memfd_private2.c"},
	// threads
	{name: "thread_tls", src: "thread_tls.c"},
	{name: "thread_tls_dyn", src: "thread_tls.c", dynamic: true},
	{name: "thread_fpu", src: "thread_fpu.c"},
	{name: "thread_rseq", src: "thread_rseq.c"},
	{name: "thread_rseq_dyn", src: "thread_rseq.c", dynamic: true},
	{name: "thread_robust", src: "thread_robust.c"},
	{name: "thread_clear_tid", src: "thread_clear_tid.c"},
	{name: "thread_names", src: "thread_names.c"},
	{name: "thread_sigmask", src: "thread_sigmask.c"},
	{name: "thread_sigpending", src: "thread_sigpending.c"},
	// signals
	{name: "sig_handlers", src: "sig_handlers.c"},
	{name: "sig_altstack", src: "sig_altstack.c"},
	{name: "sig_pending", src: "sig_pending.c"},
	{name: "sig_stopped", src: "sig_stopped.c", stopBeforeDump: true},
	{name: "sig_stopped_threads", src: "sig_stopped.c", args: []string{"threads"}, stopBeforeDump: true},
	// syscalls in progress
	{name: "sys_pipe_read", src: "sys_pipe_read.c"},
	{name: "sys_nanosleep", src: "sys_nanosleep.c", delayBeforeDump: 1500 * time.Millisecond},
	{name: "sys_poll", src: "sys_poll.c"},
	{name: "sys_epoll_wait", src: "sys_epoll_wait.c"},
	{name: "sys_wait4", src: "sys_wait4.c", needsTree: true},
	{name: "sys_futex", src: "sys_futex.c"},
	// timers
	{name: "timer_itimer", src: "timer_itimer.c"},
	{name: "timer_posix", src: "timer_posix.c"},
	// attributes
	{name: "attr_cwd", src: "attr_cwd.c", dynamic: true},
	{name: "attr_umask", src: "attr_umask.c", dynamic: true},
	{name: "attr_rlimits", src: "attr_rlimits.c", dynamic: true},
	{name: "attr_creds", src: "attr_creds.c", dynamic: true},
	{name: "attr_comm", src: "attr_comm.c", dynamic: true},
	{name: "attr_prctl", src: "attr_prctl.c", dynamic: true},
	{name: "attr_sched", src: "attr_sched.c", dynamic: true},
	{name: "attr_sched_rt", src: "attr_sched_rt.c", needsTree: true},
	{name: "attr_caps", src: "attr_caps.c"},
	{name: "attr_oom", src: "attr_oom.c", needsTree: true},
	{name: "attr_pdeathsig", src: "attr_pdeathsig.c", needsTree: true},
	{name: "sys_membarrier", src: "sys_membarrier.c"},
	{name: "sys_seccomp", src: "sys_seccomp.c", needsTree: true},
	{name: "sys_seccomp_strict", src: "sys_seccomp_strict.c"},
	{name: "sys_seccomp_notif", src: "sys_seccomp_notif.c",
		noCR: "ferry must refuse it: see TestDumpRefusesUnsupported"},
	{name: "sig_trap", src: "sig_trap.c"},
	{name: "sig_trap_ign", src: "sig_trap_ign.c"},
	{name: "fd_shared_table", src: "fd_shared_table.c", needsTree: true},
	{name: "attr_shared_fs", src: "attr_shared_fs.c", needsTree: true},
	{name: "attr_dumpable", src: "attr_dumpable.c", needsTree: true},
	{name: "tree_zombie_pgid", src: "tree_zombie_pgid.c", needsTree: true},
	{name: "tree_session_order", src: "tree_session_order.c", needsTree: true},
	// issue 7
	{name: "attr_cwd_deleted", src: "attr_cwd_deleted.c", dynamic: true},
	// file descriptors
	{name: "fd_file", src: "fd_file.c", dynamic: true},
	{name: "fd_dir", src: "fd_dir.c", dynamic: true},
	{name: "fd_unlinked", src: "fd_unlinked.c", dynamic: true},
	{name: "fd_devnull", src: "fd_devnull.c", dynamic: true},
	{name: "fd_pipe", src: "fd_pipe.c", dynamic: true},
	{name: "fd_fifo", src: "fd_fifo.c", dynamic: true},
	{name: "fd_eventfd", src: "fd_eventfd.c", dynamic: true},
	{name: "fd_timerfd", src: "fd_timerfd.c", dynamic: true},
	{name: "fd_signalfd", src: "fd_signalfd.c", dynamic: true},
	{name: "fd_epoll", src: "fd_epoll.c", dynamic: true},
	{name: "fd_socketpair", src: "fd_socketpair.c", dynamic: true},
	{name: "fd_locks", src: "fd_locks.c", dynamic: true},
	{name: "fd_locks_tree", src: "fd_locks_tree.c", needsTree: true},
	{name: "fd_file_times", src: "fd_file_times.c"},
	{name: "fd_unlinked_shape", src: "fd_unlinked_shape.c"},
	{name: "fd_file_times_paths", src: "fd_file_times_paths.c", dynamic: true},
	{name: "fd_unlinked_owner", src: "fd_unlinked_owner.c", dynamic: true},
	{name: "fd_unlinked_sparse", src: "fd_unlinked_sparse.c", dynamic: true},
	{name: "fd_async_child", src: "fd_async_child.c", dynamic: true, needsTree: true},
	{name: "fd_locks_owners", src: "fd_locks_owners.c", dynamic: true, needsTree: true},
	{name: "fd_async", src: "fd_async.c"},
	{name: "fd_pidfd", src: "fd_pidfd.c", needsTree: true},
	{name: "fd_epoll_closed", src: "fd_epoll_closed.c"},
	{name: "fd_mqueue", src: "fd_mqueue.c", dynamic: true,
		noCR: "ferry must refuse it: see TestDumpRefusesUnsupported"},
	{name: "fd_deleted_blkdev", src: "fd_deleted_blkdev.c", dynamic: true},
	{name: "fd_pidfd_foreign", src: "fd_pidfd_foreign.c",
		noCR: "ferry must refuse it: see TestDumpRefusesUnsupported"},
	{name: "fd_inotify", src: "fd_inotify.c"},
	{name: "fd_inotify_queued", src: "fd_inotify_queued.c",
		noCR: "ferry must refuse it: see TestDumpRefusesUnsupported"},
	{name: "fd_fanotify", src: "fd_fanotify.c"},
	{name: "fd_tcp_listen", src: "fd_tcp_listen.c", dynamic: true,
		noCR: "ferry must refuse it: see TestDumpRefusesUnsupported"},
	// issue 7
	{name: "fd_deleted_dir", src: "fd_deleted_dir.c", dynamic: true},
	{name: "fd_deleted_nodes", src: "fd_deleted_nodes.c", dynamic: true},
	{name: "fd_unix_bound_dgram", src: "fd_unix_bound_dgram.c"},
	{name: "fd_unix_listen", src: "fd_unix_listen.c"},
	{name: "fd_unix_abstract", src: "fd_unix_abstract.c"},
	{name: "fd_unix_listen_pending", src: "fd_unix_listen_pending.c"},
	{name: "fd_unix_scm_stream", src: "fd_unix_scm_stream.c"},
	{name: "fd_unix_scm_dgram", src: "fd_unix_scm_dgram.c"},
	{name: "fd_unix_accepted", src: "fd_unix_accepted.c"},
	{name: "fd_unix_accepted_gone", src: "fd_unix_accepted_gone.c"},
	{name: "fd_unix_accepted_abstract", src: "fd_unix_accepted_abstract.c"},
	{name: "fd_unix_dgram_connected", src: "fd_unix_dgram_connected.c"},
	{name: "fd_unix_relative", src: "fd_unix_relative.c"},
	{name: "fd_unix_ghost", src: "fd_unix_ghost.c"},
	{name: "fd_unix_peercred", src: "fd_unix_peercred.c"},
	{name: "fd_unix_listen_pending_data", src: "fd_unix_listen_pending_data.c",
		noCR: "ferry must refuse it: see TestDumpRefusesUnsupported"},
	// modelled on zdtm's unix-socket and SCM tests
	{name: "fd_unix_zd_shut", src: "fd_unix_zd_shut.c"},
	{name: "fd_unix_zd_semi", src: "fd_unix_zd_semi.c"},
	{name: "fd_unix_zd_shrd", src: "fd_unix_zd_shrd.c"},
	{name: "fd_unix_zd_perm", src: "fd_unix_zd_perm.c"},
	{name: "fd_unix_zd_self", src: "fd_unix_zd_self.c"},
	{name: "fd_unix_zd_unconn", src: "fd_unix_zd_unconn.c"},
	{name: "fd_unix_zd_ghtree", src: "fd_unix_zd_ghtree.c", needsTree: true},
	{name: "fd_unix_zd_deltree", src: "fd_unix_zd_deltree.c", needsTree: true},
	{name: "fd_unix_zd_dirs", src: "fd_unix_zd_ghosts.c", args: []string{"dirs"}},
	{name: "fd_unix_zd_ghosts", src: "fd_unix_zd_ghosts.c"},
	{name: "fd_unix_zd_reuse", src: "fd_unix_zd_reuse.c"},
	{name: "fd_unix_zd_repl", src: "fd_unix_zd_repl.c"},
	{name: "fd_unix_zd_lclosed", src: "fd_unix_zd_lclosed.c",
		noCR: "ferry must refuse it: see TestDumpRefusesUnsupported"},
	{name: "fd_unix_zd_lseq", src: "fd_unix_zd_lseq.c"},
	{name: "fd_unix_zd_scmkeep", src: "fd_unix_zd_scmkeep.c"},
	{name: "fd_unix_zd_scmep", src: "fd_unix_zd_scmep.c"},
	{name: "fd_unix_zd_scmloop", src: "fd_unix_zd_scmloop.c"},
	{name: "fd_unix_zd_scmcred", src: "fd_unix_zd_scmcred.c"},
	{name: "fd_unix_zd_rcred", src: "fd_unix_zd_scmcred.c", args: []string{"rcred"}},
	{name: "fd_unix_zd_peercred", src: "fd_unix_zd_peercred.c"},
	// modelled on other zdtm tests (survey)
	{name: "zd_link_hard", src: "zd_link_hard.c"},
	{name: "zd_opath", src: "zd_opath.c"},
	{name: "zd_opath_gone", src: "zd_opath.c", args: []string{"gone"}},
	{name: "zd_fifo_wronly", src: "zd_fifo_wronly.c"},
	{name: "zd_timerfd_ticks", src: "zd_timerfd_ticks.c"},
	{name: "zd_posix_overrun", src: "zd_posix_overrun.c"},
	{name: "zd_dead_thread_timer", src: "zd_dead_thread_timer.c"},
	{name: "zd_sigsuspend", src: "zd_sigsuspend.c"},
	{name: "zd_growsdown", src: "zd_growsdown.c"},
	{name: "zd_zombie_sid", src: "zd_zombie_sid.c", needsTree: true},
	{name: "zd_leader_exit", src: "zd_leader_exit.c",
		noCR: "ferry must refuse it: see TestDumpRefusesUnsupported"},
	{name: "zd_vfork", src: "zd_vfork.c", needsTree: true,
		noCR: "ferry must refuse it: see TestDumpRefusesUnsupported"},
	{name: "zd_mlock_setuid", src: "zd_mlock_setuid.c"},
	{name: "zd_thread_uids", src: "zd_thread_uids.c"},
	{name: "zd_chroot", src: "zd_chroot.c"},
	{name: "zd_flock_dup", src: "zd_flock_dup.c", needsTree: true},
	{name: "zd_lease", src: "zd_lease.c"},
	// modelled on other zdtm tests (second survey)
	{name: "zs_sock_opts", src: "zs_sock_opts.c"},
	{name: "zs_unlink_mmap", src: "zs_unlink_mmap.c"},
	{name: "zs_proc_fds", src: "zs_proc_fds.c", needsTree: true},
	{name: "zs_epoll_nested", src: "zs_epoll_nested.c"},
	{name: "zs_stopped_tree", src: "zs_stopped_tree.c", needsTree: true},
	{name: "zs_pty_hup", src: "zs_pty_hup.c",
		noCR: "ferry must refuse it: see TestDumpRefusesUnsupported"},
	{name: "zs_shared_desc", src: "zs_shared_desc.c", needsTree: true},
	{name: "zs_memfd_seals", src: "zs_memfd_seals.c"},
	{name: "zs_inotify_storm", src: "zs_inotify_storm.c",
		noCR: "ferry must refuse it: see TestDumpRefusesUnsupported"},
	{name: "zs_inotify_dirs", src: "zs_inotify_storm.c", args: []string{"noghost"}},
	{name: "zs_mremap_file", src: "zs_mremap_file.c"},
	{name: "zs_cmdline_mm", src: "zs_cmdline_mm.c"},
	{name: "zs_pidfd_dead", src: "zs_pidfd_dead.c", needsTree: true,
		noCR: "ferry must refuse it: see TestDumpRefusesUnsupported"},
	{name: "zs_pidfd_zombie", src: "zs_pidfd_dead.c", needsTree: true, args: []string{"zombie"}},
	{name: "zs_thread_churn", src: "zs_thread_churn.c"},
	// modelled on other zdtm tests (third survey)
	{name: "zt_shm_unaligned", src: "zt_shm_unaligned.c"},
	{name: "zt_fown_pgrp", src: "zt_fown_pgrp.c"},
	{name: "zt_sigchld_pending", src: "zt_sigchld_pending.c", needsTree: true},
	{name: "zt_futex_pi", src: "zt_futex_pi.c"},
	{name: "zt_threads_many", src: "zt_threads_many.c"},
	{name: "zt_mmap_sparse", src: "zt_mmap_sparse.c"},
	{name: "zt_sem_undo", src: "zt_sem_undo.c", needsTree: true,
		alone: "its semaphore set, operated on while others run, makes ferry refuse to dump their multithreaded programs with --leave-running (it cannot tell they hold no adjustments on it)"},
	{name: "zt_fanotify_fid", src: "zt_fanotify_fid.c"},
	{name: "zt_rtsig_flood", src: "zt_rtsig_flood.c"},
	{name: "zt_prctl_thread", src: "zt_prctl_thread.c"},
	{name: "zt_mdwe", src: "zt_mdwe.c"},
	{name: "zt_cputimers", src: "zt_cputimers.c"},
	{name: "zt_pidfd_thread", src: "zt_pidfd_thread.c"},
	{name: "zt_file_flags", src: "zt_file_flags.c"},
	{name: "zt_cwd_long", src: "zt_cwd_long.c"},
	// process trees
	{name: "tree_pids", src: "tree_pids.c", needsTree: true},
	{name: "tree_zombie", src: "tree_zombie.c", needsTree: true},
	// real programs
	{name: "real_counters", src: "real_counters.c", dynamic: true},
	{name: "real_python", src: "real_python.py"},
}

// leaveStoppedCases also run through dump --leave-stopped, kill, restore
// (every case runs through a chain and --leave-running).
var leaveStoppedCases = []string{"mem_anon", "fd_pipe"}

const (
	readyTimeout = 20 * time.Second // program start to "R"
	exitTimeout  = 30 * time.Second // go to exit
	goneTimeout  = 10 * time.Second // dump to the original's death
	ferryTimeout = 20 * time.Second // one ferry command (they take milliseconds here)
	parallelism  = 2                // cases at once (2-core machines)
)

var (
	skipReason string // set when the corpus cannot run at all here
	buildErr   error  // gcc failed: every case fails with this
	ferryBin   string
	ferryErr   error // go build of ferry failed: checkpoint tests fail with this
	binDir     string
	workRoot   string
	python     string // real python3 interpreter, "" if none
	sem        = make(chan struct{}, parallelism)
	// aloneMu keeps the checkpoints of cases marked alone apart from all
	// others (they take it for writing, the others for reading).
	aloneMu sync.RWMutex
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		skipReason = "zdtm needs root (ptrace, clone3 with set_tid, setresuid, subreaper reparenting)"
		return m.Run()
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		skipReason = "zdtm needs gcc to build its programs: " + err.Error()
		return m.Run()
	}
	root, err := os.MkdirTemp("", "zdtm-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "zdtm:", err)
		return 1
	}
	// Programs that drop root (attr_creds) must still reach their go file.
	if err := os.Chmod(root, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "zdtm:", err)
		return 1
	}
	workRoot = root
	if os.Getenv("ZDTM_KEEP") != "" {
		fmt.Fprintln(os.Stderr, "zdtm: keeping work directory", root)
	} else {
		defer os.RemoveAll(root)
	}
	// Restored processes are started by ferry, which exits: make them ours.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		skipReason = "PR_SET_CHILD_SUBREAPER: " + err.Error()
		return m.Run()
	}
	binDir = filepath.Join(root, "bin")
	if err := os.Mkdir(binDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "zdtm:", err)
		return 1
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); ferryBin, ferryErr = testutil.BuildFerry(root) }()
	go func() { defer wg.Done(); buildErr = buildPrograms() }()
	wg.Wait()
	python = findPython()
	return m.Run()
}

// buildPrograms compiles every C case, two at a time.
func buildPrograms() error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		lim  = make(chan struct{}, parallelism)
	)
	for _, tc := range cases {
		if !strings.HasSuffix(tc.src, ".c") || skipped(tc.name) {
			continue
		}
		wg.Add(1)
		lim <- struct{}{}
		go func() {
			defer func() { <-lim; wg.Done() }()
			flags := []string{"-O1", "-g", "-pthread", "-Wall", "-Werror"}
			if !tc.dynamic {
				flags = append(flags, "-static")
			}
			if err := testutil.CompileC(filepath.Join(binDir, tc.name), filepath.Join("testdata", tc.src), flags); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// findPython returns the real python3 executable (not a pyenv shim), or "".
func findPython() string {
	p, err := exec.LookPath("python3")
	if err != nil {
		return ""
	}
	out, err := exec.Command(p, "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		return ""
	}
	if real := strings.TrimSpace(string(out)); real != "" {
		return real
	}
	return p
}

// command returns the program and arguments of a case.
func (tc testCase) command() (string, []string, error) {
	if strings.HasSuffix(tc.src, ".py") {
		if python == "" {
			return "", nil, errNoPython
		}
		src, err := filepath.Abs(filepath.Join("testdata", tc.src))
		if err != nil {
			return "", nil, err
		}
		return python, append([]string{src}, tc.args...), nil
	}
	return filepath.Join(binDir, tc.name), tc.args, nil
}

var errNoPython = errors.New("python3 not found")

// skipped reports whether a case is left out by ZDTM_SKIP (names to skip)
// or ZDTM_ONLY (the only names to build and run).
func skipped(name string) bool {
	if inList(os.Getenv("ZDTM_SKIP"), name) {
		return true
	}
	only := os.Getenv("ZDTM_ONLY")
	return only != "" && !inList(only, name)
}

func inList(list, name string) bool {
	for _, s := range strings.Split(list, ",") {
		if strings.TrimSpace(s) == name {
			return true
		}
	}
	return false
}

// prepare is the common start of every test: skip or fail for the
// environment, then take a parallelism slot.
func prepare(t *testing.T, needFerry bool) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	if buildErr != nil {
		t.Fatalf("building the programs failed:\n%v", buildErr)
	}
	if needFerry && ferryErr != nil {
		t.Fatalf("building ferry failed:\n%v", ferryErr)
	}
	t.Parallel()
	sem <- struct{}{}
	t.Cleanup(func() { <-sem })
}

func findCase(t *testing.T, name string) testCase {
	t.Helper()
	for _, tc := range cases {
		if tc.name == name {
			return tc
		}
	}
	t.Fatalf("no case %q", name)
	return testCase{}
}

// TestPlain runs every program without a checkpoint: ready, go, PASS.
// It validates the programs themselves.
func TestPlain(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if skipped(tc.name) {
				t.Skip("in ZDTM_SKIP")
			}
			prepare(t, false)
			r := newRun(t, tc)
			r.start()
			if tc.stopBeforeDump {
				r.stop()
				r.cont()
			}
			r.goAndCheck()
		})
	}
}

type mode int

const (
	modeRestore      mode = iota // dump (kills) -> restore
	modeChain                    // dump -> restore -> dump -> restore
	modeLeaveRunning             // dump --leave-running: the original goes on
	modeLeaveStopped             // dump --leave-stopped, kill the original, restore
)

// TestCheckpointRestore runs every program through ferry: start, wait
// for ready, dump, restore with the same pid, go, PASS. Then the chain,
// --leave-running and --leave-stopped scenarios for a few programs.
func TestCheckpointRestore(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { checkpointCase(t, tc, modeRestore) })
	}
	for _, tc := range cases {
		t.Run("chain-"+tc.name, func(t *testing.T) {
			if tc.noChain != "" {
				t.Skip(tc.noChain)
			}
			checkpointCase(t, tc, modeChain)
		})
	}
	for _, tc := range cases {
		t.Run("leave-running-"+tc.name, func(t *testing.T) {
			if tc.noLeaveRunning != "" {
				t.Skip(tc.noLeaveRunning)
			}
			checkpointCase(t, tc, modeLeaveRunning)
		})
	}
	for _, name := range leaveStoppedCases {
		t.Run("leave-stopped-"+name, func(t *testing.T) { checkpointCase(t, findCase(t, name), modeLeaveStopped) })
	}
}

func checkpointCase(t *testing.T, tc testCase, m mode) {
	if tc.noCR != "" {
		t.Skip(tc.noCR)
	}
	if skipped(tc.name) {
		t.Skip("in ZDTM_SKIP")
	}
	if tc.needsTree && os.Getenv("ZDTM_NO_TREE") != "" {
		t.Skip("needs process-tree checkpointing (ZDTM_NO_TREE set)")
	}
	prepare(t, true)
	if tc.alone != "" {
		aloneMu.Lock()
		defer aloneMu.Unlock()
	} else {
		aloneMu.RLock()
		defer aloneMu.RUnlock()
	}
	r := newRun(t, tc)
	r.start()
	if tc.stopBeforeDump {
		r.stop()
	}
	if tc.delayBeforeDump > 0 {
		time.Sleep(tc.delayBeforeDump) // part of what the program measures, not synchronisation
	}
	switch m {
	case modeRestore:
		r.dumpKill("img")
		r.restore("img")
	case modeChain:
		r.dumpKill("img1")
		r.restore("img1")
		r.dumpKill("img2")
		r.restore("img2")
	case modeLeaveRunning:
		r.dump("img", "--leave-running")
		r.checkAlive("after dump --leave-running", tc.stopBeforeDump)
	case modeLeaveStopped:
		r.dump("img", "--leave-stopped")
		r.checkAlive("after dump --leave-stopped", true)
		r.kill()
		r.restore("img")
	}
	if tc.stopBeforeDump {
		r.cont()
	}
	r.goAndCheck()
}

// run is one program's life in one test: its incarnations, its files and
// the ferry commands run on it (for failure reports).
type run struct {
	t       *testing.T
	tc      testCase
	base    string // per-test directory: images, ferry logs
	dir     string // the program's cwd
	outPath string // the program's stdout+stderr
	goPath  string
	log     strings.Builder // ferry commands and their output
	nferry  int

	pid   int
	cmd   *exec.Cmd // while the current incarnation is our exec child
	pidfd int       // current incarnation, -1 if none
	tree  []member  // descendants of the current incarnation (needsTree)
	// lastTree is the tree (pids and parents) of the previous incarnation,
	// which a restore must bring back.
	lastTree []member
}

type member struct {
	pid, ppid int
	pidfd     int
}

func newRun(t *testing.T, tc testCase) *run {
	t.Helper()
	// Unique per run: with -count=N the same test must not find the last
	// run's go file or image.
	base, err := os.MkdirTemp(workRoot, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())+"-")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "cwd")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{base, dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r := &run{t: t, tc: tc, base: base, dir: dir, outPath: filepath.Join(base, "output"),
		goPath: filepath.Join(dir, "zdtm.go"), pidfd: -1}
	t.Cleanup(r.cleanup)
	return r
}

// fatalf stops the test with the program's output and the ferry log.
func (r *run) fatalf(format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf("%s: %s%s", r.tc.name, fmt.Sprintf(format, args...), r.report())
}

func (r *run) report() string {
	var b strings.Builder
	out, err := os.ReadFile(r.outPath)
	switch {
	case err != nil:
		fmt.Fprintf(&b, "\n--- program output: %v", err)
	case len(out) == 0:
		b.WriteString("\n--- program output: (empty)")
	default:
		fmt.Fprintf(&b, "\n--- program output:\n%s", strings.TrimRight(string(out), "\n"))
	}
	if r.log.Len() > 0 {
		fmt.Fprintf(&b, "\n--- ferry:\n%s", strings.TrimRight(r.log.String(), "\n"))
	}
	return b.String()
}

// start launches the program with the ready pipe on fd 3 and waits for
// "R" followed by EOF (every copy of fd 3 closed).
func (r *run) start() {
	r.t.Helper()
	path, args, err := r.tc.command()
	if errors.Is(err, errNoPython) {
		r.t.Skip("python3 not found: skipping the CPython case")
	}
	if err != nil {
		r.t.Fatal(err)
	}
	out, err := os.OpenFile(r.outPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		r.t.Fatal(err)
	}
	defer out.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		r.t.Fatal(err)
	}
	defer null.Close()
	rd, wr, err := os.Pipe()
	if err != nil {
		r.t.Fatal(err)
	}
	defer rd.Close()

	cmd := exec.Command(path, args...)
	cmd.Dir = r.dir
	cmd.Stdin = null
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.ExtraFiles = []*os.File{wr} // fd 3
	cmd.Env = append(os.Environ(), "ZDTM_GO="+r.goPath)
	err = cmd.Start()
	wr.Close()
	if err != nil {
		r.t.Fatalf("start %s: %v", path, err)
	}
	r.cmd = cmd
	r.pid = cmd.Process.Pid
	if r.pidfd, err = unix.PidfdOpen(r.pid, 0); err != nil {
		r.fatalf("pidfd_open(%d): %v", r.pid, err)
	}

	if err := rd.SetReadDeadline(time.Now().Add(readyTimeout)); err != nil {
		r.t.Fatal(err)
	}
	got, err := io.ReadAll(rd)
	if err != nil {
		r.fatalf("waiting for ready (got %q): %v", got, err)
	}
	if string(got) != "R" {
		r.fatalf("ready pipe gave %q, want \"R\" then EOF", got)
	}
	if r.tc.needsTree {
		r.tree = r.descendants()
	}
}

// stop sends SIGSTOP and waits until the program is in group stop.
func (r *run) stop() {
	r.t.Helper()
	if err := unix.PidfdSendSignal(r.pidfd, unix.SIGSTOP, nil, 0); err != nil {
		r.fatalf("SIGSTOP: %v", err)
	}
	if st := r.waitState(func(s byte) bool { return s == 'T' }, 5*time.Second); st != 'T' {
		r.fatalf("state %q after SIGSTOP, want 'T'", st)
	}
}

func (r *run) cont() {
	r.t.Helper()
	if err := unix.PidfdSendSignal(r.pidfd, unix.SIGCONT, nil, 0); err != nil {
		r.fatalf("SIGCONT: %v", err)
	}
}

// waitState polls /proc/PID/stat until ok(state) or the timeout; it
// returns the last state seen (0 if the process is gone).
func (r *run) waitState(ok func(byte) bool, timeout time.Duration) byte {
	deadline := time.Now().Add(timeout)
	for {
		st, _ := procState(r.pid)
		if ok(st) || time.Now().After(deadline) {
			return st
		}
		time.Sleep(time.Millisecond)
	}
}

// goAndCheck creates the go file, waits for the program to exit, reaps
// it (and its tree), and requires PASS as the last line of its output.
func (r *run) goAndCheck() {
	r.t.Helper()
	if err := os.WriteFile(r.goPath, nil, 0o644); err != nil {
		r.t.Fatal(err)
	}
	if !waitGone(r.pidfd, exitTimeout) {
		r.fatalf("pid %d still running %v after go", r.pid, exitTimeout)
	}
	status := r.reapCurrent()
	r.reapTree(true)
	out, err := os.ReadFile(r.outPath)
	if err != nil {
		r.t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if last := lines[len(lines)-1]; last != "PASS" {
		r.fatalf("last line %q, want PASS (exit: %s)", last, status)
	}
	if status != "exit status 0" && status != statusNotOurs && status != statusReapedByOther {
		r.fatalf("printed PASS but ended with %s", status)
	}
}

// reapCurrent reaps the exited current incarnation and describes its end.
func (r *run) reapCurrent() string {
	defer r.closePidfd()
	if r.cmd != nil {
		err := r.cmd.Wait()
		r.cmd = nil
		if err == nil {
			return "exit status 0"
		}
		return err.Error()
	}
	return reapPid(r.pid)
}

func (r *run) closePidfd() {
	if r.pidfd >= 0 {
		unix.Close(r.pidfd)
		r.pidfd = -1
	}
}

// Ends of a process we could not wait for ourselves.
const (
	statusNotOurs       = "unknown (not our child)"
	statusReapedByOther = "unknown (reaped by its parent)"
)

// reapPid reaps an exited process adopted through the subreaper. It
// tolerates a process that is not (or not yet) ours: its parent may still
// be on its way out, or may have reaped it already.
func reapPid(pid int) string {
	var ws unix.WaitStatus
	deadline := time.Now().Add(time.Second)
	for {
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG|unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err == nil && got == pid {
			switch {
			case ws.Exited():
				return fmt.Sprintf("exit status %d", ws.ExitStatus())
			case ws.Signaled():
				return "signal: " + ws.Signal().String()
			}
			return fmt.Sprintf("wait status %#x", uint32(ws))
		}
		if _, err := procState(pid); err != nil {
			return statusReapedByOther
		}
		if time.Now().After(deadline) {
			return statusNotOurs
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// ferry runs one ferry command, logging it for failure reports. Output
// goes to files: a restored process must not be able to hold our pipes.
func (r *run) ferry(args ...string) (stdout, stderr string, code int) {
	r.t.Helper()
	r.nferry++
	prefix := filepath.Join(r.base, fmt.Sprintf("ferry-%02d-%s", r.nferry, args[0]))
	so, err := os.Create(prefix + ".stdout")
	if err != nil {
		r.t.Fatal(err)
	}
	defer so.Close()
	se, err := os.Create(prefix + ".stderr")
	if err != nil {
		r.t.Fatal(err)
	}
	defer se.Close()
	ctx, cancel := context.WithTimeout(context.Background(), ferryTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, ferryBin, args...)
	cmd.Dir = r.base
	cmd.Stdout = so
	cmd.Stderr = se
	// A test binary killed by -timeout must not leave ferry running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	err = cmd.Run()
	took := time.Since(start)
	code = 0
	if err != nil {
		code = -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
	}
	outB, _ := os.ReadFile(prefix + ".stdout")
	errB, _ := os.ReadFile(prefix + ".stderr")
	fmt.Fprintf(&r.log, "$ ferry %s  (%v, %.0fms)\n", strings.Join(args, " "), errOrOK(err), took.Seconds()*1000)
	if len(outB) > 0 {
		fmt.Fprintf(&r.log, "stdout:\n%s\n", strings.TrimRight(string(outB), "\n"))
	}
	if len(errB) > 0 {
		fmt.Fprintf(&r.log, "stderr:\n%s\n", strings.TrimRight(string(errB), "\n"))
	}
	return string(outB), string(errB), code
}

func errOrOK(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

// dump runs ferry dump and requires success and a non-empty image.
func (r *run) dump(img string, flags ...string) string {
	r.t.Helper()
	dir := filepath.Join(r.base, img)
	args := append([]string{"dump", strconv.Itoa(r.pid), "--dir", dir}, flags...)
	if _, _, code := r.ferry(args...); code != 0 {
		r.fatalf("ferry dump exited %d", code)
	}
	if n := countFiles(dir); n == 0 {
		r.fatalf("ferry dump succeeded but left no image files in %s", dir)
	}
	return dir
}

// dumpKill dumps with the default behaviour: the original must be gone
// afterwards. It and its tree are reaped so their pids are free again.
func (r *run) dumpKill(img string) {
	r.t.Helper()
	r.dump(img)
	if !waitGone(r.pidfd, goneTimeout) {
		st, _ := procState(r.pid)
		r.fatalf("pid %d still there (state %q) %v after ferry dump", r.pid, st, goneTimeout)
	}
	r.reapCurrent()
	r.reapTree(false)
}

// kill ends the current incarnation (after --leave-stopped) and reaps it.
func (r *run) kill() {
	r.t.Helper()
	for _, m := range r.tree {
		unix.PidfdSendSignal(m.pidfd, unix.SIGKILL, nil, 0)
	}
	if err := unix.PidfdSendSignal(r.pidfd, unix.SIGKILL, nil, 0); err != nil {
		r.fatalf("SIGKILL: %v", err)
	}
	if !waitGone(r.pidfd, goneTimeout) {
		r.fatalf("pid %d survived SIGKILL", r.pid)
	}
	r.reapCurrent()
	r.reapTree(false)
}

var restoredRe = regexp.MustCompile(`restored pid (\d+)`)

// restore runs ferry restore and checks the result: same pid, running
// (or stopped for stopBeforeDump), not traced, same tree.
func (r *run) restore(img string) {
	r.t.Helper()
	stdout, _, code := r.ferry("restore", "--dir", filepath.Join(r.base, img))
	if code != 0 {
		r.fatalf("ferry restore exited %d", code)
	}
	m := restoredRe.FindStringSubmatch(stdout)
	if m == nil {
		r.fatalf("ferry restore did not print \"restored pid N\"")
	}
	if pid, _ := strconv.Atoi(m[1]); pid != r.pid {
		r.fatalf("restored pid %d, want the original %d", pid, r.pid)
	}
	fd, err := unix.PidfdOpen(r.pid, 0)
	if err != nil {
		r.fatalf("pidfd_open(%d) after restore: %v", r.pid, err)
	}
	r.pidfd = fd
	r.checkAlive("after restore", r.tc.stopBeforeDump)
	if r.tc.needsTree {
		r.checkTreeRestored()
	}
}

// checkAlive requires the current incarnation to exist, be untraced, and
// be stopped or not as wanted.
func (r *run) checkAlive(when string, stopped bool) {
	r.t.Helper()
	if waitGone(r.pidfd, 0) {
		r.fatalf("pid %d is gone %s", r.pid, when)
	}
	var st byte
	if stopped {
		st = r.waitState(func(s byte) bool { return s == 'T' }, 2*time.Second)
		if st != 'T' {
			r.fatalf("pid %d in state %q %s, want stopped 'T'", r.pid, st, when)
		}
	} else {
		// A main thread that exited (pthread_exit) shows 'Z' while the
		// other threads run on: alive.
		alive := func(s byte) bool {
			return s == 'R' || s == 'S' || s == 'D' || s == 'Z' && statusField(r.pid, "Threads") != "1"
		}
		st = r.waitState(alive, 2*time.Second)
		if !alive(st) {
			r.fatalf("pid %d in state %q %s, want running or sleeping", r.pid, st, when)
		}
	}
	if tp := statusField(r.pid, "TracerPid"); tp != "0" {
		r.fatalf("pid %d has TracerPid %s %s: ferry did not detach", r.pid, tp, when)
	}
	if tgid := statusField(r.pid, "Tgid"); tgid != strconv.Itoa(r.pid) {
		r.fatalf("pid %d has Tgid %s %s", r.pid, tgid, when)
	}
}

// descendants lists the program's descendant processes, parents first,
// each with a pidfd, by scanning /proc (no /proc/PID/task/TID/children
// on kernels without CONFIG_PROC_CHILDREN).
func (r *run) descendants() []member {
	r.t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		r.t.Fatal(err)
	}
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, err := strconv.Atoi(statusField(pid, "PPid")); err == nil {
			children[ppid] = append(children[ppid], pid)
		}
	}
	var out []member
	queue := []int{r.pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			fd, err := unix.PidfdOpen(c, 0)
			if err != nil {
				continue // gone meanwhile
			}
			out = append(out, member{pid: c, ppid: p, pidfd: fd})
			queue = append(queue, c)
		}
	}
	return out
}

// reapTree waits for every recorded descendant to be gone and reaps the
// ones that were reparented to us. With mustBeGone, one still running is
// a failure (the program should have reaped its children).
func (r *run) reapTree(mustBeGone bool) {
	r.t.Helper()
	tree := r.tree
	r.tree = nil
	r.lastTree = nil
	for _, m := range tree {
		r.lastTree = append(r.lastTree, member{pid: m.pid, ppid: m.ppid, pidfd: -1})
	}
	var alive []int
	for _, m := range tree {
		if !waitGone(m.pidfd, goneTimeout) {
			alive = append(alive, m.pid)
			unix.PidfdSendSignal(m.pidfd, unix.SIGKILL, nil, 0)
			waitGone(m.pidfd, goneTimeout)
		}
		reapPid(m.pid)
		unix.Close(m.pidfd)
	}
	if len(alive) > 0 {
		if mustBeGone {
			r.fatalf("descendants %v still running after the program exited", alive)
		}
		r.fatalf("descendants %v survived the dump of their root", alive)
	}
}

// checkTreeRestored requires the same descendants with the same parents
// after restore, and takes pidfds of the new ones.
func (r *run) checkTreeRestored() {
	r.t.Helper()
	want := r.lastTree
	got := r.descendants()
	r.tree = got
	if len(got) != len(want) {
		r.fatalf("restored tree has %d descendants %v, want %d %v", len(got), pids(got), len(want), pids(want))
	}
	idx := map[int]int{}
	for _, m := range got {
		idx[m.pid] = m.ppid
	}
	for _, m := range want {
		ppid, ok := idx[m.pid]
		if !ok {
			r.fatalf("descendant %d missing after restore (have %v)", m.pid, pids(got))
		}
		if ppid != m.ppid {
			r.fatalf("descendant %d has parent %d after restore, want %d", m.pid, ppid, m.ppid)
		}
	}
}

func pids(ms []member) []int {
	var out []int
	for _, m := range ms {
		out = append(out, m.pid)
	}
	return out
}

// cleanup kills whatever is left of the program and reaps it.
func (r *run) cleanup() {
	for _, m := range r.tree {
		unix.PidfdSendSignal(m.pidfd, unix.SIGKILL, nil, 0)
	}
	if r.pidfd >= 0 {
		unix.PidfdSendSignal(r.pidfd, unix.SIGKILL, nil, 0)
		waitGone(r.pidfd, goneTimeout)
		r.reapCurrent()
	}
	for _, m := range r.tree {
		waitGone(m.pidfd, goneTimeout)
		reapPid(m.pid)
		unix.Close(m.pidfd)
	}
	r.tree = nil
}

// waitGone reports whether the process behind pidfd has exited, waiting
// up to timeout.
func waitGone(pidfd int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		ms := int(time.Until(deadline).Milliseconds())
		if ms < 0 {
			ms = 0
		}
		pfd := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, ms)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0
	}
}

// procState is the state letter of /proc/PID/stat (0 if unreadable).
func procState(pid int) (byte, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return b[i+2], nil
}

// statusField returns the value of "Name:" in /proc/PID/status, or "".
func statusField(pid int, name string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func countFiles(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}
