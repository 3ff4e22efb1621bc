// Package wire encodes and decodes the packets of the in-job message
// endpoint, whose layout is specified in the package comment of
// ferry/msg. It is shared by the client library (ferry/msg), the fake
// endpoint of tests (ferry/msg/msgtest) and the node's server side.
//
// What belongs here: the header, the five packet types, their size
// limits and result codes, and checking a packet received whole. What
// does not: sockets, ids' syntax (ferry/msg parses ids), routing.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Header fields and limits. See the package comment of ferry/msg.
const (
	Magic0  = 'F'
	Magic1  = 'M'
	Version = 1

	HeaderLen  = 8
	MaxPayload = 64 << 10 // bytes of a message's payload, at most
	MaxID      = 255      // bytes of an id's text, at most
	MaxText    = 1024     // bytes of a RESULT's or ERROR's text, at most

	// MaxPacket is the largest valid packet (a SEND or MSG with the
	// longest id and payload). A receiver reads into a buffer this big
	// and treats MSG_TRUNC as a packet that is too big.
	MaxPacket = HeaderLen + 1 + MaxID + MaxPayload

	// MaxRequeue is the largest REQUEUE packet (one whole packet inside).
	MaxRequeue = HeaderLen + MaxPacket
)

// Type is a packet's type (header byte 3).
type Type uint8

const (
	TypeHello  Type = 1 // node → process, once on connect
	TypeSend   Type = 2 // process → node
	TypeMsg    Type = 3 // node → process
	TypeResult Type = 4 // node → process, one per SEND
	TypeError  Type = 5 // node → process, then the node closes

	// Reserved for ferry's own migration agent, never sent by a process
	// (a node refuses them from anyone but the agent it started): a
	// connection carried by a migration announces itself with RESUME
	// (seq: the number of REQUEUE packets that follow; body: the
	// process's id, as in HELLO), then REQUEUE packets (body: one packet
	// that was queued unread in the process's socket on the old node,
	// whole), which the node writes back first, in order.
	TypeResume  Type = 6
	TypeRequeue Type = 7
)

func (t Type) String() string {
	switch t {
	case TypeHello:
		return "HELLO"
	case TypeSend:
		return "SEND"
	case TypeMsg:
		return "MSG"
	case TypeResult:
		return "RESULT"
	case TypeError:
		return "ERROR"
	case TypeResume:
		return "RESUME"
	case TypeRequeue:
		return "REQUEUE"
	}
	return fmt.Sprintf("type %d", uint8(t))
}

// Code is the outcome carried by RESULT and ERROR.
type Code uint16

const (
	CodeOK          Code = 0 // delivered: the receiver's endpoint holds the message
	CodeUnknownID   Code = 1 // no such id in the cluster
	CodeEnded       Code = 2 // the receiver has ended
	CodeUnreachable Code = 3 // held and retried until the deadline, not delivered
	CodeTooBig      Code = 4 // payload over MaxPayload (or packet truncated)
	CodeMalformed   Code = 5 // the packet does not follow the protocol
	CodeDenied      Code = 6 // the sender may not send to this id
	CodeVersion     Code = 7 // protocol version not supported (ERROR only)
)

func (c Code) String() string {
	switch c {
	case CodeOK:
		return "ok"
	case CodeUnknownID:
		return "unknown id"
	case CodeEnded:
		return "receiver ended"
	case CodeUnreachable:
		return "unreachable"
	case CodeTooBig:
		return "payload too big"
	case CodeMalformed:
		return "malformed packet"
	case CodeDenied:
		return "denied"
	case CodeVersion:
		return "unsupported protocol version"
	}
	return fmt.Sprintf("code %d", uint16(c))
}

// ErrMalformed is matched (errors.Is) by every error Parse returns.
var ErrMalformed = errors.New("malformed packet")

