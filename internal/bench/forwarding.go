package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"time"

	"ferry/internal/ipc"
	"ferry/internal/migrate"
	"ferry/internal/procfs"
)

// Forwarding figures. RunForwarding starts four nodes in this process
// (node.StartLocal: loopback, mutual TLS) and, for each forwarding
// mechanism and number of moves, runs a receiver (`ferry msgload recv`,
// a job with --forwarding M) on n1 and a sender (`ferry msgload send`,
// steady rate) on each of n2, n3 and n4, and moves the receiver round
// robin over the nodes while they send. Every message carries its
// sender's number and send time; the receiver checks that each sender's
// numbers come exactly once and in order, and times each.
//
// Messages are classified by the moves' timeline, as the chapter names
// them, by the time they were sent:
//   - type 1: between the freeze of the receiver (the migration's
//     "image" progress, just before the dump freezes it) and the commit
//     (its "commit" progress, as the source lets the new copy go);
//   - type 2: after the commit, while the sender's node still sent to
//     the old location: until a poll of that node's view (GET
//     /v1/where/JOB?local=1, every 2 ms from the commit on) shows the
//     new node in its location cache — under origin, until the creating
//     node's table does, since every message goes through it;
//   - type 3: after that, until the next migration begins;
//   - preparing: from the start of a migration (the bench's call) to its
//     freeze, while the destination and the agents are being set up;
//   - never moved: before the first migration (the only kind with 0
//     moves).
//
// A message whose sender runs on the node the receiver ran on then is
// local (no network hop) and left out of the latency figures, as are
// those sent before every sender was ready (their jobs were starting).
//
// Beside them, measured in the same run: the round trip of a small POST
// to a peer route (POST /v1/peer/msgs with an empty batch) between two of
// the nodes over their TLS link, kept alive, as the nodes' own batches
// go: the limit a message between nodes cannot beat.
//
// Then, on a cluster of their own, the partner rows
// (forwarding_partners.go): what update's location updates add to the
// freeze.

// ForwardingConfig describes a forwarding benchmark run.
type ForwardingConfig struct {
	// Exe is ferry's binary (job inits, agents, `ferry msgload`). Required.
	Exe        string
	Mechanisms []ipc.Mechanism // default all five
	Moves      []int           // default 0, 1, 3, 10
	// Modes: each case is run in each; default freeze.
	Modes []migrate.Mode
	// Rate is each sender's messages per second; default 200.
	Rate float64
	// Lead is the sending before the first move, Dwell between moves,
	// Tail after the last; defaults 500 ms, 300 ms, 1 s.
	Lead, Dwell, Tail time.Duration
	// BigMessages is the size of the large run under auto (messages in
	// all across BigMoves moves, default 30); 0 means the default
	// (20,000), negative none. BigRate is its messages per second, all
	// senders together (default 600); the moves are spread over the
	// sending (MovesInFlow says how many froze the receiver while
	// messages flowed).
	BigMessages int
	BigMoves    int
	BigRate     float64
	// Drawbacks: run the rows with a node stopped (default true unless
	// NoDrawbacks).
	NoDrawbacks bool
	// Partners: the partner rows (forwarding_partners.go), the freeze
	// cost of update's location updates, with up to this many partner
	// nodes (a cluster of Partners+2 nodes); 0 means the default (10),
	// negative none. PartnerMoves is the moves per row (default 10),
	// PartnerRate each sender's messages per second (default 50).
	Partners     int
	PartnerMoves int
	PartnerRate  float64
	// RTTSamples is the number of round trips timed for the limit;
	// default 2000.
	RTTSamples int
	// Dir is where the nodes' state goes; default the system's
	// temporary directory.
	Dir         string
	MoveTimeout time.Duration // one migration; default 1 minute
	Log         *slog.Logger
	Progress    io.Writer
}

// The shape of every case: the receiver starts on n1, a sender on each
// other node.
var fwdNodes = []string{"n1", "n2", "n3", "n4"}

const (
	defaultBigMessages = 20000
	// learnPoll is the interval of the polls that end a type-2 window;
	// learnFor bounds them.
	learnPoll = 2 * time.Millisecond
	learnFor  = 3 * time.Second
)

