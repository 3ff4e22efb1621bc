package job

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// The init's control protocol. The node makes a unix stream socket (the
// job's control socket, under the node's state directory) and hands the
// listening end to the init, which serves it for as long as it lives: a
// node daemon that started the job, or one started later on the same
// state directory, connects and attaches. Every connection first gets a
// Hello, one JSON line sent together with (SCM_RIGHTS) the node's ends of
// the job's standard input that the init keeps open while no node runs.
// Then the init sends events (exited, error) to every connection,
// and answers commands, one JSON line each way:
//
//	{"cmd":"sync","id":N}        → {"event":"synced","id":N,"out":BYTES,"err":BYTES}
//	{"cmd":"close-stdin","id":N} → {"event":"stdin-closed","id":N}
//	{"cmd":"keep","id":N}        → {"event":"kept","id":N}
//	{"cmd":"hold-conn","id":N,"key":K} + one descriptor → {"event":"held","id":N}
//	{"cmd":"drop-conn","id":N,"key":K} → {"event":"dropped","id":N}
//
// sync: the job is frozen; copy every byte left in its output pipes into
// the logs, then give the logs' sizes. close-stdin: the node closed the
// job's input; the init closes its copy so that the job reads EOF. keep
// (an init awaiting a restore): the migration committed, the job stays
// whatever happens to the node from now on. hold-conn (with the
// descriptor, SCM_RIGHTS): keep the node's end of a process's message
// endpoint connection under key K, so that the connection outlives the
// node daemon; the Hello gives each connection's held ends back (Conns);
// drop-conn: the node closed that connection, let it go. Until then, an init awaiting
// a restore ends its namespace (and the half-restored job in it) when its
// last connection closes: a destination node that died mid-migration
// leaves nothing behind.
//
// ControlVersion changes when a message changes meaning; a node refuses
// an init of another version (an upgrade keeps the protocol, or says so).
const ControlVersion = 1

// Hello is what an init tells each connection first.
type Hello struct {
	Version int `json:"version"`
	// Restore: the init awaits (or awaited) a restored job.
	Restore bool `json:"restore,omitempty"`
	// Kept: a restore's migration committed (keep).
	Kept bool `json:"kept,omitempty"`
	// PID is the job's main process in the namespace (0 before a
	// restore created it).
	PID int `json:"pid,omitempty"`
	// StdinOpen: the init still holds the job's input open; the
	// message carries the node's write end and read end (in that order).
	StdinOpen bool `json:"stdin_open,omitempty"`
	// StdinHeld: the message carries the read end of the job's input
	// (StdinOpen or not: unread input can be taken back after EOF).
	StdinHeld bool `json:"stdin_held,omitempty"`
	// Endpoint: the message carries (last) the listening socket of the
	// job's message endpoint, which the init holds so that processes
	// can connect while no node runs (their connections wait).
	Endpoint bool `json:"endpoint,omitempty"`
	// Conns are the keys of the endpoint connections the init holds for
	// the node (hold-conn), whose descriptors the message carries after
	// the endpoint's, in this order.
	Conns []string `json:"conns,omitempty"`
	// Exited: the job's main process ended (Status is its wait status);
	// the init is finishing its logs and exits next.
	Exited bool `json:"exited,omitempty"`
	Status int  `json:"status,omitempty"`
}

// Event is one message from the init after the Hello.
type Event struct {
	Event  string `json:"event"`            // "exited", "error", or a command's answer
	ID     int    `json:"id,omitempty"`     // the command answered
	PID    int    `json:"pid,omitempty"`    // the main process, in the namespace
	Status int    `json:"status,omitempty"` // raw wait status, for "exited"
	Error  string `json:"error,omitempty"`
	// Out and Err are the logs' sizes (synced).
	Out int64 `json:"out,omitempty"`
	Err int64 `json:"err,omitempty"`
}

type command struct {
	Cmd string `json:"cmd"`
	ID  int    `json:"id"`
	Key string `json:"key,omitempty"` // hold-conn, drop-conn
}

// Exit is how a job ended, as its init records it in the job's exit file
// before it exits: read by a node that was not there to hear it.
type Exit struct {
	// Status is the main process's raw wait status.
	Status int `json:"status"`
	// Error: the init failed (it could not start the job, or lost it).
	Error string `json:"error,omitempty"`
	// Out and Err are the logs' final sizes.
	Out int64 `json:"out"`
	Err int64 `json:"err"`
}

// ErrNoExit: the init left no record of the job's end.
var ErrNoExit = errors.New("the job's init left no exit record")

// ReadExit reads a job's exit file.
func ReadExit(path string) (Exit, error) {
	var e Exit
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) || (err == nil && len(b) == 0) {
		return e, fmt.Errorf("%s: %w", path, ErrNoExit)
	}
	if err != nil {
		return e, err
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return e, fmt.Errorf("exit record %s: %w", path, err)
	}
	return e, nil
}

// maxControlLine bounds one message of the control protocol.
const maxControlLine = 64 << 10
