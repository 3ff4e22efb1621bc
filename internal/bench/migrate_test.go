package bench

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"ferry/internal/migrate"
	"ferry/internal/pki"
	"ferry/internal/testutil"
)

// buildFerry builds ferry's binary: the nodes run job inits and migration
// agents from it, and the workload as `ferry workload`.
func buildFerry(tb testing.TB) string {
	tb.Helper()
	exe, err := testutil.BuildFerry(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	return exe
}

func done(c MigrateCase, moves int, f func(*MigrateResult)) MigrateResult {
	r := MigrateResult{MigrateCase: c, Moves: moves}
	if f != nil {
		f(&r)
	}
	return r
}

func TestMigrateTargets(t *testing.T) {
	freezeIdle := MigrateCase{SizeMiB: 1024, Mode: migrate.Freeze}
	pre16 := MigrateCase{SizeMiB: 1024, RateMiBps: 16, Mode: migrate.Precopy}
	post0 := MigrateCase{SizeMiB: 1024, Mode: migrate.Postcopy}
	postRandom := MigrateCase{SizeMiB: 1024, RateMiBps: 64, Random: true, Mode: migrate.Postcopy}
	smallPost0 := MigrateCase{SizeMiB: 64, Mode: migrate.Postcopy}
	large := func(pushMs float64, cases ...MigrateResult) MigrateSize {
		return MigrateSize{SizeMiB: 1024, Limits: LoopbackLimits{Bytes: 1 << 30, PushFreshMs: pushMs}, Cases: cases}
	}
	small := func(cases ...MigrateResult) MigrateSize { return MigrateSize{SizeMiB: 64, Cases: cases} }

	for _, tt := range []struct {
		name  string
		sizes []MigrateSize
		want  map[string]bool // What → Met
	}{
		{"no 1 GiB", []MigrateSize{small(done(smallPost0, 3, func(r *MigrateResult) { r.RunningAfterMs = 5 }))}, map[string]bool{}},
		{
			"freeze within 1.5x of the push",
			[]MigrateSize{large(600, done(freezeIdle, 3, func(r *MigrateResult) { r.TotalMs = 900 }))},
			map[string]bool{"freeze 1 GiB idle: move / push 1 GiB through loopback TCP into fresh memory": true},
		},
		{
			"freeze slower than 1.5x the push",
			[]MigrateSize{large(500, done(freezeIdle, 3, func(r *MigrateResult) { r.TotalMs = 900 }))},
			map[string]bool{"freeze 1 GiB idle: move / push 1 GiB through loopback TCP into fresh memory": false},
		},
		{
			"freeze failed, precopy at the bound",
			[]MigrateSize{large(600,
				MigrateResult{MigrateCase: freezeIdle, Error: "boom"},
				done(pre16, 3, func(r *MigrateResult) { r.FreezeMs = 20 }))},
			map[string]bool{
				"freeze 1 GiB idle: move / push 1 GiB through loopback TCP into fresh memory": false,
				"precopy 1 GiB @ 16 MiB/s: freeze":                                            true,
			},
		},
		{
			"precopy freezes too long",
			[]MigrateSize{large(600, done(pre16, 3, func(r *MigrateResult) { r.FreezeMs = 20.5 }))},
			map[string]bool{"precopy 1 GiB @ 16 MiB/s: freeze": false},
		},
		{
			"postcopy",
			[]MigrateSize{
				small(done(smallPost0, 3, func(r *MigrateResult) { r.RunningAfterMs = 5 })),
				large(600,
					done(freezeIdle, 3, func(r *MigrateResult) { r.TotalMs = 800 }),
					done(post0, 3, func(r *MigrateResult) { r.RunningAfterMs, r.ResidualEndedMs = 9, 1100 }),
					// Running late, and a push that reported no end.
					done(postRandom, 3, func(r *MigrateResult) { r.RunningAfterMs = 25 })),
			},
			map[string]bool{
				"freeze 1 GiB idle: move / push 1 GiB through loopback TCP into fresh memory":      true,
				"postcopy 1 GiB @ 0 MiB/s: running after":                                          true,
				"postcopy 1 GiB @ 0 MiB/s: running after / 64 MiB's":                               true,
				"postcopy 1 GiB @ 0 MiB/s: push ended / freeze-mode move of an idle 1 GiB":         true,
				"postcopy 1 GiB @ 64 MiB/s random: running after":                                  false,
				"postcopy 1 GiB @ 64 MiB/s random: push ended / freeze-mode move of an idle 1 GiB": false,
			},
		},
		{
			"postcopy slower than twice the small one",
			[]MigrateSize{
				small(done(smallPost0, 3, func(r *MigrateResult) { r.RunningAfterMs = 4 })),
				large(600, done(post0, 3, func(r *MigrateResult) { r.RunningAfterMs = 8.5 })),
			},
			map[string]bool{
				"postcopy 1 GiB @ 0 MiB/s: running after":            true,
				"postcopy 1 GiB @ 0 MiB/s: running after / 64 MiB's": false,
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := migrateTargets(&MigrateReport{Sizes: tt.sizes})
			if len(got) != len(tt.want) {
				t.Errorf("migrateTargets = %d targets, want %d: %+v", len(got), len(tt.want), got)
			}
			for _, g := range got {
				want, ok := tt.want[g.What]
				switch {
				case !ok:
					t.Errorf("unexpected target %q (%s)", g.What, g.Got)
				case g.Met != want:
					t.Errorf("target %q: got %s, met = %v, want %v", g.What, g.Got, g.Met, want)
				case g.Met && !(g.Ratio > 0 && g.Ratio <= 1):
					t.Errorf("target %q met with ratio %v, want in (0, 1]", g.What, g.Ratio)
				}
			}
		})
	}
}

func TestMigrateWriteText(t *testing.T) {
	limits := LoopbackLimits{Bytes: 64 << 20, TCPGBps: 3.5, TLSGBps: 1.9, TLSCipher: "TLS_AES_128_GCM_SHA256",
		FreshGBpsBy: map[string]float64{FillCopy: 2.1, FillUffdCopy: 4.2}, PushFreshMs: 31.5, PushFreshTLSMs: 45}
	freeze := done(MigrateCase{SizeMiB: 64, Mode: migrate.Freeze}, 3, func(r *MigrateResult) {
		r.FreezeMs, r.RunningAfterMs, r.TotalMs, r.BytesSent = 61.25, 63.5, 63.5, 70<<20
	})
	post := done(MigrateCase{SizeMiB: 64, RateMiBps: 64, Random: true, Mode: migrate.Postcopy}, 3, func(r *MigrateResult) {
		r.FreezeMs, r.Faults, r.PushedPages, r.ResidualEndedMs = 4, 120, 16000, 80.25
	})
	failed := MigrateResult{MigrateCase: MigrateCase{SizeMiB: 64, RateMiBps: 16, Mode: migrate.Precopy},
		Error: "move n1 → n2: precopy is not wired yet"}
	for _, tt := range []struct {
		name          string
		rep           MigrateReport
		want, notWant []string
		rows          [][]string // lines of these fields
	}{
		{
			"figures",
			MigrateReport{Repeat: 3, IntervalMs: 200, Sizes: []MigrateSize{{SizeMiB: 64, Limits: limits, GivenBackMiB: -1,
				Cases: []MigrateResult{freeze, post}}}},
			[]string{"\n64 MiB\n", "freeze ms", "TCP 3.50 GB/s", "TLS 1.3 1.90 GB/s (TLS_AES_128_GCM_SHA256)",
				"copy 2.10, uffd-copy 4.20 GB/s", "TCP 31.5 ms (2.13 GB/s)"},
			[]string{"failed", "targets", "given back", "noisy"},
			[][]string{
				{"freeze", "0", "61.2", "63.5", "63.5", "0.0", "0.0", "70.0", "-", "-", "-", "-"},
				{"postcopy", "64", "random", "4.0", "0.0", "0.0", "0.0", "0.0", "0.0", "-", "120", "16000", "80.2"},
			},
		},
		{
			"a failed mode",
			MigrateReport{Repeat: 3, Sizes: []MigrateSize{{SizeMiB: 64, Limits: limits, GivenBackMiB: 12,
				Cases: []MigrateResult{freeze, failed}}}},
			[]string{"precopy @ 16 MiB/s failed: move n1 → n2: precopy is not wired yet",
				"gave back to its host meanwhile (slow to touch again): 12 MiB"},
			nil,
			[][]string{{"precopy", "16", "failed"}},
		},
		{
			"targets",
			MigrateReport{Repeat: 3, Sizes: []MigrateSize{{SizeMiB: 1024, GivenBackMiB: -1}}, Targets: []MigrateTarget{
				{Target: Target{What: "a", Want: "<= 20 ms", Got: "12.0 ms", Met: true}, Ratio: 0.6},
				{Target: Target{What: "b", Want: "<= 1.5x", Got: "1.70x", Met: false}, Ratio: 1.13},
			}},
			[]string{"\n1 GiB\n", "targets\n", "a: 12.0 ms (target <= 20 ms): pass", "b: 1.70x (target <= 1.5x): MISS"},
			nil,
			nil,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := tt.rep.WriteText(&b); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("report lacks %q:\n%s", w, b.String())
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(b.String(), w) {
					t.Errorf("report has %q:\n%s", w, b.String())
				}
			}
			for _, row := range tt.rows {
				if !hasRow(b.String(), row) {
					t.Errorf("report lacks a row %q:\n%s", row, b.String())
				}
			}
		})
	}
}

