// Package spread is exec-time migration for `ferry run --spread CMD,...`
// (Sprite's pmake, the chapter's non-preemptive migration): each new
// process of the job that runs one of those commands is placed, as it
// starts, on the least loaded node of the cluster.
//
// The job's PATH starts with a directory of the node's (Dir) holding,
// for each command, a link to ferry itself. Run under a command's name,
// ferry is the wrapper (Main): before anything of the command runs, it
// asks its node where to run (a unix connection at the path in SockEnv,
// one line "spread NAME\n", the node knowing the caller by SO_PEERCRED)
// and gets "stay\n" or "move\n". To move, it closes the connection (a
// moved process may hold no descriptor leading to its node) and waits
// for SIGUSR2, which the node sends once the move is over — through the
// process's stand-in, so that it reaches it on its new node, or to it
// where it is if the move failed. Either way it then executes the real
// command (the first of that name in the job's own PATH, kept in
// PathEnv), which runs wherever the wrapper is: its children, its
// files, its exit are the moved process's. The command gets the job's
// PATH back, without the link directory and the two variables.
//
// What belongs here: the wrapper, the names of the environment
// variables, the link directory. What does not: the placement and the
// move (the node, internal/node/spread.go).
package spread

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The job's environment, set by its node.
const (
	// SockEnv is the path, in the job, of the node's spread socket.
	SockEnv = "FERRY_SPREAD_SOCK"
	// PathEnv is the job's PATH before the link directory was put first.
	PathEnv = "FERRY_SPREAD_PATH"
)

// IsWrapper reports whether this process is ferry run under a spread
// command's name.
func IsWrapper(argv0 string) bool {
	return os.Getenv(SockEnv) != "" && filepath.Base(argv0) != "ferry"
}

// ValidName checks a command name given to --spread.
func ValidName(name string) error {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." || name == "ferry" {
		return fmt.Errorf("--spread: %q is not a command name", name)
	}
	return nil
}

// MakeDir makes dir with a link named after each command to exe.
func MakeDir(dir, exe string, names []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, n := range names {
		if err := ValidName(n); err != nil {
			return err
		}
		p := filepath.Join(dir, n)
		os.Remove(p)
		if err := os.Symlink(exe, p); err != nil {
			return err
		}
	}
	return nil
}

// waitMove bounds the wait for the node's signal after "move".
const waitMove = 2 * time.Minute

// Main is the wrapper: it asks where to run, waits to be moved if told
// to, and executes the real command. It returns only on failure.
func Main(argv []string) int {
	name := filepath.Base(argv[0])
	real, err := lookPath(name, os.Getenv(PathEnv))
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 127
	}
	// Ready for the node's signal before it can come.
	moved := make(chan os.Signal, 1)
	signal.Notify(moved, syscall.SIGUSR2)
	if ask(name) {
		select {
		case <-moved:
		case <-time.After(waitMove):
			fmt.Fprintf(os.Stderr, "%s: ferry: no word from the node in %v after it said move; running here\n", name, waitMove)
		}
	}
	signal.Reset(syscall.SIGUSR2)
	// The command sees the job's own PATH (a compiler finds its passes
	// from where its name is found in PATH: not in the link directory).
	var env []string
	for _, kv := range os.Environ() {
		switch {
		case strings.HasPrefix(kv, "PATH="), strings.HasPrefix(kv, PathEnv+"="), strings.HasPrefix(kv, SockEnv+"="):
		default:
			env = append(env, kv)
		}
	}
	env = append(env, "PATH="+os.Getenv(PathEnv))
	err = syscall.Exec(real, append([]string{argv[0]}, argv[1:]...), env)
	fmt.Fprintf(os.Stderr, "%s: exec %s: %v\n", name, real, err)
	return 126
}

// ask tells the node a command starts and returns whether it moves the
// process (then the connection is closed: the node moves it once it
// sees that).
func ask(name string) bool {
	c, err := net.DialTimeout("unix", os.Getenv(SockEnv), 5*time.Second)
	if err != nil {
		return false // no node to ask (on another node, or none): run here
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "spread "+name+"\n"); err != nil {
		return false
	}
	b := make([]byte, 5)
	if _, err := io.ReadFull(c, b); err != nil {
		return false
	}
	return string(b) == "move\n"
}

// lookPath finds name in path, as execvp would.
func lookPath(name, path string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("command not found in the job's PATH")
}
