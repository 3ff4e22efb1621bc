package msgload

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ferry/msg"
	"ferry/msg/msgtest"
	"ferry/msg/wire"
)

func TestPayloadRoundTrip(t *testing.T) {
	p := Payload{Kind: KindData, Type: 2, Index: 7, Seq: 123456789, SentNs: 1700000000123456789}
	for _, size := range []int{0, PayloadLen, 100} {
		b := p.Append([]byte("x"), size)[1:]
		if want := max(size, PayloadLen); len(b) != want {
			t.Errorf("Append(size %d) = %d bytes, want %d", size, len(b), want)
		}
		got, err := ParsePayload(b)
		if err != nil || got != p {
			t.Errorf("ParsePayload(Append(%+v, %d)) = %+v, %v", p, size, got, err)
		}
	}
	good := p.Append(nil, 0)
	for _, tt := range []struct {
		name string
		b    []byte
	}{
		{"short", good[:PayloadLen-1]},
		{"magic", append([]byte("XL"), good[2:]...)},
		{"version", append(append([]byte{}, good[:2]...), append([]byte{2}, good[3:]...)...)},
		{"kind", append(append([]byte{}, good[:3]...), append([]byte{9}, good[4:]...)...)},
		{"seq 0", Payload{Kind: KindData}.Append(nil, 0)},
	} {
		if _, err := ParsePayload(tt.b); !errors.Is(err, ErrBadPayload) {
			t.Errorf("ParsePayload(%s) = %v, want ErrBadPayload", tt.name, err)
		}
	}
}

// TestReceiverChecks feeds the receiver's bookkeeping sequences with
// gaps, repeats and reordering.
func TestReceiverChecks(t *testing.T) {
	a := msg.ID{Job: "n2-1", PID: 5}
	for _, tt := range []struct {
		name                 string
		seqs                 []uint64
		end                  uint64 // 0: no end
		received, lost       int
		duplicated, outOrder int
		ok                   bool
	}{
		{"in order", []uint64{1, 2, 3}, 3, 3, 0, 0, 0, true},
		{"gap", []uint64{1, 3}, 3, 2, 1, 0, 0, false},
		{"lost at the end", []uint64{1, 2}, 4, 2, 2, 0, 0, false},
		{"repeat", []uint64{1, 2, 2, 3}, 3, 3, 0, 1, 0, false},
		{"reordered", []uint64{1, 3, 2}, 3, 3, 0, 0, 1, false},
		{"no end", []uint64{1, 2}, 0, 2, 0, 0, 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newReceiver(RecvConfig{Senders: 1})
			now := time.Unix(1000, 0)
			for _, q := range tt.seqs {
				r.add(a, Payload{Kind: KindData, Index: 1, Seq: q, SentNs: now.UnixNano() - 1500}.Append(nil, 0), now)
			}
			if tt.end > 0 {
				r.add(a, Payload{Kind: KindEnd, Index: 1, Seq: tt.end}.Append(nil, 0), now)
			}
			r.add(a, []byte("not ours"), now)
			s := r.summary("n1-1.7")
			if len(s.Senders) != 1 {
				t.Fatalf("summary has %d senders, want 1", len(s.Senders))
			}
			g := s.Senders[0]
			if g.Received != tt.received || g.Lost != tt.lost || g.Duplicated != tt.duplicated || g.OutOfOrder != tt.outOrder || g.OK() != tt.ok {
				t.Errorf("received %d lost %d duplicated %d out of order %d ok %v, want %d %d %d %d %v",
					g.Received, g.Lost, g.Duplicated, g.OutOfOrder, g.OK(), tt.received, tt.lost, tt.duplicated, tt.outOrder, tt.ok)
			}
			if s.Foreign != 1 || s.Complete != (tt.end > 0) {
				t.Errorf("foreign %d complete %v", s.Foreign, s.Complete)
			}
			if g.LatUs[0] != 1 || g.SentUs[0] != 0 {
				t.Errorf("seq 1: sent %d µs, latency %d µs, want 0 and 1", g.SentUs[0], g.LatUs[0])
			}
		})
	}
}

// TestSendRecv runs two senders and a receiver against a fake endpoint
// that routes between them: every message arrives once, in order, and
// the summaries say so and parse back.
func TestSendRecv(t *testing.T) {
	srv := msgtest.New(t, msgtest.Config{ID: func(n int, _ *unix.Ucred) msg.ID { return msg.ID{Job: "t1-1", PID: 100 + n} }})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rout syncBuffer
	rdone := make(chan error, 1)
	go func() {
		rdone <- Recv(ctx, RecvConfig{Senders: 2, Path: srv.Path()}, nil, &rout)
	}()
	for ReadyID(rout.String()) == "" {
		time.Sleep(5 * time.Millisecond)
	}
	to, err := msg.ParseID(ReadyID(rout.String()))
	if err != nil {
		t.Fatal(err)
	}
	const count = 300
	var outs [2]syncBuffer
	var wg sync.WaitGroup
	for i := range outs {
		wg.Go(func() {
			cfg := SendConfig{To: to, Rate: 3000, Count: count, Index: uint32(i + 1), Size: 64, Window: 16, Path: srv.Path()}
			if err := Send(ctx, cfg, nil, &outs[i]); err != nil {
				t.Errorf("sender %d: %v\n%s", i+1, err, outs[i].String())
			}
		})
	}
	wg.Wait()
	if err := <-rdone; err != nil {
		t.Fatalf("receiver: %v\n%s", err, rout.String())
	}
	rs, err := ParseRecv(strings.NewReader(rout.String()))
	if err != nil {
		t.Fatal(err)
	}
	if !rs.Complete || len(rs.Senders) != 2 {
		t.Fatalf("receiver summary: complete %v, %d senders", rs.Complete, len(rs.Senders))
	}
	for i, s := range rs.Senders {
		if !s.OK() || s.Received != count || s.Index != uint32(i+1) || len(s.LatUs) != count {
			t.Errorf("sender %d as received: %+v", i+1, s)
		}
		ss, err := ParseSend(strings.NewReader(outs[i].String()))
		if err != nil {
			t.Fatal(err)
		}
		if ss.Sent != count || ss.Delivered != count || !ss.EndDelivered || len(ss.Errors) != 0 || ss.ID != s.ID {
			t.Errorf("sender %d summary: %+v (received from %s)", i+1, ss, s.ID)
		}
	}
}

// TestSendRefused: a receiver that does not exist: every message is
// refused, counted by kind, and Send says so.
func TestSendRefused(t *testing.T) {
	srv := msgtest.New(t, msgtest.Config{Rule: func(*msgtest.Server, msgtest.Send) msgtest.Result {
		return msgtest.Result{Code: wire.CodeUnreachable, Text: "gone"}
	}})
	var out bytes.Buffer
	err := Send(context.Background(), SendConfig{To: msg.ID{Job: "n9-1", PID: 1}, Rate: 5000, Count: 20, Path: srv.Path()}, nil, &out)
	if !errors.Is(err, ErrChecks) {
		t.Fatalf("Send = %v, want ErrChecks", err)
	}
	ss, err := ParseSend(&out)
	if err != nil {
		t.Fatal(err)
	}
	if ss.Sent != 20 || ss.Delivered != 0 || ss.Errors["unreachable"] != 20 || ss.EndDelivered {
		t.Errorf("summary %+v", ss)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