// hasRow reports whether a line of text consists of fields.
func hasRow(text string, fields []string) bool {
	for _, line := range strings.Split(text, "\n") {
		if slices.Equal(strings.Fields(line), fields) {
			return true
		}
	}
	return false
}

func TestMigrateCases(t *testing.T) {
	cfg := MigrateConfig{Exe: "ferry", SizesMiB: []int{64}, RatesMiBps: []float64{0, 16}}
	if err := cfg.setDefaults(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cfg.casesFor(64) {
		got = append(got, c.String())
	}
	want := []string{
		"freeze 64 MiB @ 0 MiB/s", "freeze 64 MiB @ 16 MiB/s",
		"precopy 64 MiB @ 0 MiB/s", "precopy 64 MiB @ 16 MiB/s",
		"postcopy 64 MiB @ 0 MiB/s", "postcopy 64 MiB @ 16 MiB/s", "postcopy 64 MiB @ 64 MiB/s random",
	}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("casesFor(64) = %q, want %q", got, want)
	}
	if cmd := strings.Join(jobCmd("ferry", MigrateCase{SizeMiB: 64, RateMiBps: 64, Random: true}), " "); cmd !=
		"ferry workload --mem 64 --rate 64 --threads 1 --interval 200ms --random" {
		t.Errorf("jobCmd = %q", cmd)
	}
}

