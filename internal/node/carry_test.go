package node

import (
	"bytes"
	"testing"
)

func TestSplitCarry(t *testing.T) {
	out := bytes.Repeat([]byte("o"), 25)
	errb := bytes.Repeat([]byte("e"), 7)
	c := &carry{OutFrom: 100, ErrFrom: 50, Stdout: out, Stderr: errb, Stdin: []byte("in"), StdinEOF: true, Final: true}
	parts := splitCarry(c, 10)
	if len(parts) != 3 {
		t.Fatalf("splitCarry(25 and 7 bytes, 10) = %d parts, want 3", len(parts))
	}
	var gotOut, gotErr []byte
	wantOff := [2]int64{100, 50}
	for i, p := range parts {
		last := i == len(parts)-1
		if len(p.Stdout) > 10 || len(p.Stderr) > 10 {
			t.Errorf("part %d carries %d and %d bytes, over the chunk of 10", i, len(p.Stdout), len(p.Stderr))
		}
		if p.OutFrom != wantOff[0]+int64(len(gotOut)) || p.ErrFrom != wantOff[1]+int64(len(gotErr)) {
			t.Errorf("part %d at offsets %d, %d, want %d, %d", i, p.OutFrom, p.ErrFrom, wantOff[0]+int64(len(gotOut)), wantOff[1]+int64(len(gotErr)))
		}
		if p.Final != last || p.StdinEOF != last || (len(p.Stdin) > 0) != last {
			t.Errorf("part %d of %d: final %v, eof %v, stdin %q; only the last carries them", i, len(parts), p.Final, p.StdinEOF, p.Stdin)
		}
		gotOut, gotErr = append(gotOut, p.Stdout...), append(gotErr, p.Stderr...)
	}
	if !bytes.Equal(gotOut, out) || !bytes.Equal(gotErr, errb) {
		t.Errorf("reassembled %q, %q, want %q, %q", gotOut, gotErr, out, errb)
	}
	if small := splitCarry(&carry{Stdout: []byte("x"), Final: true}, 10); len(small) != 1 || !small[0].Final {
		t.Errorf("splitCarry of a small carry = %+v, want itself", small)
	}
}