// Packet is one decoded packet. Which fields are meaningful depends on
// Type: Hello uses MaxPayload and ID; Send uses Seq, ID (destination)
// and Payload; Msg uses Seq, ID (sender) and Payload; Result and Error
// use Seq, Code and Text.
type Packet struct {
	Version    uint8 // as received; Append always writes Version
	Type       Type
	Seq        uint32
	MaxPayload uint32
	ID         string
	Payload    []byte
	Code       Code
	Text       string
}

// Append appends p's encoding to b. It does not check limits beyond
// what the layout can carry: callers check ids and payloads first.
func Append(b []byte, p *Packet) ([]byte, error) {
	b = append(b, Magic0, Magic1, Version, byte(p.Type))
	b = binary.LittleEndian.AppendUint32(b, p.Seq)
	switch p.Type {
	case TypeHello:
		if len(p.ID) == 0 || len(p.ID) > MaxID {
			return nil, fmt.Errorf("hello: id of %d bytes", len(p.ID))
		}
		b = binary.LittleEndian.AppendUint32(b, p.MaxPayload)
		b = append(b, byte(len(p.ID)))
		b = append(b, p.ID...)
	case TypeResume:
		if len(p.ID) == 0 || len(p.ID) > MaxID {
			return nil, fmt.Errorf("resume: id of %d bytes", len(p.ID))
		}
		b = append(b, byte(len(p.ID)))
		b = append(b, p.ID...)
	case TypeRequeue:
		if len(p.Payload) > MaxPacket {
			return nil, fmt.Errorf("requeue: packet of %d bytes, limit %d", len(p.Payload), MaxPacket)
		}
		b = append(b, p.Payload...)
	case TypeSend, TypeMsg:
		if len(p.ID) == 0 || len(p.ID) > MaxID {
			return nil, fmt.Errorf("%v: id of %d bytes", p.Type, len(p.ID))
		}
		if len(p.Payload) > MaxPayload {
			return nil, fmt.Errorf("%v: payload of %d bytes, limit %d", p.Type, len(p.Payload), MaxPayload)
		}
		b = append(b, byte(len(p.ID)))
		b = append(b, p.ID...)
		b = append(b, p.Payload...)
	case TypeResult, TypeError:
		text := p.Text
		if len(text) > MaxText {
			text = text[:MaxText]
		}
		b = binary.LittleEndian.AppendUint16(b, uint16(p.Code))
		b = binary.LittleEndian.AppendUint16(b, uint16(len(text)))
		b = append(b, text...)
	default:
		return nil, fmt.Errorf("encode: unknown %v", p.Type)
	}
	return b, nil
}

// Header is what a reader can learn from a packet's first 8 bytes, even
// when the rest is malformed or was truncated: enough to answer a SEND
// by its sequence number.
func Header(b []byte) (t Type, seq uint32, ok bool) {
	if len(b) < HeaderLen || b[0] != Magic0 || b[1] != Magic1 {
		return 0, 0, false
	}
	return Type(b[3]), binary.LittleEndian.Uint32(b[4:8]), true
}

