// Package pki holds the certificates of a ferry cluster and the TLS
// configurations built from them: one self-signed cluster CA, one
// certificate per node (CN = node id), and mutual TLS between nodes.
//
// A cluster directory, written by Init and read by Load, holds:
//
//	ca.crt, ca.key      the cluster CA (ECDSA P-256, 10 years, CN "ferry cluster CA")
//	<id>.crt, <id>.key  one per node: CN and DNS SAN = id, DNS SAN "localhost",
//	                    IP SANs 127.0.0.1 and ::1, server and client auth
//
// Certificates are PEM "CERTIFICATE" blocks, keys PEM "PRIVATE KEY" (PKCS #8).
// Keys are written 0600, the directory 0700.
//
// Nodes do not authenticate each other by host name: a node may be dialed at
// any address, so both sides verify the peer's chain against the cluster CA
// and learn who the peer is from the certificate CN (PeerID). Whatever
// holds a key of the cluster is a node; there is no revocation.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

const (
	// CACommonName is the subject CN of every cluster CA.
	CACommonName = "ferry cluster CA"
	// ServerName is the SNI a client sends. No certificate names it: clients
	// verify the server against the cluster CA, not against a host name.
	ServerName = "ferry"

	caCertFile = "ca.crt"
	caKeyFile  = "ca.key"
	validity   = 10 * 365 * 24 * time.Hour
	// backdate tolerates clocks of other nodes that run slightly behind.
	backdate = time.Hour
)

