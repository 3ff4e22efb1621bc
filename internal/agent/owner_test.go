package agent

import (
	"slices"
	"strings"
	"testing"
)

func TestOwnerFlag(t *testing.T) {
	r, err := parseFileRules(OwnerFlag(1001, 100, []uint32{100, 27}), "/var/lib/ferry")
	if err != nil {
		t.Fatal(err)
	}
	if o := r.owner; o == nil || o.UID != 1001 || o.GID != 100 || !slices.Equal(o.Groups, []uint32{100, 27}) {
		t.Errorf("round trip: %+v", r.owner)
	}
	if !slices.Equal(r.forbidden, []string{"/var/lib/ferry"}) {
		t.Errorf("forbidden %v", r.forbidden)
	}
	if r, err := parseFileRules("", ""); err != nil || r.owner != nil {
		t.Errorf("root: %+v %v", r, err)
	}
	for _, bad := range []string{"1001", "x:1", "1:2:3:4", "1:2:a"} {
		if _, err := parseFileRules(bad, ""); err == nil || !strings.Contains(err.Error(), "--owner") {
			t.Errorf("parseFileRules(%q) = %v, want an error naming --owner", bad, err)
		}
	}
}
