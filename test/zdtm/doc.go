// Package zdtm is ferry's end-to-end test corpus: small C programs (and one
// Python script), one per kernel feature, each of which sets up some state,
// survives a checkpoint and restore through the ferry CLI, and then checks
// that state itself and prints PASS or FAIL.
//
// The programs live in testdata/ (so the go tool leaves the C alone); the
// protocol every one follows is described in testdata/zdtm.h. The harness
// that builds and drives them is zdtm_test.go; cli_test.go holds the tests
// of ferry's answers to bad input (damaged images, a missing pid, a TCP
// socket) and of inspect. Run, as root:
//
//	go test ./test/zdtm/ -run TestPlain -v             # programs alone, no ferry
//	go test ./test/zdtm/ -run TestCheckpointRestore -v # through ferry dump/restore
//	go test ./test/zdtm/ -timeout 30m -v               # everything
//
// (A ferry command that hangs is killed after 20 s; with many of them the
// default 10-minute test timeout can be too short, hence -timeout.)
//
// Environment knobs: ZDTM_KEEP=1 keeps the work directory (programs' output,
// images, ferry logs); ZDTM_SKIP=name,name skips cases by name, plain and
// checkpointed; ZDTM_ONLY=name,name builds and runs only those cases;
// ZDTM_NO_TREE=1 skips checkpointing the cases that need a
// process tree.
//
// Nothing here belongs to the engine: the package has no non-test code.
package zdtm
