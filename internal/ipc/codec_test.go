package ipc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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

func TestDurableRoundTrip(t *testing.T) {
	a, _ := ParseID("n1-4.101")
	b, _ := ParseID("n2-1.7")
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	msg := Envelope{Kind: KData, FromNode: "n1", From: a, To: b, Seq: 4, SrcNode: "n1", Payload: []byte("x")}
	d := &Durable{
		Jobs: map[string]*JobState{"n1-4": {Job: "n1-4", Epoch: 3, NextSeq: map[pair]uint64{{a, b}: 5},
			In:     map[ID]*inbox{a: {Peers: map[ID]*peerIn{b: {Next: 9, Node: "n2"}}}},
			Outbox: []*pending{{Env: msg, Deadline: now, NextTry: now, Misses: 2, LastError: fmt.Errorf("wrapped: %w", ErrEnded)}},
			Trail:  []string{"n3"}}},
		Orphans:    []*pending{{Env: msg, Deadline: now, LastError: errors.New("link refused")}},
		Links:      map[string]link{"n2-1": {Loc: Loc{"n3", 2}, LastUsed: now}},
		Table:      map[string]Loc{"n1-4": {"n2", 3}},
		Tombstones: map[string]string{"n1-2": "n1"},
		EndedIn:    map[string]map[pair]uint64{"n1-2": {{b, a}: 7}},
		Controls:   []*control{{To: "n2", Env: Envelope{Kind: KLocUpdate, FromNode: "n1", Job: "n1-4", Loc: Loc{"n2", 3}}, Until: now}},
	}
	enc, err := EncodeDurable(d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeDurable(enc)
	if err != nil {
		t.Fatal(err)
	}
	again, err := EncodeDurable(got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, again) {
		t.Errorf("decoded and encoded again differs:\n%s\n%s", enc, again)
	}
	js := got.Jobs["n1-4"]
	if js == nil || js.NextSeq[pair{a, b}] != 5 || js.In[a].Peers[b].Next != 9 || len(js.Outbox) != 1 || js.Epoch != 3 {
		t.Fatalf("job state %+v", js)
	}
	if !errors.Is(js.Outbox[0].LastError, ErrEnded) {
		t.Errorf("outbox error %v, want one that is ErrEnded", js.Outbox[0].LastError)
	}
	if got.Orphans[0].LastError == nil || got.Orphans[0].LastError.Error() != "link refused" {
		t.Errorf("orphan error %v", got.Orphans[0].LastError)
	}
	if got.EndedIn["n1-2"][pair{b, a}] != 7 || got.Links["n2-1"].Loc != (Loc{"n3", 2}) || got.Table["n1-4"] != (Loc{"n2", 3}) || got.Tombstones["n1-2"] != "n1" || len(got.Controls) != 1 {
		t.Errorf("decoded %+v", got)
	}
}

func TestDurableCorrupt(t *testing.T) {
	good, _ := EncodeDurable(&Durable{Jobs: map[string]*JobState{"n1-4": {Job: "n1-4"}}})
	cases := []struct {
		name, in, want string
	}{
		{"not json", "[", "unexpected end"},
		{"truncated", string(good[:len(good)-2]), "unexpected end"},
		{"version", `{"v":9}`, "version 9"},
		{"bad job", `{"v":1,"jobs":[{"job":"nope"}]}`, "job state"},
		{"job twice", `{"v":1,"jobs":[{"job":"n1-4"},{"job":"n1-4"}]}`, "twice"},
		{"empty job", `{"v":1,"jobs":[null]}`, "is empty"},
		{"orphan", `{"v":1,"orphans":[{"env":{"Kind":2}}]}`, "not a message"},
		{"error name", `{"v":1,"orphans":[{"env":{"Kind":1,"Seq":1},"last_error":"boom"}]}`, "unknown error name"},
		{"link", `{"v":1,"links":[{"job":"n1-4","loc":{"Node":""}}]}`, "link of"},
		{"table", `{"v":1,"table":{"zz":{"Node":"n1"}}}`, "creator's table"},
		{"ended", `{"v":1,"ended_in":[{"job":"n1-4"}]}`, "ended-job record"},
		{"control", `{"v":1,"controls":[{"to":"n2","env":{"Kind":99,"FromNode":"n1"}}]}`, "unknown kind"},
	}
	for _, c := range cases {
		_, err := DecodeDurable([]byte(c.in))
		if err == nil || !errors.Is(err, ErrBadDurable) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrBadDurable containing %q", c.name, err, c.want)
		}
	}
}
