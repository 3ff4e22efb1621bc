// Package kernel is ferry's one place for the Linux ABI: constants and
// structs with their C names (the header each comes from is cited), and one
// thin typed wrapper per system call or ioctl that golang.org/x/sys/unix
// lacks. Nothing here knows about checkpoints or migration; callers in
// ptrace, dump, restore, fds, feature and userfaultfd build on it.
//
// Files are cut by subsystem (ptrace.go, clone3.go, prctl.go, fs.go, ...).
// Code that needs package unsafe lives in *_unsafe.go files only.
// Only x86-64 is supported; per-arch layouts carry an _amd64 suffix.
package kernel
