// Package deputy is the relay between a process moved away from its job
// and its stand-in at home (Sprite's home node, MOSIX's deputy): the
// chapter's "coprocesses on different nodes". At home a stand-in keeps
// the moved process's PID, its place as its parent's child and its end of
// every pipe; on the other node the process runs with a stand-in for its
// parent. The two ends relay bytes, signals and the process's status over
// the nodes' mutual-TLS link.
//
// What belongs here: the relay as a state machine without I/O (Relay,
// whose Handle(now, event) returns actions and does nothing else), and a
// deterministic simulation with faults (Sim) that checks its guarantees.
// What does not: the sockets and the TLS link (the node carries Send
// actions and feeds Recv events), the stand-in processes and the fds
// they hold (the driver performs Write, CloseWrite, Kill, Mirror...).
//
// # Streams
//
// Every pipe, FIFO or socketpair end the moved process held that leads
// to a process at home becomes one or two streams, each flowing one way:
// ToAway (home reads the original fd, the away end writes into the pipe
// the process now reads) or ToHome (the away end reads the pipe the
// process writes, home writes into the original fd). The reading end may
// read only as many bytes as the writing end granted it (Config.Window
// per stream): a full pipe at one end blocks the writer at the other, and
// no end buffers more than a window per stream.
//
//   - End of file: the reading end's fd gave EOF (every writer of the pipe
//     the process wrote closed, or at home every writer of its input):
//     Eof, and the writing end closes its fd once all data before it is
//     written (CloseWrite), so the reader at that end sees EOF when its
//     other writers close too — Unix's rule.
//   - Reader gone: the writing end's write failed with EPIPE (the last
//     reader closed): Gone, and the reading end closes its fd
//     (CloseRead): the writer there gets EPIPE/SIGPIPE on its next write.
//
// # Signals and status
//
// A signal caught by a stand-in (sent at home to the moved process, or on
// the other node to its parent or another process of the job, named by
// its PID) travels as Signal and is performed at the other end (Kill).
// The away end reports the process's status (exited with a code, killed
// by a signal with or without a core, stopped, continued) and home
// mirrors it with its stand-in (Mirror): the parent's wait sees it.
// A signal or status is performed only once every byte the other end
// relayed before it is written: a child that writes, then exits or
// signals its parent, is seen to have written first, as at home.
//
// # The link
//
// Every frame but Hello and Ack carries a sequence number; every frame
// carries the cumulative Ack of what its sender received. Frames stay
// until acknowledged; when the link comes back (LinkUp) each end says in
// Hello what it has and the other sends again what follows, so nothing
// is lost or repeated across a broken connection. A link down longer
// than Config.PeerTimeout, or PeerDead (the membership declared the other
// node dead), ends the relay: home reports the moved process killed by
// SIGKILL (the parent's wait never hangs) and closes its ends; away kills
// the process — the job's home is the authority of its PIDs, and without
// it the process is an orphan of a job that no longer exists (Sprite did
// the same when a home machine crashed).
package deputy
