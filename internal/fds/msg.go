package fds

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"unicode"

	"golang.org/x/sys/unix"

	"ferry/internal/image"
)

// The job's message-endpoint connection (image.FDMsg): a unix
// SOCK_SEQPACKET socket of the tree connected to a listener outside it,
// whose connection the node daemon accepted. It is the one fd leading
// outside the tree that travels, and only through its caller: the dump
// asks Dumper.MsgEndpoint whether a socket whose peer is outside the tree
// is such a connection and under which id, and records it with the
// packets unread in its receive queue (peeked as any unix queue is); the
// restore asks Restorer.MsgConnect for a new connected socket, which the
// caller's node has made readable with those packets again, and installs
// it like any other description.

// PeerSocket describes, for Dumper.MsgEndpoint, a connected unix socket of
// the tree whose peer is outside it.
type PeerSocket struct {
	// PID and FD are its first holder in the tree and the fd number
	// there; FD is -1 for a socket only in flight in the queue of a
	// socket PID holds (SCM_RIGHTS).
	PID, FD int
	// Ino is the socket's own inode (its /proc/PID/fd link is
	// "socket:[Ino]").
	Ino uint64
	// PeerIno is the inode of the peer socket (sock_diag), outside the
	// tree: for a connection a listener accepted, what fstat of the
	// accepted fd reports.
	PeerIno uint64
	// PeerName is the peer's bound name: a path, "@name" in the abstract
	// namespace, "" unnamed. A connection accepted by a listener has the
	// listener's name.
	PeerName string
	// Type is SOCK_STREAM, SOCK_SEQPACKET or SOCK_DGRAM.
	Type int
}

// ErrNoMsgConnect is matched (errors.Is) by a *NoMsgConnectError.
var ErrNoMsgConnect = errors.New("message-endpoint connection cannot be reconnected")

// NoMsgConnectError is Prepare's error for an image holding a
// message-endpoint connection when the Restorer has no MsgConnect: a
// restore without a node (ferry restore on the command line).
type NoMsgConnectError struct {
	PID, FD int    // its first holder
	ID      string // image.FD.MsgID
}

func (e *NoMsgConnectError) Error() string {
	return fmt.Sprintf("image holds a message-endpoint connection (fd %d of pid %d, id %s) and this restore cannot reconnect it",
		e.FD, e.PID, e.ID)
}

// Is makes errors.Is(err, ErrNoMsgConnect) true.
func (e *NoMsgConnectError) Is(target error) bool { return target == ErrNoMsgConnect }

// msgEndpointLocked asks d.MsgEndpoint whether ds, a unix socket whose
// peer (peerIno, named peerName) is outside the tree, is a
// message-endpoint connection, and if so records it as one: an
// image.FDMsg whose MsgUnread is the queue fillUnixLocked peeked. It
// reports whether it did; an error refuses a connection the hook accepted
// that cannot be carried.
func (d *Dumper) msgEndpointLocked(ds *desc, peerIno uint32, peerName string) (bool, error) {
	if d.MsgEndpoint == nil {
		return false, nil
	}
	r := &ds.rec
	id, ok := d.MsgEndpoint(PeerSocket{PID: ds.pid, FD: r.Num, Ino: r.Ino, PeerIno: uint64(peerIno),
		PeerName: peerName, Type: r.SockType})
	if !ok {
		return false, nil
	}
	refuse := func(detail string) error {
		return &UnsupportedError{PID: ds.pid, FD: r.Num, Resource: "message-endpoint connection " + id,
			Detail: "connected to " + orUnnamed(peerName) + ": " + detail}
	}
	switch {
	case id == "":
		return false, fmt.Errorf("pid %d fd %d: the message endpoint hook accepted the socket connected to %s with an empty id",
			ds.pid, r.Num, orUnnamed(peerName))
	case r.SockType != unix.SOCK_SEQPACKET:
		return false, refuse(sockTypeText(r.SockType) + ", not SOCK_SEQPACKET: only packets keep their bounds across a reconnection")
	case r.SockRights != nil:
		return false, refuse("files in flight in its receive queue (SCM_RIGHTS)")
	case r.SockCreds != nil:
		return false, refuse("credentials queued with its packets (SCM_CREDENTIALS)")
	case r.SockShutRD || r.SockShutWR:
		return false, refuse("shut down")
	case r.SockName != "":
		return false, refuse("bound to a name of its own, " + r.SockName + ", which a new connection would not have")
	}
	r.Kind = image.FDMsg
	r.MsgID = id
	r.MsgUnread = r.SockQueue
	r.SockPeerName = peerName
	// Nothing of the socket itself that a new connection cannot have.
	r.SockQueue, r.SockFrom, r.SockPeer = nil, nil, ""
	r.SockCredPID, r.SockCredUID, r.SockCredGID = 0, 0, 0
	d.log.Debug("message-endpoint connection", "pid", ds.pid, "fd", r.Num, "id", id,
		"peer", peerName, "unread", len(r.MsgUnread))
	return true, nil
}

