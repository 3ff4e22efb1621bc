package bench

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"ferry/internal/ipc"
	"ferry/internal/msgload"
)

func TestClassify(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	moves := []moveTimes{
		// n1 → n2: frozen 100..150; n3 learnt at 160, n4 at the commit,
		// n2 never within the polls.
		{from: "n1", to: "n2", start: at(60), freeze: at(100), commit: at(150), learnt: map[string]time.Time{"n3": at(160), "n4": at(150)}},
		{from: "n2", to: "n3", start: at(4900), freeze: at(5000), commit: at(5040), learnt: map[string]time.Time{"n2": at(5040), "n3": at(5040), "n4": at(5045)}},
	}
	for _, tt := range []struct {
		ms    int
		node  string
		class int
		local bool
	}{
		{50, "n2", classNever, false},
		{50, "n1", classNever, true},
		{60, "n2", classPrepare, false},
		{99, "n1", classPrepare, true},
		{4950, "n2", classPrepare, true},
		{100, "n3", classType1, false},
		{150, "n3", classType1, false},
		{150, "n1", classType1, true},
		{155, "n3", classType2, false},
		{160, "n3", classType2, false},
		{161, "n3", classType3, false},
		{155, "n4", classType3, false}, // knew it at the commit
		{155, "n2", classType2, true},  // never learnt in the polls; on the receiver's node
		{4000, "n2", classType3, true}, // past the polls
		{5020, "n3", classType1, false},
		{5042, "n4", classType2, false},
		{5042, "n3", classType3, true},
		{6000, "n2", classType3, false},
	} {
		class, local := classify(at(tt.ms), tt.node, "n1", moves)
		if class != tt.class || local != tt.local {
			t.Errorf("classify(%d ms, %s) = class %d, local %v; want %d, %v", tt.ms, tt.node, class, local, tt.class, tt.local)
		}
	}
}

