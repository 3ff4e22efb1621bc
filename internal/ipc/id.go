package ipc

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ID is a process's location-independent id: its job id and its PID in the
// job's PID namespace. It never changes, whatever node the job runs on.
type ID struct {
	Job string // "<node>-<n>", as the creating node named it
	PID int
}

// ErrBadID is wrapped by every error of ParseID.
var ErrBadID = errors.New("bad process id")

// String prints the id as "n1-4.101".
func (id ID) String() string { return id.Job + "." + strconv.Itoa(id.PID) }

// Creator is the node that created the job: the part of the job id before
// its last "-" (DEMOS/MP's creating node, Sprite's home node).
func (id ID) Creator() string { return CreatorOf(id.Job) }

// CreatorOf is the creating node of job id j, or "" if j has no "-".
func CreatorOf(j string) string {
	i := strings.LastIndexByte(j, '-')
	if i <= 0 {
		return ""
	}
	return j[:i]
}

// ParseID parses "n1-4.101". The job part must be "<node>-<n>" with a
// non-empty node and a decimal n; the PID must be a positive decimal.
func ParseID(s string) (ID, error) {
	dot := strings.LastIndexByte(s, '.')
	if dot < 0 {
		return ID{}, fmt.Errorf("%w %q: no \".\" between job and pid", ErrBadID, s)
	}
	job, pidText := s[:dot], s[dot+1:]
	if err := checkJobID(job); err != nil {
		return ID{}, fmt.Errorf("%w %q: %v", ErrBadID, s, err)
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 || pidText[0] == '+' {
		return ID{}, fmt.Errorf("%w %q: pid %q is not a positive number", ErrBadID, s, pidText)
	}
	return ID{Job: job, PID: pid}, nil
}

func checkJobID(j string) error {
	i := strings.LastIndexByte(j, '-')
	if i < 0 {
		return fmt.Errorf("job %q has no \"-\" between node and number", j)
	}
	if i == 0 {
		return fmt.Errorf("job %q names no node", j)
	}
	n := j[i+1:]
	if n == "" {
		return fmt.Errorf("job %q has no number", j)
	}
	for _, c := range n {
		if c < '0' || c > '9' {
			return fmt.Errorf("job %q: %q is not a number", j, n)
		}
	}
	return nil
}
