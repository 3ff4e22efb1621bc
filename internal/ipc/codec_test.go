package ipc

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestBatchRoundTrip(t *testing.T) {
	a, _ := ParseID("n1-4.101")
	b, _ := ParseID("n2-1.7")
	in := []Envelope{
		{Kind: KData, FromNode: "n1", From: a, To: b, Seq: 3, Floor: 2, SrcNode: "n1", Hops: 1, Payload: []byte("hi\x00there")},
		{Kind: KAck, FromNode: "n2", From: a, To: b, UpTo: 3, Loc: Loc{"n2", 4}},
		{Kind: KLocate, FromNode: "n3", Job: "n2-1"},
	}
	enc, err := EncodeBatch(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeBatch(enc)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("%d envelopes, want %d", len(out), len(in))
	}
	for i := range in {
		if !bytes.Equal(out[i].Payload, in[i].Payload) {
			t.Errorf("envelope %d payload %q, want %q", i, out[i].Payload, in[i].Payload)
		}
		out[i].Payload, in[i].Payload = nil, nil
		if out[i].From != in[i].From || out[i].To != in[i].To || out[i].Kind != in[i].Kind || out[i].Seq != in[i].Seq || out[i].Loc != in[i].Loc || out[i].Job != in[i].Job {
			t.Errorf("envelope %d: %+v, want %+v", i, out[i], in[i])
		}
	}
}

func TestBatchCorrupt(t *testing.T) {
	good, _ := EncodeBatch([]Envelope{{Kind: KData, FromNode: "n1", From: ID{"n1-1", 2}, To: ID{"n2-1", 3}, Seq: 1, SrcNode: "n1"}})
	big := strings.Repeat("A", (MaxPayload+3)/3*4+8)
	cases := []struct {
		name, in, want string
	}{
		{"not json", "{", "unexpected end"},
		{"version", `{"v":2,"envs":[]}`, "version 2"},
		{"kind", `{"v":1,"envs":[{"Kind":99,"FromNode":"n1"}]}`, "unknown kind"},
		{"no node", `{"v":1,"envs":[{"Kind":6,"Job":"n1-1"}]}`, "no sending node"},
		{"bad id", `{"v":1,"envs":[{"Kind":1,"FromNode":"n1","From":"x","To":"n2-1.3","Seq":1,"SrcNode":"n1"}]}`, "bad process id"},
		{"no seq", `{"v":1,"envs":[{"Kind":1,"FromNode":"n1","From":"n1-1.2","To":"n2-1.3","SrcNode":"n1"}]}`, "without sender"},
		{"payload", `{"v":1,"envs":[{"Kind":1,"FromNode":"n1","From":"n1-1.2","To":"n2-1.3","Seq":1,"SrcNode":"n1","Payload":"` + big + `"}]}`, "payload of"},
		{"truncated", string(good[:len(good)-3]), "unexpected end"},
	}
	for _, c := range cases {
		_, err := DecodeBatch([]byte(c.in))
		if err == nil || !errors.Is(err, ErrBadBatch) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrBadBatch containing %q", c.name, err, c.want)
		}
	}
}

func TestJobStateJSON(t *testing.T) {
	r := NewRouter(Config{Node: "n1", Mechanism: Link})
	now := time.Unix(100, 0)
	r.Handle(now, JobStart{Job: "n1-1"})
	a, b := ID{"n1-1", 5}, ID{"n2-9", 1}
	r.Handle(now, Send{From: a, To: b, Payload: []byte("x")})
	r.Handle(now, Receive{Env: Envelope{Kind: KData, FromNode: "n2", From: b, To: a, Seq: 1, SrcNode: "n2"}})
	r.Handle(now, MigrateStart{Job: "n1-1", To: "n3"})
	var st *JobState
	for _, act := range r.Handle(now, Commit{Job: "n1-1"}) {
		if h, ok := act.(Handoff); ok {
			st = h.State
		}
	}
	if st == nil {
		t.Fatal("no handoff")
	}
	enc, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var back JobState
	if err := json.Unmarshal(enc, &back); err != nil {
		t.Fatal(err)
	}
	if back.NextSeq[pair{a, b}] != 1 || len(back.Outbox) != 1 || back.In[a].Peers[b].Next != 2 || back.Epoch != st.Epoch {
		t.Fatalf("decoded %+v from %s", back, enc)
	}
	if err := json.Unmarshal([]byte(`{"job":"nodash"}`), &back); err == nil {
		t.Error("a job state with a bad job id decoded")
	}
	if err := json.Unmarshal([]byte(`{"job":"n1-1","outbox":[{"Env":{"Kind":2}}]}`), &back); err == nil {
		t.Error("a job state whose outbox holds an ack decoded")
	}
}
