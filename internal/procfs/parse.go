package procfs

import (
	"bytes"
	"errors"
)

// Allocation-free scanners for the kernel's text formats. They work on the
// byte slices the readers fill, so a maps line becomes a Mapping without a
// regexp, strings.Fields or strconv on temporary strings.

var errSyntax = errors.New("syntax")

// nextLine returns the line starting at b[0] (without '\n') and the rest.
func nextLine(b []byte) (line, rest []byte) {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i], b[i+1:]
	}
	return b, nil
}

// nextField skips leading blanks (space, tab, newline) and returns the next
// run of other bytes and what follows it.
func nextField(b []byte) (field, rest []byte) {
	i := 0
	for i < len(b) && isBlank(b[i]) {
		i++
	}
	j := i
	for j < len(b) && !isBlank(b[j]) {
		j++
	}
	return b[i:j], b[j:]
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\n' }

// trimSpace trims spaces, tabs and a trailing newline from both ends.
func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\n') {
		b = b[:len(b)-1]
	}
	return b
}

// splitKey splits "Key:<spaces>value" into key and trimmed value.
func splitKey(line []byte) (key, val []byte, ok bool) {
	for i, c := range line {
		if c == ':' {
			return line[:i], trimSpace(line[i+1:]), true
		}
	}
	return nil, nil, false
}

func parseHex(b []byte) (uint64, error) {
	if len(b) == 0 || len(b) > 16 {
		return 0, errSyntax
	}
	var v uint64
	for _, c := range b {
		d := hexDigit[c]
		if d > 15 {
			return 0, errSyntax
		}
		v = v<<4 | uint64(d)
	}
	return v, nil
}

// hexDigit maps a byte to its hex value, or 0xff.
var hexDigit = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := byte(0); i < 10; i++ {
		t['0'+i] = i
	}
	for i := byte(0); i < 6; i++ {
		t['a'+i] = 10 + i
		t['A'+i] = 10 + i
	}
	return t
}()

func parseOctal(b []byte) (uint64, error) {
	if len(b) == 0 || len(b) > 22 {
		return 0, errSyntax
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '7' {
			return 0, errSyntax
		}
		if v>>61 != 0 {
			return 0, errSyntax
		}
		v = v<<3 | uint64(c-'0')
	}
	return v, nil
}

func parseUint(b []byte) (uint64, error) {
	if len(b) == 0 || len(b) > 20 {
		return 0, errSyntax
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, errSyntax
		}
		d := uint64(c - '0')
		if v > (^uint64(0)-d)/10 {
			return 0, errSyntax
		}
		v = v*10 + d
	}
	return v, nil
}

func parseInt(b []byte) (int64, error) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	u, err := parseUint(b)
	if err != nil {
		return 0, err
	}
	if neg {
		if u > 1<<63 {
			return 0, errSyntax
		}
		return -int64(u), nil
	}
	if u > 1<<63-1 {
		return 0, errSyntax
	}
	return int64(u), nil
}
