// Package agent holds ferry's migration agents and the protocol between
// an agent and the node that started it.
//
// A node runs the two sides of a migration in helper processes
// (`ferry agent send|recv`, Main) started inside the job's PID namespace,
// so that the checkpoint and the restore see the job's own PIDs (and a
// /proc of that namespace). The two agents talk to each other directly
// over mutual TLS (ALPN "ferry-migrate", package migrate); each talks to
// its node over two pipes: fd 3 carries events (agent → node), fd 4
// answers (node → agent).
//
// What belongs here: the agents' main, the node ↔ agent protocol (typed
// events and answers, their codec and limits) and the coding of errors
// that cross a process boundary (Error), used on the pipes and in the
// node's API. What does not: the transaction itself (package migrate),
// what the node does with an event (package node).
//
// The protocol, version 1. One JSON object per line, at most MaxLine
// bytes with its newline. An event is {"event": KIND, ...} with the
// fields its kind needs (Event); a Decoder refuses an unknown kind, a
// missing field, an oversized line and malformed JSON, each with an error
// that says which. Two events are questions the agent waits on
// (BeforeCommit, Resolve); the node answers each with exactly one Answer
// {"to": KIND, ...} naming the question. An error travels as {"codes":
// [...], "msg": "..."}: its text and the outcomes (migrate.ErrRefused, …)
// it matched, so that errors.Is still matches them on the other side.
package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"ferry/internal/migrate"
	"ferry/internal/restore"
)

// ALPN is the protocol name the two agents negotiate over TLS.
const ALPN = "ferry-migrate"

// MaxLine bounds one line of the protocol, newline included. A report
// with its rounds and phases is a few KiB; the bound only stops a broken
// peer from making the other buffer without end.
const MaxLine = 1 << 20

// Kind is what an event says.
type Kind string

// The events. Side: which agent sends it.
const (
	// Listening (recv): the receiving agent listens at Addr.
	Listening Kind = "listening"
	// Restored (recv): the new copy is built and held; PID is its main
	// process.
	Restored Kind = "restored"
	// Progress (send): bytes going out (Progress).
	Progress Kind = "progress"
	// BeforeCommit (send, a question): the old copy is frozen and the new
	// one held; the node drains and carries the job's stdio and answers.
	BeforeCommit Kind = "before-commit"
	// Frozen (send, a question): every process of the job is frozen and
	// nothing of it inspected yet; the node stops writing into the job's
	// message-endpoint connections, takes what they hold for it, and
	// answers with its side of each (Answer.Endpoints).
	Frozen Kind = "frozen"
	// Resolve (send, a question): the commit's answer was lost; the node
	// asks the destination whether the new copy runs and answers.
	Resolve Kind = "resolve"
	// Committed: the new copy runs on the destination (send: with the
	// report so far) or is about to be released (recv).
	Committed Kind = "committed"
	// Released (recv): the new copy runs.
	Released Kind = "released"
	// Report: the migration's figures (Report; recv: PID and the
	// restore's Phases too).
	Report Kind = "report"
	// Warning: something went wrong that does not fail the migration
	// (Message).
	Warning Kind = "warning"
	// Failed: the agent's migration failed (Err); its last event.
	Failed Kind = "error"
)

// kinds lists every kind, with the fields it must carry.
var kinds = map[Kind]func(*Event) error{
	Listening:    func(e *Event) error { return need(e.Addr != "", "addr") },
	Restored:     func(e *Event) error { return need(e.PID > 0, "pid") },
	Progress:     func(e *Event) error { return need(e.Progress != nil, "progress") },
	BeforeCommit: func(e *Event) error { return nil },
	Frozen:       func(e *Event) error { return nil },
	Resolve:      func(e *Event) error { return nil },
	Committed:    func(e *Event) error { return nil },
	Released:     func(e *Event) error { return nil },
	Report:       func(e *Event) error { return need(e.Report != nil, "report") },
	Warning:      func(e *Event) error { return need(e.Message != "", "message") },
	Failed:       func(e *Event) error { return need(e.Err != nil, "error") },
}

func need(ok bool, field string) error {
	if !ok {
		return fmt.Errorf("missing %q", field)
	}
	return nil
}

// Event is one line from an agent. Kind says which of the other fields
// are set.
type Event struct {
	Kind     Kind              `json:"event"`
	Addr     string            `json:"addr,omitempty"`
	PID      int               `json:"pid,omitempty"`
	Progress *migrate.Progress `json:"progress,omitempty"`
	Report   *migrate.Report   `json:"report,omitempty"`
	Message  string            `json:"message,omitempty"`
	Err      *Error            `json:"error,omitempty"`
	// Phases of the restore, for the destination node's log.
	Phases []restore.Phase `json:"phases,omitempty"`
}

// Question reports whether the agent waits for an Answer to e.
func (e Event) Question() bool {
	return e.Kind == BeforeCommit || e.Kind == Resolve || e.Kind == Frozen
}

// Check verifies that e is a known kind with the fields it needs.
func (e *Event) Check() error {
	check, ok := kinds[e.Kind]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownKind, e.Kind)
	}
	if err := check(e); err != nil {
		return fmt.Errorf("%w: %s event: %w", ErrProtocol, e.Kind, err)
	}
	return nil
}

