package fds

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"ferry/internal/image"
)

// msgRec is a well-formed message-endpoint record at fd num.
func msgRec(num int) image.FD {
	return image.FD{Num: num, Desc: "m1", Kind: image.FDMsg, Flags: unix.O_RDWR | unix.O_NONBLOCK, CloExec: true,
		SockType: unix.SOCK_SEQPACKET, MsgID: "n1-4.101", MsgUnread: [][]byte{[]byte("first"), {}, []byte("third")},
		SockPeerName: "/run/ferry/msg.sock"}
}

func TestCheckMsgRecord(t *testing.T) {
	tests := []struct {
		name string
		edit func(*image.FD)
		want string // "" for a good record
	}{
		{"good", func(*image.FD) {}, ""},
		{"nothing unread", func(r *image.FD) { r.MsgUnread = nil }, ""},
		{"no id", func(r *image.FD) { r.MsgID = "" }, "no id"},
		{"control character", func(r *image.FD) { r.MsgID = "n1\n4.101" }, "control characters"},
		{"stream", func(r *image.FD) { r.SockType = unix.SOCK_STREAM }, "SOCK_STREAM, not SOCK_SEQPACKET"},
		{"no type", func(r *image.FD) { r.SockType = 0 }, "socket type 0, not SOCK_SEQPACKET"},
		{"peer in the tree", func(r *image.FD) { r.SockPeer = "desc:2" }, "peer, name or listener"},
		{"bound", func(r *image.FD) { r.SockName = "/tmp/x" }, "peer, name or listener"},
		{"accepted", func(r *image.FD) { r.SockAccepted = true }, "peer, name or listener"},
		{"external", func(r *image.FD) { r.External = true }, "peer, name or listener"},
		{"socket queue", func(r *image.FD) { r.SockQueue = [][]byte{[]byte("x")} }, "queue"},
		{"files in flight", func(r *image.FD) { r.SockRights = [][]string{{"desc:9"}} }, "queue"},
		{"credentials", func(r *image.FD) { r.SockCreds = []image.SockCred{{PID: 1}} }, "queue"},
		{"shut down", func(r *image.FD) { r.SockShutWR = true }, "shut down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := msgRec(3)
			tt.edit(&rec)
			err := checkMsgRecord(&rec)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("checkMsgRecord = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, image.ErrMalformed) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("checkMsgRecord = %v, want image.ErrMalformed saying %q", err, tt.want)
			}
		})
	}
}

// fakeNode is a MsgConnect that hands out one end of a SOCK_SEQPACKET
// pair (or what sock says), after queuing the unread packets on it from
// the other end, which it keeps.
type fakeNode struct {
	t     *testing.T
	calls []string
	typ   int
	fail  error
	peers []int
}

func (n *fakeNode) connect(id string, unread [][]byte) (*os.File, error) {
	n.calls = append(n.calls, id)
	if n.fail != nil {
		return nil, n.fail
	}
	typ := n.typ
	if typ == 0 {
		typ = unix.SOCK_SEQPACKET
	}
	sv, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	n.peers = append(n.peers, sv[1])
	n.t.Cleanup(func() { unix.Close(sv[1]) })
	for _, m := range unread {
		if err := unix.Send(sv[1], m, 0); err != nil {
			unix.Close(sv[0])
			return nil, err
		}
	}
	return os.NewFile(uintptr(sv[0]), "msg"), nil
}