// nodeIDPattern keeps node ids usable as file names and DNS names.
var nodeIDPattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$`)

// ValidNodeID reports whether id can name a node: 1–63 letters, digits, '-'
// and '.', starting and ending with a letter or digit, and not "ca".
func ValidNodeID(id string) error {
	if !nodeIDPattern.MatchString(id) || id == "ca" {
		return fmt.Errorf("invalid node id %q: want 1-63 letters, digits, '-' or '.', not \"ca\"", id)
	}
	return nil
}

// Init creates the cluster directory dir with a new CA and a certificate for
// each of nodeIDs. If dir already holds a CA, the CA is kept and only the
// node certificates that are missing are added. Existing files are never
// overwritten.
func Init(dir string, nodeIDs []string) error {
	_, err := InitFiles(dir, nodeIDs)
	return err
}

// InitFiles is Init, and returns the paths of the files it created.
func InitFiles(dir string, nodeIDs []string) (created []string, err error) {
	seen := make(map[string]bool)
	var ids []string
	for _, id := range nodeIDs {
		if err := ValidNodeID(id); err != nil {
			return nil, err
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create cluster directory: %w", err)
	}

	caCrtPath, caKeyPath := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	crtExists, err := exists(caCrtPath)
	if err != nil {
		return nil, err
	}
	keyExists, err := exists(caKeyPath)
	if err != nil {
		return nil, err
	}
	var ca *x509.Certificate
	var caKey crypto.Signer
	switch {
	case crtExists && keyExists:
		if ca, caKey, err = loadPair(caCrtPath, caKeyPath); err != nil {
			return nil, err
		}
		if err := checkCA(ca, caCrtPath); err != nil {
			return nil, err
		}
	case crtExists || keyExists:
		have, missing := caCrtPath, caKeyPath
		if keyExists {
			have, missing = caKeyPath, caCrtPath
		}
		return nil, fmt.Errorf("incomplete CA: %s exists but %s does not; refusing to overwrite it", have, missing)
	default:
		if ca, caKey, err = newCA(); err != nil {
			return nil, err
		}
		if err := writeKey(caKeyPath, caKey); err != nil {
			return nil, err
		}
		created = append(created, caKeyPath)
		if err := writeCert(caCrtPath, ca); err != nil {
			return created, err
		}
		created = append(created, caCrtPath)
	}

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for _, id := range ids {
		crtPath, keyPath := filepath.Join(dir, id+".crt"), filepath.Join(dir, id+".key")
		crtExists, err := exists(crtPath)
		if err != nil {
			return created, err
		}
		keyExists, err := exists(keyPath)
		if err != nil {
			return created, err
		}
		switch {
		case crtExists && keyExists:
			// Kept; but it must belong to this CA, or the node could not join.
			leaf, _, err := loadPair(crtPath, keyPath)
			if err != nil {
				return created, err
			}
			if err := verifyNode(leaf, pool, id, crtPath); err != nil {
				return created, err
			}
			continue
		case crtExists || keyExists:
			return created, fmt.Errorf("incomplete node %q: only one of %s and %s exists; refusing to overwrite it", id, crtPath, keyPath)
		}
		leaf, key, err := newNode(id, ca, caKey)
		if err != nil {
			return created, err
		}
		if err := writeKey(keyPath, key); err != nil {
			return created, err
		}
		created = append(created, keyPath)
		if err := writeCert(crtPath, leaf); err != nil {
			return created, err
		}
		created = append(created, crtPath)
	}
	return created, nil
}

func exists(path string) (bool, error) {
	_, err := os.Lstat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("stat: %w", err)
	}
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func newCA() (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: CACommonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse new CA certificate: %w", err)
	}
	return cert, key, nil
}

func newNode(id string, ca *x509.Certificate, caKey crypto.Signer) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key of node %q: %w", id, err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: id},
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{id, "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate of node %q: %w", id, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse new certificate of node %q: %w", id, err)
	}
	return cert, key, nil
}

// writeNew writes data to path, which must not exist: the data goes to a
// temporary file first, which is then linked to path, so a reader never sees
// a partial file and an existing file is never replaced.
func writeNew(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func writeCert(path string, cert *x509.Certificate) error {
	return writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644)
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("parse %s: no complete PEM CERTIFICATE block (corrupt or truncated)", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return cert, nil
}

func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("parse %s: no complete PEM PRIVATE KEY block (corrupt or truncated)", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	signer, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("parse %s: %T is not an ECDSA key", path, key)
	}
	return signer, nil
}

// loadPair reads a certificate and its key and checks that they belong together.
func loadPair(crtPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	cert, err := readCert(crtPath)
	if err != nil {
		return nil, nil, err
	}
	key, err := readKey(keyPath)
	if err != nil {
		return nil, nil, err
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, nil, fmt.Errorf("key %s does not match certificate %s", keyPath, crtPath)
	}
	return cert, key, nil
}

func checkCA(ca *x509.Certificate, path string) error {
	if !ca.IsCA || !ca.BasicConstraintsValid {
		return fmt.Errorf("%s is not a CA certificate", path)
	}
	if err := ca.CheckSignatureFrom(ca); err != nil {
		return fmt.Errorf("%s is not self-signed: %w", path, err)
	}
	return nil
}

// verifyNode checks that leaf is a valid node certificate of the CA in
// pool, for both server and client use, naming node id.
func verifyNode(leaf *x509.Certificate, pool *x509.CertPool, id, path string) error {
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			return fmt.Errorf("verify %s against the cluster CA: %w", path, err)
		}
	}
	if leaf.Subject.CommonName != id {
		return fmt.Errorf("%s is the certificate of node %q, not %q", path, leaf.Subject.CommonName, id)
	}
	return nil
}

// Identity is one node's credentials: its certificate and key, and the
// cluster CA it trusts. It is immutable and safe for concurrent use.
type Identity struct {
	id   string
	ca   *x509.Certificate
	pool *x509.CertPool
	cert tls.Certificate
}

// Load reads the CA and the certificate and key of node id from dir.
func Load(dir, id string) (*Identity, error) {
	if err := ValidNodeID(id); err != nil {
		return nil, err
	}
	caPath := filepath.Join(dir, caCertFile)
	ca, err := readCert(caPath)
	if err != nil {
		return nil, err
	}
	if err := checkCA(ca, caPath); err != nil {
		return nil, err
	}
	crtPath, keyPath := filepath.Join(dir, id+".crt"), filepath.Join(dir, id+".key")
	leaf, key, err := loadPair(crtPath, keyPath)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if err := verifyNode(leaf, pool, id, crtPath); err != nil {
		return nil, err
	}
	return &Identity{
		id:   id,
		ca:   ca,
		pool: pool,
		cert: tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf},
	}, nil
}

// ID returns the node id (the CN of the node's certificate).
func (id *Identity) ID() string { return id.id }

// CA returns the cluster CA certificate.
func (id *Identity) CA() *x509.Certificate { return id.ca }

// Certificate returns the node's own certificate.
func (id *Identity) Certificate() *x509.Certificate { return id.cert.Leaf }

// ServerConfig returns a TLS 1.3 server configuration that presents the
// node's certificate and requires a client certificate of the cluster.
// alpn lists the application protocols served, in order of preference.
func (id *Identity) ServerConfig(alpn ...string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    id.pool,
		NextProtos:   append([]string(nil), alpn...),
	}
}

// ClientConfig returns a TLS 1.3 client configuration that presents the
// node's certificate and accepts a server holding any node certificate of
// the cluster, whatever address it was dialed at. Use PeerID to learn
// which node answered.
func (id *Identity) ClientConfig(alpn ...string) *tls.Config {
	pool := id.pool
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.cert},
		RootCAs:      pool,
		ServerName:   ServerName,
		// Node certificates do not name the address a node is dialed at, so
		// the standard host name check is replaced: VerifyConnection checks
		// the chain against the cluster CA, and nothing else is skipped.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := verifyPeer(pool, cs, x509.ExtKeyUsageServerAuth)
			return err
		},
		NextProtos: append([]string(nil), alpn...),
	}
}

// VerifyPeer verifies the peer certificate of a completed handshake against
// the cluster CA, whatever configuration the connection was made with, and
// returns the peer's node id. Use it where the TLS configuration is not known
// to come from this package.
func (id *Identity) VerifyPeer(cs tls.ConnectionState) (string, error) {
	if !cs.HandshakeComplete {
		return "", errors.New("verify peer: handshake not complete")
	}
	return verifyPeer(id.pool, cs, x509.ExtKeyUsageAny)
}

func verifyPeer(pool *x509.CertPool, cs tls.ConnectionState, usage x509.ExtKeyUsage) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", errors.New("verify peer: no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	leaf := cs.PeerCertificates[0]
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	if err != nil {
		return "", fmt.Errorf("verify peer %q: %w", leaf.Subject.CommonName, err)
	}
	if err := ValidNodeID(leaf.Subject.CommonName); err != nil {
		return "", fmt.Errorf("verify peer: %w", err)
	}
	return leaf.Subject.CommonName, nil
}

// PeerID returns the node id (certificate CN) of the peer of a completed
// handshake. cs must come from a connection made with ServerConfig or
// ClientConfig, which refuse a peer whose certificate does not verify against
// the cluster CA; with any other configuration use Identity.VerifyPeer.
func PeerID(cs tls.ConnectionState) (string, error) {
	if !cs.HandshakeComplete {
		return "", errors.New("peer id: handshake not complete")
	}
	var leaf *x509.Certificate
	switch {
	case len(cs.VerifiedChains) > 0 && len(cs.VerifiedChains[0]) > 0:
		leaf = cs.VerifiedChains[0][0]
	case len(cs.PeerCertificates) > 0:
		// Client side: ClientConfig verified this chain in VerifyConnection.
		leaf = cs.PeerCertificates[0]
	default:
		return "", errors.New("peer id: peer sent no certificate")
	}
	if err := ValidNodeID(leaf.Subject.CommonName); err != nil {
		return "", fmt.Errorf("peer id: %w", err)
	}
	return leaf.Subject.CommonName, nil
}
