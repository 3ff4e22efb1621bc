package node

import (
	"fmt"
	"strings"

	"ferry/internal/migrate"
)

// ParseFaults turns `--fault side=NAME` values into Config.Faults. Every
// name must be a fault point of its side (migrate.CheckFault): an unknown
// one is refused with the list of valid ones.
func ParseFaults(specs []string) (map[string]string, error) {
	faults := map[string]string{}
	for _, f := range specs {
		side, name, ok := strings.Cut(f, "=")
		if !ok || (side != "send" && side != "recv") {
			return nil, fmt.Errorf("bad --fault %q: want send=NAME or recv=NAME", f)
		}
		if err := migrate.CheckFault(side, name); err != nil {
			return nil, fmt.Errorf("bad --fault %q: %w", f, err)
		}
		faults[side] = name
	}
	return faults, nil
}

// checkFaults validates Config.Faults.
func checkFaults(faults map[string]string) error {
	for side, name := range faults {
		if err := migrate.CheckFault(side, name); err != nil {
			return fmt.Errorf("node: fault: %w", err)
		}
	}
	return nil
}
