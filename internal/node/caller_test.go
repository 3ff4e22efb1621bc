package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	asRoot  = &Caller{UID: 0, GID: 0}
	asOwner = &Caller{UID: 1001, GID: 1001, Groups: []uint32{1001, 27}}
	asOther = &Caller{UID: 1002, GID: 1002}
)

func TestMayAccess(t *testing.T) {
	callers := []struct {
		name string
		c    *Caller
		ok   bool
	}{
		{"root", asRoot, true},
		{"a node", nodeCaller, true},
		{"no caller", nil, true},
		{"owner", asOwner, true},
		{"other user", asOther, false},
		{"other user in the owner's group", &Caller{UID: 1003, GID: 1001}, false},
	}
	for _, act := range []string{actSee, actInput, actSignal, actMigrate} {
		for _, tc := range callers {
			err := mayAccess(tc.c, act, "n1-3", 1001)
			if (err == nil) != tc.ok {
				t.Errorf("mayAccess(%s, %s, owner 1001) = %v, want ok %v", tc.name, act, err, tc.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrNotYours) {
					t.Errorf("mayAccess(%s, %s) = %v, want it to wrap ErrNotYours", tc.name, act, err)
				}
				for _, want := range []string{act, "n1-3", "belongs to uid 1001", "you are uid 1002"} {
					if tc.c == asOther && !strings.Contains(err.Error(), want) {
						t.Errorf("mayAccess(%s, %s) = %q, want it to say %q", tc.name, act, err, want)
					}
				}
			}
		}
	}
}

func TestMayAdopt(t *testing.T) {
	mine := procIdentity{UID: [4]int{1001, 1001, 1001, 1001}, GID: [4]int{1001, 1001, 1001, 1001},
		Groups: []int{1001, 27}, Dumpable: true}
	with := func(f func(*procIdentity)) procIdentity {
		p := mine
		p.Groups = slices.Clone(mine.Groups)
		f(&p)
		return p
	}
	tests := []struct {
		name string
		c    *Caller
		p    procIdentity
		why  string // "" when allowed
	}{
		{"own process", asOwner, mine, ""},
		{"root adopts anything", asRoot, with(func(p *procIdentity) { p.UID = [4]int{}; p.ExeSetID = true }), ""},
		{"a root process", asOwner, with(func(p *procIdentity) { p.UID = [4]int{} }), "real uid is 0"},
		{"another user's", asOther, mine, "real uid is 1001"},
		{"setuid to root (effective)", asOwner, with(func(p *procIdentity) { p.UID[1] = 0 }), "effective uid is 0"},
		{"saved uid root", asOwner, with(func(p *procIdentity) { p.UID[2] = 0 }), "saved uid is 0"},
		{"fs uid root", asOwner, with(func(p *procIdentity) { p.UID[3] = 0 }), "filesystem uid is 0"},
		{"setgid to a group not the caller's", asOwner, with(func(p *procIdentity) { p.GID[1] = 42 }), "effective gid 42"},
		{"gid of a supplementary group", asOwner, with(func(p *procIdentity) { p.GID = [4]int{27, 27, 27, 27} }), ""},
		{"more groups than the caller", asOwner, with(func(p *procIdentity) { p.Groups = append(p.Groups, 0) }), "group 0"},
		{"capabilities", asOwner, with(func(p *procIdentity) { p.CapPrm = 1 << 13 }), "capabilities"},
		{"ambient capabilities", asOwner, with(func(p *procIdentity) { p.CapAmb = 1 }), "capabilities"},
		{"setuid executable", asOwner, with(func(p *procIdentity) { p.ExeSetID = true }), "setuid"},
		{"not dumpable", asOwner, with(func(p *procIdentity) { p.Dumpable = false }), "not dumpable"},
	}
	for _, tc := range tests {
		err := mayAdopt(tc.c, 77, tc.p)
		switch {
		case tc.why == "" && err != nil:
			t.Errorf("%s: mayAdopt = %v, want allowed", tc.name, err)
		case tc.why != "" && err == nil:
			t.Errorf("%s: mayAdopt allowed it, want refused (%s)", tc.name, tc.why)
		case tc.why != "" && (!strings.Contains(err.Error(), tc.why) || !strings.Contains(err.Error(), "pid 77") ||
			!errors.Is(err, ErrNotYours)):
			t.Errorf("%s: mayAdopt = %q, want it to say %q and pid 77, wrapping ErrNotYours", tc.name, err, tc.why)
		}
	}
}

