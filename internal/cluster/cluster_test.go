package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"ferry/internal/pki"
	"ferry/internal/testutil"
)

// waitTimeout bounds every wait for the cluster to converge; the tuned
// intervals make it take well under a second, or about two for a death.
const waitTimeout = 15 * time.Second

// testLogger logs to the test's output until the test ends, then drops
// records: memberlist goroutines may still log while they wind down.
func testLogger(t *testing.T) *slog.Logger { return testutil.Logger(t, slog.LevelInfo) }

func clusterDir(t *testing.T, ids ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	if err := pki.Init(dir, ids); err != nil {
		t.Fatalf("pki.Init: %v", err)
	}
	return dir
}

func identity(t *testing.T, dir, id string) *pki.Identity {
	t.Helper()
	ident, err := pki.Load(dir, id)
	if err != nil {
		t.Fatalf("pki.Load(%q): %v", id, err)
	}
	return ident
}

// startNode starts a node with its own listener on a free loopback port.
func startNode(t *testing.T, dir, id string) *Cluster {
	t.Helper()
	c, err := New(Config{ID: id, Addr: "127.0.0.1:0", TLS: identity(t, dir, id), Log: testLogger(t), Listen: true})
	if err != nil {
		t.Fatalf("New(%q): %v", id, err)
	}
	t.Cleanup(func() { c.Shutdown() })
	return c
}

func join(t *testing.T, c *Cluster, seeds ...string) {
	t.Helper()
	n, err := c.Join(seeds)
	if err != nil || n != len(seeds) {
		t.Fatalf("%s: Join(%q) = %d, %v; want %d, nil", c.ID(), seeds, n, err, len(seeds))
	}
}

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t *testing.T, what string, cond func() (ok bool, state string)) time.Duration {
	t.Helper()
	return testutil.Poll(t, waitTimeout, 20*time.Millisecond, what, cond)
}

// alive returns the ids c sees alive, sorted.
func alive(c *Cluster) []string {
	var ids []string
	for _, m := range c.Members() {
		if m.Alive {
			ids = append(ids, m.ID)
		}
	}
	return ids
}

func allSeeAlive(nodes []*Cluster, want []string) func() (bool, string) {
	return func() (bool, string) {
		state := ""
		ok := true
		for _, c := range nodes {
			got := alive(c)
			state += fmt.Sprintf("%s sees %q; ", c.ID(), got)
			if !slices.Equal(got, want) {
				ok = false
			}
		}
		return ok, state
	}
}

func startThree(t *testing.T) []*Cluster {
	t.Helper()
	dir := clusterDir(t, "n1", "n2", "n3")
	nodes := []*Cluster{startNode(t, dir, "n1"), startNode(t, dir, "n2"), startNode(t, dir, "n3")}
	join(t, nodes[1], nodes[0].Addr())
	join(t, nodes[2], nodes[1].Addr())
	d := waitFor(t, "three members alive everywhere", allSeeAlive(nodes, []string{"n1", "n2", "n3"}))
	t.Logf("converged in %v", d)
	return nodes
}

func TestJoinThree(t *testing.T) {
	nodes := startThree(t)
	for _, c := range nodes {
		for _, other := range nodes {
			m, ok := c.Lookup(other.ID())
			want := Member{ID: other.ID(), Addr: other.Addr(), RPC: other.Addr(), Alive: true}
			if !ok || m != want {
				t.Errorf("%s: Lookup(%q) = %+v, %v; want %+v", c.ID(), other.ID(), m, ok, want)
			}
		}
	}
	if _, ok := nodes[0].Lookup("n4"); ok {
		t.Error("Lookup of an unknown node succeeded")
	}
}

func TestShutdownSeenDead(t *testing.T) {
	nodes := startThree(t)
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	d := waitFor(t, "n3 seen dead", allSeeAlive(nodes[:2], []string{"n1", "n2"}))
	t.Logf("n3 seen dead after %v", d)
	for _, c := range nodes[:2] {
		if m, ok := c.Lookup("n3"); !ok || m.Alive {
			t.Errorf("%s: Lookup(n3) = %+v, %v; want a dead member remembered", c.ID(), m, ok)
		}
		if n := len(c.Members()); n != 3 {
			t.Errorf("%s: %d members, want 3 (dead ones included)", c.ID(), n)
		}
	}
}

