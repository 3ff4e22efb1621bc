package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"ferry/internal/migrate"
	"ferry/internal/restore"
)

// events has one valid event of every kind.
func events() []Event {
	return []Event{
		{Kind: Listening, Addr: "127.0.0.1:4242"},
		{Kind: Restored, PID: 7},
		{Kind: Progress, Progress: &migrate.Progress{Phase: "image", Bytes: 10, TotalBytes: 20}},
		{Kind: BeforeCommit},
		{Kind: Frozen},
		{Kind: Resolve},
		{Kind: Committed, Report: &migrate.Report{Job: "n1-1", Committed: true}},
		{Kind: Released},
		{Kind: Report, PID: 7, Report: &migrate.Report{Job: "n1-1", Mode: migrate.Precopy,
			Rounds: []migrate.Round{{Pages: 3, Took: time.Millisecond}}},
			Phases: []restore.Phase{{Name: "pages", Took: time.Second}}},
		{Kind: Warning, Message: "set the namespace's last PID: EPERM"},
		{Kind: Failed, Err: &Error{Codes: []Code{CodeResumed}, Msg: "it broke"}},
	}
}

func TestEventRoundTrip(t *testing.T) {
	var b bytes.Buffer
	enc := NewEncoder(&b)
	want := events()
	seen := map[Kind]bool{}
	for _, e := range want {
		if err := enc.Event(e); err != nil {
			t.Fatalf("Event(%s) = %v", e.Kind, err)
		}
		seen[e.Kind] = true
	}
	for k := range kinds {
		if !seen[k] {
			t.Errorf("kind %q is not in the round trip", k)
		}
	}
	dec := NewDecoder(&b)
	for _, w := range want {
		got, err := dec.Event()
		if err != nil {
			t.Fatalf("decode %s: %v", w.Kind, err)
		}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("decode = %+v, want %+v", got, w)
		}
	}
	if _, err := dec.Event(); err != io.EOF {
		t.Fatalf("after the last event: %v, want io.EOF", err)
	}
}

func TestAnswerRoundTrip(t *testing.T) {
	tests := []struct {
		q Kind
		a Answer
	}{
		{BeforeCommit, Answer{To: BeforeCommit}},
		{BeforeCommit, Answer{To: BeforeCommit, Err: &Error{Msg: "drain stdout: EIO"}}},
		{Resolve, Answer{To: Resolve, Committed: true}},
		{Resolve, Answer{To: Resolve, Err: &Error{Codes: []Code{CodeCommitUnknown}, Msg: "node n2: unreachable"}}},
	}
	for _, tc := range tests {
		var b bytes.Buffer
		if err := NewEncoder(&b).Answer(tc.a); err != nil {
			t.Fatal(err)
		}
		got, err := NewDecoder(&b).Answer(tc.q)
		if err != nil || !reflect.DeepEqual(got, tc.a) {
			t.Errorf("Answer(%s) = %+v, %v; want %+v", tc.q, got, err, tc.a)
		}
	}
}

// TestDecodeBad: every bad line is refused with ErrProtocol and a reason,
// and the stream goes on with the next line.
func TestDecodeBad(t *testing.T) {
	tests := []struct {
		name, line string
		want       string // in the error
	}{
		{"unknown kind", `{"event":"teleported"}`, `unknown event "teleported"`},
		{"no kind", `{"addr":"x"}`, `unknown event ""`},
		{"malformed", `{"event":"listening",`, "malformed event"},
		{"not an object", `[1,2]`, "malformed event"},
		{"trailing", `{"event":"released"} {"event":"released"}`, "trailing data"},
		{"wrong type", `{"event":"restored","pid":"seven"}`, "malformed event"},
		{"missing addr", `{"event":"listening"}`, `listening event: missing "addr"`},
		{"missing report", `{"event":"report"}`, `report event: missing "report"`},
		{"missing error", `{"event":"error"}`, `error event: missing "error"`},
		{"missing progress", `{"event":"progress"}`, `progress event: missing "progress"`},
		{"oversized", `{"event":"warning","message":"` + strings.Repeat("x", MaxLine) + `"}`, "line longer than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.line + "\n" + `{"event":"released"}` + "\n"
			dec := NewDecoder(strings.NewReader(in))
			_, err := dec.Event()
			if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Event(%.60q) = %v, want ErrProtocol with %q", tc.line, err, tc.want)
			}
			if ev, err := dec.Event(); err != nil || ev.Kind != Released {
				t.Fatalf("the line after it: %+v, %v; want released", ev, err)
			}
			if _, err := dec.Event(); err != io.EOF {
				t.Fatalf("at the end: %v, want io.EOF", err)
			}
		})
	}
	if !errors.Is(ErrLineTooLong, ErrProtocol) || !errors.Is(ErrUnknownKind, ErrProtocol) {
		t.Error("ErrLineTooLong and ErrUnknownKind must wrap ErrProtocol")
	}
}

func TestDecodeCutShort(t *testing.T) {
	dec := NewDecoder(strings.NewReader(`{"event":"released"}` + "\n" + `{"event":"rel`))
	if ev, err := dec.Event(); err != nil || ev.Kind != Released {
		t.Fatalf("first line: %+v, %v", ev, err)
	}
	if _, err := dec.Event(); !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "cut short") {
		t.Fatalf("cut line: %v, want ErrProtocol (cut short)", err)
	}
	if _, err := dec.Event(); err != io.EOF {
		t.Fatalf("after it: %v, want io.EOF", err)
	}
}

