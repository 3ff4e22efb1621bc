package restore

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/dump"
	"ferry/internal/fds"
	"ferry/internal/image"
	"ferry/internal/procfs"
	"ferry/internal/ptrace"
	"ferry/internal/standin"
	"ferry/internal/testutil"
)

// msgProg is testdata/msgconn.c, built once per test binary.
var msgProg = &testutil.CProgram{Src: "testdata/msgconn.c", Flags: []string{"-O1", "-Wall"}}

func TestMain(m *testing.M) {
	// The test binary is also the stand-in parent of TestParentStandIn.
	if os.Getenv("FERRY_STANDIN_TEST") == "1" {
		os.Exit(standin.Main(os.Args[1:]))
	}
	code := m.Run()
	msgProg.Remove()
	os.Exit(code)
}

// msgSizes are the sizes of the packets the test's node sends the
// program: it reads the first msgRead before the checkpoint; the last is
// sent once the tree is frozen (AfterFreeze), so the dump must peek the
// queue after that.
var msgSizes = []int{10, 300, 1, 65800, 4096, 0, 17, 0}

const msgRead = 2

const msgID = "t-1.5"

// msgPacket is packet i as the program expects it.
func msgPacket(i int) []byte {
	b := make([]byte, msgSizes[i])
	for j := range b {
		b[j] = byte(i*31 + j*7 + 1)
	}
	return b
}

// msgUnread are the packets the program has not read at the checkpoint.
func msgUnread() [][]byte {
	var out [][]byte
	for i := msgRead; i < len(msgSizes); i++ {
		out = append(out, msgPacket(i))
	}
	return out
}

