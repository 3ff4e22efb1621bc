package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

// GoTool returns the go command: the one on PATH, else the one of the
// toolchain that built the test.
func GoTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// BuildFerry builds ferry/cmd/ferry into dir and returns its path. For
// TestMain, which has no testing.TB; tests call it with tb.TempDir().
func BuildFerry(dir string) (string, error) {
	bin := filepath.Join(dir, "ferry")
	if out, err := exec.Command(GoTool(), "build", "-o", bin, "ferry/cmd/ferry").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ferry/cmd/ferry: %v\n%s", err, out)
	}
	return bin, nil
}

// ErrNoCompiler is wrapped by CompileC's error when gcc is not installed.
var ErrNoCompiler = errors.New("no C compiler (gcc)")

// CompileC compiles the C source src into out with gcc and flags (which
// go before "-o"; libraries such as "-lpthread" may follow the source in
// after). The error holds gcc's output.
func CompileC(out, src string, flags []string, after ...string) error {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoCompiler, err)
	}
	args := append(append(slices.Clip(flags), "-o", out, src), after...)
	if b, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("gcc %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return nil
}

// CProgram is a C test program built once per test binary, on first use:
//
//	var child = &testutil.CProgram{Src: "testdata/child.c", Flags: []string{"-O1", "-Wall"}}
//
//	bin := child.Path(t)
//
// TestMain calls Remove after m.Run.
type CProgram struct {
	Src   string   // relative to the test's package directory
	Flags []string // before -o
	After []string // after the source ("-lpthread")

	once sync.Once
	dir  string
	path string
	err  error
}

// Path builds the program if that has not been tried yet and returns its
// path. Without gcc the test is skipped; a build failure fails it (and
// every later test that asks).
func (p *CProgram) Path(tb testing.TB) string {
	tb.Helper()
	p.once.Do(func() {
		if p.dir, p.err = os.MkdirTemp("", "ferry-test-"+strings.TrimSuffix(filepath.Base(p.Src), ".c")+"-"); p.err != nil {
			return
		}
		p.path = filepath.Join(p.dir, strings.TrimSuffix(filepath.Base(p.Src), ".c"))
		p.err = CompileC(p.path, p.Src, p.Flags, p.After...)
	})
	if errors.Is(p.err, ErrNoCompiler) {
		tb.Skip(p.err)
	}
	if p.err != nil {
		tb.Fatal(p.err)
	}
	return p.path
}

// Remove deletes the built program.
func (p *CProgram) Remove() {
	if p.dir != "" {
		os.RemoveAll(p.dir)
	}
}
