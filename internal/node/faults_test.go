package node

import (
	"maps"
	"strings"
	"testing"
)

func TestParseFaults(t *testing.T) {
	tests := []struct {
		name    string
		specs   []string
		want    map[string]string
		wantErr []string // substrings of the error; nil: no error
	}{
		{"none", nil, map[string]string{}, nil},
		{"send", []string{"send=drop-commit"}, map[string]string{"send": "drop-commit"}, nil},
		{"recv", []string{"recv=die-ready"}, map[string]string{"recv": "die-ready"}, nil},
		{"both", []string{"send=corrupt-image", "recv=die-commit"}, map[string]string{"send": "corrupt-image", "recv": "die-commit"}, nil},
		{"unknown send", []string{"send=drop-comit"}, nil, []string{`"drop-comit"`, "drop-image", "corrupt-image", "drop-commit", "cancel-ready"}},
		{"unknown recv", []string{"recv=die"}, nil, []string{`"die"`, "die-image", "die-ready", "drop-ready", "die-commit"}},
		{"recv name on send", []string{"send=die-ready"}, nil, []string{"send", `"die-ready"`, "drop-image"}},
		{"empty name", []string{"recv="}, nil, []string{`""`, "die-image"}},
		{"no side", []string{"die-ready"}, nil, []string{"want send=NAME, recv=NAME or node=NAME"}},
		{"bad side", []string{"both=die-ready"}, nil, []string{"want send=NAME, recv=NAME or node=NAME"}},
		{"node", []string{"node=die-committing"}, map[string]string{"node": "die-committing"}, nil},
		{"unknown node", []string{"node=die-ready"}, nil, []string{`"die-ready"`, "die-sending", "die-released"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseFaults(tc.specs)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("ParseFaults(%q): %v", tc.specs, err)
				}
				if !maps.Equal(got, tc.want) {
					t.Fatalf("ParseFaults(%q) = %v, want %v", tc.specs, got, tc.want)
				}
				if err := checkFaults(got); err != nil {
					t.Fatalf("checkFaults(%v): %v", got, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseFaults(%q) = %v, want an error", tc.specs, got)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestNewRefusesUnknownFault checks that a Config built without the CLI
// (node.Local, tests) is validated too.
func TestNewRefusesUnknownFault(t *testing.T) {
	for _, f := range []map[string]string{{"send": "nope"}, {"recv": "drop-commit"}, {"middle": "die-ready"}} {
		_, err := New(Config{ID: "n1", Listen: "127.0.0.1:0", StateDir: t.TempDir(), Faults: f})
		if err == nil || !strings.Contains(err.Error(), "fault") {
			t.Errorf("New with Faults %v: err = %v, want a fault error", f, err)
		}
	}
}
