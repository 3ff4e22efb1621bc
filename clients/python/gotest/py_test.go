// Package pyclient_test runs the Python client module's test
// (../test_ferrymsg.py) against msgtest's fake endpoint.
package pyclient_test

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"ferry/msg/msgtest"
)

func TestPython(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found: the Python client module is not tested (install python3)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := msgtest.New(t, msgtest.Config{Rule: msgtest.ClientRule})
	msgtest.RunClient(t, s, exec.CommandContext(ctx, py, "-B", "../test_ferrymsg.py"))
}