// Answer is the node's answer to a question (an Event with Question).
type Answer struct {
	// To is the question's kind.
	To Kind `json:"to"`
	// Err refuses: the migration must fail (BeforeCommit), or the
	// destination could not say (Resolve).
	Err *Error `json:"error,omitempty"`
	// Committed (Resolve): the new copy runs on the destination.
	Committed bool `json:"committed,omitempty"`
	// Endpoints (Frozen): the node's side of each of the job's
	// message-endpoint connections, by socket inode (decimal) → the
	// process id the node knows it as.
	Endpoints map[string]string `json:"endpoints,omitempty"`
}

// Check verifies that a answers the question q.
func (a *Answer) Check(q Kind) error {
	if a.To != q {
		return fmt.Errorf("%w: the node answered %q to a %q question", ErrProtocol, a.To, q)
	}
	if a.Committed && a.To != Resolve {
		return fmt.Errorf("%w: %q answer with committed set", ErrProtocol, a.To)
	}
	if len(a.Endpoints) > 0 && a.To != Frozen {
		return fmt.Errorf("%w: %q answer with endpoints", ErrProtocol, a.To)
	}
	return nil
}

// ErrProtocol is wrapped by every decoding error: a line that is not
// what the protocol says.
var ErrProtocol = errors.New("agent protocol")

// ErrUnknownKind is wrapped when an event's kind is none of the known
// ones (an agent from another ferry, or a corrupt line).
var ErrUnknownKind = fmt.Errorf("%w: unknown event", ErrProtocol)

// ErrLineTooLong is wrapped when a line exceeds MaxLine.
var ErrLineTooLong = fmt.Errorf("%w: line longer than %d bytes", ErrProtocol, MaxLine)

// Encoder writes protocol lines. It is safe for concurrent use: an
// agent's callbacks emit from several goroutines.
type Encoder struct {
	mu sync.Mutex // guards w
	w  io.Writer
}

// NewEncoder returns an Encoder writing to w.
func NewEncoder(w io.Writer) *Encoder { return &Encoder{w: w} }

// Event writes e after checking it.
func (c *Encoder) Event(e Event) error {
	if err := e.Check(); err != nil {
		return fmt.Errorf("send event: %w", err)
	}
	return c.line(e)
}

// Answer writes a.
func (c *Encoder) Answer(a Answer) error {
	if _, ok := kinds[a.To]; !ok || !(Event{Kind: a.To}).Question() {
		return fmt.Errorf("send answer: %w: %q is not a question", ErrProtocol, a.To)
	}
	return c.line(a)
}

func (c *Encoder) line(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b)+1 > MaxLine {
		return fmt.Errorf("send: %w", ErrLineTooLong)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err = c.w.Write(append(b, '\n'))
	return err
}

// Decoder reads protocol lines. It is not safe for concurrent use.
type Decoder struct {
	r   *bufio.Reader
	buf []byte
}

// NewDecoder returns a Decoder reading from r.
func NewDecoder(r io.Reader) *Decoder {
	return &Decoder{r: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next line without its newline: io.EOF at a clean end,
// ErrLineTooLong for a line over MaxLine (skipped: the next call reads
// the line after it), an error wrapping ErrProtocol for a last line cut
// short (the next call returns io.EOF).
func (d *Decoder) next() ([]byte, error) {
	d.buf = d.buf[:0]
	long := false
	for {
		chunk, err := d.r.ReadSlice('\n')
		if !long && len(d.buf)+len(chunk) > MaxLine {
			long, d.buf = true, d.buf[:0]
		}
		if !long {
			d.buf = append(d.buf, chunk...)
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && (len(d.buf) > 0 || long):
			return nil, fmt.Errorf("%w: last line cut short", ErrProtocol)
		case err != nil:
			return nil, err
		case long:
			return nil, ErrLineTooLong
		}
		return d.buf[:len(d.buf)-1], nil
	}
}

// Event reads the next event. It returns io.EOF when the agent closed its
// end, and an error wrapping ErrProtocol for a line that is no valid
// event (oversized, malformed, of an unknown kind or without a field its
// kind needs): the stream goes on, the next call reads the next line.
// Any other error ends the stream.
func (d *Decoder) Event() (Event, error) {
	b, err := d.next()
	if err != nil {
		return Event{}, err
	}
	var e Event
	if err := strictUnmarshal(b, &e); err != nil {
		return Event{}, fmt.Errorf("%w: malformed event %.80q: %v", ErrProtocol, b, err)
	}
	if err := e.Check(); err != nil {
		return Event{}, err
	}
	return e, nil
}

// Answer reads the answer to question q.
func (d *Decoder) Answer(q Kind) (Answer, error) {
	b, err := d.next()
	if err == io.EOF {
		return Answer{}, fmt.Errorf("node gone while waiting for its answer to %s", q)
	}
	if err != nil {
		return Answer{}, fmt.Errorf("node answer to %s: %w", q, err)
	}
	var a Answer
	if err := strictUnmarshal(b, &a); err != nil {
		return Answer{}, fmt.Errorf("%w: malformed answer %.80q: %v", ErrProtocol, b, err)
	}
	if err := a.Check(q); err != nil {
		return Answer{}, err
	}
	return a, nil
}

// strictUnmarshal decodes exactly one JSON object. Fields it does not
// know are ignored: a newer peer may add some.
func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}