func TestLeave(t *testing.T) {
	nodes := startThree(t)
	if err := nodes[0].Leave(5 * time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	waitFor(t, "n1 seen gone", allSeeAlive(nodes[1:], []string{"n2", "n3"}))
	if err := nodes[0].Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestForeignCARefused(t *testing.T) {
	dir := clusterDir(t, "n1", "n2")
	n1 := startNode(t, dir, "n1")
	// Same node name, another CA: only the CA tells it apart.
	foreign := startNode(t, clusterDir(t, "n2"), "n2")
	n, err := foreign.Join([]string{n1.Addr()})
	if err == nil || n != 0 {
		t.Fatalf("Join from another CA = %d, %v; want 0 and an error", n, err)
	}
	t.Logf("Join error: %v", err)
	if got := foreign.Members(); len(got) != 1 {
		t.Errorf("foreign node knows %+v, want only itself", got)
	}
	if got := n1.Members(); len(got) != 1 {
		t.Errorf("n1 knows %+v, want only itself", got)
	}
	// Nor can the cluster pull the foreign node in.
	if n, err := n1.Join([]string{foreign.Addr()}); err == nil || n != 0 {
		t.Errorf("Join to another CA = %d, %v; want 0 and an error", n, err)
	}
}

// TestSharedListener runs a node without a listener of its own: a TLS
// listener serving two protocols hands it the gossip connections.
func TestSharedListener(t *testing.T) {
	dir := clusterDir(t, "n1", "n2")
	ident := identity(t, dir, "n1")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rpc := "127.0.0.1:1"
	n1, err := New(Config{ID: "n1", Addr: ln.Addr().String(), RPC: rpc, TLS: ident, Log: testLogger(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { serveShared(ctx, ln, ident.ServerConfig("other", ALPN), n1.Transport()) })
	t.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
		n1.Shutdown()
	})

	n2 := startNode(t, dir, "n2")
	join(t, n2, n1.Addr())
	waitFor(t, "two members alive", allSeeAlive([]*Cluster{n1, n2}, []string{"n1", "n2"}))
	if m, _ := n2.Lookup("n1"); m.RPC != rpc {
		t.Errorf("n2 sees n1's RPC address %q, want %q", m.RPC, rpc)
	}

	// The other protocol of the shared listener still works.
	d := tls.Dialer{Config: identity(t, dir, "n2").ClientConfig("other")}
	c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial the other protocol: %v", err)
	}
	defer c.Close()
	var b [5]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || string(b[:]) != "other" {
		t.Errorf("other protocol answered %q, %v; want \"other\"", b, err)
	}
}

// serveShared is what a node's shared listener does: handshake, then
// dispatch on ALPN.
func serveShared(ctx context.Context, ln net.Listener, cfg *tls.Config, gossip *Transport) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Go(func() {
			tc := tls.Server(c, cfg)
			hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := tc.HandshakeContext(hctx); err != nil {
				tc.Close()
				return
			}
			switch tc.ConnectionState().NegotiatedProtocol {
			case ALPN:
				gossip.HandleConn(tc)
			default:
				tc.Write([]byte("other"))
				tc.Close()
			}
		})
	}
}

func TestNewRefuses(t *testing.T) {
	dir := clusterDir(t, "n1")
	n1 := identity(t, dir, "n1")
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no identity", Config{ID: "n1", Addr: "127.0.0.1:1"}},
		{"id is not the certificate's", Config{ID: "n2", Addr: "127.0.0.1:1", TLS: n1}},
		{"no id", Config{Addr: "127.0.0.1:1", TLS: n1}},
		{"unspecified address", Config{ID: "n1", Addr: "0.0.0.0:1", TLS: n1}},
		{"port 0 without a listener", Config{ID: "n1", Addr: "127.0.0.1:0", TLS: n1}},
		{"unspecified listen address", Config{ID: "n1", Addr: ":0", TLS: n1, Listen: true}},
		{"bad address", Config{ID: "n1", Addr: "127.0.0.1", TLS: n1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.cfg)
			if err == nil {
				c.Shutdown()
				t.Fatalf("New(%+v) succeeded, want an error", tc.cfg)
			}
			t.Logf("New: %v", err)
		})
	}
}
