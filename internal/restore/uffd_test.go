package restore

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"ferry/internal/kernel"
)

// TestCopyRetry feeds copyRetry the errors kernel.UffdioCopy returns
// (errnos wrapped in os.SyscallError): a partial copy cut by EAGAIN goes
// on from where it stopped, anything else fails.
func TestCopyRetry(t *testing.T) {
	eagain := os.NewSyscallError("ioctl(UFFDIO_COPY)", unix.EAGAIN)
	eexist := os.NewSyscallError("ioctl(UFFDIO_COPY)", unix.EEXIST)
	type step struct {
		copied int64 // bytes the call reports in arg.Copy
		err    error
	}
	tests := []struct {
		name    string
		steps   []step
		wantErr error // nil: success
		calls   int
	}{
		{"whole", []step{{4096, nil}}, nil, 1},
		{"partial EAGAIN then rest", []step{{1024, eagain}, {3072, nil}}, nil, 2},
		{"two partials", []step{{1024, eagain}, {1024, eagain}, {2048, nil}}, nil, 3},
		{"EAGAIN without progress", []step{{0, eagain}}, unix.EAGAIN, 1},
		{"EEXIST", []step{{0, eexist}}, unix.EEXIST, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const base = 0x10000
			data := make([]byte, 4096)
			calls := 0
			next := uint64(base)
			err := copyRetry(base, data, func(arg *kernel.UffdioCopyArg) error {
				if calls >= len(tc.steps) {
					t.Fatalf("call %d: more calls than expected", calls+1)
				}
				if arg.Dst != next || arg.Dst+arg.Len != base+uint64(len(data)) {
					t.Fatalf("call %d: dst %#x len %d, want dst %#x up to %#x", calls+1, arg.Dst, arg.Len, next, base+len(data))
				}
				s := tc.steps[calls]
				calls++
				arg.Copy = s.copied
				next += uint64(s.copied)
				return s.err
			})
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if calls != tc.calls {
				t.Fatalf("%d calls, want %d", calls, tc.calls)
			}
		})
	}
}
