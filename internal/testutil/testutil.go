// Package testutil is what the tests of several packages share: building
// C test programs and the ferry binary once per test binary, starting a
// program with a readiness pipe, polling a condition that has no event to
// wait on, skipping without root, and loggers that write to the test's
// output.
//
// Only _test.go files may import it (TestOnlyTestsImport checks), and it
// imports nothing of ferry's, so every package's own tests can use it
// without an import cycle. Helpers specific to one package (its C
// program's protocol, its fakes) stay in that package's tests.
package testutil

import (
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
)

// NeedRoot skips the test unless it runs as root; why names what needs
// it ("ptrace", "clone3 with set_tid").
func NeedRoot(tb testing.TB, why string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: " + why)
	}
}

// Logger returns a logger that writes to tb's output at level and above
// until the test ends, then drops records: goroutines the code under test
// started may still log while they wind down, and logging to a finished
// test panics.
func Logger(tb testing.TB, level slog.Level) *slog.Logger {
	w := &logWriter{tb: tb}
	tb.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type logWriter struct {
	tb   testing.TB
	mu   sync.Mutex // guards done and serialises writes
	done bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.tb.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