func TestPushLoopback(t *testing.T) {
	dir := t.TempDir()
	if err := pki.Init(dir, []string{"n1", "n2"}); err != nil {
		t.Fatal(err)
	}
	tp, err := ClusterTLS(dir, "n2", "n1")
	if err != nil {
		t.Fatal(err)
	}
	src := NewBuffer(ChunkSize)
	const size = 4<<20 + 4096 // not a multiple of the pieces
	for _, tls := range []*TLSPair{nil, tp} {
		for _, fresh := range []bool{false, true} {
			p, err := PushLoopback(context.Background(), size, src, tls, fresh)
			if err != nil || p.Took <= 0 || (tls != nil) != (p.Cipher != "") {
				t.Errorf("PushLoopback(tls %v, fresh %v) = %+v, %v", tls != nil, fresh, p, err)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := PushLoopback(ctx, size, src, nil, false); err == nil {
		t.Errorf("PushLoopback with a cancelled context succeeded")
	}
}

// TestRunMigrate moves a small idle workload by freezing, once counted,
// and checks the report holds figures.
func TestRunMigrate(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ferry and starts two nodes")
	}
	needRoot(t)
	exe := buildFerry(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := RunMigrate(ctx, MigrateConfig{Exe: exe, SizesMiB: []int{8}, RatesMiBps: []float64{0},
		Modes: []migrate.Mode{migrate.Freeze}, Repeat: 1, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Sizes) != 1 || len(rep.Sizes[0].Cases) != 1 {
		t.Fatalf("report has %+v, want one size with one case", rep.Sizes)
	}
	s := rep.Sizes[0]
	c := s.Cases[0]
	if c.Failed() || c.Moves != 1 {
		t.Fatalf("case %s: %d moves, error %q; want 1 move", c.MigrateCase, c.Moves, c.Error)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"freeze_ms", c.FreezeMs}, {"total_ms", c.TotalMs}, {"running_after_ms", c.RunningAfterMs},
		{"tcp_gbps", s.Limits.TCPGBps}, {"tls_gbps", s.Limits.TLSGBps}, {"fresh_memory_gbps", s.Limits.FreshGBps},
		{"push_fresh_ms", s.Limits.PushFreshMs}, {"push_fresh_tls_ms", s.Limits.PushFreshTLSMs},
	} {
		if !(f.v > 0) {
			t.Errorf("%s = %v, want > 0", f.name, f.v)
		}
	}
	if c.BytesSent < 8<<20 {
		t.Errorf("sent %v bytes, want at least 8 MiB", c.BytesSent)
	}
	if c.Ticks < 2 || c.Verified < 2 {
		t.Errorf("the workload printed %d ticks and verified %d passes, want at least 2 of each", c.Ticks, c.Verified)
	}
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"8 MiB", "freeze", "push 8 MiB through loopback into fresh memory"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, b.String())
		}
	}
	t.Logf("\n%s", b.String())
}

