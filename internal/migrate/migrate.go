// Package migrate moves a process tree from this node to another over one
// connection: the migration transaction between a source and a
// destination, for each address-space transfer mechanism of the chapter
// (freeze, precopy, postcopy).
//
// What belongs here: the wire protocol between the two sides (wire.go),
// the source's steps (send.go) and the destination's (receive.go), the
// transaction rules, the outcomes callers branch on (errors.go), and the
// figures a migration reports. What does not:
// which node, job bookkeeping, logs and stdio (package node), the PID
// namespace of a job (package job), checkpoint and restore themselves
// (packages dump and restore), dirty tracking and lazy paging (packages
// precopy and postcopy).
//
// The transaction. The source freezes the tree and sends its image; the
// destination builds the new copy and holds it, stopped, then says Ready.
// The source runs its BeforeCommit hook (the node drains the job's
// output and carries its unread input) and sends Commit. The destination
// lets the new copy run only when Commit arrives, and answers Committed;
// only then does the source kill the old copy. Any failure before Commit
// is sent — the destination dies, the connection drops, a frame is
// corrupt, the user cancels — kills the new copy (if any) and resumes the
// old one: the process runs exactly once. If the connection breaks after
// Commit was sent but before Committed came back, the source asks its
// Resolve hook (the node asks the destination node) whether the new copy
// runs, and otherwise resumes the old one. With postcopy the old copy
// stays frozen after the commit, serving pages, until the destination has
// every page: only then does the residual dependency end.
package migrate

import (
	"fmt"
	"time"
)

// Mode is an address-space transfer mechanism.
type Mode string

// The three mechanisms of the chapter.
const (
	Freeze   Mode = "freeze"   // stop, send everything, restart
	Precopy  Mode = "precopy"  // send while running, then the dirtied pages
	Postcopy Mode = "postcopy" // restart at once, fetch pages on reference
)

// ParseMode checks a mode name.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Freeze, Precopy, Postcopy:
		return m, nil
	}
	return "", fmt.Errorf("unknown migration mode %q (want freeze, precopy or postcopy)", s)
}

// Hello opens a migration.
type Hello struct {
	Version int    `json:"version"`
	Job     string `json:"job"`
	Mode    Mode   `json:"mode"`
	Source  string `json:"source"`
	// Stdio maps the image's "pipe:<id>" of the job's standard streams
	// to "stdin", "stdout" or "stderr".
	Stdio map[string]string `json:"stdio,omitempty"`
}

type welcome struct {
	OK bool `json:"ok"`
}

type ready struct {
	PID       int     `json:"pid"`
	RestoreMS float64 `json:"restore_ms"`
}

type commit struct{}

type committed struct {
	At time.Time `json:"at"`
}

// Round is one precopy round.
type Round struct {
	Pages      uint64        `json:"pages"`
	Bytes      uint64        `json:"bytes"`
	DirtyBytes uint64        `json:"dirty_bytes"`
	Took       time.Duration `json:"took_ns"`
}

// Report is what a migration did, as the source saw it.
type Report struct {
	Job  string `json:"job"`
	Mode Mode   `json:"mode"`
	// Committed: the process now runs on the destination. Resumed: it
	// runs on the source again, unharmed.
	Committed bool   `json:"committed"`
	Resumed   bool   `json:"resumed"`
	Error     string `json:"error,omitempty"`
	// FreezeTime: from the freeze until the new copy was released.
	FreezeTime time.Duration `json:"freeze_ns"`
	Total      time.Duration `json:"total_ns"`
	// RunningAfter: from the start of the migration until the new copy
	// ran on the destination.
	RunningAfter time.Duration `json:"running_after_ns"`
	BytesSent    uint64        `json:"bytes_sent"`
	ImageBytes   uint64        `json:"image_bytes"`
	Rounds       []Round       `json:"rounds,omitempty"`
	// RedundantPages were sent more than once (precopy); StopReason says
	// why the rounds ended.
	RedundantPages uint64 `json:"redundant_pages,omitempty"`
	StopReason     string `json:"stop_reason,omitempty"`
	// Postcopy figures.
	Faults        uint64        `json:"faults,omitempty"`
	PrefetchHits  uint64        `json:"prefetch_hits,omitempty"`
	PushedPages   uint64        `json:"pushed_pages,omitempty"`
	OnDemandPages uint64        `json:"on_demand_pages,omitempty"`
	ResidualEnded time.Duration `json:"residual_ended_ns,omitempty"` // after start
	RestoreTime   time.Duration `json:"restore_ns"`
	// Files: the job's files checked by content, and those that travelled.
	Files FileStats `json:"files"`
	// Phases: how long each step took, in order, as the source saw it
	// ("image" includes the destination's restore as it streams).
	Phases []Phase `json:"phases,omitempty"`
}

// Phase is one timed step of a migration.
type Phase struct {
	Name string        `json:"name"`
	Took time.Duration `json:"took_ns"`
}

// Progress is reported while a migration runs.
type Progress struct {
	Phase      string  `json:"phase"` // "precopy", "image", "commit", "push"
	Round      int     `json:"round,omitempty"`
	Bytes      uint64  `json:"bytes"`       // sent so far
	TotalBytes uint64  `json:"total_bytes"` // estimate
	DirtyRate  float64 `json:"dirty_rate,omitempty"`
	ETA        float64 `json:"eta_s,omitempty"`
}
