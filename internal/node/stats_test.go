package node

import (
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"testing"

	"ferry/internal/ipc"
)

func TestHandleStats(t *testing.T) {
	rec := httptest.NewRecorder()
	new(Node).handleStats(rec, httptest.NewRequest("GET", "/v1/node/stats", nil))
	var st Stats
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatalf("GET /v1/node/stats = %q: %v", rec.Body.String(), err)
	}
	if st.PID != os.Getpid() || st.Goroutines < 1 || st.HeapBytes == 0 {
		t.Errorf("GET /v1/node/stats = %+v, want pid %d, goroutines and heap", st, os.Getpid())
	}
}

// TestHandleStatsMsgs: the router's counters are in the msgs section.
func TestHandleStatsMsgs(t *testing.T) {
	n := &Node{cfg: Config{ID: "n1"}, log: slog.New(slog.DiscardHandler)}
	n.msgs = newMsgRouter(n, ipc.Link)
	n.msgs.handle(ipc.JobStart{Job: "n1-1"})
	from, to := ipc.ID{Job: "n1-1", PID: 1}, ipc.ID{Job: "n1-1", PID: 2}
	n.msgs.send(from, to, []byte("hi"), sendWait{ch: make(chan error, 1)})
	rec := httptest.NewRecorder()
	n.handleStats(rec, httptest.NewRequest("GET", "/v1/node/stats", nil))
	var st Stats
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatalf("GET /v1/node/stats = %q: %v", rec.Body.String(), err)
	}
	if st.Msgs.Sent != 1 || st.Msgs.Delivered != 1 || st.Msgs.HopsDelivered != 0 {
		t.Errorf("msgs = %+v, want 1 sent and delivered, no hops", st.Msgs)
	}
}
