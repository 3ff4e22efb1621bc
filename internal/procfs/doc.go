// Package procfs reads /proc/PID/* for one process or thread and returns typed
// values: memory mappings (maps, smaps, pagemap, map_files paths), task state
// (stat, status, comm, personality, auxv, children, timers), file descriptors
// (fd links and fdinfo) and resource limits.
//
// What belongs here: opening files under /proc, parsing the kernel's text and
// binary formats, and thin read-only wrappers such as prlimit64(…, NULL, &old)
// that answer the same questions /proc would. What does not: ptrace, syscall
// injection, writes to /proc or to the target, and any policy about what to do
// with what was read. Callers that need a consistent picture must freeze the
// target first: most files here are produced a page at a time by the kernel
// and change while a live process runs.
//
// Errors name the file (and the line, for parse errors) and wrap the cause
// with %w: a vanished process shows up as fs.ErrNotExist (or syscall.ESRCH),
// malformed text as ErrMalformed.
//
// The formats parsed here were checked against kernel 6.18 on x86-64; see the
// comments on each parser for the kernel's exact printf formats and their
// quirks.
package procfs
