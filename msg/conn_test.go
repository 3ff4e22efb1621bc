package msg_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ferry/msg"
	"ferry/msg/msgtest"
	"ferry/msg/wire"
)

// byOrder gives the n-th connection the id t1-1.(100+n), so that one
// test process can hold several.
func byOrder(n int, _ *unix.Ucred) msg.ID { return msg.ID{Job: "t1-1", PID: 100 + n} }

func dial(t *testing.T, s *msgtest.Server) *msg.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := msg.DialPath(ctx, s.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestParseID(t *testing.T) {
	long := strings.Repeat("a", 253)
	tests := []struct {
		in   string
		want msg.ID
		ok   bool
	}{
		{"n1-4.101", msg.ID{"n1-4", 101}, true},
		{"n1-4.0", msg.ID{"n1-4", 0}, true},
		{"host.example-7.2147483647", msg.ID{"host.example-7", 2147483647}, true},
		{"a_b.1", msg.ID{"a_b", 1}, true},
		{long + ".1", msg.ID{long, 1}, true},
		{long + ".12", msg.ID{}, false}, // 256 bytes
		{"", msg.ID{}, false},
		{"n1-4", msg.ID{}, false},
		{".101", msg.ID{}, false},
		{"n1-4.", msg.ID{}, false},
		{"n1-4.0101", msg.ID{}, false},
		{"n1-4.-1", msg.ID{}, false},
		{"n1-4.+1", msg.ID{}, false},
		{"n1-4.2147483648", msg.ID{}, false},
		{"n1 4.1", msg.ID{}, false},
		{"n1/4.1", msg.ID{}, false},
		{"n1-4.1x", msg.ID{}, false},
	}
	for _, tt := range tests {
		got, err := msg.ParseID(tt.in)
		if tt.ok != (err == nil) || got != tt.want {
			t.Errorf("ParseID(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
			continue
		}
		if err != nil && !errors.Is(err, msg.ErrBadID) {
			t.Errorf("ParseID(%q) error %v does not match ErrBadID", tt.in, err)
		}
		if err == nil && got.String() != tt.in {
			t.Errorf("ParseID(%q).String() = %q", tt.in, got.String())
		}
	}
}

func TestSelf(t *testing.T) {
	t.Setenv("FERRY_JOB", "n1-4")
	id, err := msg.Self()
	if err != nil || id.Job != "n1-4" || id.PID != unix.Getpid() {
		t.Fatalf("Self() = %v, %v; want n1-4.%d", id, err, unix.Getpid())
	}
	t.Setenv("FERRY_JOB", "")
	if _, err := msg.Self(); !errors.Is(err, msg.ErrBadID) {
		t.Fatalf("Self() without FERRY_JOB = %v, want ErrBadID", err)
	}
}

func TestDialEnv(t *testing.T) {
	s := msgtest.New(t, msgtest.Config{})
	t.Setenv(msg.PathEnv, s.Path())
	c, err := msg.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if want := (msg.ID{Job: "t1-1", PID: unix.Getpid()}); c.ID() != want {
		t.Fatalf("ID() = %v, want %v (from SO_PEERCRED)", c.ID(), want)
	}
}

func TestRoundTrip(t *testing.T) {
	s := msgtest.New(t, msgtest.Config{ID: byOrder})
	a, b := dial(t, s), dial(t, s)
	ctx := testCtx(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), msg.MaxPayload/16)
	tests := []struct {
		name    string
		from    *msg.Conn
		to      *msg.Conn
		payload []byte
	}{
		{"empty", a, b, nil},
		{"small", a, b, []byte("hello")},
		{"64 KiB exactly", a, b, big},
		{"back", b, a, []byte("reply")},
		{"to self", a, a, []byte("me")},
	}
	for _, tt := range tests {
		if err := tt.from.Send(ctx, tt.to.ID(), tt.payload); err != nil {
			t.Fatalf("%s: Send: %v", tt.name, err)
		}
		from, got, err := tt.to.Recv(ctx)
		if err != nil || from != tt.from.ID() || !bytes.Equal(got, tt.payload) {
			t.Fatalf("%s: Recv = %v, %d bytes, %v; want %v, %d bytes", tt.name, from, len(got), err, tt.from.ID(), len(tt.payload))
		}
	}
}

func TestTooBig(t *testing.T) {
	s := msgtest.New(t, msgtest.Config{ID: byOrder})
	a := dial(t, s)
	err := a.Send(testCtx(t), a.ID(), make([]byte, msg.MaxPayload+1))
	if !errors.Is(err, msg.ErrTooBig) || !strings.Contains(err.Error(), "65537") {
		t.Fatalf("Send(64 KiB + 1) = %v, want ErrTooBig naming the size", err)
	}
	if _, err := a.TrySend(a.ID(), make([]byte, msg.MaxPayload+1)); !errors.Is(err, msg.ErrTooBig) {
		t.Fatalf("TrySend(64 KiB + 1) = %v, want ErrTooBig", err)
	}
	if n := len(s.Sends()); n != 0 {
		t.Fatalf("the server received %d SENDs, want none", n)
	}
	// The connection is still fine.
	if err := a.Send(testCtx(t), a.ID(), []byte("x")); err != nil {
		t.Fatal(err)
	}
}

func TestSendErrors(t *testing.T) {
	codes := map[string]wire.Code{
		"unknown.1": wire.CodeUnknownID, "ended.1": wire.CodeEnded, "far.1": wire.CodeUnreachable,
		"big.1": wire.CodeTooBig, "bad.1": wire.CodeMalformed, "no.1": wire.CodeDenied, "odd.1": 99,
	}
	rule := func(s *msgtest.Server, snd msgtest.Send) msgtest.Result {
		c, ok := codes[snd.To.String()]
		if !ok {
			return msgtest.Route(s, snd)
		}
		return msgtest.Result{Code: c, Text: fmt.Sprintf("%v: %v", snd.To, c)}
	}
	s := msgtest.New(t, msgtest.Config{ID: byOrder, Rule: rule})
	a := dial(t, s)
	tests := []struct {
		to   string
		want error
	}{
		{"unknown.1", msg.ErrUnknownID},
		{"ended.1", msg.ErrReceiverEnded},
		{"far.1", msg.ErrUnreachable},
		{"big.1", msg.ErrTooBig},
		{"bad.1", msg.ErrMalformed},
		{"no.1", msg.ErrDenied},
		{"odd.1", msg.ErrUndeliverable},
		{"nobody.7", msg.ErrUnknownID}, // Route's own refusal
	}
	for _, tt := range tests {
		to, _ := msg.ParseID(tt.to)
		err := a.Send(testCtx(t), to, []byte("x"))
		var se *msg.SendError
		if !errors.Is(err, tt.want) || !errors.Is(err, msg.ErrUndeliverable) || !errors.As(err, &se) || se.To != to ||
			!strings.Contains(err.Error(), tt.to) {
			t.Errorf("Send(%s) = %v, want %v naming the id", tt.to, err, tt.want)
		}
	}
}

func TestTrySendResult(t *testing.T) {
	s := msgtest.New(t, msgtest.Config{ID: byOrder})
	a := dial(t, s)
	var tickets []msg.Ticket
	for i := 0; i < 10; i++ {
		tk, err := a.TrySend(a.ID(), []byte{byte(i)})
		if err != nil {
			t.Fatal(err)
		}
		tickets = append(tickets, tk)
	}
	for _, tk := range tickets {
		if err := a.Result(testCtx(t), tk); err != nil {
			t.Fatalf("Result(%d) = %v", tk.Seq(), err)
		}
	}
	for i := 0; i < 10; i++ {
		_, p, err := a.TryRecv()
		if err != nil || len(p) != 1 || p[0] != byte(i) {
			t.Fatalf("TryRecv %d = %v, %v", i, p, err)
		}
	}
	if err := a.Result(testCtx(t), tickets[0]); err == nil {
		t.Fatal("Result of a collected ticket: no error")
	}
	// TryResult of a message nobody answers.
	s2 := msgtest.New(t, msgtest.Config{ID: byOrder, Rule: func(*msgtest.Server, msgtest.Send) msgtest.Result {
		return msgtest.Result{Silent: true}
	}})
	b := dial(t, s2)
	tk, err := b.TrySend(b.ID(), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.WaitSends(testCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	if done, err := b.TryResult(tk); done || !errors.Is(err, msg.ErrWouldBlock) {
		t.Fatalf("TryResult with no RESULT = %v, %v; want false, ErrWouldBlock", done, err)
	}
}

func TestTryRecvEmpty(t *testing.T) {
	s := msgtest.New(t, msgtest.Config{ID: byOrder})
	a := dial(t, s)
	if _, _, err := a.TryRecv(); !errors.Is(err, msg.ErrWouldBlock) {
		t.Fatalf("TryRecv with nothing queued = %v, want ErrWouldBlock", err)
	}
}

func TestRecvContext(t *testing.T) {
	s := msgtest.New(t, msgtest.Config{ID: byOrder})
	a := dial(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() {
		_, _, err := a.Recv(ctx)
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Recv after cancel = %v, want context.Canceled", err)
	}
	// Still usable, and the read deadline was reset.
	if err := a.Send(testCtx(t), a.ID(), []byte("after")); err != nil {
		t.Fatal(err)
	}
	if _, p, err := a.Recv(testCtx(t)); err != nil || string(p) != "after" {
		t.Fatalf("Recv = %q, %v", p, err)
	}
}

func poll(t *testing.T, fd int, timeout time.Duration) bool {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(timeout/time.Millisecond))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		return n == 1 && fds[0].Revents&unix.POLLIN != 0
	}
}

func TestPollFd(t *testing.T) {
	s := msgtest.New(t, msgtest.Config{ID: byOrder})
	a := dial(t, s)
	if poll(t, a.Fd(), 0) {
		t.Fatal("Fd polls readable with nothing sent")
	}
	woke := make(chan bool)
	go func() { woke <- poll(t, a.Fd(), 10*time.Second) }()
	from := msg.ID{Job: "n2-1", PID: 7}
	if err := s.Inject(a.ID(), from, []byte("wake")); err != nil {
		t.Fatal(err)
	}
	if !<-woke {
		t.Fatal("poll on Fd did not wake when a MSG arrived")
	}
	f, p, err := a.TryRecv()
	if err != nil || f != from || string(p) != "wake" {
		t.Fatalf("TryRecv = %v, %q, %v", f, p, err)
	}
	if poll(t, a.Fd(), 0) {
		t.Fatal("Fd polls readable after the message was read")
	}
}

func TestConcurrent(t *testing.T) {
	s := msgtest.New(t, msgtest.Config{ID: byOrder})
	a, b := dial(t, s), dial(t, s)
	ctx := testCtx(t)
	const senders, each = 4, 200
	var wg sync.WaitGroup
	for g := 0; g < senders; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := a.Send(ctx, b.ID(), []byte(fmt.Sprintf("%d %d", g, i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	next := make([]int, senders)
	for n := 0; n < senders*each; n++ {
		_, p, err := b.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var g, i int
		fmt.Sscanf(string(p), "%d %d", &g, &i)
		if i != next[g] {
			t.Fatalf("sender %d: got %d, want %d (order per sender)", g, i, next[g])
		}
		next[g]++
	}
	wg.Wait()
}

func TestMalformedFromNode(t *testing.T) {
	msgPkt := func(id string, payload []byte) []byte {
		b, err := wire.Append(nil, &wire.Packet{Type: wire.TypeMsg, ID: id, Payload: payload})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := msgPkt("n1-1.5", []byte("x"))
	patch := func(i int, v byte) []byte { b := append([]byte{}, good...); b[i] = v; return b }
	tooBig := append(msgPkt("n1-1.5", make([]byte, wire.MaxPayload)), make([]byte, 300)...)
	result99, _ := wire.Append(nil, &wire.Packet{Type: wire.TypeResult, Seq: 99})
	tests := []struct {
		name string
		pkt  []byte
		want string
	}{
		{"short", []byte{'F', 'M', 1}, "shorter than the 8-byte header"},
		{"magic", patch(0, 'X'), "magic"},
		{"version", patch(2, 9), "version 9"},
		{"type", patch(3, 42), "unknown type 42"},
		{"id length", patch(8, 200), "id length"},
		{"sender id", msgPkt("no-dot", nil), "sender"},
		{"truncated", tooBig, "truncated"},
		{"result for nothing", result99, "RESULT for message 99"},
		{"error", func() []byte {
			b, _ := wire.Append(nil, &wire.Packet{Type: wire.TypeError, Code: wire.CodeMalformed, Text: "your packet"})
			return b
		}(), "your packet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := msgtest.New(t, msgtest.Config{ID: byOrder})
			a := dial(t, s)
			if err := s.InjectRaw(a.ID(), tt.pkt); err != nil {
				t.Fatal(err)
			}
			_, _, err := a.Recv(testCtx(t))
			if !errors.Is(err, msg.ErrProtocol) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Recv = %v, want ErrProtocol saying %q", err, tt.want)
			}
			// The connection stays failed.
			if err := a.Send(testCtx(t), a.ID(), nil); !errors.Is(err, msg.ErrProtocol) {
				t.Fatalf("Send after the failure = %v, want ErrProtocol", err)
			}
		})
	}
}

func TestBadHello(t *testing.T) {
	tests := []struct {
		name  string
		hello func(msg.ID) []byte
		want  string
	}{
		{"not a hello", func(msg.ID) []byte {
			b, _ := wire.Append(nil, &wire.Packet{Type: wire.TypeMsg, ID: "a.1"})
			return b
		}, "want HELLO"},
		{"version", func(id msg.ID) []byte {
			b, _ := wire.Append(nil, &wire.Packet{Type: wire.TypeHello, MaxPayload: 1, ID: id.String()})
			b[2] = 2
			return b
		}, "version 2"},
		{"bad id", func(msg.ID) []byte {
			b, _ := wire.Append(nil, &wire.Packet{Type: wire.TypeHello, MaxPayload: 1, ID: "nodot"})
			return b
		}, "bad id"},
	}
	for _, tt := range tests {
		s := msgtest.New(t, msgtest.Config{Hello: tt.hello})
		c, err := msg.DialPath(testCtx(t), s.Path())
		if err == nil {
			c.Close()
		}
		if !errors.Is(err, msg.ErrProtocol) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: DialPath = %v, want ErrProtocol saying %q", tt.name, err, tt.want)
		}
	}
}

func TestNodeSmallerLimit(t *testing.T) {
	s := msgtest.New(t, msgtest.Config{ID: byOrder, MaxPayload: 100})
	a := dial(t, s)
	if a.MaxPayload() != 100 {
		t.Fatalf("MaxPayload() = %d, want 100", a.MaxPayload())
	}
	if err := a.Send(testCtx(t), a.ID(), make([]byte, 101)); !errors.Is(err, msg.ErrTooBig) {
		t.Fatalf("Send(101) = %v, want ErrTooBig", err)
	}
}

func TestNodeGone(t *testing.T) {
	s := msgtest.New(t, msgtest.Config{ID: byOrder})
	a := dial(t, s)
	if err := s.Inject(a.ID(), msg.ID{Job: "n2-1", PID: 1}, []byte("last")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// What was delivered before is still read, then the end.
	if _, p, err := a.Recv(testCtx(t)); err != nil || string(p) != "last" {
		t.Fatalf("Recv = %q, %v; want \"last\"", p, err)
	}
	if _, _, err := a.Recv(testCtx(t)); !errors.Is(err, msg.ErrClosed) {
		t.Fatalf("Recv after the node closed = %v, want ErrClosed", err)
	}
}

func TestClose(t *testing.T) {
	s := msgtest.New(t, msgtest.Config{ID: byOrder})
	a := dial(t, s)
	errc := make(chan error)
	go func() {
		_, _, err := a.Recv(context.Background())
		errc <- err
	}()
	a.Close()
	if err := <-errc; !errors.Is(err, msg.ErrClosed) {
		t.Fatalf("Recv during Close = %v, want ErrClosed", err)
	}
	if err := a.Send(testCtx(t), a.ID(), nil); !errors.Is(err, msg.ErrClosed) {
		t.Fatalf("Send after Close = %v, want ErrClosed", err)
	}
}

// TestQueuedBySend: a MSG that arrives while Send waits for its RESULT
// is queued in the Conn (Pending), and Fd does not show it.
func TestQueuedBySend(t *testing.T) {
	s := msgtest.New(t, msgtest.Config{ID: byOrder})
	a := dial(t, s)
	// Route injects the MSG before it answers, so Send reads it first.
	if err := a.Send(testCtx(t), a.ID(), []byte("q")); err != nil {
		t.Fatal(err)
	}
	if a.Pending() != 1 || poll(t, a.Fd(), 0) {
		t.Fatalf("Pending() = %d, Fd readable %v; want 1, false", a.Pending(), poll(t, a.Fd(), 0))
	}
	if _, p, err := a.TryRecv(); err != nil || string(p) != "q" {
		t.Fatalf("TryRecv = %q, %v", p, err)
	}
}

func BenchmarkRoundTrip(b *testing.B) {
	for _, size := range []int{64, 4 << 10, msg.MaxPayload} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			s := msgtest.New(b, msgtest.Config{ID: byOrder})
			c, err := msg.DialPath(context.Background(), s.Path())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			p := make([]byte, size)
			b.SetBytes(int64(size))
			for b.Loop() {
				if err := c.Send(ctx, c.ID(), p); err != nil {
					b.Fatal(err)
				}
				if _, _, err := c.Recv(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
