package migrate

import (
	"fmt"
	"slices"
	"strings"
)

// SendFaults are the points where SendOptions.Fault injects a failure.
var SendFaults = []string{"drop-image", "corrupt-image", "drop-commit", "cancel-ready"}

// ReceiveFaults are the points where ReceiveOptions.Fault injects a failure.
var ReceiveFaults = []string{"die-image", "die-ready", "drop-ready", "die-commit"}

// CheckFault verifies that name is a fault point of side ("send" or
// "recv"). An unknown name would silently inject nothing, so a test that
// misspells one would pass without testing anything.
func CheckFault(side, name string) error {
	var known []string
	switch side {
	case "send":
		known = SendFaults
	case "recv":
		known = ReceiveFaults
	default:
		return fmt.Errorf("unknown fault side %q: want send or recv", side)
	}
	if !slices.Contains(known, name) {
		return fmt.Errorf("unknown %s fault %q: want one of %s", side, name, strings.Join(known, ", "))
	}
	return nil
}
