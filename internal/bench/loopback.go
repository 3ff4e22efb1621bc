package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/pki"
)

// The limits a migration between two nodes of one machine is bound by:
// carrying the bytes over loopback (plain TCP, and TLS 1.3 as migration
// traffic is), and putting them into memory never touched before, which
// every page of the new copy on the destination is.

// PushPiece is the size of the sender's writes and the receiver's reads
// of a loopback push.
const PushPiece = 1 << 20

// TLSPair holds the two ends' configurations of a mutually authenticated
// TLS connection.
type TLSPair struct {
	Server, Client *tls.Config
}

// ClusterTLS returns the configurations with which node client connects
// to node server, from a cluster's PKI directory (as `ferry init` and
// node.StartLocal create it): TLS 1.3, both sides presenting their node
// certificates, as migration agents talk.
func ClusterTLS(pkiDir, server, client string) (*TLSPair, error) {
	s, err := pki.Load(pkiDir, server)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", server, err)
	}
	c, err := pki.Load(pkiDir, client)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", client, err)
	}
	return &TLSPair{Server: s.ServerConfig(), Client: c.ClientConfig()}, nil
}

// Push is one PushLoopback measurement.
type Push struct {
	// Took runs from the sender's first write to the receiver holding
	// the last byte.
	Took time.Duration
	// Cipher is the negotiated TLS cipher suite, "" over plain TCP.
	Cipher string
}

// PushLoopback sends size bytes (src again and again) over a new TCP
// connection on 127.0.0.1, through TLS when tp is not nil, from this
// goroutine to another, and times it; connecting and the handshake are
// not timed. The receiver reads into one reused buffer already touched,
// or with fresh into a new private anonymous mapping of size bytes that
// nothing touched before, filled in order: what the destination of a
// migration does with the pages of the new copy.
func PushLoopback(ctx context.Context, size int, src []byte, tp *TLSPair, fresh bool) (Push, error) {
	if size <= 0 || len(src) == 0 {
		return Push{}, errors.New("push: nothing to send")
	}
	send, recv, err := loopbackPair(ctx, tp)
	if err != nil {
		return Push{}, err
	}
	defer send.Close()
	defer recv.Close()
	var p Push
	if tc, ok := send.(*tls.Conn); ok {
		p.Cipher = tls.CipherSuiteName(tc.ConnectionState().CipherSuite)
	}

	var dst []byte
	if fresh {
		dst, err = unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return Push{}, os.NewSyscallError("mmap", err)
		}
		defer unix.Munmap(dst)
	} else {
		dst = NewBuffer(min(PushPiece, size))
	}

	// A cancelled context breaks both ends out of their reads and writes.
	stop := context.AfterFunc(ctx, func() {
		send.SetDeadline(time.Unix(1, 0))
		recv.SetDeadline(time.Unix(1, 0))
	})
	defer stop()

	type received struct {
		end time.Time
		err error
	}
	done := make(chan received, 1)
	go func() {
		got := 0
		for got < size {
			var b []byte
			if fresh {
				b = dst[got:min(got+PushPiece, size)]
			} else {
				b = dst[:min(len(dst), size-got)]
			}
			n, err := recv.Read(b)
			got += n
			if err != nil && got < size {
				done <- received{err: fmt.Errorf("receive: %d of %d bytes: %w", got, size, err)}
				return
			}
		}
		done <- received{end: time.Now()}
	}()

	start := time.Now()
	var werr error
	for sent := 0; sent < size; {
		n := min(PushPiece, size-sent, len(src))
		if _, werr = send.Write(src[:n]); werr != nil {
			werr = fmt.Errorf("send: %w", werr)
			// The receiver waits for bytes that will not come.
			recv.SetDeadline(time.Unix(1, 0))
			break
		}
		sent += n
	}
	r := <-done
	if err := errors.Join(werr, r.err); err != nil {
		if ctx.Err() != nil {
			return Push{}, ctx.Err()
		}
		return Push{}, err
	}
	p.Took = r.end.Sub(start)
	return p, nil
}

// loopbackPair returns the two ends of a new TCP connection on
// 127.0.0.1, with the TLS handshake done when tp is not nil.
func loopbackPair(ctx context.Context, tp *TLSPair) (client, server net.Conn, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, fmt.Errorf("listen on loopback: %w", err)
	}
	defer ln.Close()
	type accepted struct {
		c   net.Conn
		err error
	}
	acc := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		acc <- accepted{c, err}
	}()
	var d net.Dialer
	client, err = d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		ln.Close() // ends the Accept
		if a := <-acc; a.c != nil {
			a.c.Close()
		}
		return nil, nil, fmt.Errorf("connect on loopback: %w", err)
	}
	a := <-acc
	if a.err != nil {
		client.Close()
		return nil, nil, fmt.Errorf("accept on loopback: %w", a.err)
	}
	server = a.c
	if tp == nil {
		return client, server, nil
	}
	tc, ts := tls.Client(client, tp.Client), tls.Server(server, tp.Server)
	hs := make(chan error, 1)
	go func() { hs <- ts.HandshakeContext(ctx) }()
	cerr := tc.HandshakeContext(ctx)
	if cerr != nil {
		ts.Close() // ends the server's handshake
	}
	if err := errors.Join(cerr, <-hs); err != nil {
		tc.Close()
		ts.Close()
		return nil, nil, fmt.Errorf("tls handshake on loopback: %w", err)
	}
	return tc, ts, nil
}

// localPKI is where node.StartLocal keeps a cluster's certificates.
func localPKI(dir string) string { return filepath.Join(dir, "pki") }
