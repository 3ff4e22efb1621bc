package node

import (
	"context"

	"ferry/internal/agent"
)

// A job's log travels to the destination of its migration in /carry
// requests of at most carryChunk bytes of each stream, so that each
// request stays under maxCarryBody however long the log is (sendCarry,
// used by the source's steps for the log ahead and the final carry).

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

// ownerFlag is the receiving agent's --owner for a job owned by info's
// owner: "" for root.
func ownerFlag(info JobInfo) string {
	if info.Owner == 0 {
		return ""
	}
	return agent.OwnerFlag(info.Owner, info.OwnerGID, info.OwnerGroups)
}