func sockTypeText(typ int) string {
	switch typ {
	case unix.SOCK_STREAM:
		return "SOCK_STREAM"
	case unix.SOCK_DGRAM:
		return "SOCK_DGRAM"
	case unix.SOCK_SEQPACKET:
		return "SOCK_SEQPACKET"
	}
	return fmt.Sprintf("socket type %d", typ)
}

// checkMsgRecord refuses an FDMsg record that no dump writes: without an
// id, not a SOCK_SEQPACKET socket, or carrying the fields of a socket of
// the tree (a peer, a name, a queue, files in flight).
func checkMsgRecord(rec *image.FD) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("message-endpoint connection %q: %s: %w", rec.MsgID, fmt.Sprintf(format, args...), image.ErrMalformed)
	}
	switch {
	case rec.MsgID == "":
		return bad("no id")
	case strings.IndexFunc(rec.MsgID, unicode.IsControl) >= 0:
		return bad("control characters in its id")
	case rec.SockType != unix.SOCK_SEQPACKET:
		return bad("%s, not SOCK_SEQPACKET", sockTypeText(rec.SockType))
	case rec.SockPeer != "" || rec.SockName != "" || rec.SockListen || rec.SockAccepted || rec.SockListener != "" ||
		len(rec.SockPending) > 0 || rec.SockPendingOn != "" || rec.External:
		return bad("it has the peer, name or listener of a unix socket of the tree")
	case len(rec.SockQueue) > 0 || rec.SockRights != nil || rec.SockCreds != nil || rec.SockFrom != nil:
		return bad("it has a unix socket's queue (its unread packets are MsgUnread)")
	case rec.SockShutRD || rec.SockShutWR:
		return bad("shut down")
	}
	return nil
}

// checkMsgLocked refuses, before Prepare makes anything, a malformed
// message-endpoint connection, or any when there is no MsgConnect.
func (r *Restorer) checkMsgLocked() error {
	for _, id := range r.order {
		rec := r.descs[id]
		if rec.Kind != image.FDMsg {
			continue
		}
		h := r.first[id]
		if err := checkMsgRecord(rec); err != nil {
			return fmt.Errorf("restore pid %d fd %d: %w", h.pid, h.num, err)
		}
		if r.MsgConnect == nil {
			return &NoMsgConnectError{PID: h.pid, FD: h.num, ID: rec.MsgID}
		}
	}
	return nil
}

// prepareMsgLocked makes message-endpoint connection rec again: a new
// socket from MsgConnect, with rec's file status flags and options.
func (r *Restorer) prepareMsgLocked(rec *image.FD) error {
	if r.MsgConnect == nil {
		h := r.first[rec.Desc]
		return &NoMsgConnectError{PID: h.pid, FD: h.num, ID: rec.MsgID}
	}
	f, err := r.MsgConnect(rec.MsgID, rec.MsgUnread)
	if err != nil {
		return fmt.Errorf("reconnect: %w", err)
	}
	if f == nil {
		return errors.New("reconnect: MsgConnect returned no file")
	}
	r.owned = append(r.owned, f)
	fd := RawFD(f)
	dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return fmt.Errorf("reconnect: what MsgConnect returned: %w", os.NewSyscallError("getsockopt(SO_DOMAIN)", err))
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return fmt.Errorf("reconnect: what MsgConnect returned: %w", os.NewSyscallError("getsockopt(SO_TYPE)", err))
	}
	if dom != unix.AF_UNIX || typ != rec.SockType {
		return fmt.Errorf("reconnect: MsgConnect returned a socket of family %d, %s; want a unix %s", dom, sockTypeText(typ), sockTypeText(rec.SockType))
	}
	if err := r.setupSocket(fd, rec); err != nil {
		return err
	}
	r.files[rec.Desc] = f
	return nil
}