func TestPercentile(t *testing.T) {
	v := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tt := range []struct {
		p    float64
		want float64
	}{{50, 5}, {99, 10}, {10, 1}, {0, 1}, {100, 10}} {
		if got := percentile(v, tt.p); got != tt.want {
			t.Errorf("percentile(1..10, %v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(none) = %v, want 0", got)
	}
}

// TestForwardingAnalyze: counts and classes from the summaries, the
// sender on the receiver's node left out of the latencies.
func TestForwardingAnalyze(t *testing.T) {
	base := time.Unix(2000, 0)
	moves := []moveTimes{{from: "n1", to: "n2", start: base.Add(10 * time.Millisecond), freeze: base.Add(10 * time.Millisecond), commit: base.Add(20 * time.Millisecond),
		learnt: map[string]time.Time{"n3": base.Add(20 * time.Millisecond), "n4": base.Add(20 * time.Millisecond)}}}
	// Three senders, one message every 5 ms from 0 to 40 ms: 0, 5 never
	// moved; 10, 15, 20 type 1; 25..40 type 3.
	seenOf := func(id string, index uint32, n int) msgload.SenderSeen {
		s := msgload.SenderSeen{ID: id, Index: index, Ended: true, EndSeq: uint64(n), Received: n, BaseNs: base.UnixNano()}
		for i := range n {
			s.SentUs = append(s.SentUs, int64(i*5000))
			s.LatUs = append(s.LatUs, int64(100*(i+1)))
		}
		return s
	}
	rs := &msgload.RecvSummary{Complete: true, Senders: []msgload.SenderSeen{seenOf("n2-1.1", 1, 9), seenOf("n3-1.1", 2, 9), seenOf("n4-1.1", 3, 8)}}
	rs.Senders[2].Lost = 1
	sends := []*msgload.SendSummary{
		{ID: "n2-1.1", Sent: 9, Delivered: 9, FirstNs: base.UnixNano(), LastNs: base.Add(40 * time.Millisecond).UnixNano()},
		{ID: "n3-1.1", Sent: 9, Delivered: 9, FirstNs: base.UnixNano(), LastNs: base.Add(40 * time.Millisecond).UnixNano()},
		{ID: "n4-1.1", Sent: 9, Delivered: 9, FirstNs: base.UnixNano(), LastNs: base.Add(40 * time.Millisecond).UnixNano()},
	}
	var r FwdResult
	r.analyze(rs, sends, map[uint32]string{1: "n2", 2: "n3", 3: "n4"}, "n1", base.Add(time.Millisecond), moves)
	if r.Sent != 27 || r.Received != 26 || r.Lost != 1 || !r.Failed() {
		t.Errorf("sent %d received %d lost %d failed %v, want 27, 26, 1, true", r.Sent, r.Received, r.Lost, r.Failed())
	}
	// n2's messages after the freeze ran beside the receiver (n1 → n2
	// commits at 20 ms): 25..40 ms are local.
	if r.Local != 4 {
		t.Errorf("local %d, want 4", r.Local)
	}
	want := [nClasses]int{3, 9, 0, 7, 0} // the messages at 0 ms: before every sender was ready
	for k, n := range want {
		if r.Types[k].N != n {
			t.Errorf("class %d: %d messages, want %d", k, r.Types[k].N, n)
		}
	}
}

func TestForwardingWriteText(t *testing.T) {
	lat := func(n int, p50, p99 float64) Latency { return Latency{N: n, P50Us: p50, P99Us: p99} }
	rep := &ForwardingReport{Kernel: "6.1", CPUs: 2, Senders: 3, Rate: 200, RTT: RTTLimit{From: "n2", To: "n1", Route: "POST /v1/peer/msgs", P50Us: 40, P99Us: 300, Samples: 10},
		Cases: []FwdResult{
			{FwdCase: FwdCase{Mechanism: "link", Moves: 0, Mode: "freeze"}, Sent: 900, Received: 900, Types: [nClasses]Latency{lat(900, 400, 2500)}},
			{FwdCase: FwdCase{Mechanism: "link", Moves: 10, Mode: "freeze"}, MovesDone: 10, FreezeMs: 80, Sent: 3000, Received: 3000,
				Types:     [nClasses]Latency{lat(200, 390, 2000), lat(300, 60000, 90000), lat(12, 900, 1500), lat(2000, 420, 2600), lat(100, 700, 3000)},
				Type3Last: lat(900, 440, 2400), Type3VsRTT: 10.5, Type3VsNever: 1.05, LastVsRTT: 11, LastVsNever: 1.1, HopsPerMsg: 1.02, Relayed: 14, Links: 4},
		},
		Drawbacks: []Drawback{{Mechanism: "link", Stopped: "n2", Role: "link", Route: "n1 → n2 → n3",
			Warm: DrawbackSide{Node: "n1", Sent: 400, Delivered: 400}, Cold: DrawbackSide{Node: "n4", Sent: 400}}},
	}
	rep.Targets = forwardingTargets(rep)
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, row := range [][]string{
		{"link", "0", "freeze", "-", "0.40/2.50", "(900)", "-", "-", "-", "-", "-", "-", "-", "-", "-"},
		{"link", "10", "freeze", "80.0", "0.39/2.00", "(200)", "0.70/3.00", "(100)", "60.00/90.00", "(300)", "0.90/1.50", "(12)",
			"0.42/2.60", "(2000)", "0.44/2.40", "(900)", "10.50x", "1.05x", "11.00x", "1.10x"},
		{"link", "10", "3000", "3000", "0", "0", "0", "0", "0", "1.02", "14", "4", "0", "0", "0", "0", "0"},
		{"link", "n2", "(link)", "n1", "→", "n2", "→", "n3", "n1", "400/400", "100%", "n4", "0/400", "0%", "0", "0"},
	} {
		if !hasRow(b.String(), row) {
			t.Errorf("report lacks a row %q:\n%s", row, b.String())
		}
	}
	for _, want := range []string{"p50 0.040 ms, p99 0.300 ms", "link, 10 moves (freeze): median of type 3 after the last move / never moved: 1.10x (0.44 ms / 0.40 ms; all type 3 of the case 1.05x)", "): pass"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

// TestRunForwarding runs a small version of the bench: every mechanism,
// the receiver moved twice while three senders send, and checks what a
// user would: every message delivered, none lost, duplicated or out of
// order, each case's messages received as many as sent. No times are
// checked.
func TestRunForwarding(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ferry and starts four nodes")
	}
	needRoot(t)
	exe := buildFerry(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := RunForwarding(ctx, ForwardingConfig{Exe: exe, Moves: forwardingTestMoves, Rate: 100,
		Lead: 300 * time.Millisecond, Dwell: 200 * time.Millisecond, Tail: 300 * time.Millisecond,
		BigMessages: -1, NoDrawbacks: true, Partners: -1, RTTSamples: 200, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rep.WriteText(&b)
	t.Logf("\n%s", b.String())
	if len(rep.Cases) != len(ipc.Mechanisms)*len(forwardingTestMoves) {
		t.Fatalf("%d cases, want %d", len(rep.Cases), len(ipc.Mechanisms)*len(forwardingTestMoves))
	}
	for _, c := range rep.Cases {
		if c.Error != "" || c.MovesDone != c.Moves {
			t.Errorf("%s: %d moves done, error %q", c.FwdCase, c.MovesDone, c.Error)
		}
		if c.Sent == 0 || c.Delivered != c.Sent || c.Received != c.Sent || c.Lost != 0 || c.Duplicated != 0 || c.OutOfOrder != 0 || c.Refused != 0 {
			t.Errorf("%s: sent %d, delivered %d, received %d, lost %d, duplicated %d, out of order %d, refused %d",
				c.FwdCase, c.Sent, c.Delivered, c.Received, c.Lost, c.Duplicated, c.OutOfOrder, c.Refused)
		}
	}
	if !(rep.RTT.P50Us > 0) {
		t.Errorf("no round trip measured: %+v", rep.RTT)
	}
}

// forwardingTestMoves are TestRunForwarding's moves per case.
var forwardingTestMoves = []int{0, 2}

// TestPartnerCosts: update less link per partner count, the target on
// the most partners, and the rows in the text.
func TestPartnerCosts(t *testing.T) {
	row := func(m string, p int, freeze, msgs float64) PartnerRow {
		return PartnerRow{Mechanism: m, Partners: p, Moves: 3, MovesDone: 3, FreezeMs: freeze, MessagesP50Ms: msgs,
			FreezesMs: []float64{freeze - 10, freeze, freeze + 20}, MessagesMs: []float64{msgs, msgs, msgs}, MessagesMaxMs: msgs, LocUpdates: 3 * p, Sent: 10 * p, Received: 10 * p}
	}
	p := &PartnerReport{Nodes: 5, Rate: 50, Moves: 3, UpdateWaitMs: 50, Rows: []PartnerRow{
		row("link", 0, 100, 0.2), row("update", 0, 101, 0.3), row("link", 3, 110, 0.25), row("update", 3, 111.5, 1.05),
	}}
	p.Rows[2].LocUpdates = 0
	p.Added = partnerCosts(p.Rows)
	if len(p.Added) != 2 {
		t.Fatalf("costs %+v, want 2", p.Added)
	}
	c := p.Added[1]
	near := func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
	if c.Partners != 3 || !near(c.MessagesMs, 0.8) || !near(c.FreezeMs, 1.5) || !near(c.MessagesVsNoneMs, 0.75) {
		t.Errorf("cost with 3 partners %+v, want messages 0.8, freeze 1.5, vs none 0.75", c)
	}
	ts := partnerTargets(p)
	if len(ts) != 2 || !ts[0].Met || !strings.Contains(ts[0].What, "3 partner nodes") || !ts[1].Met {
		t.Errorf("targets %+v", ts)
	}
	var b strings.Builder
	if err := p.writeText(&b); err != nil {
		t.Fatal(err)
	}
	for _, r := range [][]string{
		{"update", "3", "3", "111.5", "102–132", "1.05", "1.05", "3.0", "0", "30", "30", "0", "0"},
		{"link", "3", "3", "110.0", "100–130", "0.25", "0.25", "0.0", "0", "30", "30", "0", "0"},
		{"3", "+0.80", "+1.5", "+0.75", "yes"},
		{"0", "+0.10", "+1.0", "-", "yes"},
	} {
		if !hasRow(b.String(), r) {
			t.Errorf("text lacks a row %q:\n%s", r, b.String())
		}
	}
}

// TestRunPartners runs small partner rows (two partner nodes, two moves
// per row) and checks that every row ran its moves, every report had its
// messages step, update told the partners and every message arrived
// once. No times are checked.
func TestRunPartners(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ferry and starts four nodes")
	}
	needRoot(t)
	exe := buildFerry(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := ForwardingConfig{Exe: exe, Partners: 2, PartnerMoves: 2, PartnerRate: 50,
		Lead: 300 * time.Millisecond, Dwell: 200 * time.Millisecond, Dir: t.TempDir()}
	if err := cfg.setDefaults(); err != nil {
		t.Fatal(err)
	}
	p, err := runPartners(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	p.writeText(&b)
	t.Logf("\n%s", b.String())
	if want := len(partnerCounts(2)) * 2; len(p.Rows) != want {
		t.Fatalf("%d rows, want %d", len(p.Rows), want)
	}
	for _, r := range p.Rows {
		name := fmt.Sprintf("%s with %d partners", r.Mechanism, r.Partners)
		if r.Error != "" || r.MovesDone != r.Moves || len(r.MessagesMs) != r.Moves {
			t.Errorf("%s: %d of %d moves, %d messages steps, error %q", name, r.MovesDone, r.Moves, len(r.MessagesMs), r.Error)
		}
		if r.Delivered != r.Sent || r.Received != r.Sent || r.Lost+r.Duplicated+r.OutOfOrder+r.Refused != 0 || (r.Partners > 0 && r.Sent == 0) {
			t.Errorf("%s: sent %d, delivered %d, received %d, lost %d, duplicated %d, out of order %d, refused %d",
				name, r.Sent, r.Delivered, r.Received, r.Lost, r.Duplicated, r.OutOfOrder, r.Refused)
		}
		// update tells each partner node at each move; link none.
		want := 0
		if r.Mechanism == "update" {
			want = r.Partners * r.MovesDone
		}
		if r.LocUpdates != want {
			t.Errorf("%s: %d location updates, want %d", name, r.LocUpdates, want)
		}
	}
	if len(p.Added) != len(partnerCounts(2)) {
		t.Errorf("costs %+v, want one per partner count", p.Added)
	}
}
