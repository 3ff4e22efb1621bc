package ipc

import (
	"encoding/json"
	"errors"
	"fmt"
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
