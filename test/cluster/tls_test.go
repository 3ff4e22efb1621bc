package cluster_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNodeRefusesStrangers: the node's TLS port serves only holders of a
// certificate of the cluster's CA, and its control socket only root.
func TestNodeRefusesStrangers(t *testing.T) {
	c := startCluster(t, 1, nil)
	url := fmt.Sprintf("https://127.0.0.1:%d/v1/jobs", c.port["n1"])

	// No client certificate.
	anon := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if resp, err := anon.Get(url); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("a client without a certificate got %s: %s", resp.Status, b)
	}

	// A certificate from another cluster's CA.
	other := t.TempDir()
	if out, err := exec.Command(ferryBin, "init", "--dir", other, "--nodes", "n1").CombinedOutput(); err != nil {
		t.Fatalf("ferry init: %v\n%s", err, out)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(other, "n1.crt"), filepath.Join(other, "n1.key"))
	if err != nil {
		t.Fatal(err)
	}
	foreign := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}}}}
	if resp, err := foreign.Get(url); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("a client of another cluster got %s: %s", resp.Status, b)
	}

	// The control socket: owner-only permissions.
	st, err := os.Stat(c.socket("n1"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		t.Errorf("control socket mode %v: others may connect", st.Mode().Perm())
	}
	// A user other than root is refused by the node itself, even if the
	// file allowed it.
	os.Chmod(c.socket("n1"), 0o666)
	for _, d := range []string{filepath.Dir(c.dir), c.dir, filepath.Join(c.dir, "n1"), filepath.Dir(ferryBin)} {
		os.Chmod(d, 0o755)
	}
	cmd := exec.Command(ferryBin, "ps")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Env = append(os.Environ(), "FERRY_SOCKET="+c.socket("n1"))
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "only root") {
		t.Errorf("ferry ps as nobody: err=%v, output %q; want refused, naming root", err, out)
	}
}
