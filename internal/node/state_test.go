package node

import (
	"encoding/json"
	"log/slog"
	"path/filepath"
	"testing"

	"ferry/internal/store"
)

// TestStoreJournal: each phase a migration's steps record leaves the
// store with what a restarted node must know, and the end of a migration
// leaves nothing.
func TestStoreJournal(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "node.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := &Node{log: slog.New(slog.DiscardHandler), db: db}
	jr := n.migrationJournal()
	tests := []struct {
		phase  migPhase
		kept   bool // a record remains
		out    bool
		settle bool // pastCommitPoint: the restarted source must ask the destination
	}{
		{outStarted, true, true, false},
		{outPrepared, true, true, false},
		{outLogSent, true, true, false},
		{outAgentStarted, true, true, false},
		{outStopped, true, true, true},
		{outCarried, true, true, true},
		{outResolving, true, true, true},
		{outCommitted, true, true, true},
		{outMoved, false, false, false},
		{outRolledBack, false, false, false},
		{inPrepared, true, false, false},
		{inCommitted, true, false, false},
		{inReleased, false, false, false},
		{inArrived, false, false, false},
		{inFailed, false, false, false},
	}
	for _, tc := range tests {
		jr.record(phaseRecord{Job: "n1-1", Peer: "n2", Mode: "freeze", Phase: tc.phase, Stopped: []int{7, 8}, Carried: []byte("in\n")})
		var m migrationRecord
		ok, err := db.Get(store.Migrations, "n1-1", &m)
		if err != nil {
			t.Fatal(err)
		}
		if ok != tc.kept {
			t.Errorf("after %s: record kept = %v, want %v", tc.phase, ok, tc.kept)
			continue
		}
		if !ok {
			continue
		}
		if m.Out != tc.out || m.pastCommitPoint() != tc.settle || m.Peer != "n2" || len(m.Stopped) != 2 || string(m.Carried) != "in\n" {
			b, _ := json.Marshal(m)
			t.Errorf("after %s: %s (out %v, past the commit point %v)", tc.phase, b, m.Out, m.pastCommitPoint())
		}
	}
}
