package workload

import (
	"strconv"
	"strings"
	"time"
)

// Progress is one line of workload output. String formats it and ParseLine
// reads it back; see the package comment for the line format.
type Progress struct {
	Tick     uint64 // 1 on the first line, +1 on each line after
	PID      int
	MemMiB   int
	Dirtied  uint64 // pages rewritten so far
	Verified uint64 // full verification passes completed
	OK       bool   // false once corruption was found
	Err      string // what was found when !OK
	Time     time.Time
	// Done marks the final line of a clean shutdown. It repeats the last
	// Tick rather than adding one, so continuity checks skip it.
	Done bool
}

// timeLayout is RFC 3339 at millisecond precision, which time.RFC3339Nano
// parses back.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// String formats p as one output line, without the newline.
func (p Progress) String() string {
	var b []byte
	if p.Done {
		b = append(b, "done tick="...)
		b = strconv.AppendUint(b, p.Tick, 10)
		b = append(b, " verified="...)
		b = strconv.AppendUint(b, p.Verified, 10)
		return string(b)
	}
	b = append(b, "tick="...)
	b = strconv.AppendUint(b, p.Tick, 10)
	b = append(b, " pid="...)
	b = strconv.AppendInt(b, int64(p.PID), 10)
	b = append(b, " mem="...)
	b = strconv.AppendInt(b, int64(p.MemMiB), 10)
	b = append(b, "MiB dirtied="...)
	b = strconv.AppendUint(b, p.Dirtied, 10)
	b = append(b, " verified="...)
	b = strconv.AppendUint(b, p.Verified, 10)
	if !p.Time.IsZero() {
		b = append(b, " time="...)
		b = p.Time.AppendFormat(b, timeLayout)
	}
	b = append(b, " ok="...)
	b = strconv.AppendBool(b, p.OK)
	if p.Err != "" {
		b = append(b, " err="...)
		b = strconv.AppendQuote(b, p.Err)
	}
	return string(b)
}

// ParseLine parses one line written by Run, with or without its newline. It
// reports false for anything else, such as a Go panic trace on the same
// stream. Unknown keys are skipped so the format can grow.
func ParseLine(line string) (Progress, bool) {
	var p Progress
	line = strings.TrimSpace(line)
	if rest, ok := strings.CutPrefix(line, "done "); ok {
		p.Done, p.OK = true, true
		line = rest
	}
	var haveTick, haveOK bool
	for line = strings.TrimLeft(line, " "); line != ""; line = strings.TrimLeft(line, " ") {
		key, rest, ok := strings.Cut(line, "=")
		if !ok || key == "" || strings.ContainsAny(key, " \t\"") {
			return Progress{}, false
		}
		var val string
		if strings.HasPrefix(rest, `"`) {
			quoted, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return Progress{}, false
			}
			rest = rest[len(quoted):]
			if rest != "" && rest[0] != ' ' {
				return Progress{}, false
			}
			val, _ = strconv.Unquote(quoted)
		} else {
			val, rest, _ = strings.Cut(rest, " ")
		}
		line = rest

		var err error
		switch key {
		case "tick":
			p.Tick, err = strconv.ParseUint(val, 10, 64)
			haveTick = true
		case "pid":
			p.PID, err = strconv.Atoi(val)
		case "mem":
			p.MemMiB, err = strconv.Atoi(strings.TrimSuffix(val, "MiB"))
		case "dirtied":
			p.Dirtied, err = strconv.ParseUint(val, 10, 64)
		case "verified":
			p.Verified, err = strconv.ParseUint(val, 10, 64)
		case "time":
			p.Time, err = time.Parse(time.RFC3339Nano, val)
		case "ok":
			switch val {
			case "true":
				p.OK = true
			case "false":
				p.OK = false
			default:
				return Progress{}, false
			}
			haveOK = true
		case "err":
			p.Err = val
		}
		if err != nil {
			return Progress{}, false
		}
	}
	if !haveTick || (!p.Done && !haveOK) {
		return Progress{}, false
	}
	return p, true
}
