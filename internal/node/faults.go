package node

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"

	"ferry/internal/migrate"
)

// ParseFaults turns `--fault side=NAME` values into Config.Faults. Every
// name must be a fault point of its side (migrate.CheckFault): an unknown
// one is refused with the list of valid ones.
func ParseFaults(specs []string) (map[string]string, error) {
	faults := map[string]string{}
	for _, f := range specs {
		side, name, ok := strings.Cut(f, "=")
		if !ok || (side != "send" && side != "recv" && side != "node") {
			return nil, fmt.Errorf("bad --fault %q: want send=NAME, recv=NAME or node=NAME", f)
		}
		if err := checkFault(side, name); err != nil {
			return nil, fmt.Errorf("bad --fault %q: %w", f, err)
		}
		faults[side] = name
	}
	return faults, nil
}

// checkFaults validates Config.Faults.
func checkFaults(faults map[string]string) error {
	for side, name := range faults {
		if err := checkFault(side, name); err != nil {
			return fmt.Errorf("node: fault: %w", err)
		}
	}
	return nil
}

// NodeFaults are the points where `--fault node=NAME` kills the node
// daemon itself (SIGKILL, as a crash would), in a migration's phases:
// on the source after the agent started (die-sending), at the commit
// point (die-committing: the job stopped, the phase on disk, the agent
// not yet told to commit), after the agent said committed
// (die-committed); on the destination once prepared (die-prepared) and
// when the new copy runs (die-released).
var NodeFaults = []string{"die-sending", "die-committing", "die-committed", "die-prepared", "die-released"}

func checkFault(side, name string) error {
	if side != "node" {
		return migrate.CheckFault(side, name)
	}
	if !slices.Contains(NodeFaults, name) {
		return fmt.Errorf("no node fault %q (want one of %s)", name, strings.Join(NodeFaults, ", "))
	}
	return nil
}

// crashPoint kills this node daemon at once if the fault at point is set.
func (n *Node) crashPoint(point string) {
	if n.cfg.Faults["node"] != point {
		return
	}
	n.log.Warn("fault: the node dies here", "point", point)
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // never returns
}
