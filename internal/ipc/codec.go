package ipc

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// The encoding of what nodes exchange: batches of envelopes (the wire
// between routers) and a job's state at a handoff. JSON, versioned, and
// checked on decoding so that a malformed batch is an error naming the
// cause, never a half-applied one.

// BatchVersion is the version of an envelope batch.
const BatchVersion = 1

// MaxBatch bounds the envelopes of one batch.
const MaxBatch = 4096

// MaxPayload is the largest payload an envelope carries (the endpoint's
// limit, 64 KiB).
const MaxPayload = 64 << 10

// ErrBadBatch is wrapped by every error of DecodeBatch.
var ErrBadBatch = errors.New("malformed message batch")

type batch struct {
	V    int        `json:"v"`
	Envs []Envelope `json:"envs"`
}

// EncodeBatch encodes envelopes for the wire.
func EncodeBatch(envs []Envelope) ([]byte, error) {
	if len(envs) > MaxBatch {
		return nil, fmt.Errorf("%d envelopes in a batch, at most %d", len(envs), MaxBatch)
	}
	return json.Marshal(batch{V: BatchVersion, Envs: envs})
}

// DecodeBatch decodes and checks a batch.
func DecodeBatch(b []byte) ([]Envelope, error) {
	var bt batch
	if err := json.Unmarshal(b, &bt); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadBatch, err)
	}
	if bt.V != BatchVersion {
		return nil, fmt.Errorf("%w: version %d, this node speaks %d", ErrBadBatch, bt.V, BatchVersion)
	}
	if len(bt.Envs) > MaxBatch {
		return nil, fmt.Errorf("%w: %d envelopes, at most %d", ErrBadBatch, len(bt.Envs), MaxBatch)
	}
	for i := range bt.Envs {
		if err := bt.Envs[i].check(); err != nil {
			return nil, fmt.Errorf("%w: envelope %d: %v", ErrBadBatch, i, err)
		}
	}
	return bt.Envs, nil
}

// check refuses an envelope the router could not make sense of.
func (e *Envelope) check() error {
	if e.Kind < KData || e.Kind > KNoProcess {
		return fmt.Errorf("unknown kind %d", e.Kind)
	}
	if e.FromNode == "" {
		return errors.New("no sending node")
	}
	switch e.Kind {
	case KData:
		if e.From.Job == "" || e.To.Job == "" || e.Seq == 0 || e.SrcNode == "" {
			return errors.New("message without sender, receiver, seq or source node")
		}
		if len(e.Payload) > MaxPayload {
			return fmt.Errorf("payload of %d bytes, at most %d", len(e.Payload), MaxPayload)
		}
		if e.Hops < 0 {
			return fmt.Errorf("negative hops %d", e.Hops)
		}
	case KAck, KEnded, KNoProcess:
		if e.From.Job == "" || e.To.Job == "" {
			return errors.New("ack without sender or receiver")
		}
	case KTryLater, KUnknown:
		if e.To.Job == "" {
			return errors.New("answer without receiver")
		}
	default:
		if e.Job == "" {
			return errors.New("control message without job")
		}
	}
	return nil
}

// MarshalText prints the id ("" for the zero id).
func (id ID) MarshalText() ([]byte, error) {
	if id == (ID{}) {
		return nil, nil
	}
	return []byte(id.String()), nil
}

// UnmarshalText parses an id ("" is the zero id).
func (id *ID) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*id = ID{}
		return nil
	}
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

type seqEntry struct {
	From ID     `json:"from"`
	To   ID     `json:"to"`
	Next uint64 `json:"next"`
}

type jobStateJSON struct {
	Job     string        `json:"job"`
	Epoch   uint64        `json:"epoch"`
	NextSeq []seqEntry    `json:"next_seq,omitempty"`
	In      map[ID]*inbox `json:"in,omitempty"`
	Outbox  []*pending    `json:"outbox,omitempty"`
	Trail   []string      `json:"trail,omitempty"`
	Frozen  []Envelope    `json:"frozen,omitempty"`
}

// MarshalJSON encodes the state a job carries (a handoff).
func (js *JobState) MarshalJSON() ([]byte, error) {
	v := jobStateJSON{Job: js.Job, Epoch: js.Epoch, In: js.In, Outbox: js.Outbox, Trail: js.Trail, Frozen: js.Frozen}
	for k, n := range js.NextSeq {
		v.NextSeq = append(v.NextSeq, seqEntry{k.From, k.To, n})
	}
	sort.Slice(v.NextSeq, func(i, j int) bool {
		a, b := v.NextSeq[i], v.NextSeq[j]
		if a.From != b.From {
			return a.From.String() < b.From.String()
		}
		return a.To.String() < b.To.String()
	})
	return json.Marshal(v)
}

