package bench

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"

	"ferry/internal/migrate"
)

// SoakReport is the outcome of RunSoak. Times are in milliseconds.
type SoakReport struct {
	Kernel    string         `json:"kernel"`
	CPUs      int            `json:"cpus"`
	Nodes     []string       `json:"nodes"`
	Jobs      int            `json:"jobs"`
	SizeMiB   int            `json:"size_mib"`
	RateMiBps float64        `json:"rate_mibps"`
	Modes     []migrate.Mode `json:"modes"`
	Seed      int64          `json:"seed"`
	DurationS float64        `json:"duration_s"` // moves were started for this long
	ElapsedS  float64        `json:"elapsed_s"`  // until the last move had settled

	Moves      []SoakMove    `json:"moves"`  // the migrations that committed, in the order made
	Failed     []SoakFailure `json:"failed"` // the moves that failed
	JobResults []*SoakJob    `json:"jobs_run"`
	// Snapshots are the daemons' figures: idle start, loaded start, the
	// samples, loaded end, idle end.
	Snapshots []SoakSnapshot `json:"snapshots"`
	// LeftoverProcs counts processes of the cluster (job inits, agents)
	// still alive after the jobs and daemons were stopped, then killed.
	LeftoverProcs int `json:"leftover_processes"`

	// Set by finish.
	ByMode []SoakModeFigures `json:"by_mode"`
	Causes []SoakCause       `json:"failure_causes"`
	Growth []SoakGrowth      `json:"growth"`
	// Grew says, one line each, what grew beyond noise (see SoakGrowth);
	// empty when nothing did.
	Grew []string `json:"grew"`
}

// SoakMove is one migration that committed.
type SoakMove struct {
	Mode migrate.Mode `json:"mode"`
	MoveSample
}

// SoakFailure is one move that failed.
type SoakFailure struct {
	Mode  migrate.Mode `json:"mode"`
	Job   string       `json:"job"`
	From  string       `json:"from"`
	To    string       `json:"to"`
	Error string       `json:"error"`
}

// SoakJob is one job of the soak. A job fails (Error) when after a move
// its output stops, skips or repeats a tick, changes PID, reports its
// memory corrupted, or it is lost; it is then replaced by a new one.
type SoakJob struct {
	ID          string `json:"id"`
	Moves       int    `json:"moves"`
	FailedMoves int    `json:"failed_moves"`
	Ticks       uint64 `json:"ticks"`    // progress lines, all checked
	Verified    uint64 `json:"verified"` // verification passes of its whole memory
	Error       string `json:"error,omitempty"`
}

// SoakSnapshot is every daemon's figures at one moment.
type SoakSnapshot struct {
	Label string  `json:"label"`
	AtS   float64 `json:"at_s"` // since the first move
	// Settled: two readings half a second apart agreed on descriptors and
	// goroutines (only asked of the idle and loaded snapshots).
	Settled bool            `json:"settled"`
	Daemons []DaemonFigures `json:"daemons"`
}

// total sums the snapshot over the daemons.
func (s SoakSnapshot) total() DaemonFigures {
	t := DaemonFigures{Node: "all"}
	for _, d := range s.Daemons {
		t.FDs += d.FDs
		t.Threads += d.Threads
		t.RSSBytes += d.RSSBytes
		t.Goroutines += d.Goroutines
		t.HeapBytes += d.HeapBytes
	}
	return t
}

func (s SoakSnapshot) daemon(id string) (DaemonFigures, bool) {
	for _, d := range s.Daemons {
		if d.Node == id {
			return d, true
		}
	}
	return DaemonFigures{}, false
}

// SoakModeFigures are the migration times of one mode: median, 90th
// percentile and maximum.
type SoakModeFigures struct {
	Mode   migrate.Mode `json:"mode"`
	Done   int          `json:"done"`
	Failed int          `json:"failed"`
	Call   Spread       `json:"call_ms"` // the move as the client saw it
	Freeze Spread       `json:"freeze_ms"`
	Total  Spread       `json:"total_ms"`
}

// Spread summarizes samples.
type Spread struct {
	Median float64 `json:"median"`
	P90    float64 `json:"p90"`
	Max    float64 `json:"max"`
}

