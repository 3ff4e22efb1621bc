package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	"ferry/internal/pki"
)

// Local is a cluster of nodes running inside this process, on loopback
// with mutual TLS, each with its own state directory under Dir: what
// `ferry demo` and `ferry bench` use.
type Local struct {
	Dir     string
	IDs     []string
	Clients map[string]*Client
	// Addrs are the nodes' TLS addresses (API between nodes, membership).
	Addrs  map[string]string
	cancel context.CancelFunc
	wg     sync.WaitGroup
	errs   chan error

	mu    sync.Mutex            // guards nodes
	nodes map[string]*localNode // running, by id
}

// localNode is one node of a Local cluster.
type localNode struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when its Run returned
}

// LocalConfig describes a local cluster.
type LocalConfig struct {
	Dir string   // created if missing; the caller removes it
	IDs []string // default n1, n2, n3
	Exe string   // ferry's binary, for job inits and agents
	// Forwarding is the nodes' message forwarding for jobs that choose
	// none (node.Config.Forwarding; default auto).
	Forwarding string
	Log        *slog.Logger
}

// StartLocal starts the nodes, joins them and waits until every node is
// a live member.
func StartLocal(ctx context.Context, cfg LocalConfig) (*Local, error) {
	if len(cfg.IDs) == 0 {
		cfg.IDs = []string{"n1", "n2", "n3"}
	}
	if err := pki.Init(filepath.Join(cfg.Dir, "pki"), cfg.IDs); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	l := &Local{Dir: cfg.Dir, IDs: cfg.IDs, Clients: map[string]*Client{}, Addrs: map[string]string{}, cancel: cancel,
		errs: make(chan error, len(cfg.IDs)), nodes: map[string]*localNode{}}
	var first string
	for _, id := range cfg.IDs {
		addr, err := freeAddr()
		if err != nil {
			l.Stop()
			return nil, err
		}
		nc := Config{ID: id, Listen: addr, StateDir: filepath.Join(cfg.Dir, id), PKIDir: filepath.Join(cfg.Dir, "pki"),
			Exe: cfg.Exe, Log: cfg.Log, StopJobs: true, Forwarding: cfg.Forwarding}
		if first != "" {
			nc.Join = []string{first}
		} else {
			first = addr
		}
		n, err := New(nc)
		if err != nil {
			l.Stop()
			return nil, err
		}
		nctx, ncancel := context.WithCancel(ctx)
		ln := &localNode{cancel: ncancel, done: make(chan struct{})}
		l.nodes[id] = ln
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer close(ln.done)
			if err := n.Run(nctx); err != nil {
				l.errs <- fmt.Errorf("node %s: %w", id, err)
			}
		}()
		l.Clients[id] = NewClient(nc.SocketPath())
		l.Addrs[id] = addr
	}
	if err := l.waitMembers(ctx); err != nil {
		l.Stop()
		return nil, err
	}
	return l, nil
}

// SocketPath is the control socket the node will use.
func (c Config) SocketPath() string {
	if c.Socket != "" {
		return c.Socket
	}
	return filepath.Join(c.StateDir, "ferry.sock")
}

func (l *Local) waitMembers(ctx context.Context) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		alive := 0
		ms, err := l.Clients[l.IDs[0]].Members(ctx)
		for _, m := range ms {
			if m.Alive {
				alive++
			}
		}
		if err == nil && alive == len(l.IDs) {
			return nil
		}
		select {
		case err := <-l.errs:
			return err
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster did not form: %d of %d nodes alive (%v)", alive, len(l.IDs), err)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// StopNode ends one node (and its jobs) and waits for it, as if its
// machine went down: the others are not told and keep it as a member
// until membership finds it dead. Its client fails from then on.
func (l *Local) StopNode(id string) error {
	l.mu.Lock()
	ln := l.nodes[id]
	delete(l.nodes, id)
	l.mu.Unlock()
	if ln == nil {
		return fmt.Errorf("no running node %s in the local cluster", id)
	}
	ln.cancel()
	<-ln.done
	return nil
}

// Stop ends every node (and with them their jobs: a local cluster's
// nodes are started with StopJobs) and waits for them.
func (l *Local) Stop() {
	l.cancel()
	l.wg.Wait()
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
