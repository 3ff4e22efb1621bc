package node

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"ferry/internal/ipc"
	"ferry/msg/wire"
)

func TestJournalDecode(t *testing.T) {
	router, err := ipc.EncodeDurable(&ipc.Durable{})
	if err != nil {
		t.Fatal(err)
	}
	pkt, _ := wire.Append(nil, &wire.Packet{Type: wire.TypeMsg, ID: "n2-1.7", Payload: []byte("hi")})
	good := msgJournal{V: journalVersion, Clean: true, Router: router,
		Procs: []journalProc{{ID: "n1-4.101", Job: "n1-4", Gen: 3, Queue: [][]byte{pkt}}}, Mechs: map[string]string{"n1-4": "origin"}}
	b, _ := json.Marshal(good)
	j, _, err := decodeJournal(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(j.Procs) != 1 || j.Procs[0].Gen != 3 || string(j.Procs[0].Queue[0]) != string(pkt) || !j.Clean {
		t.Fatalf("decoded %+v", j)
	}
	with := func(f func(*msgJournal)) string {
		c := good
		c.Procs = append([]journalProc(nil), good.Procs...)
		f(&c)
		b, _ := json.Marshal(c)
		return string(b)
	}
	cases := []struct{ name, in, want string }{
		{"not json", "{", "unexpected end"},
		{"truncated", string(b[:len(b)/2]), "unexpected end"},
		{"version", with(func(j *msgJournal) { j.V = 7 }), "version 7"},
		{"router", with(func(j *msgJournal) { j.Router = json.RawMessage(`{"v":1,"jobs":[null]}`) }), "is empty"},
		{"id", with(func(j *msgJournal) { j.Procs[0].ID = "bogus" }), "id \"bogus\""},
		{"job", with(func(j *msgJournal) { j.Procs[0].Job = "n1-5" }), "of job \"n1-5\""},
		{"packet", with(func(j *msgJournal) { j.Procs[0].Queue = [][]byte{[]byte("FMxx")} }), "message 0"},
		{"mechanism", with(func(j *msgJournal) { j.Mechs = map[string]string{"n1-4": "pigeon"} }), "job n1-4"},
	}
	for _, c := range cases {
		_, _, err := decodeJournal([]byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
		if err != nil && !errors.Is(err, errBadJournal) && !errors.Is(err, ipc.ErrBadDurable) {
			t.Errorf("%s: %v is neither errBadJournal nor ipc.ErrBadDurable", c.name, err)
		}
	}
}
