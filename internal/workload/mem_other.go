//go:build !linux

package workload

// mapAnon falls back to the Go heap where anonymous mmap is not wired up. The
// slice holds no pointers, so the collector does not scan it.
func mapAnon(size int) ([]byte, error) { return make([]byte, size), nil }

func unmapAnon([]byte) error { return nil }
