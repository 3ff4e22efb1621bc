package node

import (
	"context"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"

	"ferry/internal/ipc"
)

// Stats is what the node daemon's process knows of itself that cannot be
// read from outside: its goroutines and the Go heap, and its message
// router's counters. Descriptors, threads and resident memory are in
// /proc/PID of the daemon; a soak benchmark reads them there.
type Stats struct {
	PID        int    `json:"pid"`
	Goroutines int    `json:"goroutines"`
	HeapBytes  uint64 `json:"heap_bytes"` // live and not yet swept heap objects
	GCs        uint64 `json:"gcs"`        // completed GC cycles, to tell a heap that grows from one not yet collected
	// Msgs is the router's counters since the node started (messages
	// sent, delivered, their hops, relayed as creator or along a link,
	// …) and the forwarding state it holds now (links, the creator's
	// table of jobs elsewhere); the field names are ipc.Stats'.
	Msgs ipc.Stats `json:"msgs"`
}

// heapMetrics are read by handleStats, in this order.
var heapMetrics = []string{"/memory/classes/heap/objects:bytes", "/gc/cycles/total:gc-cycles"}

// handleStats answers GET /v1/node/stats with this node's Stats.
func (n *Node) handleStats(w http.ResponseWriter, _ *http.Request) {
	samples := make([]metrics.Sample, len(heapMetrics))
	for i, name := range heapMetrics {
		samples[i].Name = name
	}
	metrics.Read(samples)
	st := Stats{PID: os.Getpid(), Goroutines: runtime.NumGoroutine()}
	if s := samples[0].Value; s.Kind() == metrics.KindUint64 {
		st.HeapBytes = s.Uint64()
	}
	if s := samples[1].Value; s.Kind() == metrics.KindUint64 {
		st.GCs = s.Uint64()
	}
	if n.msgs != nil {
		st.Msgs = n.msgs.stats()
	}
	writeJSON(w, st)
}

// Stats asks the node for its Stats.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	err := c.json(ctx, "GET", "/v1/node/stats", nil, &st)
	return st, err
}
