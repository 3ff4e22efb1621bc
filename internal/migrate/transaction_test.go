package migrate

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// The transaction's steps that run without a process to move (no root):
// the destination refusing, or failing before its restore, and the
// source settling a lost commit answer. The rest is test/cluster's.

// pipe returns the two ends of a loopback TCP connection: buffered, as
// the real one is (net.Pipe is not, and both sides write at once here).
func pipe(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// source plays the source's side of conn: fn's frames, then it reads
// until the destination hangs up and returns the Abort it got, if any.
func source(t *testing.T, conn net.Conn, fn func(c *conn)) <-chan error {
	t.Helper()
	got := make(chan error, 1)
	go func() {
		c := newConn(conn)
		fn(c)
		var abort error
		for {
			typ, p, err := c.recv(nil)
			if err != nil {
				break
			}
			if typ == fAbort {
				abort = decodeControl(typ, p, fWelcome, nil)
			}
		}
		conn.Close()
		got <- abort
	}()
	return got
}

func TestTransactionReceiveRefuses(t *testing.T) {
	tests := []struct {
		name   string
		hello  Hello
		accept func(Hello) error
		want   string
	}{
		{"other version", Hello{Version: wireVersion + 1, Job: "n1-1", Mode: Freeze}, nil, "protocol version"},
		{"declined", Hello{Version: wireVersion, Job: "n1-1", Mode: Freeze},
			func(Hello) error { return errors.New("job n1-1 is already running here") }, "already running here"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := pipe(t)
			abort := source(t, a, func(c *conn) { c.sendJSON(fHello, tc.hello) })
			_, err := Receive(context.Background(), nil, b, ReceiveOptions{Accept: tc.accept, Log: slog.New(slog.DiscardHandler)})
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Receive = %v, want ErrRefused with %q", err, tc.want)
			}
			// The source learns why, as an Abort that matches ErrAborted.
			if aerr := <-abort; !errors.Is(aerr, ErrAborted) || !strings.Contains(aerr.Error(), tc.want) {
				t.Fatalf("the source got %v, want an abort with %q", aerr, tc.want)
			}
		})
	}
}

func TestTransactionReceiveFailsBeforeRestore(t *testing.T) {
	hello := Hello{Version: wireVersion, Job: "n1-1", Mode: Freeze}
	tests := []struct {
		name  string
		send  func(c *conn)
		abort bool // the destination says why
		want  string
	}{
		{"gone before hello", func(c *conn) { c.rw.Close() }, false, "hello"},
		{"not an image", func(c *conn) {
			c.sendJSON(fHello, hello)
			var w welcome
			c.recvJSON(fWelcome, &w)
			c.send(fImage, false, []byte("this is not a ferry image, not at all"))
			c.send(fImageEnd, true)
		}, true, "image"},
		{"commit instead of the image", func(c *conn) {
			c.sendJSON(fHello, hello)
			var w welcome
			c.recvJSON(fWelcome, &w)
			c.sendJSON(fCommit, commit{})
		}, true, "image"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := pipe(t)
			abort := source(t, a, tc.send)
			_, err := Receive(context.Background(), nil, b, ReceiveOptions{Log: slog.New(slog.DiscardHandler)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Receive = %v, want an error about %q", err, tc.want)
			}
			if aerr := <-abort; tc.abort != (aerr != nil) {
				t.Fatalf("abort %v, want one: %v", aerr, tc.abort)
			}
		})
	}
}

func TestTransactionReceiveCancelled(t *testing.T) {
	a, b := pipe(t)
	defer a.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Receive(ctx, nil, b, ReceiveOptions{})
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Receive succeeded after its context was cancelled")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Receive did not return after its context was cancelled")
	}
}

// TestResolveLost: a commit whose answer was lost, and the destination
// node says it did not commit (the source resumes: commitSent cleared) or
// cannot be asked (the old copy must not run: commitSent stays, the error
// is ErrCommitUnknown).
func TestTransactionResolveLost(t *testing.T) {
	cause := errors.New("await committed: EOF")
	tests := []struct {
		name    string
		resolve func(context.Context) (bool, error)
		unknown bool // ErrCommitUnknown
		want    string
	}{
		{"no resolver", nil, false, "await committed: EOF"},
		{"not committed", func(context.Context) (bool, error) { return false, nil }, false, "destination did not commit"},
		{"unreachable", func(context.Context) (bool, error) { return false, errors.New("node n2: no route") }, true, "destination unreachable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &sender{opts: SendOptions{Resolve: tc.resolve}, log: slog.New(slog.DiscardHandler)}
			s.commitSent.Store(true)
			err := s.resolve(context.Background(), cause)
			if !errors.Is(err, cause) || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrCommitUnknown) != tc.unknown {
				t.Fatalf("resolve = %v, want %q (commit unknown: %v)", err, tc.want, tc.unknown)
			}
			if s.commitSent.Load() != tc.unknown {
				t.Fatalf("commitSent = %v after %s", s.commitSent.Load(), tc.name)
			}
		})
	}
}