func TestCallerHeader(t *testing.T) {
	for _, c := range []*Caller{asOwner, asOther, asRoot} {
		got, err := parseCallerHeader(c.header())
		if err != nil || got.UID != c.UID || got.GID != c.GID || !slices.Equal(got.Groups, c.Groups) {
			t.Errorf("parseCallerHeader(%q) = %+v, %v, want %+v", c.header(), got, err, c)
		}
	}
	for _, bad := range []string{"", "1001", "x 1", "1 2 3,x", "1 2 3 4", "-1 2", "99999999999 1"} {
		if c, err := parseCallerHeader(bad); err == nil {
			t.Errorf("parseCallerHeader(%q) = %+v, want an error", bad, c)
		}
	}
}

// testNode is a node with one running job owned by uid 1001, served by
// its control-socket routes for the caller the request's context names.
func testNode(t *testing.T) (*Node, http.Handler) {
	t.Helper()
	n := &Node{cfg: Config{ID: "n1"}, gid: -1, jobs: map[string]*localJob{}, moved: map[string]string{},
		committed: map[string]bool{}, quit: make(chan struct{})}
	n.log = slog.New(slog.DiscardHandler)
	j := &localJob{n: n, done: make(chan struct{}), info: JobInfo{ID: "n1-1", Node: "n1", State: stateRunning, Owner: 1001,
		Started: time.Now()}}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	j.stdinR, j.stdinW = r, w
	for i, name := range []string{"stdout", "stderr"} {
		if j.logs[i], err = openLog(filepath.Join(t.TempDir(), name), true); err != nil {
			t.Fatal(err)
		}
	}
	j.logs[0].writeAt(0, []byte("hello\n"))
	n.jobs[j.info.ID] = j
	return n, n.routes(false)
}

// as serves h for caller c.
func as(c *Caller, h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r.WithContext(withCaller(r.Context(), c)))
	return w
}

func TestJobAccess(t *testing.T) {
	_, h := testNode(t)
	reqs := []struct {
		act           string
		method, path  string
		body          string
		allowedStatus int
	}{
		{actSee, "GET", "/v1/jobs/n1-1", "", http.StatusOK},
		{actSee, "GET", "/v1/jobs/n1-1/logs", "", http.StatusOK},
		{actInput, "POST", "/v1/jobs/n1-1/stdin", "input", http.StatusOK},
		// Allowed, then refused for what the job is (no process).
		{actSignal, "POST", "/v1/jobs/n1-1/signal?sig=15", "", http.StatusConflict},
		// Allowed, then the mode is refused in the streamed report.
		{actMigrate, "POST", "/v1/jobs/n1-1/migrate", `{"to":"n2","mode":"bogus"}`, http.StatusOK},
	}
	for _, rq := range reqs {
		for _, tc := range []struct {
			name string
			c    *Caller
			ok   bool
		}{{"root", asRoot, true}, {"owner", asOwner, true}, {"other", asOther, false}, {"node", nodeCaller, true}} {
			w := as(tc.c, h, httptest.NewRequest(rq.method, rq.path, strings.NewReader(rq.body)))
			if tc.ok && w.Code != rq.allowedStatus {
				t.Errorf("%s %s as %s: %d %q, want %d", rq.method, rq.path, tc.name, w.Code, w.Body, rq.allowedStatus)
			}
			if !tc.ok && (w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "belongs to uid 1001; you are uid 1002")) {
				t.Errorf("%s %s as %s: %d %q, want 403 saying whose job it is", rq.method, rq.path, tc.name, w.Code, w.Body)
			}
		}
	}
}

