package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []header{
		{kind: kindPacket, id: "n1", addr: "127.0.0.1:7946"},
		{kind: kindStream, id: "node-2.example", addr: "[::1]:1"},
		{kind: kindStream, id: "x", addr: ""},
	} {
		b, err := h.marshal()
		if err != nil {
			t.Fatalf("marshal(%+v): %v", h, err)
		}
		// Bytes after the header must stay unread.
		r := bytes.NewReader(append(b, "rest"...))
		got, err := readHeader(r)
		if err != nil || got != h {
			t.Errorf("readHeader(marshal(%+v)) = %+v, %v", h, got, err)
		}
		if r.Len() != len("rest") {
			t.Errorf("readHeader(%+v) left %d bytes unread, want 4", h, r.Len())
		}
		for n := range len(b) {
			if _, err := readHeader(bytes.NewReader(b[:n])); !errors.Is(err, ErrBadHeader) {
				t.Errorf("readHeader of %d of %d bytes = %v, want ErrBadHeader", n, len(b), err)
			}
		}
	}
}

func TestHeaderCorrupt(t *testing.T) {
	good, err := header{kind: kindPacket, id: "n1", addr: "127.0.0.1:1"}.marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		at   int
		b    byte
	}{
		{"magic", 0, 'X'},
		{"version", 4, 2},
		{"kind 0", 5, 0},
		{"kind 3", 5, 3},
		{"empty id", 6, 0},
	} {
		b := bytes.Clone(good)
		b[tc.at] = tc.b
		if _, err := readHeader(bytes.NewReader(b)); !errors.Is(err, ErrBadHeader) {
			t.Errorf("%s: readHeader = %v, want ErrBadHeader", tc.name, err)
		}
	}
	for _, h := range []header{
		{kind: 9, id: "n1"},
		{kind: kindPacket, id: ""},
		{kind: kindPacket, id: string(make([]byte, 256))},
	} {
		if _, err := h.marshal(); !errors.Is(err, ErrBadHeader) {
			t.Errorf("marshal(%+v) = %v, want ErrBadHeader", h, err)
		}
	}
}

func listenTransport(t *testing.T, dir, id string) *Transport {
	t.Helper()
	tr, err := ListenTransport(TransportConfig{ID: id, Addr: "127.0.0.1:0", TLS: identity(t, dir, id), Log: testLogger(t)})
	if err != nil {
		t.Fatalf("ListenTransport(%q): %v", id, err)
	}
	t.Cleanup(func() { tr.Shutdown() })
	return tr
}

func TestTransportPacketsAndStreams(t *testing.T) {
	dir := clusterDir(t, "n1", "n2")
	t1, t2 := listenTransport(t, dir, "n1"), listenTransport(t, dir, "n2")

	for i, to := range []memberlist.Address{{Addr: t2.Addr(), Name: "n2"}, {Addr: t2.Addr()}} {
		msg := []byte{byte(i), 'p', 'i', 'n', 'g'}
		if _, err := t1.WriteToAddress(msg, to); err != nil {
			t.Fatalf("WriteToAddress(%v): %v", to, err)
		}
		select {
		case p := <-t2.PacketCh():
			if !bytes.Equal(p.Buf, msg) || p.From.String() != t1.Addr() {
				t.Errorf("packet %q from %v, want %q from %s", p.Buf, p.From, msg, t1.Addr())
			}
		case <-time.After(waitTimeout):
			t.Fatalf("packet to %v not delivered", to)
		}
	}

	c, err := t1.DialAddressTimeout(memberlist.Address{Addr: t2.Addr(), Name: "n2"}, 5*time.Second)
	if err != nil {
		t.Fatalf("DialAddressTimeout: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("stream")); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-t2.StreamCh():
		defer s.Close()
		var b [6]byte
		if _, err := io.ReadFull(s, b[:]); err != nil || string(b[:]) != "stream" {
			t.Errorf("stream read %q, %v; want \"stream\"", b, err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("stream not delivered")
	}

	if _, err := t1.DialAddressTimeout(memberlist.Address{Addr: t2.Addr(), Name: "n3"}, 5*time.Second); err == nil {
		t.Error("dial of n3 answered by n2 succeeded")
	}
	if id, ok := t1.dialedID(t2.Addr()); id != "n2" || !ok {
		t.Errorf("dialedID(%s) = %q, %v; want n2", t2.Addr(), id, ok)
	}
}

// TestTransportRefuses sends hand-made connections to a transport; each must
// be closed without reaching memberlist.
func TestTransportRefuses(t *testing.T) {
	dir := clusterDir(t, "n1", "n2")
	tr := listenTransport(t, dir, "n1")
	n2 := identity(t, dir, "n2")
	hdr := func(h header) []byte {
		b, err := h.marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		alpn string
		send []byte
	}{
		{"id is not the certificate's", ALPN, hdr(header{kind: kindStream, id: "n3", addr: "127.0.0.1:1"})},
		{"garbage header", ALPN, []byte("GET / HTTP/1.1\r\n\r\n")},
		{"bad reply address", ALPN, hdr(header{kind: kindStream, id: "n2", addr: "somewhere"})},
		{"oversized packet", ALPN, append(hdr(header{kind: kindPacket, id: "n2", addr: "127.0.0.1:1"}), 0xff, 0xff, 0xff, 0xff)},
		{"no ALPN", "", hdr(header{kind: kindStream, id: "n2", addr: "127.0.0.1:1"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := n2.ClientConfig()
			if tc.alpn != "" {
				cfg.NextProtos = []string{tc.alpn}
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			d := tls.Dialer{Config: cfg}
			c, err := d.DialContext(ctx, "tcp", tr.Addr())
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			if _, err := c.Write(tc.send); err != nil {
				t.Fatalf("write: %v", err)
			}
			c.SetReadDeadline(time.Now().Add(waitTimeout))
			if _, err := c.Read(make([]byte, 1)); err == nil {
				t.Error("read succeeded, want the connection closed")
			} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Error("connection left open")
			}
			select {
			case s := <-tr.StreamCh():
				s.Close()
				t.Error("refused connection reached memberlist")
			case p := <-tr.PacketCh():
				t.Errorf("refused connection delivered packet %q", p.Buf)
			default:
			}
		})
	}
}

func TestTransportShutdown(t *testing.T) {
	dir := clusterDir(t, "n1", "n2")
	t1, t2 := listenTransport(t, dir, "n1"), listenTransport(t, dir, "n2")
	if _, err := t1.WriteToAddress([]byte("x"), memberlist.Address{Addr: t2.Addr()}); err != nil {
		t.Fatal(err)
	}
	<-t2.PacketCh()
	if err := t2.Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := t2.Shutdown(); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if _, err := t2.WriteToAddress([]byte("x"), memberlist.Address{Addr: t1.Addr()}); err == nil {
		t.Error("WriteToAddress after Shutdown succeeded")
	}
	if _, err := t1.DialAddressTimeout(memberlist.Address{Addr: t2.Addr()}, time.Second); err == nil {
		t.Error("dial of a shut-down transport succeeded")
	}
}
