package demo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"ferry/internal/node"
)

// spreadProj is the spread build's C project: a program of thirteen
// files (also built by test/cluster's TestSpreadBuild).
//
//go:embed spreadproj
var spreadProj embed.FS

// runSpread is the demo's third part, the chapter's pmake: `make -j6` of
// the project as a job with `--spread cc`, each compiler placed as it
// starts on the least loaded node; then the same build on one node
// without ferry, and the two compared byte for byte. Without gcc and make
// on the machine it says so and skips.
func runSpread(ctx context.Context, lc *node.Local, dir string, out io.Writer) error {
	fmt.Fprintf(out, "\na parallel build spread over the cluster: make -j6 of a 13-file C program as a job on n1,\n"+
		"each compiler placed on the least loaded node as it starts (ferry run --spread cc)\n")
	for _, tool := range []string{"make", "cc"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(out, "skipped: %s is not installed (apt-get install make gcc)\n", tool)
			return nil
		}
	}
	spread, local := filepath.Join(dir, "spread-build"), filepath.Join(dir, "local-build")
	for _, d := range []string{spread, local} {
		if err := unpack(d); err != nil {
			return err
		}
	}
	c := lc.Clients["n1"]
	start := time.Now()
	info, err := c.Run(ctx, node.RunRequest{Node: "n1", Cmd: []string{"make", "-C", spread, "-j6"}, Dir: spread,
		Env: os.Environ(), Spread: []string{"cc"}})
	if err != nil {
		return fmt.Errorf("start the build: %w", err)
	}
	var logs bytes.Buffer
	end, err := c.Logs(ctx, info.ID, true, &logs, &logs)
	if err != nil {
		return fmt.Errorf("the build: %w", err)
	}
	took := time.Since(start)
	if end == nil || end.Exit == nil || *end.Exit != 0 {
		return fmt.Errorf("the spread build failed:\n%s", logs.String())
	}
	runs := end.SpreadRuns
	if runs == nil {
		if ji, err := c.Job(ctx, info.ID); err == nil {
			runs = ji.SpreadRuns
		}
	}
	start = time.Now()
	if b, err := exec.CommandContext(ctx, "make", "-C", local, "-j6").CombinedOutput(); err != nil {
		return fmt.Errorf("the build on one node: %v\n%s", err, b)
	}
	tookLocal := time.Since(start)
	a, err := products(spread)
	if err != nil {
		return err
	}
	b, err := products(local)
	if err != nil {
		return err
	}
	var differ []string
	for f, h := range b {
		if a[f] != h {
			differ = append(differ, f)
		}
	}
	sort.Strings(differ)
	var where []string
	for _, id := range lc.IDs {
		where = append(where, fmt.Sprintf("%s %d", id, runs[id]))
	}
	fmt.Fprintf(out, "compilers ran on %s; spread build %.1f s, the same on one node without ferry %.1f s\n",
		strings.Join(where, ", "), took.Seconds(), tookLocal.Seconds())
	if len(differ) > 0 {
		return fmt.Errorf("the spread build differs from the build on one node: %s", strings.Join(differ, ", "))
	}
	fmt.Fprintf(out, "the program and its %d object files are byte for byte those of the build on one node: ok\n", len(b)-1)
	return nil
}

// unpack writes the embedded project into dir.
func unpack(dir string) error {
	return fs.WalkDir(spreadProj, "spreadproj", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, strings.TrimPrefix(p, "spreadproj"))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := spreadProj.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
}

// products hashes the build's program and objects in dir.
func products(dir string) (map[string]string, error) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.o"))
	files = append(files, filepath.Join(dir, "prog"))
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, errors.New("the build did not make " + filepath.Base(f))
		}
		out[filepath.Base(f)] = fmt.Sprintf("%x", sha256.Sum256(b))
	}
	return out, nil
}