// UnmarshalJSON decodes and checks a carried job state.
func (js *JobState) UnmarshalJSON(b []byte) error {
	var v jobStateJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if err := checkJobID(v.Job); err != nil {
		return fmt.Errorf("job state: %v", err)
	}
	*js = JobState{Job: v.Job, Epoch: v.Epoch, NextSeq: map[pair]uint64{}, In: v.In, Outbox: v.Outbox, Trail: v.Trail, Frozen: v.Frozen}
	if js.In == nil {
		js.In = map[ID]*inbox{}
	}
	for _, e := range v.NextSeq {
		js.NextSeq[pair{e.From, e.To}] = e.Next
	}
	for i, p := range js.Outbox {
		if p == nil {
			return fmt.Errorf("job state: outbox entry %d is empty", i)
		}
		if e := p.Env; e.Kind != KData || e.From.Job == "" || e.To.Job == "" || e.Seq == 0 || len(e.Payload) > MaxPayload {
			return fmt.Errorf("job state: outbox entry %d is not a message", i)
		}
	}
	for _, in := range js.In {
		if in == nil {
			return errors.New("job state: an empty inbox")
		}
		for _, p := range in.Peers {
			if p == nil {
				return errors.New("job state: an empty sender record")
			}
		}
	}
	return nil
}

type pendingJSON struct {
	Env      Envelope  `json:"env"`
	Deadline time.Time `json:"deadline"`
	NextTry  time.Time `json:"next_try"`
	Tried    bool      `json:"tried,omitempty"`
	Misses   int       `json:"misses,omitempty"`
	// LastError by name for the router's own errors (errors.Is keeps
	// working after decoding), else its text.
	LastError string `json:"last_error,omitempty"`
}

var namedErrors = map[string]error{"ended": ErrEnded, "unreachable": ErrUnreachable, "no-process": ErrNoProcess}

// MarshalJSON encodes a message waiting in an outbox.
func (p *pending) MarshalJSON() ([]byte, error) {
	v := pendingJSON{Env: p.Env, Deadline: p.Deadline, NextTry: p.NextTry, Tried: p.Tried, Misses: p.Misses}
	if p.LastError != nil {
		v.LastError = "text:" + p.LastError.Error()
		for name, e := range namedErrors {
			if errors.Is(p.LastError, e) {
				v.LastError = name
			}
		}
	}
	return json.Marshal(v)
}

// UnmarshalJSON decodes a message waiting in an outbox.
func (p *pending) UnmarshalJSON(b []byte) error {
	var v pendingJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*p = pending{Env: v.Env, Deadline: v.Deadline, NextTry: v.NextTry, Tried: v.Tried, Misses: v.Misses}
	if v.LastError != "" {
		if e, ok := namedErrors[v.LastError]; ok {
			p.LastError = e
		} else if t, ok := strings.CutPrefix(v.LastError, "text:"); ok {
			p.LastError = errors.New(t)
		} else {
			return fmt.Errorf("unknown error name %q", v.LastError)
		}
	}
	return nil
}

// DurableVersion is the version of an encoded Durable (a node's journal).
const DurableVersion = 1

// ErrBadDurable is wrapped by every error of DecodeDurable.
var ErrBadDurable = errors.New("malformed message journal")

type endedEntry struct {
	Job  string `json:"job"`
	From ID     `json:"from"`
	To   ID     `json:"to"`
	Seq  uint64 `json:"seq"`
}

type linkJSON struct {
	Job      string    `json:"job"`
	Loc      Loc       `json:"loc"`
	LastUsed time.Time `json:"last_used"`
}

type controlJSON struct {
	To      string    `json:"to"`
	Env     Envelope  `json:"env"`
	NextTry time.Time `json:"next_try"`
	Until   time.Time `json:"until"`
}

type durableJSON struct {
	V          int               `json:"v"`
	Jobs       []*JobState       `json:"jobs,omitempty"`
	Orphans    []*pending        `json:"orphans,omitempty"`
	Links      []linkJSON        `json:"links,omitempty"`
	Table      map[string]Loc    `json:"table,omitempty"`
	Tombstones map[string]string `json:"tombstones,omitempty"`
	EndedIn    []endedEntry      `json:"ended_in,omitempty"`
	Controls   []controlJSON     `json:"controls,omitempty"`
}