func (cfg *ForwardingConfig) setDefaults() error {
	if cfg.Exe == "" {
		return errors.New("bench: no ferry binary for the nodes")
	}
	if len(cfg.Mechanisms) == 0 {
		cfg.Mechanisms = ipc.Mechanisms
	}
	if len(cfg.Moves) == 0 {
		cfg.Moves = []int{0, 1, 3, 10}
	}
	if len(cfg.Modes) == 0 {
		cfg.Modes = []migrate.Mode{migrate.Freeze}
	}
	if cfg.Rate == 0 {
		cfg.Rate = 200
	}
	if cfg.Lead <= 0 {
		cfg.Lead = 500 * time.Millisecond
	}
	if cfg.Dwell <= 0 {
		cfg.Dwell = 300 * time.Millisecond
	}
	if cfg.Tail <= 0 {
		cfg.Tail = time.Second
	}
	if cfg.BigMessages == 0 {
		cfg.BigMessages = defaultBigMessages
	}
	if cfg.BigMoves <= 0 {
		cfg.BigMoves = 30
	}
	if cfg.BigRate <= 0 {
		cfg.BigRate = 600
	}
	if cfg.Partners == 0 {
		cfg.Partners = defaultPartners
	}
	if cfg.PartnerMoves <= 0 {
		cfg.PartnerMoves = 10
	}
	if cfg.PartnerRate <= 0 {
		cfg.PartnerRate = 50
	}
	if cfg.RTTSamples <= 0 {
		cfg.RTTSamples = 2000
	}
	if cfg.Dir == "" {
		cfg.Dir = os.TempDir()
	}
	if cfg.MoveTimeout <= 0 {
		cfg.MoveTimeout = time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if !(cfg.Rate > 0) {
		return fmt.Errorf("bench: rate %v messages/s: must be above 0", cfg.Rate)
	}
	for _, k := range cfg.Moves {
		if k < 0 {
			return fmt.Errorf("bench: %d moves: must be at least 0", k)
		}
	}
	for _, m := range cfg.Modes {
		if _, err := migrate.ParseMode(string(m)); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	return nil
}

// ForwardingReport is the outcome of RunForwarding. Latencies are in
// microseconds.
type ForwardingReport struct {
	Kernel  string  `json:"kernel"`
	CPUs    int     `json:"cpus"`
	Senders int     `json:"senders"`
	Rate    float64 `json:"rate_per_sender"`
	LeadMs  float64 `json:"lead_ms"`
	DwellMs float64 `json:"dwell_ms"`
	TailMs  float64 `json:"tail_ms"`
	// RTT is the limit: a small POST between two nodes over their TLS
	// link.
	RTT       RTTLimit        `json:"rtt"`
	Cases     []FwdResult     `json:"cases"`
	Big       *FwdResult      `json:"big,omitempty"`
	Drawbacks []Drawback      `json:"drawbacks,omitempty"`
	Partners  *PartnerReport  `json:"partners,omitempty"`
	Targets   []MigrateTarget `json:"targets,omitempty"`
}

// RTTLimit is the round trip of a small request between two nodes.
type RTTLimit struct {
	From    string  `json:"from"`
	To      string  `json:"to"`
	Route   string  `json:"route"`
	Samples int     `json:"samples"`
	P50Us   float64 `json:"p50_us"`
	P99Us   float64 `json:"p99_us"`
}

// FwdCase is one case: a mechanism, a number of moves, a mode.
type FwdCase struct {
	Mechanism string       `json:"mechanism"`
	Moves     int          `json:"moves"`
	Mode      migrate.Mode `json:"mode"`
}

func (c FwdCase) String() string {
	return fmt.Sprintf("%s, %d moves (%s)", c.Mechanism, c.Moves, c.Mode)
}

// Latency is the one-way latency of a set of messages.
type Latency struct {
	N     int     `json:"n"`
	P50Us float64 `json:"p50_us"`
	P99Us float64 `json:"p99_us"`
}

// Message classes, by the moves' timeline (see the package comment of
// this file): index into FwdResult.Types.
const (
	classNever = iota // before the first migration began
	classType1
	classType2
	classType3
	classPrepare // after a migration began, before it froze the receiver
	nClasses
)

// FwdResult is one case's figures.
type FwdResult struct {
	FwdCase
	// Error says why the case failed; figures are then those measured.
	Error     string `json:"error,omitempty"`
	MovesDone int    `json:"moves_done"`
	// MovesInFlow: the moves that froze the receiver before the last
	// message was sent.
	MovesInFlow int     `json:"moves_in_flow"`
	FreezeMs    float64 `json:"freeze_ms"` // median freeze of the moves
	// Per sender summed: data messages sent, delivered (by the senders'
	// outcomes), received once (by the receiver); lost (never received),
	// duplicated, out of order (by the receiver); refused (the senders'
	// undelivered outcomes).
	Sent       int `json:"sent"`
	Delivered  int `json:"delivered"`
	Received   int `json:"received"`
	Lost       int `json:"lost"`
	Duplicated int `json:"duplicated"`
	OutOfOrder int `json:"out_of_order"`
	Refused    int `json:"refused"`
	// RefusedBy: the refusals by kind (msgload.ErrKind).
	RefusedBy map[string]int `json:"refused_by,omitempty"`
	// Types: latency by class (never moved, type 1, 2, 3, preparing),
	// messages between nodes only; Local counts those left out (the sender on the
	// receiver's node then).
	Types [nClasses]Latency `json:"types"`
	// Type3Last: the type-3 messages sent after the last move (its tail),
	// once no migration follows.
	Type3Last Latency `json:"type3_after_last_move"`
	Local     int     `json:"local"`
	// Type3VsRTT and Type3VsNever: type 3's median over the RTT limit's
	// and over the same mechanism's 0-move median; Type3P99VsNever the
	// same of the 99th percentiles.
	Type3VsRTT      float64 `json:"type3_vs_rtt"`
	Type3VsNever    float64 `json:"type3_vs_never"`
	Type3P99VsNever float64 `json:"type3_p99_vs_never"`
	// The same of Type3Last.
	LastVsRTT      float64 `json:"type3_last_vs_rtt"`
	LastVsNever    float64 `json:"type3_last_vs_never"`
	LastP99VsNever float64 `json:"type3_last_p99_vs_never"`
	// From the nodes' router counters, summed over the nodes (deltas over
	// the case): messages delivered, their network hops per message,
	// relayed by a creating or an old node (RelayedOrigin +
	// RelayedLink), refusals and broadcasts the mechanism caused.
	RouterDelivered int     `json:"router_delivered"`
	HopsPerMsg      float64 `json:"hops_per_msg"`
	Relayed         int     `json:"relayed"`
	TryLater        int     `json:"try_later"`
	Unknown         int     `json:"unknown"`
	Locates         int     `json:"locates"`
	LocUpdates      int     `json:"loc_updates"`
	// UpdateTimeouts: commits that went ahead without every partner's
	// acknowledgement of the new location (update, auto).
	UpdateTimeouts int `json:"update_timeouts"`
	// Links and OriginTable: the forwarding state held for the receiver
	// at the end of the tail (before it ends) by the nodes it does not
	// run on, by their views: links left, the creating node's table.
	Links       int `json:"links"`
	OriginTable int `json:"origin_table"`
	// MsgsPerSec: messages received over the span from the first send to
	// the last.
	MsgsPerSec float64 `json:"msgs_per_sec"`
	// Timeline is the moves' (ms after the first send).
	Timeline []MoveMark `json:"timeline,omitempty"`
}

// Failed reports whether the case failed or a message was lost,
// duplicated, out of order or refused.
func (r *FwdResult) Failed() bool {
	return r.Error != "" || r.Lost+r.Duplicated+r.OutOfOrder+r.Refused > 0 || r.Received != r.Sent
}

// MoveMark is one move of a case.
type MoveMark struct {
	From     string  `json:"from"`
	To       string  `json:"to"`
	FreezeAt float64 `json:"freeze_at_ms"`
	CommitAt float64 `json:"commit_at_ms"`
	FreezeMs float64 `json:"freeze_ms"`
	// LearntAtMs: per sender node, when its view (under origin: the
	// creating node's table) first showed the new node, ms after the
	// commit (0: already at the commit; -1: not within the polls).
	LearntAtMs map[string]float64 `json:"learnt_after_commit_ms"`
}

// Drawback is a row with a node stopped: what still gets through.
type Drawback struct {
	Mechanism string `json:"mechanism"`
	// Stopped is the node stopped and its role: "origin" (the receiver's
	// creating node) or "link" (a node of its chain of links).
	Stopped string `json:"stopped"`
	Role    string `json:"role"`
	// Route is the receiver's path before the stop; Warm the sender that
	// sent throughout (its node knew the receiver), Cold one started
	// after the stop on a node that had never sent to it.
	Route string       `json:"route"`
	Warm  DrawbackSide `json:"warm"`
	Cold  DrawbackSide `json:"cold"`
	Error string       `json:"error,omitempty"`
	// Lost and Duplicated: by the receiver, of the messages reported
	// delivered (must be 0 whatever was refused).
	Lost       int `json:"lost"`
	Duplicated int `json:"duplicated"`
}

// DrawbackSide is one sender of a drawback row, counting what it sent
// after the stop.
type DrawbackSide struct {
	Node      string         `json:"node"`
	Sent      int            `json:"sent"`
	Delivered int            `json:"delivered"`
	Errors    map[string]int `json:"errors,omitempty"`
}

// Fraction is the part delivered.
func (d DrawbackSide) Fraction() float64 {
	if d.Sent == 0 {
		return 0
	}
	return float64(d.Delivered) / float64(d.Sent)
}

// RunForwarding measures every case of cfg (see above) and returns the
// figures. A case that fails is reported with its error and the run goes
// on; RunForwarding itself fails when a cluster or the limit cannot be
// had, or ctx ends. The nodes and jobs it started are gone when it
// returns.
func RunForwarding(ctx context.Context, cfg ForwardingConfig) (*ForwardingReport, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("bench: needs root: jobs run in PID namespaces of their own and migrate with ptrace")
	}
	rep := &ForwardingReport{CPUs: runtime.NumCPU(), Senders: len(fwdNodes) - 1, Rate: cfg.Rate,
		LeadMs: ms(cfg.Lead), DwellMs: ms(cfg.Dwell), TailMs: ms(cfg.Tail)}
	rep.Kernel, _ = procfs.KernelRelease()

	fmt.Fprintf(cfg.Progress, "starting nodes %v\n", fwdNodes)
	fc, err := startFwdCluster(ctx, &cfg, "", fwdNodes)
	if err != nil {
		return nil, err
	}
	defer fc.close()
	fmt.Fprintf(cfg.Progress, "limit: %d round trips %s → %s over TLS\n", cfg.RTTSamples, fwdNodes[1], fwdNodes[0])
	if rep.RTT, err = fc.measureRTT(ctx, fwdNodes[1], fwdNodes[0], cfg.RTTSamples); err != nil {
		return nil, fmt.Errorf("bench: round trip between nodes: %w", err)
	}
	never := map[string]Latency{}
	for _, mode := range cfg.Modes {
		for _, m := range cfg.Mechanisms {
			for _, k := range cfg.Moves {
				c := FwdCase{Mechanism: m.String(), Moves: k, Mode: mode}
				fmt.Fprintf(cfg.Progress, "%s\n", c)
				res := fc.runCase(ctx, c, caseShape{rate: cfg.Rate})
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				if k == 0 && res.Error == "" {
					never[c.Mechanism] = res.Types[classNever]
				}
				rep.Cases = append(rep.Cases, res)
			}
		}
	}
	for i := range rep.Cases {
		rep.Cases[i].ratios(rep.RTT, never)
	}
	if cfg.BigMessages > 0 {
		c := FwdCase{Mechanism: ipc.Auto.String(), Moves: cfg.BigMoves, Mode: cfg.Modes[0]}
		fmt.Fprintf(cfg.Progress, "large run: %d messages at %.0f/s across %d moves under auto\n",
			cfg.BigMessages, cfg.BigRate, cfg.BigMoves)
		res := fc.runCase(ctx, c, caseShape{rate: cfg.BigRate / float64(rep.Senders), total: cfg.BigMessages})
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		res.ratios(rep.RTT, never)
		rep.Big = &res
	}
	fc.close()
	if cfg.Partners > 0 {
		p, err := runPartners(ctx, &cfg)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err != nil {
			// The rows are missing; the rest of the run stands.
			p = &PartnerReport{Nodes: cfg.Partners + 2, Error: err.Error()}
			cfg.Log.Warn("partner rows failed", "err", err)
		}
		rep.Partners = p
	}
	if !cfg.NoDrawbacks {
		for _, d := range drawbackRows {
			fmt.Fprintf(cfg.Progress, "drawback: %s with its %s node stopped\n", d.mech, d.role)
			row := runDrawback(ctx, &cfg, d)
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			rep.Drawbacks = append(rep.Drawbacks, row)
		}
	}
	rep.Targets = forwardingTargets(rep)
	return rep, nil
}

// ratios sets the type-3 ratios to the limit and to never moved.
func (r *FwdResult) ratios(rtt RTTLimit, never map[string]Latency) {
	n, ok := never[r.Mechanism]
	if t3 := r.Types[classType3]; t3.N > 0 {
		r.Type3VsRTT = ratio(t3.P50Us, rtt.P50Us)
		if ok {
			r.Type3VsNever, r.Type3P99VsNever = ratio(t3.P50Us, n.P50Us), ratio(t3.P99Us, n.P99Us)
		}
	}
	if l := r.Type3Last; l.N > 0 {
		r.LastVsRTT = ratio(l.P50Us, rtt.P50Us)
		if ok {
			r.LastVsNever, r.LastP99VsNever = ratio(l.P50Us, n.P50Us), ratio(l.P99Us, n.P99Us)
		}
	}
}

// percentile is the nearest-rank p-th percentile of sorted v (0 for none).
func percentile(sorted []int64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted))+0.5) - 1
	return float64(sorted[min(max(i, 0), len(sorted)-1)])
}

func latencyOf(v []int64) Latency {
	slices.Sort(v)
	return Latency{N: len(v), P50Us: percentile(v, 50), P99Us: percentile(v, 99)}
}
