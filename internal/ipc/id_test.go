package ipc

import (
	"errors"
	"testing"
)

func TestParseID(t *testing.T) {
	tests := []struct {
		in      string
		want    ID
		creator string
		ok      bool
	}{
		{"n1-4.101", ID{"n1-4", 101}, "n1", true},
		{"rack-2-n7-13.1", ID{"rack-2-n7-13", 1}, "rack-2-n7", true},
		{"n1-4", ID{}, "", false},
		{"n1.101", ID{}, "", false},
		{"-4.101", ID{}, "", false},
		{"n1-.101", ID{}, "", false},
		{"n1-x.101", ID{}, "", false},
		{"n1-4.0", ID{}, "", false},
		{"n1-4.-3", ID{}, "", false},
		{"n1-4.+3", ID{}, "", false},
		{"n1-4.", ID{}, "", false},
		{"", ID{}, "", false},
	}
	for _, tt := range tests {
		got, err := ParseID(tt.in)
		if tt.ok != (err == nil) {
			t.Errorf("ParseID(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if !tt.ok {
			if !errors.Is(err, ErrBadID) {
				t.Errorf("ParseID(%q) error %v does not wrap ErrBadID", tt.in, err)
			}
			continue
		}
		if got != tt.want {
			t.Errorf("ParseID(%q) = %v, want %v", tt.in, got, tt.want)
		}
		if got.String() != tt.in {
			t.Errorf("ParseID(%q).String() = %q", tt.in, got.String())
		}
		if c := got.Creator(); c != tt.creator {
			t.Errorf("ParseID(%q).Creator() = %q, want %q", tt.in, c, tt.creator)
		}
	}
}
