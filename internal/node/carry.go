package node

import (
	"context"
	"fmt"
	"strings"

	"ferry/internal/files"
)

// A job's log travels to the destination of its migration in /carry
// requests of at most carryChunk bytes of each stream, so that each
// request stays under maxCarryBody however long the log is.

// sendLogAhead sends the job's log so far, while it still runs, a chunk
// at a time read from its files; it returns the offsets it sent up to.
func (n *Node) sendLogAhead(ctx context.Context, to string, j *localJob) ([2]int64, error) {
	end := [2]int64{j.logs[0].Size(), j.logs[1].Size()}
	var off [2]int64
	for off != end {
		c := &carry{OutFrom: off[0], ErrFrom: off[1]}
		for i, p := range []*[]byte{&c.Stdout, &c.Stderr} {
			b, _, _, err := j.logs[i].readAt(off[i], int(min(carryChunk, end[i]-off[i])))
			if err != nil {
				return off, err
			}
			*p = b
			off[i] += int64(len(b))
		}
		if err := n.call(ctx, to, "POST", "/v1/jobs/"+j.info.ID+"/carry", c, nil); err != nil {
			return off, err
		}
	}
	return off, nil
}

// sendCarry hands c to the destination in requests of at most
// carryChunk bytes of each stream (splitCarry).
func (n *Node) sendCarry(ctx context.Context, to, id string, c *carry) error {
	for _, part := range splitCarry(c, carryChunk) {
		if err := n.call(ctx, to, "POST", "/v1/jobs/"+id+"/carry", part, nil); err != nil {
			return err
		}
	}
	return nil
}

// splitCarry cuts c into carries of at most chunk bytes of each stream:
// leading ones that are not final, then the rest with c's input and
// flags.
func splitCarry(c *carry, chunk int) []*carry {
	var out []*carry
	rest := *c
	for len(rest.Stdout) > chunk || len(rest.Stderr) > chunk {
		part := &carry{OutFrom: rest.OutFrom, ErrFrom: rest.ErrFrom}
		k := min(len(rest.Stdout), chunk)
		part.Stdout, rest.Stdout, rest.OutFrom = rest.Stdout[:k], rest.Stdout[k:], rest.OutFrom+int64(k)
		k = min(len(rest.Stderr), chunk)
		part.Stderr, rest.Stderr, rest.ErrFrom = rest.Stderr[:k], rest.Stderr[k:], rest.ErrFrom+int64(k)
		out = append(out, part)
	}
	return append(out, &rest)
}

// fileRules say where the receiving agent may create the files that
// arrive with a job: as its owner could (nil: root), never in the node's
// state directory.
type fileRules struct {
	owner     *files.Owner
	forbidden []string
}

// ownerFlag is the receiving agent's --owner for a job owned by info's
// owner: "" for root.
func ownerFlag(info JobInfo) string {
	if info.Owner == 0 {
		return ""
	}
	c := &Caller{UID: info.Owner, GID: info.OwnerGID, Groups: info.OwnerGroups}
	return strings.ReplaceAll(c.header(), " ", ":")
}

func parseFileRules(owner, stateDir string) (fileRules, error) {
	r := fileRules{}
	if stateDir != "" {
		r.forbidden = []string{stateDir}
	}
	if owner == "" {
		return r, nil
	}
	c, err := parseCallerHeader(strings.ReplaceAll(owner, ":", " "))
	if err != nil {
		return r, fmt.Errorf("--owner: %w", err)
	}
	r.owner = &files.Owner{UID: c.UID, GID: c.GID, Groups: c.Groups}
	return r, nil
}
