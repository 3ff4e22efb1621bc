package pki

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func initDir(t *testing.T, ids ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "cluster")
	if err := Init(dir, ids); err != nil {
		t.Fatalf("Init(%q, %q) = %v", dir, ids, err)
	}
	return dir
}

func load(t *testing.T, dir, id string) *Identity {
	t.Helper()
	ident, err := Load(dir, id)
	if err != nil {
		t.Fatalf("Load(%q) = %v", id, err)
	}
	return ident
}

func TestInitFiles(t *testing.T) {
	dir := initDir(t, "n1", "n2")
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("mode of %s = %o, want 700", dir, got)
	}
	for _, tc := range []struct {
		name string
		perm os.FileMode
	}{
		{"ca.crt", 0o644}, {"ca.key", 0o600},
		{"n1.crt", 0o644}, {"n1.key", 0o600},
		{"n2.crt", 0o644}, {"n2.key", 0o600},
	} {
		fi, err := os.Stat(filepath.Join(dir, tc.name))
		if err != nil {
			t.Errorf("stat %s: %v", tc.name, err)
			continue
		}
		if got := fi.Mode().Perm(); got != tc.perm {
			t.Errorf("mode of %s = %o, want %o", tc.name, got, tc.perm)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 6 {
		t.Errorf("%s holds %d entries, want 6 (no temporary files left)", dir, len(entries))
	}

	ident := load(t, dir, "n1")
	if ident.ID() != "n1" {
		t.Errorf("ID() = %q, want n1", ident.ID())
	}
	if cn := ident.CA().Subject.CommonName; cn != CACommonName {
		t.Errorf("CA CN = %q, want %q", cn, CACommonName)
	}
	if d := ident.CA().NotAfter.Sub(ident.CA().NotBefore); d < 9*365*24*time.Hour {
		t.Errorf("CA validity = %v, want about 10 years", d)
	}
	leaf := ident.Certificate()
	if want := []string{"n1", "localhost"}; !slices.Equal(leaf.DNSNames, want) {
		t.Errorf("DNS SANs = %q, want %q", leaf.DNSNames, want)
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if want := []string{"127.0.0.1", "::1"}; !slices.Equal(ips, want) {
		t.Errorf("IP SANs = %q, want %q", ips, want)
	}
}

func TestInitTwiceAddsNodes(t *testing.T) {
	dir := initDir(t, "n1")
	caBefore, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	n1Before, err := os.ReadFile(filepath.Join(dir, "n1.crt"))
	if err != nil {
		t.Fatal(err)
	}
	created, err := InitFiles(dir, []string{"n1", "n2", "n3"})
	if err != nil {
		t.Fatalf("second Init = %v", err)
	}
	var names []string
	for _, p := range created {
		names = append(names, filepath.Base(p))
	}
	if want := []string{"n2.key", "n2.crt", "n3.key", "n3.crt"}; !slices.Equal(names, want) {
		t.Errorf("second Init created %q, want %q", names, want)
	}
	caAfter, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	n1After, _ := os.ReadFile(filepath.Join(dir, "n1.crt"))
	if string(caAfter) != string(caBefore) {
		t.Error("second Init replaced ca.crt")
	}
	if string(n1After) != string(n1Before) {
		t.Error("second Init replaced n1.crt")
	}
	a, b := load(t, dir, "n1"), load(t, dir, "n3")
	if !a.CA().Equal(b.CA()) {
		t.Error("n1 and n3 trust different CAs")
	}
}

func TestInitRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		remove string // file removed after a first Init
		ids    []string
		want   string
	}{
		{"incomplete CA", "ca.crt", []string{"n1"}, "incomplete CA"},
		{"incomplete node", "n1.key", []string{"n1"}, "incomplete node"},
		{"bad id", "", []string{"a/b"}, "invalid node id"},
		{"reserved id", "", []string{"ca"}, "invalid node id"},
		{"empty id", "", []string{""}, "invalid node id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := initDir(t, "n1")
			if tc.remove != "" {
				if err := os.Remove(filepath.Join(dir, tc.remove)); err != nil {
					t.Fatal(err)
				}
			}
			err := Init(dir, tc.ids)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Init(%q) = %v, want an error containing %q", tc.ids, err, tc.want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	other := initDir(t, "n1")
	for _, tc := range []struct {
		name   string
		damage damager
		file   string // the error must name this file
		want   string
	}{
		{"missing ca.crt", remove("ca.crt"), "ca.crt", "no such file"},
		{"missing node crt", remove("n1.crt"), "n1.crt", "no such file"},
		{"missing node key", remove("n1.key"), "n1.key", "no such file"},
		{"corrupt ca.crt", overwrite("ca.crt", "garbage"), "ca.crt", "no complete PEM"},
		{"truncated ca.crt", truncate("ca.crt", 200), "ca.crt", "parse"},
		{"truncated node crt", truncate("n1.crt", 100), "n1.crt", "parse"},
		{"corrupt node key", overwrite("n1.key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "n1.key", "parse"},
		{"empty node key", overwrite("n1.key", ""), "n1.key", "no complete PEM"},
		{"key of another node", copyFile("n2.key", "n1.key"), "n1.key", "does not match"},
		{"certificate of another CA", func(t *testing.T, dir string) {
			copyFrom(t, other, "n1.crt", dir, "n1.crt")
			copyFrom(t, other, "n1.key", dir, "n1.key")
		}, "n1.crt", "unknown authority"},
		{"certificate of another node", func(t *testing.T, dir string) {
			copyFile("n2.crt", "n1.crt")(t, dir)
			copyFile("n2.key", "n1.key")(t, dir)
		}, "n1.crt", `"n2"`},
		{"node cert as CA", copyFile("n2.crt", "ca.crt"), "ca.crt", "not a CA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := initDir(t, "n1", "n2")
			tc.damage(t, dir)
			_, err := Load(dir, "n1")
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			t.Logf("Load: %v", err)
			if !strings.Contains(err.Error(), filepath.Join(dir, tc.file)) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load error = %q, want it to name %s and contain %q", err, tc.file, tc.want)
			}
		})
	}
}

type damager func(t *testing.T, dir string)

func remove(name string) damager {
	return func(t *testing.T, dir string) {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func overwrite(name, content string) damager {
	return func(t *testing.T, dir string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func truncate(name string, size int64) damager {
	return func(t *testing.T, dir string) {
		if err := os.Truncate(filepath.Join(dir, name), size); err != nil {
			t.Fatal(err)
		}
	}
}

func copyFile(from, to string) damager {
	return func(t *testing.T, dir string) { copyFrom(t, dir, from, dir, to) }
}

func copyFrom(t *testing.T, srcDir, from, dstDir, to string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(srcDir, from))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dstDir, to), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// handshake runs one TLS handshake over loopback and a one-byte exchange
// (in TLS 1.3 a refused client certificate shows only when the client reads).
func handshake(t *testing.T, server, client *tls.Config) (srv, cli tls.ConnectionState, srvErr, cliErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	type result struct {
		cs  tls.ConnectionState
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		tc := tls.Server(c, server)
		if err := tc.HandshakeContext(ctx); err != nil {
			done <- result{err: err}
			return
		}
		_, err = tc.Write([]byte{1})
		done <- result{cs: tc.ConnectionState(), err: err}
	}()

	d := tls.Dialer{Config: client}
	c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err == nil {
		tc := c.(*tls.Conn)
		cli = tc.ConnectionState()
		var b [1]byte
		_ = tc.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.ReadFull(tc, b[:])
		tc.Close()
	}
	cliErr = err
	r := <-done
	return r.cs, cli, r.err, cliErr
}

func TestHandshake(t *testing.T) {
	dir := initDir(t, "n1", "n2")
	otherDir := initDir(t, "n2")
	n1, n2 := load(t, dir, "n1"), load(t, dir, "n2")
	foreign := load(t, otherDir, "n2")

	noCert := n2.ClientConfig("test")
	noCert.Certificates = nil

	for _, tc := range []struct {
		name    string
		server  *tls.Config
		client  *tls.Config
		wantErr bool
	}{
		{"two nodes", n1.ServerConfig("test"), n2.ClientConfig("test"), false},
		{"client without certificate", n1.ServerConfig("test"), noCert, true},
		{"client of another CA", n1.ServerConfig("test"), foreign.ClientConfig("test"), true},
		{"server of another CA", foreign.ServerConfig("test"), n1.ClientConfig("test"), true},
		{"ALPN mismatch", n1.ServerConfig("a"), n2.ClientConfig("b"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, cli, srvErr, cliErr := handshake(t, tc.server, tc.client)
			if tc.wantErr {
				if srvErr == nil || cliErr == nil {
					t.Fatalf("handshake: server err %v, client err %v; want both to fail", srvErr, cliErr)
				}
				return
			}
			if srvErr != nil || cliErr != nil {
				t.Fatalf("handshake: server err %v, client err %v", srvErr, cliErr)
			}
			if srv.Version != tls.VersionTLS13 {
				t.Errorf("TLS version %x, want 1.3", srv.Version)
			}
			if srv.NegotiatedProtocol != "test" {
				t.Errorf("ALPN = %q, want test", srv.NegotiatedProtocol)
			}
			if id, err := PeerID(srv); id != "n2" || err != nil {
				t.Errorf("server PeerID = %q, %v, want n2", id, err)
			}
			if id, err := PeerID(cli); id != "n1" || err != nil {
				t.Errorf("client PeerID = %q, %v, want n1", id, err)
			}
			if id, err := n1.VerifyPeer(srv); id != "n2" || err != nil {
				t.Errorf("server VerifyPeer = %q, %v, want n2", id, err)
			}
			if id, err := n2.VerifyPeer(cli); id != "n1" || err != nil {
				t.Errorf("client VerifyPeer = %q, %v, want n1", id, err)
			}
			if _, err := foreign.VerifyPeer(cli); err == nil {
				t.Error("VerifyPeer with another CA succeeded")
			}
		})
	}
}

func TestPeerIDIncomplete(t *testing.T) {
	if _, err := PeerID(tls.ConnectionState{}); err == nil {
		t.Error("PeerID of an incomplete handshake succeeded")
	}
	if _, err := PeerID(tls.ConnectionState{HandshakeComplete: true}); err == nil {
		t.Error("PeerID without a peer certificate succeeded")
	}
}
