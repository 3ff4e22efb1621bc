// Package fds checkpoints and restores the file descriptors of a process
// tree without ptrace.
//
// Dump side (Dumper): every fd of a frozen target is duplicated into ferry
// with pidfd_getfd — the same open file description, so offset, flags and
// pipe are shared — and inspected there: fstat, /proc/PID/fdinfo/N,
// /proc/PID/fd/N, tee(2) for the bytes buffered in a pipe (copied, not
// consumed, packet boundaries included), MSG_PEEK with SO_PEEK_OFF for unix
// socket queues, getsockopt for socket options, sock_diag for socket
// peers, kcmp to recognise one description in several fds or processes.
// The target's fd table is never modified.
//
// Restore side (Restorer): every open file description is created inside
// ferry; the restore engine installs them into the target at the recorded
// numbers. What must be done with the target's own fd numbers — epoll
// registration, since epoll keys items by file and number; socketpairs
// made again inside the process that created them, since SO_PEERCRED
// names the caller of socketpair — goes through an Injector that executes
// system calls in the target.
//
// What is carried, per image.FD kind:
//   - file: path, flags (O_APPEND...), offset, stat identity, and a SHA-256
//     ContentHash for regular files up to Dumper.HashLimit; reopened by
//     path (missing → error, size changed → warning). Unlinked files carry
//     their content as an object (FileID) and are recreated in their
//     directory and unlinked again. Block devices and O_PATH fds are
//     reopened by path.
//   - dir, chardev: reopened by path; character devices only from an
//     allowlist without per-open state (null, zero, full, random, urandom,
//     tty, console, virtual consoles, serial ports, /dev/pts/N).
//   - pipe, fifo: identity, size and buffered bytes with the sizes of the
//     packets among them (O_DIRECT); recreated with the bytes written back,
//     packets one write each in packet mode. A pipe that also has holders
//     outside the tree is External: its bytes stay in the live pipe, which
//     a restore on the same machine reuses (inherited file, or taken from
//     a live holder).
//   - eventfd (count, semaphore), timerfd (clock, remaining time,
//     interval, unread expirations), signalfd (mask), epoll (items).
//   - unix: socketpairs within the tree, unconnected sockets, sockets
//     whose peer was closed, sockets bound to a name (listening with the
//     connections waiting in the backlog, accepted connections, datagram
//     sockets connected by name); queued data is re-sent to the right end
//     (a send buffer enlarged for that is shrunk again) with the files in
//     flight (SCM_RIGHTS, Checkpoint.InFlight), credentials and sender
//     addresses it carried, then shutdowns, SO_SNDBUF, SO_RCVBUF and
//     SO_PASSCRED are set, and a pair created by a process of the tree is
//     made again inside it for SO_PEERCRED (unixconn.go).
//   - memfd: name, seals and content (object FileID).
//   - msg: the job's message-endpoint connection, a unix SOCK_SEQPACKET
//     socket connected to a listener outside the tree (the node accepted
//     it), when Dumper.MsgEndpoint recognises it (by the peer's inode):
//     the node's id for it and the packets unread in its queue, each
//     whole; the restore asks Restorer.MsgConnect for a new connected
//     socket, whose node re-sends those packets, and gives it the
//     recorded flags and options (msg.go). It is the one fd leading out
//     of the tree that travels, and only through those hooks.
//
// Paths longer than PATH_MAX, which readlink of /proc/PID/fd/N cannot
// report (ENAMETOOLONG), are found instead (longpath.go): a directory's by
// walking ".." up from it (kernel.DirPath), a non-directory's as an entry
// of the working directory, the root or a directory fd of the process
// (anything else is an error saying so); the restore opens them piece by
// piece (kernel.OpenLong).
//
// File locks, from the "lock:" lines of fdinfo (image.FD.Locks): flock
// and OFD locks belong to the open file description, so Prepare takes
// them again from ferry on the new description, which hands them to the
// target with it; POSIX record locks belong to the process, so Finish has
// the target take them (F_SETLK on its own fd numbers). The checkpointed
// processes must be gone (their locks released) before the restore: a
// lock someone else holds fails it, naming the holder from /proc/locks.
// A lease is set again by the description's first holder (Finish), and
// the dump never opens a leased file (that would break the lease).
// Leases being broken, delegations, mandatory locks, locks on sockets,
// POSIX locks owned by another process sharing the fd table, and a flock
// taken by a live process outside the tree that still holds the
// description are refused.
//
// Unix sockets, with what is in flight in their queues, are in dump.go,
// restore.go, queues.go and unixconn.go (see its comment).
//
// Anything else (inet, netlink, packet sockets, io_uring, perf, bpf,
// userfaultfd, namespaces, pty masters, seccomp listeners) is refused
// with an *UnsupportedError, by Check before freezing and by DumpProcess.
package fds
