package node

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"testing"
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
