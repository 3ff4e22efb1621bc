// Package cluster is node membership: which ferry nodes exist, where they
// are, and which are alive. It runs hashicorp/memberlist (SWIM gossip) with
// all its traffic, packets and streams alike, over mutual TLS between
// certificates of the cluster CA (internal/pki), ALPN "ferry-gossip".
//
// A node has one TLS listener for every protocol; gossip connections reach
// this package through Transport.HandleConn. Config.Listen gives the
// cluster a listener of its own instead (tests, simple use).
//
// Identity: a memberlist node name is a node id, the CN of the node's
// certificate. Every gossip connection starts with a header naming its
// sender (documented on the header type, transport.go); the receiver
// refuses it unless that name is the CN of the verified client certificate.
// A connection dialed to a named node must be answered by that node's
// certificate, and an alive message placing a node at an address this node
// has dialed and found another certificate at is ignored.
//
// Node metadata (memberlist's Node.Meta) is JSON: {"v":1,"rpc":"host:port"}.
package cluster

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"ferry/internal/pki"
)

// Config configures a Cluster.
type Config struct {
	// ID is this node's id, the CN of TLS's certificate.
	ID string
	// Addr is the advertised host:port of the node's TLS listener. With
	// Listen, it is also where the cluster listens, and may have port 0.
	Addr string
	// RPC is gossiped as metadata: the node's RPC address. Empty means Addr.
	RPC string
	// TLS holds the node's certificate and the cluster CA.
	TLS *pki.Identity
	// Log receives membership events, and memberlist's own log at debug
	// level; nil discards them.
	Log *slog.Logger
	// Listen runs a TLS listener of the cluster's own on Addr; otherwise
	// gossip connections must be handed to Transport().HandleConn.
	Listen bool
	// OnJoin, if set, is called (on a goroutine of its own) when a
	// member is seen alive.
	OnJoin func(Member)
}

// Member is one node as this node knows it.
type Member struct {
	ID   string
	Addr string // gossip address, ip:port
	RPC  string // RPC address from the node's metadata
	// Alive is false for a node found dead or that left; such nodes stay
	// listed until they come back.
	Alive bool
}

// Cluster is this node's membership in the cluster.
type Cluster struct {
	id  string
	log *slog.Logger
	t   *Transport
	ml  *memberlist.Memberlist
	// onJoin is Config.OnJoin.
	onJoin func(Member)

	mu      sync.Mutex // guards members
	members map[string]Member
}

// metaVersion is the version of the metadata format.
const metaVersion = 1

type meta struct {
	V   int    `json:"v"`
	RPC string `json:"rpc"`
}

// New starts this node's membership; it knows only itself until Join.
func New(cfg Config) (*Cluster, error) {
	if cfg.TLS == nil {
		return nil, errors.New("new cluster: no TLS identity")
	}
	if cfg.ID == "" || cfg.ID != cfg.TLS.ID() {
		return nil, fmt.Errorf("new cluster: node id %q is not the certificate's %q", cfg.ID, cfg.TLS.ID())
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("node", cfg.ID)

	tcfg := TransportConfig{ID: cfg.ID, Addr: cfg.Addr, TLS: cfg.TLS, Log: log.With("component", "gossip")}
	var t *Transport
	var err error
	if cfg.Listen {
		t, err = ListenTransport(tcfg)
	} else {
		t, err = NewTransport(tcfg)
	}
	if err != nil {
		return nil, fmt.Errorf("new cluster: %w", err)
	}
	rpc := cfg.RPC
	if rpc == "" {
		rpc = t.Addr()
	}
	md, err := json.Marshal(meta{V: metaVersion, RPC: rpc})
	if err == nil && len(md) > memberlist.MetaMaxSize {
		err = fmt.Errorf("metadata of %d bytes, limit %d", len(md), memberlist.MetaMaxSize)
	}
	if err != nil {
		t.Shutdown()
		return nil, fmt.Errorf("new cluster: %w", err)
	}

	c := &Cluster{id: cfg.ID, log: log, t: t, members: make(map[string]Member), onJoin: cfg.OnJoin}
	mc := memberlist.DefaultLocalConfig()
	mc.Name = cfg.ID
	mc.Transport = t
	mc.Delegate = metaDelegate(md)
	mc.Events = (*events)(c)
	mc.Alive = (*aliveCheck)(c)
	mc.Logger = slog.NewLogLogger(log.With("component", "memberlist").Handler(), slog.LevelDebug)
	// Tuned for nodes on one machine or one LAN: a dead node is noticed
	// within about two seconds.
	mc.ProbeInterval = 200 * time.Millisecond
	mc.ProbeTimeout = 100 * time.Millisecond
	mc.SuspicionMult = 2
	mc.SuspicionMaxTimeoutMult = 3
	mc.GossipInterval = 100 * time.Millisecond
	mc.PushPullInterval = 10 * time.Second
	mc.TCPTimeout = 2 * time.Second
	mc.GossipToTheDeadTime = 5 * time.Second
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Shutdown()
		return nil, fmt.Errorf("new cluster: %w", err)
	}
	c.ml = ml
	return c, nil
}