func spreadOf(v []float64) Spread {
	if len(v) == 0 {
		return Spread{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	p90 := s[min(len(s)-1, int(math.Ceil(0.9*float64(len(s))))-1)]
	return Spread{Median: medianFloat(s), P90: p90, Max: s[len(s)-1]}
}

// SoakCause is the failures that share one error text once the numbers in
// it (job ids, pids, sizes, times) are masked.
type SoakCause struct {
	Cause   string         `json:"cause"`
	Count   int            `json:"count"`
	ByMode  map[string]int `json:"by_mode"`
	Example string         `json:"example"`
}

var digits = regexp.MustCompile(`[0-9]+(\.[0-9]+)?`)

// causeOf masks the numbers in an error text: "job n2-14 … pid 7" and
// "job n1-3 … pid 9" are one cause.
func causeOf(err string) string { return digits.ReplaceAllString(err, "#") }

// SoakGrowth compares one daemon's figures (or all daemons' together,
// Node "all") between two snapshots.
//
// What counts as noise: at the idle end, taken once the peers' idle
// connections closed (they do after 30 s), the bench's own idle
// connections to the daemon: soakIdleFDNoise descriptors and
// soakIdleGoroutineNoise goroutines. Between loaded snapshots, the idle
// connections between the peers as well (idleConnNoise). For threads and
// memory, which a Go program takes as it warms up and keeps, 25% or
// soakThreadNoise threads and soakRSSNoise bytes, whichever is more,
// between the warm sample (a third into the run) and the loaded end.
type SoakGrowth struct {
	Node     string `json:"node"`
	From     string `json:"from"`
	To       string `json:"to"`
	FDs      int    `json:"fds"`
	Threads  int    `json:"threads"`
	RSSBytes int64  `json:"rss_bytes"`
	// Goroutines and heap, from the daemon's own count.
	Goroutines int   `json:"goroutines"`
	HeapBytes  int64 `json:"heap_bytes"`
}

const (
	soakIdleFDNoise        = 4
	soakIdleGoroutineNoise = 8
	soakThreadNoise        = 8
	soakRSSNoise           = 32 << 20
	soakNoiseShare         = 0.25
)

// idleConnNoise is how many descriptors and goroutines idle connections
// may hold in one daemon of a cluster of n.
func idleConnNoise(n int) (fds, goroutines int) {
	conns := 2 + 4*(n-1) + 4*(n-1) // the bench's, the peers' in, its own out
	return conns, 2 * conns        // a connection's reader and writer (client) or reader and handler (server)
}

func growth(node string, a, b DaemonFigures, from, to string) SoakGrowth {
	return SoakGrowth{Node: node, From: from, To: to, FDs: b.FDs - a.FDs, Threads: b.Threads - a.Threads,
		RSSBytes: int64(b.RSSBytes) - int64(a.RSSBytes), Goroutines: b.Goroutines - a.Goroutines,
		HeapBytes: int64(b.HeapBytes) - int64(a.HeapBytes)}
}

func (r *SoakReport) snap(label string) (SoakSnapshot, bool) {
	for _, s := range r.Snapshots {
		if s.Label == label {
			return s, true
		}
	}
	return SoakSnapshot{}, false
}

// warm is the first sample a third or more into the run, or the loaded
// start if there is none.
func (r *SoakReport) warm() (SoakSnapshot, bool) {
	for _, s := range r.Snapshots {
		if s.Label == SnapSample && s.AtS >= r.ElapsedS/3 {
			return s, true
		}
	}
	return r.snap(SnapLoadedStart)
}

// finish sums up the moves and failures and judges the growth.
func (r *SoakReport) finish() {
	r.ByMode = nil
	for _, m := range r.Modes {
		f := SoakModeFigures{Mode: m}
		var call, freeze, total []float64
		for _, mv := range r.Moves {
			if mv.Mode == m {
				f.Done++
				call, freeze, total = append(call, mv.CallMs), append(freeze, mv.FreezeMs), append(total, mv.TotalMs)
			}
		}
		for _, fl := range r.Failed {
			if fl.Mode == m {
				f.Failed++
			}
		}
		f.Call, f.Freeze, f.Total = spreadOf(call), spreadOf(freeze), spreadOf(total)
		r.ByMode = append(r.ByMode, f)
	}

	byCause := map[string]*SoakCause{}
	for _, fl := range r.Failed {
		k := causeOf(fl.Error)
		c := byCause[k]
		if c == nil {
			c = &SoakCause{Cause: k, ByMode: map[string]int{}, Example: fl.Error}
			byCause[k] = c
		}
		c.Count++
		c.ByMode[string(fl.Mode)]++
	}
	r.Causes = nil
	for _, c := range byCause {
		r.Causes = append(r.Causes, *c)
	}
	slices.SortFunc(r.Causes, func(a, b SoakCause) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Cause, b.Cause))
	})

	r.Growth, r.Grew = nil, nil
	fdNoise, grNoise := idleConnNoise(len(r.Nodes))
	judgeCounts := func(g SoakGrowth, fdNoise, grNoise int) {
		if g.FDs > fdNoise {
			r.Grew = append(r.Grew, fmt.Sprintf("%s: %d more fds at %s than at %s (noise: up to %d)", g.Node, g.FDs, g.To, g.From, fdNoise))
		}
		if g.Goroutines > grNoise {
			r.Grew = append(r.Grew, fmt.Sprintf("%s: %d more goroutines at %s than at %s (noise: up to %d)", g.Node, g.Goroutines, g.To, g.From, grNoise))
		}
	}
	// Idle to idle, each daemon: descriptors and goroutines come back.
	is, ok1 := r.snap(SnapIdleStart)
	ie, ok2 := r.snap(SnapIdleEnd)
	if ok1 && ok2 {
		for _, id := range r.Nodes {
			a, okA := is.daemon(id)
			b, okB := ie.daemon(id)
			if okA && okB {
				g := growth(id, a, b, SnapIdleStart, SnapIdleEnd)
				r.Growth = append(r.Growth, g)
				judgeCounts(g, soakIdleFDNoise, soakIdleGoroutineNoise)
			}
		}
	}
	// Loaded to loaded, all daemons together (the jobs are spread
	// differently): the same for the same jobs.
	ls, ok1 := r.snap(SnapLoadedStart)
	le, ok2 := r.snap(SnapLoadedEnd)
	if ok1 && ok2 {
		g := growth("all", ls.total(), le.total(), SnapLoadedStart, SnapLoadedEnd)
		r.Growth = append(r.Growth, g)
		n := len(r.Nodes)
		judgeCounts(g, n*fdNoise, n*grNoise)
	}
	// Warm to loaded end, all together: threads and memory stop growing.
	if w, ok := r.warm(); ok && ok2 {
		a, b := w.total(), le.total()
		from := w.Label
		if w.Label == SnapSample {
			from = fmt.Sprintf("the sample at %.0f s", w.AtS)
		}
		g := growth("all", a, b, from, SnapLoadedEnd)
		r.Growth = append(r.Growth, g)
		if lim := max(soakThreadNoise, int(soakNoiseShare*float64(a.Threads))); g.Threads > lim {
			r.Grew = append(r.Grew, fmt.Sprintf("all: %d more threads at %s than at %s (noise: up to %d)", g.Threads, g.To, from, lim))
		}
		if lim := max(int64(soakRSSNoise), int64(soakNoiseShare*float64(a.RSSBytes))); g.RSSBytes > lim {
			r.Grew = append(r.Grew, fmt.Sprintf("all: %s more RSS at %s than at %s (noise: up to %s)",
				mibName(uint64(g.RSSBytes)), g.To, from, mibName(uint64(lim))))
		}
	}
	if r.LeftoverProcs > 0 {
		r.Grew = append(r.Grew, fmt.Sprintf("%d processes of the cluster outlived its jobs and daemons", r.LeftoverProcs))
	}
}