func TestListOnlyOwnJobs(t *testing.T) {
	n, h := testNode(t)
	n.jobs["n1-2"] = &localJob{n: n, done: make(chan struct{}), info: JobInfo{ID: "n1-2", State: stateExited, Owner: 0}}
	for _, tc := range []struct {
		name string
		c    *Caller
		want []string
	}{{"root", asRoot, []string{"n1-1", "n1-2"}}, {"owner", asOwner, []string{"n1-1"}}, {"other", asOther, nil}} {
		w := as(tc.c, h, httptest.NewRequest("GET", "/v1/jobs?local=1", nil))
		var jobs []JobInfo
		if err := json.Unmarshal(w.Body.Bytes(), &jobs); err != nil {
			t.Fatalf("ps as %s: %v (%q)", tc.name, err, w.Body)
		}
		var ids []string
		for _, j := range jobs {
			ids = append(ids, j.ID)
		}
		slices.Sort(ids)
		if !slices.Equal(ids, tc.want) {
			t.Errorf("ps as %s = %v, want %v", tc.name, ids, tc.want)
		}
	}
}

func TestBodyLimits(t *testing.T) {
	n, h := testNode(t)
	big := bytes.Repeat([]byte("x"), maxStdinBody+1)
	w := as(asRoot, h, httptest.NewRequest("POST", "/v1/jobs/n1-1/stdin", bytes.NewReader(big)))
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("stdin of %d bytes: %d %q, want 413", len(big), w.Code, w.Body)
	}
	if k, _ := n.jobs["n1-1"].takeInput(); len(k) != 0 {
		t.Errorf("a refused stdin write still wrote %d bytes", len(k))
	}
	body := `{"cmd":["` + strings.Repeat("a", maxJSONBody) + `"]}`
	w = as(asRoot, h, httptest.NewRequest("POST", "/v1/run", strings.NewReader(body)))
	if w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(w.Body.String(), "limit") {
		t.Errorf("run request of %d bytes: %d %q, want 413", len(body), w.Code, w.Body)
	}
	if len(n.jobs) != 1 {
		t.Errorf("a refused run request left %d jobs", len(n.jobs))
	}
}

func TestPeerOnlyRoutes(t *testing.T) {
	_, h := testNode(t)
	for _, p := range []string{"/v1/incoming", "/v1/jobs/n1-1/carry"} {
		w := as(asRoot, h, httptest.NewRequest("POST", p, strings.NewReader("{}")))
		if w.Code != http.StatusNotFound && w.Code != http.StatusMethodNotAllowed {
			t.Errorf("POST %s on the control socket: %d, want it not served", p, w.Code)
		}
	}
}

// TestControlSocketRefusesNodeHeaders: a client on the control socket may
// not claim to be a node or to act for another caller.
func TestControlSocketRefusesNodeHeaders(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("the control socket admits root only here")
	}
	n, _ := testNode(t)
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var seen *Caller
	srv := &http.Server{ConnContext: saveConn, Handler: n.checkCaller(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = callerOf(r.Context())
	}))}
	go srv.Serve(ln)
	defer srv.Close()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return net.Dial("unix", sock)
	}}}
	for _, hdr := range []string{hopHeader, callerHeader} {
		req, _ := http.NewRequest("GET", "http://ferry/v1/jobs", nil)
		req.Header.Set(hdr, "1001 1001")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), hdr) {
			t.Errorf("request with %s: %d %q, want 400 naming the header", hdr, resp.StatusCode, b)
		}
	}
	resp, err := hc.Get("http://ferry/v1/jobs")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if seen == nil || seen.UID != 0 || seen.Node {
		t.Errorf("caller of a plain request = %+v, want uid 0 from SO_PEERCRED", seen)
	}
}
