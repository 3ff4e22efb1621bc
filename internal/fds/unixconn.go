package fds

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/image"
	"ferry/internal/kernel"
)

// Unix sockets that are connected by name rather than made as a
// socketpair: connections a listener accepted, connections waiting in a
// listener's backlog, and datagram sockets connected to a bound one.
//
// An accepted connection is made again through a listener of ferry's own,
// bound for the moment at the accepted end's name (which accept(2) gives
// the new socket; no call sets it otherwise), before the tree's listener
// takes that name back. Connections waiting in a backlog are made by
// connecting new clients to the restored listener, oldest first, so that
// accept returns them in their order. Datagram sockets are bound first,
// then their queues are filled, each datagram sent from a socket bound at
// the address it came from (recvfrom tells it to the program, which may
// reply), and only then connected: a connected datagram socket takes
// datagrams from its peer only.

// asPeerCred runs fn (a socketpair, listen or connect whose caller
// SO_PEERCRED names) with the effective ids rec's SO_PEERCRED recorded,
// when it recorded any.
func asPeerCred(rec *image.FD, fn func() error) error {
	return kernel.OnThread(kernel.Thread{IDs: peerIDs(rec)}, fn)
}

// peerIDs returns the effective ids rec's SO_PEERCRED recorded (nil: none).
func peerIDs(rec *image.FD) *kernel.IDs {
	if rec.SockCredPID == 0 {
		return nil
	}
	return &kernel.IDs{UID: rec.SockCredUID, GID: rec.SockCredGID}
}

// sockAddr is a unix socket address as restore reaches it: the name the
// program bound (getsockname reports it) and, for a relative one, the
// directory it was bound in.
type sockAddr struct{ name, dir, root string }

// addrOf returns where rec is bound. A socket whose file was removed
// (SockGone) is bound, and reached, under a scratch root of its own
// (kernel.Thread.Root): its name is the same string, no file appears at
// the path, and several such sockets that shared a name stay apart.
func (r *Restorer) addrOf(rec *image.FD) (sockAddr, error) {
	a := sockAddr{name: rec.SockName, dir: rec.SockDir}
	if !rec.SockGone || !strings.HasPrefix(rec.SockName, "/") {
		return a, nil
	}
	root := r.ghostRoots[rec.Desc]
	if root == "" {
		var err error
		if root, err = os.MkdirTemp("", "ferry-ghost-"); err != nil {
			return a, fmt.Errorf("scratch root for %s, whose file was removed: %w", rec.SockName, err)
		}
		r.ghostRoots[rec.Desc] = root
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(rec.SockName)), 0o755); err != nil {
			return a, fmt.Errorf("scratch root for %s, whose file was removed: %w", rec.SockName, err)
		}
	}
	a.root = root
	return a, nil
}

func (a sockAddr) relative() bool {
	return a.name != "" && !strings.HasPrefix(a.name, "/") && !strings.HasPrefix(a.name, "@")
}

// at runs fn where a.name means what it meant to the program: in a.dir
// for a relative name (on a thread of its own, kernel.OnThread), with the
// effective ids ids (nil: ferry's).
func (a sockAddr) at(fn func() error) error { return a.as(nil, fn) }

func (a sockAddr) as(ids *kernel.IDs, fn func() error) error {
	t := kernel.Thread{IDs: ids, Root: a.root}
	if a.relative() {
		if a.dir == "" {
			return fmt.Errorf("relative socket name %s without its directory", a.name)
		}
		t.Dir = a.dir
	}
	return kernel.OnThread(t, fn)
}

// connectTo connects fd to the socket bound at a, as ids (nil: ferry).
func connectTo(fd int, a sockAddr, ids *kernel.IDs) error {
	return a.as(ids, func() error {
		return os.NewSyscallError("connect", unix.Connect(fd, &unix.SockaddrUnix{Name: a.name}))
	})
}