// fdKindGrowth lists, per daemon, the kinds of descriptors it holds more
// of at the idle end than at the idle start: what the growth is made of.
func (r *SoakReport) fdKindGrowth() []string {
	is, ok1 := r.snap(SnapIdleStart)
	ie, ok2 := r.snap(SnapIdleEnd)
	if !ok1 || !ok2 {
		return nil
	}
	var out []string
	for _, id := range r.Nodes {
		a, _ := is.daemon(id)
		b, _ := ie.daemon(id)
		var more []string
		for _, k := range slices.Sorted(maps.Keys(b.FDKinds)) {
			if n := b.FDKinds[k] - a.FDKinds[k]; n > 0 {
				more = append(more, fmt.Sprintf("%+d %s", n, k))
			}
		}
		if len(more) > 0 {
			out = append(out, id+": "+strings.Join(more, ", "))
		}
	}
	return out
}

// JobsFailed counts the jobs that failed their checks.
func (r *SoakReport) JobsFailed() int {
	n := 0
	for _, j := range r.JobResults {
		if j.Error != "" {
			n++
		}
	}
	return n
}

func mibName(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func signedMiB(b int64) string { return fmt.Sprintf("%+.1f MiB", float64(b)/(1<<20)) }

// WriteText prints the report for people.
func (r *SoakReport) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "soak: %d jobs of %s @ %g MiB/s on %d ferry node daemons (%s), moves for %.0f s (last settled at %.0f s), seed %d\n",
		r.Jobs, sizeName(r.SizeMiB), r.RateMiBps, len(r.Nodes), strings.Join(r.Nodes, ", "), r.DurationS, r.ElapsedS, r.Seed)
	fmt.Fprintf(&b, "kernel %s, %d CPUs\n\n", r.Kernel, r.CPUs)
	fmt.Fprintf(&b, "migrations: %d done, %d failed; jobs: %d run, %d failed their checks\n\n",
		len(r.Moves), len(r.Failed), len(r.JobResults), r.JobsFailed())

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tdone\tfailed\tcall median\tp90\tmax\tfreeze median\tp90\tmax\ttotal median\tp90\tmax\t")
	for _, m := range r.ByMode {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f ms\t%.1f ms\t%.1f ms\t%.1f ms\t%.1f ms\t%.1f ms\t%.1f ms\t%.1f ms\t%.1f ms\t\n",
			m.Mode, m.Done, m.Failed, m.Call.Median, m.Call.P90, m.Call.Max, m.Freeze.Median, m.Freeze.P90, m.Freeze.Max,
			m.Total.Median, m.Total.P90, m.Total.Max)
	}
	tw.Flush()

	if len(r.Causes) > 0 {
		fmt.Fprintf(&b, "\nfailures by cause (numbers masked as #):\n")
		for _, c := range r.Causes {
			var modes []string
			for _, m := range slices.Sorted(maps.Keys(c.ByMode)) {
				modes = append(modes, fmt.Sprintf("%s %d", m, c.ByMode[m]))
			}
			fmt.Fprintf(&b, "  %d× (%s) %s\n     e.g. %s\n", c.Count, strings.Join(modes, ", "), c.Cause, c.Example)
		}
	}
	if n := r.JobsFailed(); n > 0 {
		fmt.Fprintf(&b, "\njobs that failed their checks:\n")
		for _, j := range r.JobResults {
			if j.Error != "" {
				fmt.Fprintf(&b, "  %s after %d moves (tick %d, %d passes verified): %s\n", j.ID, j.Moves, j.Ticks, j.Verified, j.Error)
			}
		}
	}

	fmt.Fprintf(&b, "\ndaemons (fds, threads and RSS from /proc/PID; goroutines and Go heap from GET /v1/node/stats):\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "at\tnode\tpid\tfds\tthreads\tRSS\tgoroutines\theap\t")
	for _, s := range r.Snapshots {
		at := s.Label
		if s.Label == SnapSample {
			at = fmt.Sprintf("%.0f s", s.AtS)
		}
		if s.Label != SnapSample || len(r.Snapshots) <= 24 {
			for _, d := range s.Daemons {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%d\t%s\t\n", at, d.Node, d.PID, d.FDs, d.Threads, mibName(d.RSSBytes), d.Goroutines, mibName(d.HeapBytes))
			}
		}
		t := s.total()
		fmt.Fprintf(tw, "%s\tall\t\t%d\t%d\t%s\t%d\t%s\t\n", at, t.FDs, t.Threads, mibName(t.RSSBytes), t.Goroutines, mibName(t.HeapBytes))
	}
	tw.Flush()

	fmt.Fprintf(&b, "\ngrowth:\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "node\tfrom\tto\tfds\tthreads\tRSS\tgoroutines\theap\t")
	for _, g := range r.Growth {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%+d\t%+d\t%s\t%+d\t%s\t\n", g.Node, g.From, g.To, g.FDs, g.Threads, signedMiB(g.RSSBytes), g.Goroutines, signedMiB(g.HeapBytes))
	}
	tw.Flush()
	if d := r.fdKindGrowth(); len(d) > 0 {
		fmt.Fprintf(&b, "\ndescriptors at the idle end beyond the idle start, by kind:\n")
		for _, l := range d {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	if len(r.Grew) == 0 {
		fmt.Fprintf(&b, "\nnothing grew beyond noise; %d leftover processes\n", r.LeftoverProcs)
	} else {
		fmt.Fprintf(&b, "\nGREW BEYOND NOISE:\n")
		for _, g := range r.Grew {
			fmt.Fprintf(&b, "  %s\n", g)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
