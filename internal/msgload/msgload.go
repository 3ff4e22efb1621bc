// Package msgload is the message load of `ferry msgload` (hidden), the
// programs that `ferry bench --forwarding` and `ferry demo` run as jobs
// to measure and check ferry's message forwarding: a sender that sends
// numbered messages at a steady rate, and a receiver that checks every
// sender's numbers and times each message. Both use only the public
// client, ferry/msg, as any program would.
//
// What belongs here: the payload, the two roles, and their summaries
// (printed as one JSON line each, parsed back by ParseRecv and
// ParseSend). Not here: starting the jobs, moving them and classifying
// the messages by the moves' timeline (internal/bench, internal/demo).
//
// # Payload (version 1)
//
// Little-endian, PayloadLen bytes, then zero padding up to the size the
// sender was given:
//
//	offset size  field
//	0      2     magic 'F' 'L'
//	2      1     version, 1
//	3      1     kind: 1 data, 2 end (no more data from this sender)
//	4      1     type: the chapter's message type (1, 2 or 3) if the
//	             sender knows it, 0 if not (msgload send never does: the
//	             bench classifies by the moves' timeline)
//	5      3     zero
//	8      4     sender index (u32), the --index it was given
//	12     4     zero
//	16     8     seq (u64): data 1, 2, 3, ... per sender; end: the last
//	             data seq sent
//	24     8     send time, unix nanoseconds (i64), taken just before
//	             the message went to the endpoint
//
// All nodes of a bench or demo run on one machine, under one clock, so
// the receiver's now − send time is the one-way latency: from the
// sender's call to the receiver's Recv returning, whatever the message
// went through (queued while the receiver was frozen, relayed, resent).
//
// # Receiver
//
// `ferry msgload recv --senders N` (or --expect-from ID,ID,...) dials
// the endpoint, prints "ready <its id>" and receives. Per sender it
// checks that data seqs arrive as exactly 1, 2, 3, ...: a seq seen
// before is a duplicate, a seq below the highest seen so far arrived
// out of order, and a seq never seen up to the sender's end (or the
// highest seen) is lost. It stops once every expected sender's end has
// arrived, after --count data messages, or on SIGUSR1 or SIGTERM, and
// prints a RecvSummary: per sender the counts, and for every seq its
// send time (µs after the sender's first) and latency (µs), from which
// any percentile of any subset follows. It exits 1 if a message was
// lost, duplicated or out of order, or an expected sender did not end.
//
// # Sender
//
// `ferry msgload send --to ID --rate R --count N` sends message i at
// start + i/R (R per second, steadily; late ones go at once, not in a
// burst beyond that schedule), with TrySend, and collects the outcomes
// as they come (TryResult on the oldest outstanding, the outcomes of one
// sender arrive in order), so that a message costs no round trip: up to
// Window messages are outstanding before the sender waits for the
// oldest. A TrySend that would block is retried once an outcome came in
// (counted as would_block). After N messages (N 0: until SIGUSR1 or
// SIGTERM) it sends the end message, waits for every outcome and prints
// a SendSummary: sent, delivered, refusals by kind. It exits 1 if a
// message was not delivered.
package msgload

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Payload kinds.
const (
	KindData = 1
	KindEnd  = 2
)

// PayloadLen is the length of the fields; a payload may be longer
// (zero padding).
const PayloadLen = 32

// ErrBadPayload is a message that is not a msgload payload.
var ErrBadPayload = errors.New("not a msgload payload")

// Payload is one message's fields.
type Payload struct {
	Kind   uint8
	Type   uint8 // 0: the sender does not know
	Index  uint32
	Seq    uint64
	SentNs int64 // unix nanoseconds
}

// Append encodes p into b, padded with zeros to size bytes (at least
// PayloadLen).
func (p Payload) Append(b []byte, size int) []byte {
	size = max(size, PayloadLen)
	off := len(b)
	b = append(b, make([]byte, size)...)
	q := b[off:]
	q[0], q[1], q[2], q[3], q[4] = 'F', 'L', 1, p.Kind, p.Type
	binary.LittleEndian.PutUint32(q[8:], p.Index)
	binary.LittleEndian.PutUint64(q[16:], p.Seq)
	binary.LittleEndian.PutUint64(q[24:], uint64(p.SentNs))
	return b
}

// ParsePayload decodes a payload.
func ParsePayload(b []byte) (Payload, error) {
	if len(b) < PayloadLen || b[0] != 'F' || b[1] != 'L' {
		return Payload{}, fmt.Errorf("%w (%d bytes)", ErrBadPayload, len(b))
	}
	if b[2] != 1 {
		return Payload{}, fmt.Errorf("%w: version %d", ErrBadPayload, b[2])
	}
	p := Payload{Kind: b[3], Type: b[4], Index: binary.LittleEndian.Uint32(b[8:]),
		Seq: binary.LittleEndian.Uint64(b[16:]), SentNs: int64(binary.LittleEndian.Uint64(b[24:]))}
	if p.Kind != KindData && p.Kind != KindEnd {
		return Payload{}, fmt.Errorf("%w: kind %d", ErrBadPayload, p.Kind)
	}
	if p.Kind == KindData && p.Seq == 0 {
		return Payload{}, fmt.Errorf("%w: data with seq 0", ErrBadPayload)
	}
	return p, nil
}