func TestEncodeRefusesBad(t *testing.T) {
	var b bytes.Buffer
	enc := NewEncoder(&b)
	for _, e := range []Event{{Kind: "teleported"}, {Kind: Listening}, {Kind: Failed},
		{Kind: Warning, Message: strings.Repeat("x", MaxLine)}} {
		if err := enc.Event(e); !errors.Is(err, ErrProtocol) {
			t.Errorf("Event(%s) = %v, want a refusal", e.Kind, err)
		}
	}
	for _, a := range []Answer{{To: Report}, {To: "x"}} {
		if err := enc.Answer(a); !errors.Is(err, ErrProtocol) {
			t.Errorf("Answer(to %q) = %v, want ErrProtocol", a.To, err)
		}
	}
	if b.Len() != 0 {
		t.Errorf("refused lines were written: %q", b.String())
	}
}

func TestAnswerMismatch(t *testing.T) {
	tests := []struct {
		q    Kind
		line string
		want string
	}{
		{BeforeCommit, `{"to":"resolve","committed":true}`, `answered "resolve" to a "before-commit" question`},
		{BeforeCommit, `{"to":"before-commit","committed":true}`, "with committed set"},
		{Resolve, `{"to":`, "malformed answer"},
		{Resolve, ``, "node gone"},
	}
	for _, tc := range tests {
		in := tc.line
		if in != "" {
			in += "\n"
		}
		_, err := NewDecoder(strings.NewReader(in)).Answer(tc.q)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Answer(%s) of %q = %v, want %q", tc.q, tc.line, err, tc.want)
		}
	}
}

// TestErrorRoundTrip: an error that crossed the pipes (and the API) keeps
// its text and matches the same outcomes under errors.Is.
func TestErrorRoundTrip(t *testing.T) {
	cancelled := fmt.Errorf("%w: %w", migrate.ErrCancelled, context.Canceled)
	tests := []struct {
		name string
		err  error
		is   []error
	}{
		{"plain", errors.New("restore: no such file"), nil},
		{"refused", fmt.Errorf("prepare n2: %w", migrate.Mark(errors.New("node n2: job busy"), migrate.ErrRefused)), []error{migrate.ErrRefused}},
		{"cancelled and resumed", migrate.Mark(cancelled, migrate.ErrResumed), []error{migrate.ErrCancelled, context.Canceled, migrate.ErrResumed}},
		{"fault", fmt.Errorf("%w: cancelled after ready", migrate.ErrFault), []error{migrate.ErrFault}},
		{"commit unknown", migrate.Mark(errors.New("await committed: EOF; destination unreachable"), migrate.ErrCommitUnknown), []error{migrate.ErrCommitUnknown}},
		{"not committed", fmt.Errorf("%w: await commit: EOF", migrate.ErrNotCommitted), []error{migrate.ErrNotCommitted}},
		{"aborted", fmt.Errorf("%w: bad checksum (EOF)", migrate.ErrAborted), []error{migrate.ErrAborted}},
		{"lost", migrate.Mark(errors.New("push failed"), migrate.ErrLost), []error{migrate.ErrLost}},
		{"protocol", fmt.Errorf("%w: x", ErrProtocol), []error{ErrProtocol}},
		{"peer abort", fmt.Errorf("destination: %w", &migrate.AbortError{Reason: "restore: ENOSPC"}), []error{migrate.ErrAborted}},
		{"corrupt", fmt.Errorf("destination aborted: %w", fmt.Errorf("image frame: %w", migrate.ErrCorrupt)), []error{migrate.ErrCorrupt}},
		{"wire", fmt.Errorf("expected ready: %w", migrate.ErrProtocol), []error{migrate.ErrProtocol}},
	}
	all := []error{migrate.ErrRefused, migrate.ErrAborted, migrate.ErrCancelled, context.Canceled, migrate.ErrFault,
		migrate.ErrCommitUnknown, migrate.ErrNotCommitted, migrate.ErrResumed, migrate.ErrLost, ErrProtocol,
		migrate.ErrCorrupt, migrate.ErrProtocol}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Through a Failed event and back, then once more (node → API
			// → CLI).
			var b bytes.Buffer
			if err := NewEncoder(&b).Event(Event{Kind: Failed, Err: EncodeError(tc.err)}); err != nil {
				t.Fatal(err)
			}
			ev, err := NewDecoder(&b).Event()
			if err != nil {
				t.Fatal(err)
			}
			got := EncodeError(fmt.Errorf("hop: %w", ev.Err.Err())).Err()
			if want := "hop: " + tc.err.Error(); got.Error() != want {
				t.Errorf("text = %q, want %q", got.Error(), want)
			}
			for _, target := range all {
				want := false
				for _, w := range tc.is {
					want = want || w == target
				}
				if errors.Is(got, target) != want {
					t.Errorf("errors.Is(%v) = %v, want %v", target, !want, want)
				}
			}
		})
	}
	if EncodeError(nil) != nil || (*Error)(nil).Err() != nil {
		t.Error("nil must stay nil")
	}
}

// TestUnknownCodeKept: a code this side does not know is passed on.
func TestUnknownCodeKept(t *testing.T) {
	e := &Error{Codes: []Code{"from-the-future", CodeResumed}, Msg: "x"}
	again := EncodeError(fmt.Errorf("wrapped: %w", e.Err()))
	if !reflect.DeepEqual(again.Codes, e.Codes) {
		t.Fatalf("codes = %v, want %v", again.Codes, e.Codes)
	}
	if !errors.Is(again.Err(), migrate.ErrResumed) {
		t.Fatal("the known code no longer matches")
	}
}