// prepareAcceptedLocked makes the connection whose accepted end is acc,
// and its client end (acc's peer).
func (r *Restorer) prepareAcceptedLocked(acc *image.FD) error {
	cli := r.descs[acc.SockPeer]
	if cli == nil || cli.Kind != image.FDUnix {
		return fmt.Errorf("the client end %s of the connection accepted on %s is missing", acc.SockPeer, acc.SockName)
	}
	if r.files[acc.Desc] != nil {
		return nil
	}
	if a, c := r.inherit[acc.Desc], r.inherit[cli.Desc]; a != nil && c != nil {
		r.files[acc.Desc], r.files[cli.Desc] = a, c
		return nil
	}
	if acc.SockListener != "" {
		// Made, with the others it accepted, by the listener.
		if err := r.prepareDescLocked(acc.SockListener); err != nil {
			return err
		}
		if r.files[acc.Desc] == nil {
			return fmt.Errorf("listener %s did not make the connection it had accepted", acc.SockListener)
		}
		return nil
	}
	l, err := unix.Socket(unix.AF_UNIX, acc.SockType|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(l)
	at, err := r.addrOf(acc)
	if err != nil {
		return err
	}
	done, err := bindTemp(l, at)
	if err != nil {
		return fmt.Errorf("a listener for the connection accepted on %s: %w", acc.SockName, err)
	}
	defer done()
	// The client's SO_PEERCRED is the listener's, from listen.
	if err := asPeerCred(cli, func() error { return os.NewSyscallError("listen", unix.Listen(l, 1)) }); err != nil {
		return err
	}
	c, err := r.clientLocked(cli, at, acc)
	if err != nil {
		return fmt.Errorf("connection accepted on %s: %w", acc.SockName, err)
	}
	a, _, err := unix.Accept4(l, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
	if err != nil {
		unix.Close(c)
		return os.NewSyscallError("accept4", err)
	}
	return r.adoptPairLocked([2]int{a, c}, acc, cli)
}

// acceptedByLocked makes the connections listener rec had accepted, each
// by connecting its client and accepting it at once, before the
// connections waiting in the backlog are queued (accept takes the oldest).
func (r *Restorer) acceptedByLocked(rec *image.FD) error {
	l := RawFD(r.files[rec.Desc])
	at, err := r.addrOf(rec)
	if err != nil {
		return err
	}
	for _, id := range r.order {
		acc := r.descs[id]
		if acc.Kind != image.FDUnix || !acc.SockAccepted || acc.SockListener != rec.Desc || r.files[id] != nil {
			continue
		}
		cli := r.descs[acc.SockPeer]
		if cli == nil || cli.Kind != image.FDUnix {
			return fmt.Errorf("the client end %s of a connection it accepted is missing", acc.SockPeer)
		}
		if a, c := r.inherit[acc.Desc], r.inherit[cli.Desc]; a != nil && c != nil {
			r.files[acc.Desc], r.files[cli.Desc] = a, c
			continue
		}
		c, err := r.clientLocked(cli, at, acc)
		if err != nil {
			return fmt.Errorf("a connection it accepted: %w", err)
		}
		a, _, err := unix.Accept4(l, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
		if err != nil {
			unix.Close(c)
			return fmt.Errorf("a connection it accepted: %w", os.NewSyscallError("accept4", err))
		}
		if err := r.adoptPairLocked([2]int{a, c}, acc, cli); err != nil {
			return err
		}
	}
	return nil
}

// clientLocked makes client socket cli (bound to its own name, if it had
// one) connected to the listener at a, and returns it (ferry's fd, the
// caller's to keep). The accepted end's SO_PEERCRED records who called
// connect: acc's recorded one, or (nil: a connection not accepted yet,
// whose other end cannot be read) cli's first holder's effective ids.
func (r *Restorer) clientLocked(cli *image.FD, a sockAddr, acc *image.FD) (int, error) {
	c, err := unix.Socket(unix.AF_UNIX, cli.SockType|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if cli.SockName != "" {
		own, err := r.addrOf(cli)
		if err == nil {
			err = bindAgain(c, own)
		}
		if err != nil {
			unix.Close(c)
			return -1, fmt.Errorf("client bound to %s: %w", cli.SockName, err)
		}
	}
	if acc != nil {
		// A shutdown of a stream end reaches its peer too (a read
		// shutdown shuts the peer's writes): what the client has and the
		// accepted end does not explain it did before connecting, and
		// the accepted end's own shutdown, after, gives the client the
		// rest.
		rd := cli.SockShutRD && !acc.SockShutWR
		wr := cli.SockShutWR && !acc.SockShutRD
		if err := shutdownBits(c, rd, wr); err != nil {
			unix.Close(c)
			return -1, err
		}
		r.preShut[cli.Desc] = true
	}
	var ids *kernel.IDs
	switch {
	case acc != nil:
		ids = peerIDs(acc)
	default:
		if p := r.byPID[r.first[cli.Desc].pid]; p != nil {
			ids = &kernel.IDs{UID: p.Creds.UID[1], GID: p.Creds.GID[1]}
		}
	}
	if err := connectTo(c, a, ids); err != nil {
		unix.Close(c)
		return -1, err
	}
	return c, nil
}

// pendingLocked connects, oldest first, the clients whose connections
// waited in listener rec's backlog. (Dumper.Finish refused those that had
// sent data: it sits in a socket no system call reads.)
func (r *Restorer) pendingLocked(rec *image.FD) error {
	at, err := r.addrOf(rec)
	if err != nil {
		return err
	}
	for _, id := range rec.SockPending {
		cli := r.descs[id]
		if cli == nil || cli.Kind != image.FDUnix {
			return fmt.Errorf("the client %s waiting in the backlog is missing", id)
		}
		if r.files[id] != nil {
			return fmt.Errorf("the client %s waiting in the backlog was made before its listener", id)
		}
		c, err := r.clientLocked(cli, at, nil)
		if err != nil {
			return fmt.Errorf("connection waiting in the backlog: %w", err)
		}
		r.files[id] = r.keepLocked(c, "socket")
		if err := r.setupSocket(c, cli); err != nil {
			return err
		}
	}
	return nil
}

// connectDgramsLocked fills the queues of the datagram sockets that
// prepareBoundLocked made, then connects those that were connected, then
// gives them their options.
func (r *Restorer) connectDgramsLocked() error {
	senders := make(map[string]int) // bound datagram sockets of the tree, by name
	for _, rec := range r.dgrams {
		if rec.SockName != "" {
			senders[rec.SockName] = RawFD(r.files[rec.Desc])
		}
	}
	for _, rec := range r.dgrams {
		if len(rec.SockQueue) == 0 {
			continue
		}
		if rec.SockCreds != nil {
			// Filled late (FillLate), then connected and set up.
			r.deferLocked(rec.Desc, func() error {
				fds := []int{RawFD(r.files[rec.Desc])}
				for _, fd := range senders {
					fds = append(fds, fd)
				}
				err := withoutPassCred(fds, func() error { return r.fillDgramLocked(rec, senders) })
				if err != nil {
					return err
				}
				return r.connectDgramLocked(rec)
			})
			continue
		}
		if rec.SockName == "" {
			return fmt.Errorf("unix socket %s: %d datagrams queued on an unnamed socket connected by name", rec.Desc, len(rec.SockQueue))
		}
		if err := r.fillDgramLocked(rec, senders); err != nil {
			return fmt.Errorf("unix socket %s: %w", rec.SockName, err)
		}
	}
	for _, rec := range r.dgrams {
		if _, late := r.late[rec.Desc]; late {
			continue
		}
		if err := r.connectDgramLocked(rec); err != nil {
			return err
		}
	}
	return nil
}

// connectDgramLocked connects datagram socket rec to its peer's name, if
// it had one, and gives it its options.
func (r *Restorer) connectDgramLocked(rec *image.FD) error {
	fd := RawFD(r.files[rec.Desc])
	to := sockAddr{name: rec.SockPeerName}
	if peer := r.descs[rec.SockPeer]; rec.SockPeer != "" && peer != nil {
		var err error
		if to, err = r.addrOf(peer); err != nil {
			return err
		}
	}
	if to.name != "" {
		if err := connectTo(fd, to, nil); err != nil {
			return fmt.Errorf("unix socket %s: connect to %s: %w", orUnnamed(rec.SockName), to.name, err)
		}
	}
	return r.setupSocket(fd, rec)
}

// fillDgramLocked sends rec's queued datagrams to its name, each from the
// address it came from: a socket of the tree bound there, else one bound
// there for the moment, or an unnamed one.
func (r *Restorer) fillDgramLocked(rec *image.FD, senders map[string]int) error {
	if rec.SockFrom != nil && len(rec.SockFrom) != len(rec.SockQueue) {
		return fmt.Errorf("%d datagrams but %d sender addresses", len(rec.SockQueue), len(rec.SockFrom))
	}
	rights, err := r.rightsLocked(rec)
	if err != nil {
		return err
	}
	temp := make(map[string]int)
	var dones []func()
	defer func() {
		for _, fd := range temp {
			unix.Close(fd)
		}
		for _, done := range dones {
			done()
		}
	}()
	to, err := r.addrOf(rec)
	if err != nil {
		return err
	}
	for i, m := range rec.SockQueue {
		from := ""
		if rec.SockFrom != nil {
			from = rec.SockFrom[i]
		}
		fd, ok := senders[from]
		if !ok || from == "" {
			if fd, ok = temp[from]; !ok {
				if fd, err = unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0); err != nil {
					return os.NewSyscallError("socket", err)
				}
				temp[from] = fd
				if from != "" {
					// A relative name is taken to live where the
					// receiver's does (Dumper.Finish refused others).
					done, err := bindTemp(fd, sockAddr{name: from, dir: rec.SockDir})
					if err != nil {
						return fmt.Errorf("a sender at %s for datagram %d: %w", from, i, err)
					}
					dones = append(dones, done)
				}
			}
		}
		var fds [][]int
		if rights != nil {
			fds = rights[i : i+1]
		}
		err := to.at(func() error {
			var creds []image.SockCred
			if all := r.credsLocked(rec); all != nil {
				creds = all[i : i+1]
			}
			return sendQueue(fd, &unix.SockaddrUnix{Name: to.name}, [][]byte{m}, fds, creds, rec.SockType)
		})
		if err != nil {
			return fmt.Errorf("datagram %d of %d from %s: %w", i+1, len(rec.SockQueue), orUnnamed(from), err)
		}
	}
	return nil
}

// bindTemp binds fd to a for a moment, and returns what undoes it once
// the socket is closed: a path that did not exist is removed again; the
// stale socket file of a socket that is gone is replaced (and stays, as
// it was). A name that a live socket holds is refused: it is not the
// restored tree's to take.
func bindTemp(fd int, a sockAddr) (done func(), err error) {
	err = a.at(func() error {
		var rm func() error
		rm, err := bindTempHere(fd, a.name)
		if err == nil {
			done = func() { a.at(rm) }
		}
		return err
	})
	return done, err
}

func bindTempHere(fd int, name string) (func() error, error) {
	nothing := func() error { return nil }
	sa := &unix.SockaddrUnix{Name: name}
	if strings.HasPrefix(name, "@") {
		if err := bindAbstract(fd, sa); err != nil {
			if err == unix.EADDRINUSE {
				return nil, fmt.Errorf("the abstract name %s is in use by a socket outside the restored tree", name)
			}
			return nil, os.NewSyscallError("bind", err)
		}
		return nothing, nil
	}
	var st unix.Stat_t
	switch err := unix.Lstat(name, &st); {
	case err == unix.ENOENT:
		if err := unix.Bind(fd, sa); err != nil {
			return nil, os.NewSyscallError("bind", err)
		}
		// Anyone may connect for the moment: the connecting end takes
		// the ids the original client had (SO_PEERCRED).
		if err := unix.Chmod(name, 0o777); err != nil {
			return nil, os.NewSyscallError("chmod", err)
		}
		if err := unix.Lstat(name, &st); err != nil {
			return nil, os.NewSyscallError("lstat", err)
		}
		return func() error { return removeSocketFile(name, st) }, nil
	case err != nil:
		return nil, os.NewSyscallError("lstat", err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFSOCK {
		live, err := socketFileLive(st)
		if err != nil {
			return nil, err
		}
		if live {
			return nil, fmt.Errorf("%s is bound by a live socket outside the restored tree", name)
		}
	}
	if err := bindAgainHere(fd, name); err != nil {
		return nil, err
	}
	return nothing, nil
}

// removeSocketFile unlinks name if it still is the socket file st.
func removeSocketFile(name string, st unix.Stat_t) error {
	var now unix.Stat_t
	if unix.Lstat(name, &now) != nil || now.Ino != st.Ino || now.Dev != st.Dev {
		return nil
	}
	return os.NewSyscallError("unlink", unix.Unlink(name))
}

// removeGhostsLocked removes the scratch roots of the sockets whose file
// had been removed, once every connection by name is made: they stay
// bound to files no path leads to, as they were.
func (r *Restorer) removeGhostsLocked() error {
	var errs []error
	for id, root := range r.ghostRoots {
		if err := os.RemoveAll(root); err != nil {
			errs = append(errs, fmt.Errorf("remove the scratch root of %s: %w", id, err))
		}
		delete(r.ghostRoots, id)
	}
	return errors.Join(errs...)
}

// socketFileLive tells whether some socket is bound to the socket file st.
func socketFileLive(st unix.Stat_t) (bool, error) {
	all, err := kernel.UnixDiagAll()
	if err != nil {
		return false, fmt.Errorf("list unix sockets: %w", err)
	}
	for _, d := range all {
		if uint64(d.VFSIno) == st.Ino && d.VFSDev == st.Dev {
			return true, nil
		}
	}
	return false, nil
}

// bindAgain binds fd to a. A path still holding the stale socket file of
// the checkpointed socket is unlinked first (the kernel refuses to bind
// over it) and the new file given the old one's mode and owner; a path
// holding anything else is left alone and refused.
func bindAgain(fd int, a sockAddr) error {
	return a.at(func() error { return bindAgainHere(fd, a.name) })
}

func bindAgainHere(fd int, name string) error {
	sa := &unix.SockaddrUnix{Name: name}
	if strings.HasPrefix(name, "@") {
		err := bindAbstract(fd, sa)
		if err == unix.EADDRINUSE {
			return fmt.Errorf("the abstract name %s is in use by a socket outside the restored tree: %w", name, os.NewSyscallError("bind", err))
		}
		return os.NewSyscallError("bind", err)
	}
	var st unix.Stat_t
	stale := unix.Lstat(name, &st) == nil
	if stale {
		if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
			return fmt.Errorf("%s exists and is not a socket (mode %o)", name, st.Mode)
		}
		if err := unix.Unlink(name); err != nil && err != unix.ENOENT {
			return os.NewSyscallError("unlink stale socket", err)
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return os.NewSyscallError("bind", err)
	}
	if stale {
		if err := unix.Chmod(name, st.Mode&07777); err != nil {
			return os.NewSyscallError("chmod", err)
		}
		if err := unix.Lchown(name, int(st.Uid), int(st.Gid)); err != nil && err != unix.EPERM {
			return os.NewSyscallError("lchown", err)
		}
	}
	return nil
}

// bindAbstract binds fd to abstract name sa. The checkpointed sockets may
// still hold the name after their process was killed: sockets in flight
// in each other's queues (a cycle) go only when the kernel's unix garbage
// collector runs, which the close of some unix socket starts (in the
// background). So a name in use is tried again for a while, starting the
// collector each time.
func bindAbstract(fd int, sa *unix.SockaddrUnix) error {
	err := unix.Bind(fd, sa)
	for wait := time.Millisecond; err == unix.EADDRINUSE && wait < 2*time.Second; wait *= 2 {
		if s, e := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); e == nil {
			unix.Close(s) // unix_release_sock runs the collector when files are in flight
		}
		time.Sleep(wait)
		err = unix.Bind(fd, sa)
	}
	return err
}
