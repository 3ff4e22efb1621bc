package msg

import (
	"errors"
	"fmt"

	"ferry/msg/wire"
)

// Errors callers branch on, with errors.Is.
var (
	// ErrTooBig: a payload over MaxPayload bytes. Send refuses it before
	// anything is sent; it is never truncated.
	ErrTooBig = errors.New("payload too big")
	// ErrBadID: a string that is not an id.
	ErrBadID = errors.New("bad id")
	// ErrUndeliverable is matched by every *SendError: the message was
	// not delivered.
	ErrUndeliverable = errors.New("message not delivered")
	// ErrUnknownID: the cluster knows no process with that id.
	ErrUnknownID = errors.New("unknown id")
	// ErrReceiverEnded: the receiver has ended.
	ErrReceiverEnded = errors.New("receiver ended")
	// ErrUnreachable: the node held the message and retried until its
	// deadline without finding the receiver.
	ErrUnreachable = errors.New("receiver unreachable")
	// ErrDenied: the sender may not send to that id.
	ErrDenied = errors.New("denied")
	// ErrMalformed: the node says a packet from this side was malformed.
	ErrMalformed = errors.New("malformed packet")
	// ErrProtocol: the node sent something that does not follow the
	// protocol (or a version this side does not speak). The connection
	// is unusable afterwards.
	ErrProtocol = errors.New("message endpoint protocol error")
	// ErrWouldBlock: a non-blocking call found nothing to do now.
	ErrWouldBlock = errors.New("would block")
	// ErrClosed: the connection was closed, by Close or by the node.
	ErrClosed = errors.New("message endpoint closed")
)

// SendError is the node's refusal of one message. It matches
// ErrUndeliverable and the sentinel of its code (ErrUnknownID, ...).
type SendError struct {
	To   ID
	Seq  uint32
	Code wire.Code
	Text string // the node's words, naming the id and the reason
}

func (e *SendError) Error() string {
	if e.Text != "" {
		return fmt.Sprintf("send to %v: %s", e.To, e.Text)
	}
	return fmt.Sprintf("send to %v: %v", e.To, e.Code)
}

func (e *SendError) Is(target error) bool {
	return target == ErrUndeliverable || target == codeErr(e.Code)
}

// NodeError is an ERROR packet: the node could not take a packet of
// this side and closed the connection.
type NodeError struct {
	Code wire.Code
	Text string
}

func (e *NodeError) Error() string {
	return fmt.Sprintf("message endpoint: node reports %v: %s", e.Code, e.Text)
}

func (e *NodeError) Is(target error) bool {
	return target == ErrProtocol || target == codeErr(e.Code)
}

func codeErr(c wire.Code) error {
	switch c {
	case wire.CodeUnknownID:
		return ErrUnknownID
	case wire.CodeEnded:
		return ErrReceiverEnded
	case wire.CodeUnreachable:
		return ErrUnreachable
	case wire.CodeTooBig:
		return ErrTooBig
	case wire.CodeMalformed:
		return ErrMalformed
	case wire.CodeDenied:
		return ErrDenied
	}
	return nil
}
