package agent

import (
	"fmt"
	"net"
	"os"
	"strconv"

	"ferry/msg/wire"
)

// The job's message-endpoint connections travel with it (package node,
// endpoint.go): the sending agent asks its node, once the job is frozen,
// to stop writing into them and to name its side of each (Frozen); the
// dump records each process's socket with that name and the packets it
// had not read; the receiving agent connects a new socket to the
// destination's endpoint for each, announces it (RESUME with the id,
// REQUEUE with each unread packet, which the node writes back first),
// and the restore installs it at the same descriptor number.

// askFrozen asks the node to quiesce the job's endpoint connections and
// returns its side of each: socket inode → process id.
func askFrozen(aio *agentIO) (map[uint64]string, error) {
	ans, err := aio.ask(Frozen)
	if err != nil {
		return nil, err
	}
	if ans.Err != nil {
		return nil, fmt.Errorf("node: %w", ans.Err.Err())
	}
	out := map[uint64]string{}
	for k, id := range ans.Endpoints {
		ino, err := strconv.ParseUint(k, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: frozen answer: socket inode %q", ErrProtocol, k)
		}
		out[ino] = id
	}
	return out, nil
}

// reconnect makes process id's endpoint connection again on this node,
// at path (the job's endpoint socket in the node's job directory), with
// the packets unread on the old node queued first.
func reconnect(path, id string, unread [][]byte) (*os.File, error) {
	if path == "" {
		return nil, fmt.Errorf("the message endpoint connection of %s: this node gave no endpoint", id)
	}
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("reconnect the message endpoint of %s: %w", id, err)
	}
	defer c.Close()
	pkt, err := wire.Append(nil, &wire.Packet{Type: wire.TypeResume, Seq: uint32(len(unread)), ID: id})
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(pkt); err != nil {
		return nil, fmt.Errorf("reconnect the message endpoint of %s: %w", id, err)
	}
	for i, u := range unread {
		pkt, err := wire.Append(nil, &wire.Packet{Type: wire.TypeRequeue, Payload: u})
		if err != nil {
			return nil, fmt.Errorf("unread packet %d of %s: %w", i, id, err)
		}
		if _, err := c.Write(pkt); err != nil {
			return nil, fmt.Errorf("requeue unread packet %d of %s: %w", i, id, err)
		}
	}
	return c.File()
}
