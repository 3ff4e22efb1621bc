package agent

import (
	"fmt"
	"strconv"
	"strings"

	"ferry/internal/files"
)

// fileRules say where the receiving agent may create the files that
// arrive with a job: as its owner could (nil: root), never in the node's
// state directory.
type fileRules struct {
	owner     *files.Owner
	forbidden []string
}

// OwnerFlag is the receiving agent's --owner value for a job owned by a
// user: "UID:GID:G1,G2,...".
func OwnerFlag(uid, gid uint32, groups []uint32) string {
	gs := make([]string, len(groups))
	for i, g := range groups {
		gs[i] = strconv.FormatUint(uint64(g), 10)
	}
	return fmt.Sprintf("%d:%d:%s", uid, gid, strings.Join(gs, ","))
}

// parseFileRules reads --owner (OwnerFlag's form, "" for root) and the
// node's state directory.
func parseFileRules(owner, stateDir string) (fileRules, error) {
	r := fileRules{}
	if stateDir != "" {
		r.forbidden = []string{stateDir}
	}
	if owner == "" {
		return r, nil
	}
	f := strings.Split(owner, ":")
	if len(f) < 2 || len(f) > 3 {
		return r, fmt.Errorf("--owner %q: want UID:GID[:GROUP,...]", owner)
	}
	id := func(s string) (uint32, error) {
		v, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("--owner %q: %w", owner, err)
		}
		return uint32(v), nil
	}
	o := &files.Owner{}
	var err error
	if o.UID, err = id(f[0]); err != nil {
		return r, err
	}
	if o.GID, err = id(f[1]); err != nil {
		return r, err
	}
	if len(f) == 3 && f[2] != "" {
		for _, g := range strings.Split(f[2], ",") {
			v, err := id(g)
			if err != nil {
				return r, err
			}
			o.Groups = append(o.Groups, v)
		}
	}
	r.owner = o
	return r, nil
}
