package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"ferry/internal/cluster"
	"ferry/internal/migrate"
)

// Client talks to the local node over its control socket.
type Client struct {
	hc *http.Client
	// Notice, if set, is told when the node stops answering while the
	// client follows a job, and when it answers again.
	Notice io.Writer
}

// ErrNodeUnreachable: the client could not connect to its node (it is
// not running, or restarting). Nothing of the request reached it.
var ErrNodeUnreachable = errors.New("node unreachable")

// waitNode is how often a client retries a node that does not answer.
const waitNode = 300 * time.Millisecond

// NewClient returns a client of the node whose control socket is socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", socket)
		if errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("%s: only root (or the node's --group) may use the node's control socket: %w", socket, err)
		}
		if err != nil {
			return nil, fmt.Errorf("no ferry node answers on %s (start one with `ferry node`, or set --socket / FERRY_SOCKET): %w: %w", socket, ErrNodeUnreachable, err)
		}
		return c, nil
	}}
	return &Client{hc: &http.Client{Transport: tr}}
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://ferry"+path, body)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ue, ok := err.(*url.Error); ok {
			return nil, ue.Err
		}
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, fmt.Errorf("%s", trimNL(b))
	}
	return resp, nil
}

func (c *Client) json(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Run starts a job.
func (c *Client) Run(ctx context.Context, req RunRequest) (JobInfo, error) {
	var info JobInfo
	err := c.json(ctx, "POST", "/v1/run", req, &info)
	return info, err
}

// Adopt makes a running process a job.
func (c *Client) Adopt(ctx context.Context, pid int) (JobInfo, error) {
	var info JobInfo
	err := c.json(ctx, "POST", "/v1/adopt", map[string]int{"pid": pid}, &info)
	return info, err
}

// Jobs lists the cluster's jobs.
func (c *Client) Jobs(ctx context.Context) ([]JobInfo, error) {
	var out []JobInfo
	err := c.json(ctx, "GET", "/v1/jobs", nil, &out)
	return out, err
}

// Job describes one job.
func (c *Client) Job(ctx context.Context, id string) (JobInfo, error) {
	var info JobInfo
	err := c.json(ctx, "GET", "/v1/jobs/"+url.PathEscape(id), nil, &info)
	return info, err
}

// Send sends a message to process to as the CLI and returns once it is
// delivered, with the id it was sent as.
func (c *Client) Send(ctx context.Context, to string, payload []byte) (string, error) {
	var ans SendAnswer
	err := c.json(ctx, "POST", "/v1/send", SendRequest{To: to, Payload: payload}, &ans)
	return ans.From, err
}

// Where is every node's view of where a job (or process) is.
func (c *Client) Where(ctx context.Context, id string) ([]Where, error) {
	var out []Where
	err := c.json(ctx, "GET", "/v1/where/"+url.PathEscape(id), nil, &out)
	return out, err
}

// WhereHere is this node's own view of where a job (or process) is,
// without asking the others.
func (c *Client) WhereHere(ctx context.Context, id string) (Where, error) {
	var out Where
	err := c.json(ctx, "GET", "/v1/where/"+url.PathEscape(id)+"?local=1", nil, &out)
	return out, err
}

// Members lists the cluster's members.
func (c *Client) Members(ctx context.Context) ([]cluster.Member, error) {
	var out []cluster.Member
	err := c.json(ctx, "GET", "/v1/members", nil, &out)
	return out, err
}

// Signal sends sig to the job.
func (c *Client) Signal(ctx context.Context, id string, sig int) error {
	return c.json(ctx, "POST", "/v1/jobs/"+url.PathEscape(id)+"/signal?sig="+strconv.Itoa(sig), nil, nil)
}

// Stdin writes p to the job's input; eof closes it. With wait, a node
// that cannot be reached (restarting) is waited for: the input is not
// lost, and not sent twice (only a request that never reached the node
// is sent again).
func (c *Client) Stdin(ctx context.Context, id string, p []byte, eof, wait bool) error {
	path := "/v1/jobs/" + url.PathEscape(id) + "/stdin"
	if eof {
		path += "?eof=1"
	}
	told := false
	for {
		resp, err := c.do(ctx, "POST", path, bytes.NewReader(p))
		if err == nil {
			resp.Body.Close()
			if told {
				c.notice("ferry: node answers again")
			}
			return nil
		}
		if !wait || !errors.Is(err, ErrNodeUnreachable) {
			return err
		}
		if !told {
			c.notice("ferry: the node does not answer; input waits for it (%v)", err)
			told = true
		}
		select {
		case <-time.After(waitNode):
		case <-ctx.Done():
			return err
		}
	}
}

func (c *Client) notice(format string, args ...any) {
	if c.Notice != nil {
		fmt.Fprintf(c.Notice, format+"\n", args...)
	}
}

// Logs copies the job's output to stdout and stderr from the start, and
// with follow until the job ends, wherever it runs meanwhile. It returns
// the job as it ended (or as it is, without follow). Following, it rides
// out a restart of the node: the stream goes on from the offsets it had.
func (c *Client) Logs(ctx context.Context, id string, follow bool, stdout, stderr io.Writer) (*JobInfo, error) {
	var off [2]int64
	down := false
	for {
		info, err := c.logsFrom(ctx, id, follow, &off, stdout, stderr)
		if err == nil {
			return info, nil
		}
		var se *streamError
		if !follow || ctx.Err() != nil || !(errors.Is(err, ErrNodeUnreachable) || errors.As(err, &se)) {
			return nil, err
		}
		if !down {
			c.notice("ferry: the node does not answer; waiting for it (%v)", err)
			down = true
		}
		select {
		case <-time.After(waitNode):
		case <-ctx.Done():
			return nil, err
		}
		if _, err := c.Members(ctx); err == nil && down {
			c.notice("ferry: node answers again; the output goes on")
			down = false
		}
	}
}

// streamError: the log stream broke after it started (the node went away).
type streamError struct{ err error }

func (e *streamError) Error() string { return e.err.Error() }
func (e *streamError) Unwrap() error { return e.err }

// logsFrom streams the job's output from off, advancing it.
func (c *Client) logsFrom(ctx context.Context, id string, follow bool, off *[2]int64, stdout, stderr io.Writer) (*JobInfo, error) {
	path := fmt.Sprintf("/v1/jobs/%s/logs?out=%d&err=%d", url.PathEscape(id), off[0], off[1])
	if follow {
		path += "&follow=1"
	}
	resp, err := c.do(ctx, "GET", path, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for {
		kind, p, err := ReadFrame(br)
		if err != nil {
			return nil, &streamError{fmt.Errorf("log stream of %s: %w", id, err)}
		}
		switch kind {
		case frameStdout:
			stdout.Write(p)
			off[0] += int64(len(p))
		case frameStderr:
			stderr.Write(p)
			off[1] += int64(len(p))
		case frameEnd:
			var info JobInfo
			if err := json.Unmarshal(p, &info); err != nil {
				return nil, err
			}
			return &info, nil
		}
	}
}

// Migrate moves a job and reports progress as it goes. A failed
// migration's error matches, under errors.Is, the outcomes of package
// migrate the node saw (ErrResumed, ErrRefused, ErrCancelled, …).
func (c *Client) Migrate(ctx context.Context, id string, req MigrateRequest, progress func(migrate.Progress)) (*migrate.Report, error) {
	b, _ := json.Marshal(req)
	resp, err := c.do(ctx, "POST", "/v1/jobs/"+url.PathEscape(id)+"/migrate", bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var line migrateLine
		if err := dec.Decode(&line); err != nil {
			return nil, fmt.Errorf("migration of %s: the node stopped answering: %w", id, err)
		}
		if line.Progress != nil && progress != nil {
			progress(*line.Progress)
		}
		if line.Report != nil {
			// The error keeps its outcomes (migrate.ErrResumed, …) for
			// errors.Is.
			if err := line.Error.Err(); err != nil {
				return line.Report, fmt.Errorf("migration of %s failed: %w", id, err)
			}
			if line.Report.Error != "" {
				return line.Report, fmt.Errorf("migration of %s failed: %s", id, line.Report.Error)
			}
			return line.Report, nil
		}
	}
}
