package procfs

import (
	"os"
	"testing"
)

// TestLimitsFileMatchesPrlimit checks the /proc/PID/limits fallback
// against prlimit64 on the test process itself.
func TestLimitsFileMatchesPrlimit(t *testing.T) {
	want, err := Rlimits(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	got, err := limitsFile(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("limitsFile resource %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}