func listenPacket(t *testing.T, path string) *net.UnixListener {
	t.Helper()
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// msgProc is a running msgconn and the node's end of its connection.
type msgProc struct {
	cmd         *exec.Cmd
	conn        *net.UnixConn
	connIno     uint64 // inode of conn's socket
	pid, child  int
	sockFD      int // the program's socket
	path, out   string
	dir, goFile string
}

// startMsg starts msgconn connected to the node listening on ln at path,
// sends it every packet but the last, and waits until it has read
// msgRead of them. Both of its processes are killed when the test ends.
func startMsg(t *testing.T, dir string, ln *net.UnixListener, path string) *msgProc {
	t.Helper()
	testutil.NeedRoot(t, "ptrace, pidfd_getfd, clone3 with set_tid")
	bin := msgProg.Path(t)
	p := &msgProc{path: path, out: filepath.Join(dir, "msgconn.out"), dir: dir, goFile: filepath.Join(dir, "go")}
	out, err := os.Create(p.out)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	args := []string{path, p.goFile, strconv.Itoa(msgRead)}
	for _, n := range msgSizes {
		args = append(args, strconv.Itoa(n))
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	ready := testutil.StartReady(t, p.cmd)
	t.Cleanup(func() {
		if p.child > 0 {
			unix.Kill(p.child, unix.SIGKILL)
		}
		p.cmd.Process.Kill()
		p.cmd.Wait()
	})
	ln.SetDeadline(time.Now().Add(10 * time.Second))
	if p.conn, err = ln.AcceptUnix(); err != nil {
		t.Fatalf("accept the program's connection: %v\n%s", err, p.output())
	}
	t.Cleanup(func() { p.conn.Close() })
	if p.connIno, err = sockIno(p.conn); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(msgSizes)-1; i++ {
		if _, _, err := p.conn.WriteMsgUnix(msgPacket(i), nil, nil); err != nil {
			t.Fatalf("send packet %d: %v", i, err)
		}
	}
	line, err := bufio.NewReader(ready).ReadString('\n')
	if _, serr := fmt.Sscanf(line, "R %d %d %d", &p.pid, &p.child, &p.sockFD); err != nil || serr != nil {
		t.Fatalf("msgconn did not get ready (%q, %v):\n%s", line, err, p.output())
	}
	return p
}

func (p *msgProc) output() string {
	b, _ := os.ReadFile(p.out)
	return string(b)
}

// sockIno returns the inode of c's socket (fstat).
func sockIno(c *net.UnixConn) (uint64, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var st unix.Stat_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil {
		return 0, err
	}
	return st.Ino, serr
}

// endpointHook is the node's dump hook: it knows its connection by the
// inode of the socket it accepted.
func (p *msgProc) endpointHook(calls *[]fds.PeerSocket) func(fds.PeerSocket) (string, bool) {
	return func(s fds.PeerSocket) (string, bool) {
		*calls = append(*calls, s)
		if s.PeerIno != p.connIno {
			return "", false
		}
		return msgID, true
	}
}

// rewriteState copies image img with its state record changed by edit.
func rewriteState(t *testing.T, img []byte, edit func(*image.Checkpoint)) []byte {
	t.Helper()
	r, err := image.NewReaderBytes(img)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := image.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch rec.Type {
		case image.RecordState:
			edit(rec.State)
			err = w.WriteState(rec.State)
		case image.RecordFileData:
			err = w.WriteFileData(rec.FileID, rec.Offset, rec.Data)
		case image.RecordPages:
			err = w.WritePages(rec.PID, rec.Addr, rec.Data)
		case image.RecordSignals:
			err = w.WriteSignals(rec.Signals)
		default:
			t.Fatalf("record %v in a full image", rec.Type)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// msgRecord returns the full FDMsg record of c and how many fds, in all
// processes, name its description.
func msgRecord(c *image.Checkpoint) (*image.FD, int) {
	var full *image.FD
	for _, p := range c.Processes {
		for i := range p.FDs {
			if p.FDs[i].Kind == image.FDMsg {
				full = &p.FDs[i]
			}
		}
	}
	if full == nil {
		return nil, 0
	}
	n := 0
	for _, p := range c.Processes {
		for _, fd := range p.FDs {
			if fd.Desc == full.Desc {
				n++
			}
		}
	}
	return full, n
}

func gone(pid int) func() (bool, string) {
	return func() (bool, string) {
		st, err := procfs.Stat(pid)
		if err != nil {
			return true, ""
		}
		return false, fmt.Sprintf("state %c", st.State)
	}
}

// TestMsgEndpoint carries a connection to a message endpoint served
// outside the tree (the test plays the node): the dump records it with
// the node's id and the packets the program has not read, the restore
// gets a new connection from the node, which sends those packets again,
// and the restored program finds them — whole, in order, through its
// edge-triggered epoll — and can still write. Restores that cannot or
// must not reconnect it are refused first.
func TestMsgEndpoint(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node1.sock")
	ln := listenPacket(t, path)
	p := startMsg(t, dir, ln, path)
	tr := ptrace.NewTracer()
	defer tr.Close()

	// Check, before anything is frozen, leaves the connection to the
	// dump: only there does sock_diag show its peer, and the hook decide.
	if err := dump.Check(p.pid); err != nil {
		t.Fatalf("dump.Check = %v, want nil", err)
	}

	var events []string
	var calls []fds.PeerSocket
	hook := p.endpointHook(&calls)
	var buf bytes.Buffer
	w, err := image.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	res, err := dump.Dump(context.Background(), tr, p.pid, w, dump.Options{
		AfterFreeze: func(ctx context.Context) error {
			events = append(events, "after freeze")
			for _, pid := range []int{p.pid, p.child} {
				if st, err := procfs.Stat(pid); err != nil || st.State != 't' {
					return fmt.Errorf("pid %d not frozen at AfterFreeze (%v)", pid, err)
				}
			}
			// The node's last packet, queued while the tree is frozen:
			// the queue is peeked after this.
			_, _, err := p.conn.WriteMsgUnix(msgPacket(len(msgSizes)-1), nil, nil)
			return err
		},
		MsgEndpoint: func(s fds.PeerSocket) (string, bool) {
			events = append(events, "endpoint")
			return hook(s)
		},
	})
	if err != nil {
		t.Fatalf("dump: %v\n%s", err, p.output())
	}
	p.cmd.Wait() // killed by the dump; reaped so that its PID is free
	testutil.Poll(t, 10*time.Second, 10*time.Millisecond, "the checkpointed child is reaped", gone(p.child))

	if !slices.Equal(events, []string{"after freeze", "endpoint"}) {
		t.Errorf("hooks called as %q, want AfterFreeze, then MsgEndpoint once", events)
	}
	if rec, _ := msgRecord(res.Checkpoint); len(calls) == 1 && rec != nil {
		s := calls[0]
		if s.PID != p.pid || s.FD != p.sockFD || s.Ino != rec.Ino || s.PeerIno != p.connIno || s.PeerName != path || s.Type != unix.SOCK_SEQPACKET {
			t.Errorf("MsgEndpoint got %+v, want pid %d fd %d inode %d, peer inode %d named %s, SOCK_SEQPACKET",
				s, p.pid, p.sockFD, rec.Ino, p.connIno, path)
		}
	}
	img := buf.Bytes()
	r, err := image.NewReaderBytes(img)
	if err != nil {
		t.Fatal(err)
	}
	first, err := r.Next()
	if err != nil || first.State == nil {
		t.Fatalf("read the image back: %v", err)
	}
	for _, c := range []*image.Checkpoint{res.Checkpoint, first.State} {
		rec, holders := msgRecord(c)
		if rec == nil {
			t.Fatalf("no %q record in the image", image.FDMsg)
		}
		if rec.MsgID != msgID || rec.Num != p.sockFD || rec.SockType != unix.SOCK_SEQPACKET || rec.Flags&unix.O_NONBLOCK == 0 ||
			!rec.CloExec || rec.SockPeerName != path || holders != 4 {
			t.Errorf("record id %q fd %d type %d flags %#x cloexec %v connected to %q, held by %d fds; want id %s at fd %d, SOCK_SEQPACKET, O_NONBLOCK, close-on-exec, connected to %s, 4 fds (socket and dup, in parent and child)",
				rec.MsgID, rec.Num, rec.SockType, rec.Flags, rec.CloExec, rec.SockPeerName, holders, msgID, p.sockFD, path)
		}
		if !slices.EqualFunc(rec.MsgUnread, msgUnread(), bytes.Equal) {
			t.Errorf("MsgUnread = %d packets %v, want the %d unread, sizes %v", len(rec.MsgUnread), sizes(rec.MsgUnread),
				len(msgSizes)-msgRead, msgSizes[msgRead:])
		}
		if rec.SockQueue != nil || rec.SockPeer != "" {
			t.Errorf("record keeps a unix socket's queue (%d) or peer (%q)", len(rec.SockQueue), rec.SockPeer)
		}
	}

	restore := func(img []byte, opts Options) (*Result, error) {
		r, err := image.NewReaderBytes(img)
		if err != nil {
			return nil, err
		}
		return Restore(context.Background(), tr, r, opts)
	}
	noProcess := func(t *testing.T) {
		t.Helper()
		if st, err := procfs.Stat(p.pid); err == nil {
			t.Errorf("pid %d exists (state %c) after a refused restore", p.pid, st.State)
		}
	}
	t.Run("no MsgConnect", func(t *testing.T) {
		// As ferry restore on the command line, which has no node.
		_, err := restore(img, Options{})
		want := fmt.Sprintf("image holds a message-endpoint connection (fd %d of pid %d, id %s) and this restore cannot reconnect it",
			p.sockFD, p.pid, msgID)
		if !errors.Is(err, fds.ErrNoMsgConnect) || !strings.Contains(err.Error(), want) {
			t.Fatalf("Restore = %v, want fds.ErrNoMsgConnect saying %q", err, want)
		}
		noProcess(t)
	})
	for _, tc := range []struct {
		name string
		edit func(*image.FD)
		want string
	}{
		{"no id", func(fd *image.FD) { fd.MsgID = "" }, "no id"},
		{"stream", func(fd *image.FD) { fd.SockType = unix.SOCK_STREAM }, "SOCK_STREAM, not SOCK_SEQPACKET"},
		{"socket queue", func(fd *image.FD) { fd.SockQueue = [][]byte{[]byte("x")} }, "queue"},
	} {
		t.Run("malformed "+tc.name, func(t *testing.T) {
			bad := rewriteState(t, img, func(c *image.Checkpoint) {
				rec, _ := msgRecord(c)
				tc.edit(rec)
			})
			called := false
			_, err := restore(bad, Options{MsgConnect: func(string, [][]byte) (*os.File, error) {
				called = true
				return nil, errors.New("must not be called")
			}})
			if !errors.Is(err, image.ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Restore = %v, want image.ErrMalformed saying %q", err, tc.want)
			}
			if called {
				t.Errorf("MsgConnect called for a malformed record")
			}
			noProcess(t)
		})
	}

	// The node, after the move: a second endpoint, which sends the
	// unread packets again on the new connection before anything else.
	path2 := filepath.Join(dir, "node2.sock")
	ln2 := listenPacket(t, path2)
	var conn2 *net.UnixConn
	var connects []string
	res2, err := restore(img, Options{MsgConnect: func(id string, unread [][]byte) (*os.File, error) {
		connects = append(connects, id)
		if !slices.EqualFunc(unread, msgUnread(), bytes.Equal) {
			return nil, fmt.Errorf("unread packets %v, want sizes %v", sizes(unread), msgSizes[msgRead:])
		}
		s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		f := os.NewFile(uintptr(s), "msg")
		if err := unix.Connect(s, &unix.SockaddrUnix{Name: path2}); err != nil {
			f.Close()
			return nil, err
		}
		ln2.SetDeadline(time.Now().Add(10 * time.Second))
		if conn2, err = ln2.AcceptUnix(); err != nil {
			f.Close()
			return nil, err
		}
		for _, m := range unread {
			if _, _, err := conn2.WriteMsgUnix(m, nil, nil); err != nil {
				f.Close()
				return nil, err
			}
		}
		return f, nil
	}})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	exited := false
	defer func() {
		unix.Kill(p.child, unix.SIGKILL)
		if !exited {
			unix.Kill(res2.PID, unix.SIGKILL)
			var ws unix.WaitStatus
			unix.Wait4(res2.PID, &ws, 0, nil)
		}
	}()
	defer conn2.Close()
	if !slices.Equal(connects, []string{msgID}) {
		t.Errorf("MsgConnect called for %q, want once for %s (one description, four fds)", connects, msgID)
	}
	// The child holds the very socket its parent does.
	parentLink, err1 := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", res2.PID, p.sockFD))
	childLink, err2 := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", p.child, p.sockFD))
	if err1 != nil || err2 != nil || parentLink != childLink || !strings.HasPrefix(parentLink, "socket:[") {
		t.Errorf("restored fd %d: parent %q (%v), child %q (%v); want the same socket", p.sockFD, parentLink, err1, childLink, err2)
	}

	if err := os.WriteFile(p.goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var ws unix.WaitStatus
	done := make(chan error, 1)
	go func() {
		_, err := unix.Wait4(res2.PID, &ws, 0, nil)
		done <- err
	}()
	select {
	case err := <-done:
		exited = err == nil
	case <-time.After(60 * time.Second):
		t.Fatalf("restored program did not exit:\n%s", p.output())
	}
	if !ws.Exited() || ws.ExitStatus() != 0 {
		t.Fatalf("restored program ended with %v:\n%s", ws, p.output())
	}
	conn2.SetReadDeadline(time.Now().Add(10 * time.Second))
	for _, want := range []string{fmt.Sprintf("reply %d", p.pid), "reply via dup"} {
		b := make([]byte, 256)
		n, _, _, _, err := conn2.ReadMsgUnix(b, nil)
		if err != nil || string(b[:n]) != want {
			t.Errorf("node read %q (%v), want %q", b[:n], err, want)
		}
	}
}

func sizes(q [][]byte) []int {
	out := make([]int, len(q))
	for i, m := range q {
		out[i] = len(m)
	}
	return out
}

// TestMsgEndpointRefused: without a hook that accepts it, a connection to
// an endpoint outside the tree is refused as it always was, naming the
// socket; a failing AfterFreeze fails the dump before any fd is looked
// at. Either way the tree runs on.
func TestMsgEndpointRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.sock")
	ln := listenPacket(t, path)
	p := startMsg(t, dir, ln, path)
	tr := ptrace.NewTracer()
	defer tr.Close()

	errDrain := errors.New("drain the endpoint connections: node gone")
	var calls []fds.PeerSocket
	for _, tc := range []struct {
		name  string
		opts  dump.Options
		check func(t *testing.T, err error)
	}{
		{"no hook", dump.Options{}, p.refusedSocket},
		{"hook says no", dump.Options{MsgEndpoint: func(fds.PeerSocket) (string, bool) { return "", false }}, p.refusedSocket},
		{"AfterFreeze fails", dump.Options{
			AfterFreeze: func(context.Context) error { return errDrain },
			MsgEndpoint: p.endpointHook(&calls),
		}, func(t *testing.T, err error) {
			if !errors.Is(err, errDrain) {
				t.Fatalf("dump = %v, want the AfterFreeze error", err)
			}
			if len(calls) != 0 {
				t.Errorf("MsgEndpoint called after AfterFreeze failed: %+v", calls)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := image.NewWriter(&buf)
			if err != nil {
				t.Fatal(err)
			}
			_, err = dump.Dump(context.Background(), tr, p.pid, w, tc.opts)
			if err == nil {
				t.Fatal("dump succeeded")
			}
			tc.check(t, err)
			for _, pid := range []int{p.pid, p.child} {
				st, err := procfs.Status(pid)
				if err != nil || st.TracerPID != 0 || st.State == 't' || st.State == 'T' {
					t.Fatalf("pid %d after a failed dump: %+v, %v; want it running on, untraced", pid, st, err)
				}
			}
		})
	}
}

// refusedSocket checks that err is today's refusal of p's socket.
func (p *msgProc) refusedSocket(t *testing.T, err error) {
	t.Helper()
	var ue *fds.UnsupportedError
	if !errors.As(err, &ue) || !errors.Is(err, dump.ErrUnsupported) {
		t.Fatalf("dump = %v, want an *fds.UnsupportedError", err)
	}
	if ue.PID != p.pid || ue.FD != p.sockFD || ue.Resource != "unix socket" || ue.Detail != "connected to "+p.path+" outside the tree" {
		t.Fatalf("dump refused %+v, want pid %d fd %d: unix socket connected to %s outside the tree", ue, p.pid, p.sockFD, p.path)
	}
}
