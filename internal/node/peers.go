package node

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"ferry/internal/cluster"
	"ferry/internal/store"
)

// Jobs of other nodes, as last seen: a node that is down (crashed,
// restarting, cut off) still has its jobs — they run on, without their
// daemon — and `ferry ps` elsewhere shows them as "node down" rather than
// gone.

// stateNodeDown is the state shown for a job whose node does not answer.
const stateNodeDown = "node down"

// ErrNodeDown: the job's node does not answer.
var ErrNodeDown = errors.New("node down")

// peerCache is the last job list each peer gave.
type peerCache struct {
	mu   sync.Mutex // guards jobs
	jobs map[string][]JobInfo
}

// peerJobs lists every other node's jobs: fresh from the nodes that
// answer, as last seen (state "node down") from those that do not.
func (n *Node) peerJobs(ctx context.Context) map[string][]JobInfo {
	out := map[string][]JobInfo{}
	asked := map[string]bool{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, m := range n.members() {
		if m.ID == n.cfg.ID {
			continue
		}
		asked[m.ID] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			var theirs []JobInfo
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := n.call(cctx, m.ID, "GET", "/v1/jobs?local=1", nil, &theirs); err != nil {
				n.log.Debug("list jobs", "node", m.ID, "err", err)
				mu.Lock()
				out[m.ID] = n.downJobs(m.ID)
				mu.Unlock()
				return
			}
			n.peers.mu.Lock()
			if n.peers.jobs == nil {
				n.peers.jobs = map[string][]JobInfo{}
			}
			n.peers.jobs[m.ID] = theirs
			n.peers.mu.Unlock()
			mu.Lock()
			out[m.ID] = theirs
			mu.Unlock()
		}()
	}
	wg.Wait()
	n.peers.mu.Lock()
	var gone []string
	for id := range n.peers.jobs {
		if !asked[id] {
			gone = append(gone, id)
		}
	}
	n.peers.mu.Unlock()
	for _, id := range gone {
		out[id] = n.downJobs(id)
	}
	return out
}

// downJobs is what node id last said it ran, marked "node down".
func (n *Node) downJobs(id string) []JobInfo {
	n.peers.mu.Lock()
	defer n.peers.mu.Unlock()
	var out []JobInfo
	for _, info := range n.peers.jobs[id] {
		switch info.State {
		case stateRunning, stateMigrating, stateStarting:
			info.State = stateNodeDown
			info.Error = "node " + id + " does not answer; the job runs on there without its daemon, or ended"
			out = append(out, info)
		case stateExited, stateLost:
			out = append(out, info)
		}
	}
	return out
}

// downNodeOf names the down node a job was last seen running on.
func (n *Node) downNodeOf(job string) string {
	n.peers.mu.Lock()
	ids := make([]string, 0, len(n.peers.jobs))
	for id := range n.peers.jobs {
		ids = append(ids, id)
	}
	n.peers.mu.Unlock()
	for _, id := range ids {
		for _, info := range n.downJobs(id) {
			if info.ID == job && info.State == stateNodeDown {
				return id
			}
		}
	}
	return ""
}

// refreshPeers keeps the cache fresh, so that a node that goes down
// between two `ferry ps` is still known.
func (n *Node) refreshPeers(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.peerJobs(ctx)
		}
	}
}

// savePeer records a member's address, for a restarted node to rejoin
// the cluster even when it was the one the others joined.
func (n *Node) savePeer(m cluster.Member) {
	if m.ID == n.cfg.ID || n.db == nil {
		return
	}
	var old string
	if ok, _ := n.db.Get(store.Peers, m.ID, &old); ok && old == m.Addr {
		return
	}
	if err := n.db.Put(store.Peers, m.ID, m.Addr); err != nil {
		n.log.Warn("record peer", "node", m.ID, "err", err)
	}
}

// knownPeer says whether node id was ever a member.
func (n *Node) knownPeer(id string) bool {
	var addr string
	ok, _ := n.db.Get(store.Peers, id, &addr)
	return ok
}

// knownPeers are the addresses recorded by savePeers.
func (n *Node) knownPeers() []string {
	var out []string
	n.db.Each(store.Peers, func(id string, raw []byte) error {
		var addr string
		if id != n.cfg.ID && json.Unmarshal(raw, &addr) == nil && addr != "" {
			out = append(out, addr)
		}
		return nil
	})
	return out
}