// EncodeDurable encodes what a node journals of its router (deterministic:
// the same state gives the same bytes, so that a node can skip writing
// what did not change).
func EncodeDurable(d *Durable) ([]byte, error) {
	v := durableJSON{V: DurableVersion, Orphans: d.Orphans, Table: d.Table, Tombstones: d.Tombstones}
	for _, js := range d.Jobs {
		v.Jobs = append(v.Jobs, js)
	}
	sort.Slice(v.Jobs, func(i, j int) bool { return v.Jobs[i].Job < v.Jobs[j].Job })
	for job, l := range d.Links {
		v.Links = append(v.Links, linkJSON{job, l.Loc, l.LastUsed})
	}
	sort.Slice(v.Links, func(i, j int) bool { return v.Links[i].Job < v.Links[j].Job })
	for job, m := range d.EndedIn {
		for p, n := range m {
			v.EndedIn = append(v.EndedIn, endedEntry{job, p.From, p.To, n})
		}
	}
	sort.Slice(v.EndedIn, func(i, j int) bool {
		a, b := v.EndedIn[i], v.EndedIn[j]
		if a.Job != b.Job {
			return a.Job < b.Job
		}
		if a.From != b.From {
			return a.From.String() < b.From.String()
		}
		return a.To.String() < b.To.String()
	})
	for _, c := range d.Controls {
		v.Controls = append(v.Controls, controlJSON{c.To, c.Env, c.NextTry, c.Until})
	}
	return json.Marshal(v)
}

// DecodeDurable decodes and checks a journalled router state.
func DecodeDurable(b []byte) (*Durable, error) {
	var v durableJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadDurable, err)
	}
	if v.V != DurableVersion {
		return nil, fmt.Errorf("%w: version %d, this node reads %d", ErrBadDurable, v.V, DurableVersion)
	}
	d := &Durable{Jobs: map[string]*JobState{}, Links: map[string]link{}, Table: v.Table, Tombstones: v.Tombstones, EndedIn: map[string]map[pair]uint64{}}
	for i, js := range v.Jobs {
		if js == nil {
			return nil, fmt.Errorf("%w: job %d is empty", ErrBadDurable, i)
		}
		if d.Jobs[js.Job] != nil {
			return nil, fmt.Errorf("%w: job %s twice", ErrBadDurable, js.Job)
		}
		d.Jobs[js.Job] = js
	}
	for i, p := range v.Orphans {
		if p == nil || p.Env.Kind != KData || p.Env.Seq == 0 {
			return nil, fmt.Errorf("%w: orphan %d is not a message", ErrBadDurable, i)
		}
	}
	d.Orphans = v.Orphans
	for _, l := range v.Links {
		if err := checkJobID(l.Job); err != nil || l.Loc.Node == "" {
			return nil, fmt.Errorf("%w: link of %q to %q", ErrBadDurable, l.Job, l.Loc.Node)
		}
		d.Links[l.Job] = link{Loc: l.Loc, LastUsed: l.LastUsed}
	}
	for job, l := range d.Table {
		if err := checkJobID(job); err != nil || l.Node == "" {
			return nil, fmt.Errorf("%w: creator's table entry %q at %q", ErrBadDurable, job, l.Node)
		}
	}
	for _, e := range v.EndedIn {
		if err := checkJobID(e.Job); err != nil || e.From.Job == "" || e.To.Job == "" {
			return nil, fmt.Errorf("%w: ended-job record %q %v → %v", ErrBadDurable, e.Job, e.From, e.To)
		}
		m := d.EndedIn[e.Job]
		if m == nil {
			m = map[pair]uint64{}
			d.EndedIn[e.Job] = m
		}
		m[pair{e.From, e.To}] = e.Seq
	}
	for i, c := range v.Controls {
		if c.To == "" {
			return nil, fmt.Errorf("%w: control message %d has no node", ErrBadDurable, i)
		}
		if err := c.Env.check(); err != nil {
			return nil, fmt.Errorf("%w: control message %d: %v", ErrBadDurable, i, err)
		}
		d.Controls = append(d.Controls, &control{To: c.To, Env: c.Env, NextTry: c.NextTry, Until: c.Until})
	}
	return d, nil
}