// BenchmarkMigrate moves an idle 64 MiB workload between two local nodes
// by freezing, back and forth; throughput is bytes sent per second.
func BenchmarkMigrate(b *testing.B) {
	if testing.Short() {
		b.Skip("builds ferry and starts two nodes: skipped in -short mode")
	}
	exe := buildFerry(b)
	ctx := context.Background()
	cfg := MigrateConfig{Exe: exe, Dir: b.TempDir()}
	if err := cfg.setDefaults(); err != nil {
		b.Fatal(err)
	}
	rg, err := startRig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(rg.close)
	j, err := startJob(ctx, rg.env, nodeIDs[0], MigrateCase{SizeMiB: mib64, Mode: migrate.Freeze})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := j.stop(ctx); err != nil {
			b.Error(err)
		}
		j.close()
	})
	move := func() *migrate.Report {
		rep, _, err := j.move(ctx, otherNode(j.at), migrate.Freeze)
		if err != nil {
			b.Fatal(err)
		}
		if err := j.settle(ctx, time.Now()); err != nil {
			b.Fatal(err)
		}
		return rep
	}
	warm := move()
	b.SetBytes(int64(warm.BytesSent))
	var freeze time.Duration
	for b.Loop() {
		rep, _, err := j.move(ctx, otherNode(j.at), migrate.Freeze)
		if err != nil {
			b.Fatal(err)
		}
		freeze += rep.FreezeTime
		// The workload carries on between moves, untimed.
		b.StopTimer()
		if err := j.settle(ctx, time.Now()); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(ms(freeze/time.Duration(b.N)), "freeze-ms/op")
}
