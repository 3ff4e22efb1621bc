package msgload

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// RecvSummary is what the receiver prints at the end, one JSON line.
type RecvSummary struct {
	Role string `json:"msgload"` // "recv"
	ID   string `json:"id"`
	// Complete: every expected sender's end arrived (or --count was
	// reached) before the receiver stopped.
	Complete bool         `json:"complete"`
	Senders  []SenderSeen `json:"senders"`
	// Foreign counts messages that were no msgload payload.
	Foreign int `json:"foreign,omitempty"`
}

// SenderSeen is one sender as the receiver saw it.
type SenderSeen struct {
	ID    string `json:"id"`
	Index uint32 `json:"index"`
	// Ended: its end message arrived; EndSeq is the last seq it said it
	// sent.
	Ended  bool   `json:"ended"`
	EndSeq uint64 `json:"end_seq,omitempty"`
	// Received counts distinct seqs; Lost the seqs up to the end (or the
	// highest seen) that never came; Duplicated seqs that came again;
	// OutOfOrder seqs that came after a higher one.
	Received   int `json:"received"`
	Lost       int `json:"lost"`
	Duplicated int `json:"duplicated"`
	OutOfOrder int `json:"out_of_order"`
	// Typed counts messages by the type their sender flagged (index 0:
	// not flagged).
	Typed [4]int `json:"typed"`
	// BaseNs is the send time of seq 1 (or the first seq received), unix
	// ns. SentUs[i] and LatUs[i] belong to seq i+1: its send time in µs
	// after BaseNs and its one-way latency in µs; -1 where it never came.
	BaseNs int64   `json:"base_ns"`
	SentUs []int64 `json:"sent_us"`
	LatUs  []int64 `json:"lat_us"`
}

// OK reports whether the sender's messages all came, once each, in
// order, and its end too.
func (s *SenderSeen) OK() bool {
	return s.Ended && s.Lost == 0 && s.Duplicated == 0 && s.OutOfOrder == 0 && uint64(s.Received) == s.EndSeq
}

// SendSummary is what the sender prints at the end, one JSON line.
type SendSummary struct {
	Role  string `json:"msgload"` // "send"
	ID    string `json:"id"`
	To    string `json:"to"`
	Index uint32 `json:"index"`
	// Sent is the number of data messages sent (seq 1..Sent); Delivered
	// those the node reported delivered; Errors the others by kind
	// (unknown_id, ended, unreachable, too_big, denied, malformed,
	// protocol, closed, other; no_outcome: none came within the drain).
	Sent      int            `json:"sent"`
	Delivered int            `json:"delivered"`
	Errors    map[string]int `json:"errors,omitempty"`
	// EndDelivered: the end message was delivered.
	EndDelivered bool `json:"end_delivered"`
	// WouldBlock counts TrySends the socket could not take at once.
	WouldBlock int `json:"would_block"`
	// FirstNs, LastNs: send times of the first and last data message.
	FirstNs int64   `json:"first_ns"`
	LastNs  int64   `json:"last_ns"`
	Rate    float64 `json:"rate"` // asked, per second
}

// summaryBuf is the largest summary line the parsers take: a receiver
// of a few hundred thousand messages.
const summaryBuf = 256 << 20

// ParseRecv returns the last receiver summary in r (a job's output).
func ParseRecv(r io.Reader) (*RecvSummary, error) {
	var out *RecvSummary
	err := scanSummaries(r, "recv", func(b []byte) error {
		var s RecvSummary
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		out = &s
		return nil
	})
	if err == nil && out == nil {
		err = fmt.Errorf("no msgload recv summary in the output")
	}
	return out, err
}

// ParseSend returns the last sender summary in r.
func ParseSend(r io.Reader) (*SendSummary, error) {
	var out *SendSummary
	err := scanSummaries(r, "send", func(b []byte) error {
		var s SendSummary
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		out = &s
		return nil
	})
	if err == nil && out == nil {
		err = fmt.Errorf("no msgload send summary in the output")
	}
	return out, err
}

func scanSummaries(r io.Reader, role string, f func([]byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), summaryBuf)
	prefix := `{"msgload":"` + role + `"`
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) {
			if err := f(sc.Bytes()); err != nil {
				return fmt.Errorf("msgload %s summary: %w", role, err)
			}
		}
	}
	return sc.Err()
}

// ReadyID returns the id of a "ready <id>" line in out, or "".
func ReadyID(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if id, ok := strings.CutPrefix(l, "ready "); ok {
			return strings.TrimSpace(id)
		}
	}
	return ""
}