// ID returns this node's id.
func (c *Cluster) ID() string { return c.id }

// Addr returns this node's advertised gossip address.
func (c *Cluster) Addr() string { return c.t.Addr() }

// Transport returns the gossip transport, whose HandleConn takes the
// connections of the node's TLS listener that negotiated ALPN.
func (c *Cluster) Transport() *Transport { return c.t }

// Join contacts the seed nodes ("host:port" gossip addresses) and merges
// their view of the cluster with this node's. It returns how many seeds
// answered, and an error only if none did.
func (c *Cluster) Join(seeds []string) (int, error) {
	n, err := c.ml.Join(seeds)
	if err != nil {
		// memberlist returns a multi-line list of errors, one per seed.
		if m, ok := err.(interface{ WrappedErrors() []error }); ok {
			err = seedErrors(m.WrappedErrors())
		}
		return n, fmt.Errorf("join: %w", err)
	}
	return n, nil
}

// seedErrors is the errors of the seeds that could not be joined, on one line.
type seedErrors []error

func (e seedErrors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (e seedErrors) Unwrap() []error { return e }

// Members returns every node this node knows, itself included, sorted by id.
func (c *Cluster) Members() []Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	ms := make([]Member, 0, len(c.members))
	for _, m := range c.members {
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	return ms
}

// Lookup returns the member with the given id.
func (c *Cluster) Lookup(id string) (Member, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.members[id]
	return m, ok
}

// Leave tells the cluster this node is leaving and waits up to timeout for
// the message to spread. The node keeps running until Shutdown.
func (c *Cluster) Leave(timeout time.Duration) error {
	if err := c.ml.Leave(timeout); err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	return nil
}

// Shutdown stops gossip without telling anyone: other nodes will find this
// one dead. Call Leave first for a graceful exit.
func (c *Cluster) Shutdown() error {
	err := c.ml.Shutdown()
	if terr := c.t.Shutdown(); err == nil {
		err = terr
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

func (c *Cluster) set(n *memberlist.Node, alive bool) Member {
	m := Member{ID: n.Name, Addr: n.Address(), Alive: alive}
	var md meta
	if err := json.Unmarshal(n.Meta, &md); err == nil && md.V == metaVersion {
		m.RPC = md.RPC
	} else {
		c.log.Warn("unreadable node metadata", "member", n.Name, "err", err, "version", md.V)
	}
	c.mu.Lock()
	c.members[m.ID] = m
	c.mu.Unlock()
	return m
}

// events receives memberlist's membership changes. memberlist calls it
// with its own locks held: it must not block or call back into memberlist.
type events Cluster

func (e *events) NotifyJoin(n *memberlist.Node) {
	c := (*Cluster)(e)
	m := c.set(n, true)
	c.log.Info("member alive", "member", m.ID, "addr", m.Addr, "rpc", m.RPC)
	if f := c.onJoin; f != nil {
		go f(m)
	}
}

func (e *events) NotifyLeave(n *memberlist.Node) {
	c := (*Cluster)(e)
	c.set(n, false)
	how := "dead"
	if n.State == memberlist.StateLeft {
		how = "left"
	}
	c.log.Info("member gone", "member", n.Name, "how", how)
}

func (e *events) NotifyUpdate(n *memberlist.Node) {
	(*Cluster)(e).set(n, true)
}

// aliveCheck refuses alive messages whose node name cannot be a certificate
// CN, or that place a node at an address found serving another node.
type aliveCheck Cluster

func (a *aliveCheck) NotifyAlive(n *memberlist.Node) error {
	if err := pki.ValidNodeID(n.Name); err != nil {
		return err
	}
	if id, ok := a.t.dialedID(n.Address()); ok && id != n.Name {
		return fmt.Errorf("node %q claims %s, where node %q answered", n.Name, n.Address(), id)
	}
	return nil
}

// metaDelegate gossips the node's metadata and nothing else.
type metaDelegate []byte

func (d metaDelegate) NodeMeta(limit int) []byte {
	if len(d) > limit {
		return nil
	}
	return d
}
func (metaDelegate) NotifyMsg([]byte)                           {}
func (metaDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (metaDelegate) LocalState(join bool) []byte                { return nil }
func (metaDelegate) MergeRemoteState(buf []byte, join bool)     {}
