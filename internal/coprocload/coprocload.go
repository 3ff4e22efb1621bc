// Package coprocload is the load `ferry bench --coprocess` runs as a job
// (`ferry coprocload parent`, hidden): a parent and its child joined by a
// pipe each way, which time, from the parent, what a child moved to
// another node costs — once while both run on one node, once after the
// bench moved the child alone (ferry migrate JOB --pid CHILD).
//
// The parent prints "child PID", then on each SIGUSR1 one round of
// measurements as a JSON line (Round), and on SIGHUP it ends the child
// and prints the wait latency (Round with only WaitUS). Its child obeys
// one-byte commands on its pipe:
//
//	'p' N(u32)  N one-byte round trips (the child echoes each byte)
//	't' N(u64)  the child writes N bytes to the parent
//	'r' N(u64)  the parent writes N bytes; the child answers one byte
//	's' N(u32)  N signal round trips: each SIGUSR2 from the parent the
//	            child answers with a SIGUSR2 to its parent
//	'x'         the child writes its CLOCK_REALTIME (ns, u64) and exits 0
//
// `ferry coprocload forkexec N` times N runs of `true` from fork to wait
// (ForkExec): under `ferry run --spread true`, each one placed on another
// node as it starts.
//
// What belongs here: the programs, Round and ForkExec. What does not: moving
// the child, the report (package bench).
package coprocload

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Round is one line of the parent's output.
type Round struct {
	Round int `json:"round"`
	// PipeRTTUS: the median one-byte round trip over the pipe pair.
	PipeRTTUS float64 `json:"pipe_rtt_us,omitempty"`
	// ToParentMBps, ToChildMBps: pipe throughput each way (10^6 B/s).
	ToParentMBps float64 `json:"to_parent_mbps,omitempty"`
	ToChildMBps  float64 `json:"to_child_mbps,omitempty"`
	// SignalRTTUS: the median of a signal to the child and its answer.
	SignalRTTUS float64 `json:"signal_rtt_us,omitempty"`
	// WaitUS: from the child's last instant (its clock, read just before
	// it exits) to the parent's wait4 returning.
	WaitUS float64 `json:"wait_us,omitempty"`
	Error  string  `json:"error,omitempty"`
}

const (
	rtts    = 1000
	signals = 100
	bulk    = 64 << 20
	piece   = 64 << 10
)

// Main runs `ferry coprocload parent|child`.
func Main(args []string) int {
	if len(args) == 1 && args[0] == "child" {
		if err := child(os.NewFile(3, "down"), os.NewFile(4, "up")); err != nil {
			fmt.Fprintln(os.Stderr, "coprocload child:", err)
			return 1
		}
		return 0
	}
	if len(args) == 2 && args[0] == "forkexec" {
		n, err := strconv.Atoi(args[1])
		if err != nil || n <= 0 {
			fmt.Fprintln(os.Stderr, "coprocload forkexec: want a count")
			return 2
		}
		if err := forkExec(n); err != nil {
			fmt.Fprintln(os.Stderr, "coprocload forkexec:", err)
			return 1
		}
		return 0
	}
	if len(args) == 1 && args[0] == "parent" {
		if err := parent(); err != nil {
			fmt.Fprintln(os.Stderr, "coprocload parent:", err)
			return 1
		}
		return 0
	}
	fmt.Fprintln(os.Stderr, "usage: ferry coprocload parent")
	return 2
}

// kid is the parent's view of a child.
type kid struct {
	cmd      *exec.Cmd
	down, up *os.File
}

func startKid() (*kid, error) {
	dr, dw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	ur, uw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "coprocload", "child")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{dr, uw}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	dr.Close()
	uw.Close()
	// Ready once its signal dispositions are set (a trigger for the
	// parent sent to the job's group must not end it).
	if _, err := io.ReadFull(ur, make([]byte, 1)); err != nil {
		return nil, fmt.Errorf("the child did not start: %w", err)
	}
	return &kid{cmd: cmd, down: dw, up: ur}, nil
}

func parent() error {
	usr1 := make(chan os.Signal, 4)
	hup := make(chan os.Signal, 1)
	usr2 := make(chan os.Signal, signals)
	signal.Notify(usr1, syscall.SIGUSR1)
	signal.Notify(hup, syscall.SIGHUP)
	signal.Notify(usr2, syscall.SIGUSR2)
	k, err := startKid()
	if err != nil {
		return err
	}
	fmt.Printf("child %d\n", k.cmd.Process.Pid)
	enc := json.NewEncoder(os.Stdout)
	for round := 1; ; round++ {
		select {
		case <-usr1:
			r := k.measure(usr2)
			r.Round = round
			if round == 1 {
				// The local baseline of the wait: a child of its own.
				w, err := startKid()
				if err == nil {
					r.WaitUS, err = w.end()
				}
				if err != nil {
					r.Error = err.Error()
				}
			}
			enc.Encode(r)
		case <-hup:
			us, err := k.end()
			r := Round{Round: round, WaitUS: us}
			if err != nil {
				r.Error = err.Error()
			}
			enc.Encode(r)
			return nil
		}
	}
}

func (k *kid) cmd8(c byte, n uint64) error {
	b := make([]byte, 9)
	b[0] = c
	binary.LittleEndian.PutUint64(b[1:], n)
	_, err := k.down.Write(b)
	return err
}

