// Package cclient_test builds the C client library (../ferrymsg.c) with
// gcc and runs its test program (../test/fm_test.c) against msgtest's
// fake endpoint. It is a directory of its own because the go command
// refuses C files in a package that does not use cgo.
package cclient_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"ferry/msg/msgtest"
)

func TestC(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found: the C client library is not tested (install gcc)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "fm_test")
	build := exec.CommandContext(ctx, gcc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-I..",
		"-o", bin, "../test/fm_test.c", "../ferrymsg.c")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", build.Args, err, out)
	}
	s := msgtest.New(t, msgtest.Config{Rule: msgtest.ClientRule})
	msgtest.RunClient(t, s, exec.CommandContext(ctx, bin))
}
