// Package feature probes the kernel features ferry relies on and says which
// ferry capabilities they enable; it is what `ferry check` prints, and what
// other packages ask (Require) before using a feature, so that they fail
// with an error naming what is missing instead of an errno from deep inside
// a checkpoint.
//
// Every probe really exercises its feature on this machine, cheaply: the
// ones that need a target run against short-lived helper children (this
// binary re-executed through /proc/self/exe, see helper.go); the ones that
// need memory use private mappings of the calling process that are unmapped
// again. Probes leave no process, fd or mapping behind and honour the
// context's deadline.
//
// ABI that golang.org/x/sys/unix lacks comes from internal/kernel.
package feature

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// Status is the outcome of one probe.
type Status int

const (
	// Available: the feature was exercised and worked.
	Available Status = iota + 1
	// Missing: the kernel (or ferry's privileges) lacks the feature.
	Missing
	// Error: the probe itself failed, so the answer is unknown.
	Error
)

var statusNames = map[Status]string{Available: "available", Missing: "missing", Error: "error"}

func (s Status) String() string {
	if n, ok := statusNames[s]; ok {
		return n
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// MarshalText encodes s as its lower-case name.
func (s Status) MarshalText() ([]byte, error) {
	if n, ok := statusNames[s]; ok {
		return []byte(n), nil
	}
	return nil, fmt.Errorf("feature: invalid status %d", int(s))
}

// UnmarshalText decodes a name written by MarshalText.
func (s *Status) UnmarshalText(b []byte) error {
	for k, n := range statusNames {
		if n == string(b) {
			*s = k
			return nil
		}
	}
	return fmt.Errorf("feature: unknown status %q", b)
}

// Probe is the result of probing one kernel feature.
type Probe struct {
	Name   string
	Status Status
	// Detail says what was seen, e.g. "ioctl on /proc/self/pagemap reported
	// exactly the 2 pages written", or why the feature is missing.
	Detail string
	// Err is set when Status is Error, and may explain a Missing.
	Err error
}

type probeJSON struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Detail string `json:"detail,omitempty"`
	Err    string `json:"error,omitempty"`
}

// MarshalJSON encodes Err as its message.
func (p Probe) MarshalJSON() ([]byte, error) {
	j := probeJSON{Name: p.Name, Status: p.Status, Detail: p.Detail}
	if p.Err != nil {
		j.Err = p.Err.Error()
	}
	return json.Marshal(j)
}

// UnmarshalJSON is the inverse of MarshalJSON; Err comes back as a plain
// error with the same message.
func (p *Probe) UnmarshalJSON(b []byte) error {
	var j probeJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*p = Probe{Name: j.Name, Status: j.Status, Detail: j.Detail}
	if j.Err != "" {
		p.Err = errors.New(j.Err)
	}
	return nil
}

// Capability is something ferry can do, and the probes it needs.
type Capability struct {
	Name      string   `json:"name"`
	Needs     []string `json:"needs"`
	Available bool     `json:"available"`
	Missing   []string `json:"missing,omitempty"` // needed probes not Available
}

// Report is the result of Check.
type Report struct {
	Kernel       string       `json:"kernel"` // uname release
	Probes       []Probe      `json:"probes"`
	Capabilities []Capability `json:"capabilities"`
}

// ErrNotSupported is wrapped by errors from Require for features this
// machine lacks; test with errors.Is.
var ErrNotSupported = errors.New("not supported by this kernel")

// NotSupportedError names a missing feature or capability.
type NotSupportedError struct {
	Feature string
	Detail  string // why, from the probe; may be empty
}

func (e *NotSupportedError) Error() string {
	if e.Detail == "" {
		return e.Feature + ": " + ErrNotSupported.Error()
	}
	return e.Feature + ": " + ErrNotSupported.Error() + " (" + e.Detail + ")"
}

// Unwrap makes errors.Is(err, ErrNotSupported) hold.
func (e *NotSupportedError) Unwrap() error { return ErrNotSupported }

// groupTimeout bounds each group of probes; the slowest, the helper
// children, take a few milliseconds each.
const groupTimeout = 10 * time.Second

// Check runs every probe once, in a fixed order, and derives the
// capabilities. A probe that cannot finish before ctx is done reports Error.
func Check(ctx context.Context) *Report {
	r := &Report{Kernel: kernelRelease()}
	for _, g := range probeGroups {
		gctx, cancel := context.WithTimeout(ctx, groupTimeout)
		got := g(gctx)
		cancel()
		r.Probes = append(r.Probes, got...)
	}
	r.Capabilities = deriveCapabilities(r.Probes)
	return r
}

var cached struct {
	once   sync.Once
	report *Report
}

// Cached returns the Report of the first call's Check; later calls do not
// probe again.
func Cached() *Report {
	cached.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cached.report = Check(ctx)
	})
	return cached.report
}

// Require returns nil if the probe or capability called name is available
// here (according to Cached), and otherwise an error naming it; for a
// missing one the error wraps ErrNotSupported.
func Require(name string) error {
	return Cached().Require(name)
}

// Probe returns the probe called name.
func (r *Report) Probe(name string) (Probe, bool) {
	for _, p := range r.Probes {
		if p.Name == name {
			return p, true
		}
	}
	return Probe{}, false
}

// Capability returns the capability called name.
func (r *Report) Capability(name string) (Capability, bool) {
	for _, c := range r.Capabilities {
		if c.Name == name {
			return c, true
		}
	}
	return Capability{}, false
}

// Require is the package-level Require against r.
func (r *Report) Require(name string) error {
	if p, ok := r.Probe(name); ok {
		switch p.Status {
		case Available:
			return nil
		case Missing:
			return &NotSupportedError{Feature: name, Detail: p.Detail}
		default:
			return fmt.Errorf("feature %s: probe failed: %w", name, p.Err)
		}
	}
	if c, ok := r.Capability(name); ok {
		if c.Available {
			return nil
		}
		return &NotSupportedError{Feature: name, Detail: "needs " + strings.Join(c.Missing, ", ")}
	}
	return fmt.Errorf("feature %s: no such probe or capability", name)
}

// CanCheckpoint reports whether checkpoint and restore work here at all.
func (r *Report) CanCheckpoint() bool {
	c, ok := r.Capability(CapCheckpointRestore)
	return ok && c.Available
}

// WriteText writes r as two aligned tables: the probes (feature, status,
// detail) and then the capabilities with what each one misses.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "kernel %s\n\n", r.Kernel)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FEATURE\tSTATUS\tDETAIL")
	for _, p := range r.Probes {
		detail := p.Detail
		if p.Err != nil {
			if detail != "" {
				detail += ": "
			}
			detail += p.Err.Error()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", p.Name, p.Status, detail)
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "CAPABILITY\tSTATUS\tMISSING")
	for _, c := range r.Capabilities {
		st := "available"
		if !c.Available {
			st = "missing"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, st, strings.Join(c.Missing, ", "))
	}
	tw.Flush()
}