// Parse decodes one whole packet. Payload aliases b. A version other
// than Version is reported with p.Version set and an error wrapping
// ErrMalformed; callers tell it apart by p.Version.
func Parse(b []byte) (*Packet, error) {
	bad := func(format string, args ...any) (*Packet, error) {
		return nil, fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	if len(b) < HeaderLen {
		return bad("%d bytes, shorter than the %d-byte header", len(b), HeaderLen)
	}
	if b[0] != Magic0 || b[1] != Magic1 {
		return bad("magic %#02x %#02x, want 'F' 'M'", b[0], b[1])
	}
	p := &Packet{Version: b[2], Type: Type(b[3]), Seq: binary.LittleEndian.Uint32(b[4:8])}
	if p.Version != Version {
		return p, fmt.Errorf("%w: version %d, this side speaks %d", ErrMalformed, p.Version, Version)
	}
	body := b[HeaderLen:]
	id := func(body []byte) (string, []byte, bool) {
		if len(body) < 1 {
			return "", nil, false
		}
		n := int(body[0])
		if n == 0 || len(body) < 1+n {
			return "", nil, false
		}
		return string(body[1 : 1+n]), body[1+n:], true
	}
	switch p.Type {
	case TypeHello:
		if len(body) < 5 {
			return bad("HELLO of %d bytes", len(b))
		}
		p.MaxPayload = binary.LittleEndian.Uint32(body[0:4])
		var rest []byte
		var ok bool
		if p.ID, rest, ok = id(body[4:]); !ok || len(rest) != 0 {
			return bad("HELLO: id length does not match the packet")
		}
	case TypeResume:
		var ok bool
		var rest []byte
		if p.ID, rest, ok = id(body); !ok || len(rest) != 0 {
			return bad("RESUME: id length does not match the packet")
		}
	case TypeRequeue:
		if len(body) > MaxPacket {
			return bad("REQUEUE of a %d-byte packet, limit %d", len(body), MaxPacket)
		}
		p.Payload = body
	case TypeSend, TypeMsg:
		if p.Type == TypeSend && p.Seq == 0 {
			return bad("SEND with sequence number 0")
		}
		var ok bool
		if p.ID, p.Payload, ok = id(body); !ok {
			return bad("%v: id length does not match the packet", p.Type)
		}
		if len(p.Payload) > MaxPayload {
			return bad("%v: payload of %d bytes, limit %d", p.Type, len(p.Payload), MaxPayload)
		}
	case TypeResult, TypeError:
		if len(body) < 4 {
			return bad("%v of %d bytes", p.Type, len(b))
		}
		p.Code = Code(binary.LittleEndian.Uint16(body[0:2]))
		n := int(binary.LittleEndian.Uint16(body[2:4]))
		if n > MaxText || len(body) != 4+n {
			return bad("%v: text length %d does not match the packet", p.Type, n)
		}
		p.Text = string(body[4:])
		if p.Type == TypeResult && p.Seq == 0 {
			return bad("RESULT with sequence number 0")
		}
	default:
		return bad("unknown type %d", uint8(p.Type))
	}
	return p, nil
}

// Answer is what an endpoint server does with one packet a process sent:
// Send is the SEND to act on (then the server answers it with one RESULT
// of its own), or Reply is the answer already decided (a RESULT for a
// SEND it cannot take, or an ERROR), and Close says the connection ends
// after it.
type Answer struct {
	Send  *Packet
	Reply *Packet
	Close bool
}

// Check classifies a packet read by an endpoint server (truncated: the
// read reported MSG_TRUNC), following the rules of the protocol (see
// package msg): a SEND whose header is readable is always answered by a
// RESULT for its seq; anything else that is wrong gets an ERROR and the
// connection is closed.
func Check(b []byte, truncated bool) Answer {
	reply := func(t Type, seq uint32, code Code, text string, closeConn bool) Answer {
		return Answer{Reply: &Packet{Type: t, Seq: seq, Code: code, Text: text}, Close: closeConn}
	}
	t, seq, ok := Header(b)
	sendable := ok && b[2] == Version && t == TypeSend && seq != 0
	if truncated {
		text := fmt.Sprintf("packet over %d bytes: payload over %d bytes", MaxPacket, MaxPayload)
		if sendable {
			return reply(TypeResult, seq, CodeTooBig, text, false)
		}
		return reply(TypeError, seq, CodeTooBig, text, true)
	}
	p, err := Parse(b)
	switch {
	case err != nil && p != nil && p.Version != Version:
		return reply(TypeError, p.Seq, CodeVersion, fmt.Sprintf("protocol version %d, this node speaks %d", p.Version, Version), true)
	case err != nil && sendable:
		return reply(TypeResult, seq, CodeMalformed, err.Error(), false)
	case err != nil:
		return reply(TypeError, seq, CodeMalformed, err.Error(), true)
	case p.Type != TypeSend:
		return reply(TypeError, p.Seq, CodeMalformed, fmt.Sprintf("%v from a process", p.Type), true)
	}
	return Answer{Send: p}
}