// TestPrepareMsg restores hand-written message-endpoint records: the hook
// is called once per description, whatever holds it, and what it returns
// is installed with the recorded flags and options; without a hook, or
// with a bad record or a bad answer, Prepare fails naming the fd.
func TestPrepareMsg(t *testing.T) {
	shared := func() []*image.Process {
		a := msgRec(5)
		a.SockRcvBuf = 100000
		return []*image.Process{
			{PID: 10, FDs: []image.FD{a, {Num: 7, Desc: "m1"}}},
			{PID: 11, PPID: 10, FDs: []image.FD{{Num: 5, Desc: "m1", CloExec: true}}},
		}
	}
	tests := []struct {
		name    string
		procs   func() []*image.Process
		node    func(*testing.T) *fakeNode // nil: no MsgConnect
		wantErr string
		is      error
	}{
		{name: "shared by two processes", procs: shared, node: func(t *testing.T) *fakeNode { return &fakeNode{t: t} }},
		{name: "no hook", procs: shared, is: ErrNoMsgConnect,
			wantErr: "image holds a message-endpoint connection (fd 5 of pid 10, id n1-4.101) and this restore cannot reconnect it"},
		{name: "no id", procs: func() []*image.Process {
			ps := shared()
			ps[0].FDs[0].MsgID = ""
			return ps
		}, node: func(t *testing.T) *fakeNode { return &fakeNode{t: t} }, is: image.ErrMalformed,
			wantErr: "restore pid 10 fd 5: message-endpoint connection \"\": no id"},
		{name: "hook fails", procs: shared, node: func(t *testing.T) *fakeNode {
			return &fakeNode{t: t, fail: os.ErrDeadlineExceeded}
		}, is: os.ErrDeadlineExceeded, wantErr: "restore pid 10 fd 5 (message endpoint n1-4.101): reconnect: "},
		{name: "hook gives a stream", procs: shared, node: func(t *testing.T) *fakeNode {
			return &fakeNode{t: t, typ: unix.SOCK_STREAM}
		}, wantErr: "MsgConnect returned a socket of family 1, SOCK_STREAM; want a unix SOCK_SEQPACKET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			procs := tt.procs()
			r := NewRestorer(testLogger(t), procs, nil, nil, nil)
			defer r.Close()
			var node *fakeNode
			if tt.node != nil {
				node = tt.node(t)
				r.MsgConnect = node.connect
			}
			err := r.Prepare()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || tt.is != nil && !errors.Is(err, tt.is) {
					t.Fatalf("Prepare() = %v, want an error saying %q (is %v)", err, tt.wantErr, tt.is)
				}
				if tt.is == image.ErrMalformed && len(node.calls) > 0 {
					t.Errorf("MsgConnect called for a malformed record")
				}
				return
			}
			if err != nil {
				t.Fatalf("Prepare() = %v", err)
			}
			if !slices.Equal(node.calls, []string{"n1-4.101"}) {
				t.Errorf("MsgConnect called for %q, want once for n1-4.101", node.calls)
			}
			a, b := r.Files(10), r.Files(11)
			if len(a) != 2 || len(b) != 1 || a[0].File == nil || a[0].File != a[1].File || a[0].File != b[0].File {
				t.Fatalf("Files: %+v and %+v, want one file for fds 5 and 7 of pid 10 and fd 5 of pid 11", a, b)
			}
			if !a[0].CloExec || a[1].CloExec || !b[0].CloExec {
				t.Errorf("close-on-exec %v %v %v, want true false true", a[0].CloExec, a[1].CloExec, b[0].CloExec)
			}
			fd := RawFD(a[0].File)
			if fl, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); fl&unix.O_NONBLOCK == 0 {
				t.Errorf("flags %#x, want O_NONBLOCK", fl)
			}
			if v, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF); v != 100000 {
				t.Errorf("SO_RCVBUF %d, want 100000", v)
			}
			q, _, _, _, err := peekSocket(fd, unix.SOCK_SEQPACKET)
			if err != nil || !slices.EqualFunc(q, msgRec(0).MsgUnread, bytes.Equal) {
				t.Errorf("queue %q (%v), want the unread packets %q", q, err, msgRec(0).MsgUnread)
			}
		})
	}
}