func (k *kid) measure(usr2 <-chan os.Signal) Round {
	var r Round
	fail := func(what string, err error) Round {
		r.Error = fmt.Sprintf("%s: %v", what, err)
		return r
	}
	// Round trips.
	if err := k.cmd8('p', rtts); err != nil {
		return fail("round trips", err)
	}
	one := make([]byte, 1)
	var ds []time.Duration
	for i := 0; i < rtts; i++ {
		t := time.Now()
		one[0] = byte(i)
		if _, err := k.down.Write(one); err != nil {
			return fail("round trips", err)
		}
		if _, err := io.ReadFull(k.up, one); err != nil {
			return fail("round trips", err)
		}
		ds = append(ds, time.Since(t))
	}
	r.PipeRTTUS = medianUS(ds)
	// Throughput, child → parent.
	buf := make([]byte, piece)
	if err := k.cmd8('t', bulk); err != nil {
		return fail("to parent", err)
	}
	t := time.Now()
	if _, err := io.CopyBuffer(io.Discard, io.LimitReader(k.up, bulk), buf); err != nil {
		return fail("to parent", err)
	}
	r.ToParentMBps = bulk / time.Since(t).Seconds() / 1e6
	// Parent → child.
	if err := k.cmd8('r', bulk); err != nil {
		return fail("to child", err)
	}
	t = time.Now()
	for sent := 0; sent < bulk; sent += piece {
		if _, err := k.down.Write(buf); err != nil {
			return fail("to child", err)
		}
	}
	if _, err := io.ReadFull(k.up, one); err != nil {
		return fail("to child", err)
	}
	r.ToChildMBps = bulk / time.Since(t).Seconds() / 1e6
	// Signals.
	if err := k.cmd8('s', signals); err != nil {
		return fail("signals", err)
	}
	if _, err := io.ReadFull(k.up, one); err != nil { // the child listens
		return fail("signals", err)
	}
	ds = ds[:0]
	for i := 0; i < signals; i++ {
		t := time.Now()
		if err := unix.Kill(k.cmd.Process.Pid, unix.SIGUSR2); err != nil {
			return fail("signals", err)
		}
		select {
		case <-usr2:
		case <-time.After(10 * time.Second):
			return fail("signals", fmt.Errorf("no answer to signal %d in 10 s", i))
		}
		ds = append(ds, time.Since(t))
	}
	r.SignalRTTUS = medianUS(ds)
	return r
}

// end makes the child exit and returns how long after its last instant
// the parent's wait returned.
func (k *kid) end() (float64, error) {
	if err := k.cmd8('x', 0); err != nil {
		return 0, err
	}
	b := make([]byte, 8)
	if _, err := io.ReadFull(k.up, b); err != nil {
		return 0, err
	}
	if err := k.cmd.Wait(); err != nil {
		return 0, err
	}
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_REALTIME, &ts)
	us := float64(ts.Nano()-int64(binary.LittleEndian.Uint64(b))) / 1e3
	k.down.Close()
	k.up.Close()
	return us, nil
}

func child(down, up *os.File) error {
	// ferry kill signals the job's process group: the parent's triggers
	// are not for the child.
	signal.Ignore(syscall.SIGUSR1, syscall.SIGHUP)
	usr2 := make(chan os.Signal, signals)
	signal.Notify(usr2, syscall.SIGUSR2)
	if _, err := up.Write([]byte{'R'}); err != nil {
		return err
	}
	hdr := make([]byte, 9)
	buf := make([]byte, piece)
	one := make([]byte, 1)
	for {
		if _, err := io.ReadFull(down, hdr); err != nil {
			return err
		}
		n := binary.LittleEndian.Uint64(hdr[1:])
		switch hdr[0] {
		case 'p':
			for i := uint64(0); i < n; i++ {
				if _, err := io.ReadFull(down, one); err != nil {
					return err
				}
				if _, err := up.Write(one); err != nil {
					return err
				}
			}
		case 't':
			for sent := uint64(0); sent < n; sent += piece {
				if _, err := up.Write(buf[:min(piece, n-sent)]); err != nil {
					return err
				}
			}
		case 'r':
			if _, err := io.CopyBuffer(io.Discard, io.LimitReader(down, int64(n)), buf); err != nil {
				return err
			}
			if _, err := up.Write(one); err != nil {
				return err
			}
		case 's':
			if _, err := up.Write(one); err != nil {
				return err
			}
			for i := uint64(0); i < n; i++ {
				<-usr2
				if err := unix.Kill(os.Getppid(), unix.SIGUSR2); err != nil {
					return err
				}
			}
		case 'x':
			var ts unix.Timespec
			unix.ClockGettime(unix.CLOCK_REALTIME, &ts)
			b := make([]byte, 8)
			binary.LittleEndian.PutUint64(b, uint64(ts.Nano()))
			up.Write(b)
			os.Exit(0)
		default:
			return fmt.Errorf("unknown command %q", hdr[0])
		}
	}
}

// ForkExec is the line of `ferry coprocload forkexec N`: the median of
// N runs of `true` (found in PATH: under ferry run --spread true, placed
// on another node) from fork to the parent's wait returning.
type ForkExec struct {
	Runs       int     `json:"runs"`
	ForkExecMs float64 `json:"forkexec_ms"`
}

func forkExec(n int) error {
	var ds []time.Duration
	for i := 0; i < n; i++ {
		t := time.Now()
		if err := exec.Command("true").Run(); err != nil {
			return err
		}
		ds = append(ds, time.Since(t))
	}
	return json.NewEncoder(os.Stdout).Encode(ForkExec{Runs: n, ForkExecMs: medianUS(ds) / 1e3})
}

func medianUS(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[len(s)/2]) / 1e3
}
