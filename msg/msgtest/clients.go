package msgtest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"ferry/msg"
	"ferry/msg/wire"
)

// ClientRule is the rule the client libraries' tests (C, Python) run
// against: ended.1, far.1 and denied.1 answer with CodeEnded,
// CodeUnreachable and CodeDenied, garbage.1 gets a packet with a bad
// magic and no RESULT, anything else is routed.
func ClientRule(s *Server, snd Send) Result {
	switch snd.To.String() {
	case "ended.1":
		return Result{Code: wire.CodeEnded, Text: fmt.Sprintf("%v: receiver ended (exit status 0)", snd.To)}
	case "far.1":
		return Result{Code: wire.CodeUnreachable, Text: fmt.Sprintf("%v: unreachable after 30s: its node n3 is down", snd.To)}
	case "denied.1":
		return Result{Code: wire.CodeDenied, Text: fmt.Sprintf("%v: denied: another user's job", snd.To)}
	case "garbage.1":
		s.InjectRaw(snd.From, []byte("XX\x01\x04garbage"))
		return Result{Silent: true}
	}
	return Route(s, snd)
}

// PollFrom is the sender of the message RunClient injects when a
// client prints POLL.
var PollFrom = msg.ID{Job: "n2-1", PID: 7}

// RunClient runs a client test program with FERRY_MSG_SOCKET set to s:
// each line "POLL <id>" it prints (when it is about to poll its
// endpoint) makes the server inject "woke" from PollFrom to id;
// the program must exit 0 after printing PASS.
func RunClient(t *testing.T, s *Server, cmd *exec.Cmd) {
	t.Helper()
	cmd.Env = append(os.Environ(), "FERRY_MSG_SOCKET="+s.Path())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		lines = append(lines, line)
		if rest, ok := strings.CutPrefix(line, "POLL "); ok {
			id, err := msg.ParseID(rest)
			if err == nil {
				err = s.Inject(id, PollFrom, []byte("woke"))
			}
			if err != nil {
				t.Errorf("%s: %v", line, err)
			}
		}
	}
	err = cmd.Wait()
	if err != nil || len(lines) == 0 || lines[len(lines)-1] != "PASS" {
		t.Fatalf("%v: %v\nstdout:\n%s\nstderr:\n%s", cmd.Args, err, strings.Join(lines, "\n"), stderr.String())
	}
	t.Logf("%v: %s", cmd.Args, strings.Join(lines, " "))
}