// TestMsgEndpointRefusals: a socket the hook accepts that a new
// connection cannot stand for is refused, naming it.
func TestMsgEndpointRefusals(t *testing.T) {
	seq := image.FD{Num: 4, Kind: image.FDUnix, SockType: unix.SOCK_SEQPACKET, Ino: 77,
		SockQueue: [][]byte{[]byte("a"), {}}, SockFrom: []string{"/run/ferry/msg.sock", "/run/ferry/msg.sock"}}
	tests := []struct {
		name   string
		edit   func(*image.FD)
		id     string
		ok     bool
		detail string // "" for success
	}{
		{"carried", func(*image.FD) {}, "j.1", true, ""},
		{"not accepted", func(*image.FD) {}, "", false, ""},
		{"stream", func(r *image.FD) { r.SockType = unix.SOCK_STREAM }, "j.1", true, "SOCK_STREAM, not SOCK_SEQPACKET"},
		{"files in flight", func(r *image.FD) { r.SockRights = [][]string{{"desc:3"}, nil} }, "j.1", true, "files in flight"},
		{"credentials", func(r *image.FD) { r.SockCreds = []image.SockCred{{PID: 9}, {}} }, "j.1", true, "credentials"},
		{"shut down", func(r *image.FD) { r.SockShutRD = true }, "j.1", true, "shut down"},
		{"bound", func(r *image.FD) { r.SockName = "@me" }, "j.1", true, "bound to a name of its own, @me"},
		{"empty id", func(*image.FD) {}, "", true, "with an empty id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDumper(testLogger(t))
			defer d.Close()
			var got []PeerSocket
			d.MsgEndpoint = func(s PeerSocket) (string, bool) {
				got = append(got, s)
				return tt.id, tt.ok
			}
			ds := &desc{id: "desc:1", pid: 42, rec: seq}
			ds.rec.SockQueue = slices.Clone(seq.SockQueue)
			tt.edit(&ds.rec)
			msg, err := d.msgEndpointLocked(ds, 88, "/run/ferry/msg.sock")
			want := PeerSocket{PID: 42, FD: 4, Ino: 77, PeerIno: 88, PeerName: "/run/ferry/msg.sock", Type: ds.rec.SockType}
			if len(got) != 1 || got[0] != want {
				t.Errorf("MsgEndpoint got %+v, want %+v once", got, want)
			}
			switch {
			case tt.detail != "":
				if err == nil || !strings.Contains(err.Error(), tt.detail) || !strings.Contains(err.Error(), "pid 42 fd 4") {
					t.Fatalf("msgEndpointLocked = %v, %v; want an error for pid 42 fd 4 saying %q", msg, err, tt.detail)
				}
			case err != nil || msg != tt.ok:
				t.Fatalf("msgEndpointLocked = %v, %v; want %v, nil", msg, err, tt.ok)
			case !tt.ok:
				if ds.rec.Kind != image.FDUnix {
					t.Errorf("kind %q after the hook said no, want it left a unix socket", ds.rec.Kind)
				}
			default:
				r := ds.rec
				if r.Kind != image.FDMsg || r.MsgID != tt.id || len(r.MsgUnread) != 2 || r.SockQueue != nil || r.SockFrom != nil ||
					r.SockPeerName != "/run/ferry/msg.sock" {
					t.Errorf("record kind %q id %q unread %d queue %d from %d peer name %q; want msg %s, the 2 packets moved to MsgUnread",
						r.Kind, r.MsgID, len(r.MsgUnread), len(r.SockQueue), len(r.SockFrom), r.SockPeerName, tt.id)
				}
				if err := checkMsgRecord(&r); err != nil {
					t.Errorf("the record it makes does not pass checkMsgRecord: %v", err)
				}
			}
		})
	}
}

// TestPeekZeroLengthPackets: zero-length packets on a SOCK_SEQPACKET
// socket are queued messages, also at the end of the queue, while the
// peer is there; once it is gone the end-of-file read is not one.
func TestPeekZeroLengthPackets(t *testing.T) {
	tests := []struct {
		name      string
		sent      []string
		closePeer bool
		want      []string
	}{
		{"live peer", []string{"a", "", "bb", ""}, false, []string{"a", "", "bb", ""}},
		{"only a zero-length packet", []string{""}, false, []string{""}},
		{"peer gone", []string{"a", "", "bb"}, true, []string{"a", "", "bb"}},
		{"peer gone, nothing queued", nil, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sv, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(sv[0])
			for _, m := range tt.sent {
				if err := unix.Send(sv[1], []byte(m), 0); err != nil {
					t.Fatal(err)
				}
			}
			if tt.closePeer {
				unix.Close(sv[1])
			} else {
				defer unix.Close(sv[1])
			}
			q, _, _, _, err := peekSocket(sv[0], unix.SOCK_SEQPACKET)
			var got []string
			for _, m := range q {
				got = append(got, string(m))
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("peekSocket = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
