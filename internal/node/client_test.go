package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"testing"

	"ferry/internal/agent"
	"ferry/internal/migrate"
)

// TestClientMigrateError: the error of a failed migration reaches the
// CLI with its outcomes, so that errors.Is matches them there.
func TestClientMigrateError(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "ferry.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	failure := migrate.Mark(fmt.Errorf("prepare n2: %w", fmt.Errorf("%w: %w", migrate.ErrCancelled, context.Canceled)), migrate.ErrResumed)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		enc := json.NewEncoder(w)
		enc.Encode(migrateLine{Progress: &migrate.Progress{Phase: "image"}})
		rep := &migrate.Report{Job: "n1-1", Resumed: true, Error: failure.Error()}
		enc.Encode(migrateLine{Report: rep, Error: agent.EncodeError(failure)})
	})}
	go srv.Serve(ln)
	defer srv.Close()

	progressed := 0
	rep, err := NewClient(sock).Migrate(context.Background(), "n1-1", MigrateRequest{To: "n2"}, func(migrate.Progress) { progressed++ })
	if rep == nil || !rep.Resumed || progressed != 1 {
		t.Fatalf("Migrate = %+v (%d progress lines), want the resumed report after one", rep, progressed)
	}
	for _, target := range []error{migrate.ErrResumed, migrate.ErrCancelled, context.Canceled} {
		if !errors.Is(err, target) {
			t.Errorf("errors.Is(%q, %q) = false", err, target)
		}
	}
	if errors.Is(err, migrate.ErrRefused) {
		t.Errorf("errors.Is(%q, ErrRefused) = true", err)
	}
	if want := "migration of n1-1 failed: " + failure.Error(); err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
}
