// Package job runs a managed job on one node: its own PID namespace (the
// chapter's "logical host", as in V-System), a stand-in init as PID 1 of
// that namespace, and the job's command as the init's child. Inside the
// namespace the job's PIDs are its own, so a migrated copy gets the very
// same numbers on any node, also on the same machine while the old copy
// still exists.
//
// What belongs here: starting the init (`ferry jobinit`) in new PID and
// mount namespaces, the init itself (mount a /proc of the namespace, start
// or await the job, reap, report the job's exit), starting helper
// processes (migration agents) inside an existing job's namespace, and
// translating PIDs between the namespace and the node. What does not: the
// node's job table, logs and the migration protocol (package node and
// package migrate).
//
// The init reports on file descriptor 3, one JSON object per line:
// {"event":"started","pid":2} when the command runs, and
// {"event":"exited","status":W} with the raw wait status when the job's
// main process ends; the init then exits, and the kernel ends whatever
// else still runs in the namespace.
package job
