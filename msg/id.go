package msg

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"ferry/msg/wire"
)

// ID is a process's location-independent id: the job it belongs to and
// its pid inside the job (the job's own PID namespace), written
// "<job>.<pid>", e.g. "n1-4.101". It never changes when the process
// moves. PID 0 names no process of the job; a node may use it for
// senders that are not processes of a job (the ferry CLI, say).
type ID struct {
	Job string
	PID int
}

// String formats id as "<job>.<pid>".
func (id ID) String() string { return id.Job + "." + strconv.Itoa(id.PID) }

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id == ID{} }

// ParseID parses "<job>.<pid>". The job is one or more of A-Z a-z 0-9
// '-' '_' '.'; the pid is the decimal after the last '.', without
// leading zeros, 0 to 2^31-1; the whole id is at most 255 bytes.
func ParseID(s string) (ID, error) {
	bad := func(why string) (ID, error) {
		return ID{}, fmt.Errorf("%w %q: %s", ErrBadID, s, why)
	}
	if len(s) > wire.MaxID {
		return bad(fmt.Sprintf("%d bytes, at most %d", len(s), wire.MaxID))
	}
	dot := strings.LastIndexByte(s, '.')
	if dot < 0 {
		return bad("want <job>.<pid>")
	}
	job, pid := s[:dot], s[dot+1:]
	if job == "" {
		return bad("empty job")
	}
	for i := 0; i < len(job); i++ {
		c := job[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return bad(fmt.Sprintf("job has %q", c))
		}
	}
	if pid == "" || len(pid) > 1 && pid[0] == '0' {
		return bad("pid must be a decimal without leading zeros")
	}
	for i := 0; i < len(pid); i++ {
		if pid[i] < '0' || pid[i] > '9' {
			return bad("pid must be a decimal without leading zeros")
		}
	}
	n, err := strconv.ParseInt(pid, 10, 32)
	if err != nil {
		return bad("pid out of range")
	}
	return ID{Job: job, PID: int(n)}, nil
}

// Self returns the calling process's id from its environment: the job
// from $FERRY_JOB and the pid from getpid(), which inside a job is the
// pid in the job's namespace. It needs no connection; Conn.ID is the
// node's word for it.
func Self() (ID, error) {
	job := os.Getenv("FERRY_JOB")
	if job == "" {
		return ID{}, fmt.Errorf("%w: FERRY_JOB is not set (not in a ferry job?)", ErrBadID)
	}
	return ParseID(job + "." + strconv.Itoa(os.Getpid()))
}
