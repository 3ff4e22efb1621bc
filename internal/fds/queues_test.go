package fds

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"ferry/internal/image"
	"ferry/internal/kernel"
)

// pipeWrite is one write into a test pipe, in packet mode or not.
type pipeWrite struct {
	n      int
	packet bool
}

func packets(n ...int) []pipeWrite {
	var w []pipeWrite
	for _, k := range n {
		w = append(w, pipeWrite{k, true})
	}
	return w
}

// drainReads reads pipe fd (non-blocking) to its end with a buffer larger
// than any content and returns the size of each read and the bytes.
func drainReads(t *testing.T, fd int) ([]int, []byte) {
	t.Helper()
	var sizes []int
	var all []byte
	buf := make([]byte, 1<<20)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EAGAIN {
			return sizes, all
		}
		if err != nil || n == 0 {
			t.Fatalf("read: %d, %v", n, err)
		}
		sizes = append(sizes, n)
		all = append(all, buf[:n]...)
	}
}

func newPipe(t *testing.T, size int) [2]int {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	if size > 0 {
		if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, size); err != nil {
			t.Fatalf("F_SETPIPE_SZ %d: %v", size, err)
		}
	}
	return p
}

// TestPipePackets dumps pipes holding packets (peekPipe) and writes them
// back into a new pipe (writeBuffered): every read must return what it
// returned on the original.
func TestPipePackets(t *testing.T) {
	page := os.Getpagesize()
	tests := []struct {
		name   string
		size   int // pipe capacity, 0: default
		writes []pipeWrite
		want   []int // PipePackets
	}{
		{"ordinary bytes", 0, []pipeWrite{{3000, false}, {10, false}}, nil},
		{"three packets", 0, packets(10, 500, 1), []int{10, 500, 1}},
		{"one packet", 0, packets(42), []int{42}},
		{"packet larger than a page", 0, packets(page+904, 20), []int{page, 904, 20}},
		{"packets then ordinary bytes", 0, append(packets(10, 500), pipeWrite{7, false}, pipeWrite{9, false}), []int{10, 500}},
		// A packet is merged into an ordinary buffer with room left ...
		{"ordinary bytes then a packet", 0, []pipeWrite{{7, false}, {10, true}}, nil},
		// ... and read together with full ordinary pages before it.
		{"full page then a packet", 0, []pipeWrite{{page, false}, {10, true}}, []int{page + 10}},
		{"two pages then packets", 0, []pipeWrite{{2 * page, false}, {100, true}, {5, true}, {3, false}}, []int{2*page + 100, 5}},
		{"every slot used", 16 * page, packets(slices.Repeat([]int{1}, 16)...), slices.Repeat([]int{1}, 16)},
		{"large pipe of ordinary bytes", 256 << 10, []pipeWrite{{200 << 10, false}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := newPipe(t, tt.size)
			var data []byte
			for i, w := range tt.writes {
				fl := unix.O_NONBLOCK
				if w.packet {
					fl |= unix.O_DIRECT
				}
				if _, err := unix.FcntlInt(uintptr(orig[1]), unix.F_SETFL, fl); err != nil {
					t.Fatal(err)
				}
				b := bytes.Repeat([]byte{byte('a' + i)}, w.n)
				if err := writeAll(orig[1], b); err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
				data = append(data, b...)
			}
			size, _ := unix.FcntlInt(uintptr(orig[0]), unix.F_GETPIPE_SZ, 0)

			got, pk, err := peekPipe(orig[0], size)
			if err != nil {
				t.Fatalf("peekPipe: %v", err)
			}
			if !bytes.Equal(got, data) || !slices.Equal(pk, tt.want) {
				t.Fatalf("peekPipe = %d bytes (equal %v), packets %v; want %d bytes, packets %v",
					len(got), bytes.Equal(got, data), pk, len(data), tt.want)
			}
			if n, _ := unix.IoctlGetInt(orig[0], unix.TIOCINQ); n != len(data) {
				t.Fatalf("after peekPipe the pipe holds %d bytes, want %d (nothing consumed)", n, len(data))
			}
			wantReads, _ := drainReads(t, orig[0])

			restored := newPipe(t, size)
			flBefore, _ := unix.FcntlInt(uintptr(restored[1]), unix.F_GETFL, 0)
			if err := writeBuffered(restored[1], got, pk); err != nil {
				t.Fatalf("writeBuffered: %v", err)
			}
			if fl, _ := unix.FcntlInt(uintptr(restored[1]), unix.F_GETFL, 0); fl != flBefore {
				t.Errorf("writeBuffered left the write end's flags %#o, want %#o", fl, flBefore)
			}
			reads, back := drainReads(t, restored[0])
			if !slices.Equal(reads, wantReads) || !bytes.Equal(back, data) {
				t.Errorf("restored pipe reads %v (content equal %v), want %v", reads, bytes.Equal(back, data), wantReads)
			}
		})
	}
}

func TestWriteBufferedBadPackets(t *testing.T) {
	tests := []struct {
		packets []int
		want    string
	}{
		{[]int{3, 0}, "packet of 0 bytes"},
		{[]int{3, -1}, "packet of -1 bytes"},
		{[]int{3, 4}, "packets of 7 bytes in all, but only 5 bytes buffered"},
	}
	for _, tt := range tests {
		p := newPipe(t, 0)
		err := writeBuffered(p[1], []byte("abcde"), tt.packets)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("writeBuffered(%v) = %v, want error containing %q", tt.packets, err, tt.want)
		}
	}
}

// sockRecord dumps unix socket fd as the Dumper would.
func sockRecord(t *testing.T, fd int, desc, peer string, num int) image.FD {
	t.Helper()
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		t.Fatal(err)
	}
	fl, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	r := image.FD{Num: num, Desc: desc, Kind: image.FDUnix, SockType: typ, SockPeer: peer, Flags: fl}
	if r.SockQueue, _, _, _, err = peekSocket(fd, typ); err != nil {
		t.Fatalf("peekSocket: %v", err)
	}
	if err := readSockOpts(fd, &r); err != nil {
		t.Fatalf("readSockOpts: %v", err)
	}
	return r
}

func setInt(t *testing.T, fd, opt, v int) {
	t.Helper()
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, v); err != nil {
		if err == unix.EPERM {
			t.Skipf("setsockopt %d: %v (needs CAP_NET_ADMIN)", opt, err)
		}
		t.Fatalf("setsockopt %d = %d: %v", opt, v, err)
	}
}

// TestSocketOptions checkpoints real socketpairs with options set and data
// queued, and restores them from the records: the options read back the
// same, and re-sending a large queue leaves no enlarged buffer behind.
func TestSocketOptions(t *testing.T) {
	fresh, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defSnd, _ := unix.GetsockoptInt(fresh[0], unix.SOL_SOCKET, unix.SO_SNDBUF)
	unix.Close(fresh[0])
	unix.Close(fresh[1])
	big := bytes.Repeat([]byte("0123456789abcdef"), 600<<10/16)

	tests := []struct {
		name  string
		typ   int
		setup func(t *testing.T, a, b int) // a and b are a socketpair
		// old drops the recorded buffer sizes, as in an image from before
		// they were recorded.
		old bool
		// wantSndB is b's SO_SNDBUF after restore; 0: as recorded.
		wantSndB int
	}{
		{"SO_SNDBUF set", unix.SOCK_STREAM, func(t *testing.T, a, b int) {
			setInt(t, a, unix.SO_SNDBUF, 65536)
			writeAll(a, []byte("hello from a"))
		}, false, 0},
		{"SO_RCVBUF and SO_PASSCRED", unix.SOCK_DGRAM, func(t *testing.T, a, b int) {
			setInt(t, a, unix.SO_RCVBUF, 30000)
			setInt(t, a, unix.SO_PASSCRED, 1)
			for _, m := range []string{"x", "", "yyy"} {
				if err := unix.Sendto(b, []byte(m), 0, nil); err != nil {
					t.Fatal(err)
				}
			}
		}, false, 0},
		{"seqpacket with both buffers", unix.SOCK_SEQPACKET, func(t *testing.T, a, b int) {
			setInt(t, a, unix.SO_SNDBUF, 10000)
			setInt(t, b, unix.SO_RCVBUF, 12345)
			writeAll(a, []byte("msg"))
		}, false, 0},
		{"large queue, small buffer", unix.SOCK_STREAM, func(t *testing.T, a, b int) {
			// b queued 600 KiB through a large buffer, then made it small.
			setInt(t, b, unix.SO_SNDBUFFORCE, 2<<20)
			if err := writeAll(b, big); err != nil {
				t.Fatal(err)
			}
			setInt(t, b, unix.SO_SNDBUF, 8192)
		}, false, 0},
		{"large queue, old image", unix.SOCK_STREAM, func(t *testing.T, a, b int) {
			setInt(t, b, unix.SO_SNDBUFFORCE, 2<<20)
			if err := writeAll(b, big); err != nil {
				t.Fatal(err)
			}
		}, true, defSnd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sv, err := unix.Socketpair(unix.AF_UNIX, tt.typ|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(sv[0])
			defer unix.Close(sv[1])
			tt.setup(t, sv[0], sv[1])
			ra := sockRecord(t, sv[0], "a", "b", 3)
			rb := sockRecord(t, sv[1], "b", "a", 4)
			if tt.old {
				ra.SockSndBuf, ra.SockRcvBuf, rb.SockSndBuf, rb.SockRcvBuf = 0, 0, 0, 0
			}

			r := NewRestorer(testLogger(t), []*image.Process{{PID: 1, FDs: []image.FD{ra, rb}}}, nil, nil, nil)
			defer r.Close()
			if err := r.Prepare(); err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			for _, in := range r.Files(1) {
				rec := ra
				if in.Num == rb.Num {
					rec = rb
				}
				fd := RawFD(in.File)
				get := func(opt int) int {
					v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, opt)
					if err != nil {
						t.Fatalf("%s: getsockopt %d: %v", rec.Desc, opt, err)
					}
					return v
				}
				wantSnd := rec.SockSndBuf
				if rec.Desc == "b" && tt.wantSndB != 0 {
					wantSnd = tt.wantSndB
				}
				if got := get(unix.SO_SNDBUF); wantSnd != 0 && got != wantSnd {
					t.Errorf("%s: SO_SNDBUF = %d, want %d", rec.Desc, got, wantSnd)
				}
				if got := get(unix.SO_RCVBUF); rec.SockRcvBuf != 0 && got != rec.SockRcvBuf {
					t.Errorf("%s: SO_RCVBUF = %d, want %d", rec.Desc, got, rec.SockRcvBuf)
				}
				if got := get(unix.SO_PASSCRED) != 0; got != rec.SockPassCred {
					t.Errorf("%s: SO_PASSCRED = %v, want %v", rec.Desc, got, rec.SockPassCred)
				}
				q, _, _, _, err := peekSocket(fd, tt.typ)
				if err != nil || !slices.EqualFunc(q, rec.SockQueue, bytes.Equal) {
					t.Errorf("%s: queue of %d messages (%v), want %d", rec.Desc, len(q), err, len(rec.SockQueue))
				}
			}
		})
	}
}

// TestFinishPeerCred checks that Finish makes a socketpair again inside
// the process recorded by SO_PEERCRED (the localInjector runs it in the
// test process) and puts it in place of the one Prepare made.
func TestFinishPeerCred(t *testing.T) {
	const creator, other = 4242, 4243
	pair := func(credPID int) (image.FD, image.FD) {
		uid, gid := uint32(os.Geteuid()), uint32(os.Getegid())
		a := image.FD{Num: 150, Desc: "a", Kind: image.FDUnix, SockType: unix.SOCK_STREAM, SockPeer: "b",
			SockQueue: [][]byte{[]byte("to-a")}, SockCredPID: credPID, SockCredUID: uid, SockCredGID: gid, SockSndBuf: 100000}
		b := image.FD{Num: 151, Desc: "b", Kind: image.FDUnix, SockType: unix.SOCK_STREAM, SockPeer: "a",
			SockQueue: [][]byte{[]byte("to-b")}, SockCredPID: credPID, SockCredUID: uid, SockCredGID: gid, CloExec: true}
		return a, b
	}
	tests := []struct {
		name  string
		procs func() []*image.Process
		// early: processes whose Files are taken before the creator's Finish.
		early    []int
		recreate bool
	}{
		{"creator holds both ends", func() []*image.Process {
			a, b := pair(creator)
			return []*image.Process{{PID: creator, FDs: []image.FD{a, b}}}
		}, nil, true},
		{"creator outside the tree", func() []*image.Process {
			a, b := pair(1)
			return []*image.Process{{PID: creator, FDs: []image.FD{a, b}}}
		}, nil, false},
		{"peer installed in another process first", func() []*image.Process {
			a, b := pair(creator)
			return []*image.Process{{PID: creator, FDs: []image.FD{a}}, {PID: other, PPID: creator, FDs: []image.FD{b}}}
		}, []int{other}, false},
		{"peer in a process installed later", func() []*image.Process {
			a, b := pair(creator)
			return []*image.Process{{PID: creator, FDs: []image.FD{a}}, {PID: other, PPID: creator, FDs: []image.FD{b}}}
		}, nil, true},
	}
	self := os.Getpid()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			procs := tt.procs()
			r := NewRestorer(testLogger(t), procs, nil, nil, nil)
			defer r.Close()
			if err := r.Prepare(); err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			for _, pid := range tt.early {
				r.Files(pid)
			}
			before := install(t, r, creator)
			inj := newLocalInjector(t)
			if err := r.Finish(creator, inj); err != nil {
				t.Fatalf("Finish: %v", err)
			}
			injected := strings.Join(inj.calls, " ")
			if got := strings.Contains(injected, strconv.Itoa(unix.SYS_SOCKETPAIR)+"["); got != tt.recreate {
				t.Fatalf("socketpair injected = %v (%s), want %v", got, injected, tt.recreate)
			}
			// The target's temporary fds are closed again.
			for _, c := range inj.calls {
				var tfd int
				if _, err := fmt.Sscanf(c, strconv.Itoa(unix.SYS_CLOSE)+"[%d]", &tfd); err != nil {
					continue
				}
				if _, err := unix.FcntlInt(uintptr(tfd), unix.F_GETFD, 0); err != unix.EBADF {
					t.Errorf("temporary fd %d still open", tfd)
				}
			}
			files := map[int]*os.File{}
			for _, p := range procs {
				for _, in := range r.Files(p.PID) {
					files[in.Num] = in.File
				}
			}
			for num, in := range before {
				same, err := kernel.KcmpFile(self, num, self, RawFD(files[num]))
				if err != nil || !same {
					t.Errorf("fd %d is not the file Files hands out after Finish (%v)", num, err)
				}
				if replaced := files[num] != in.File; replaced != tt.recreate {
					t.Errorf("fd %d replaced = %v, want %v", num, replaced, tt.recreate)
				}
				fdfl, _ := unix.FcntlInt(uintptr(num), unix.F_GETFD, 0)
				if cloexec := fdfl&unix.FD_CLOEXEC != 0; cloexec != in.CloExec {
					t.Errorf("fd %d: close-on-exec %v, want %v", num, cloexec, in.CloExec)
				}
			}
			// Both ends hold their queues, set up as recorded, and are
			// connected to each other.
			a, b := RawFD(files[150]), RawFD(files[151])
			if snd, _ := unix.GetsockoptInt(a, unix.SOL_SOCKET, unix.SO_SNDBUF); snd != 100000 {
				t.Errorf("SO_SNDBUF of a = %d, want 100000", snd)
			}
			if cred, err := unix.GetsockoptUcred(a, unix.SOL_SOCKET, unix.SO_PEERCRED); err != nil || int(cred.Pid) != self {
				t.Errorf("SO_PEERCRED of a = %+v, %v; want pid %d", cred, err, self)
			}
			sa, err1 := readN(a, 4)
			sb, err2 := readN(b, 4)
			writeAll(a, []byte("ping"))
			sc, err3 := readN(b, 4)
			if sa != "to-a" || sb != "to-b" || sc != "ping" {
				t.Errorf("reads %q %q %q (%v %v %v), want to-a, to-b, ping", sa, sb, sc, err1, err2, err3)
			}
		})
	}
}

// TestSocketRightsRoundTrip peeks a stream and a datagram queue holding
// files in flight (SCM_RIGHTS) and sender addresses, sends what it saw
// through a fresh pair with sendQueue, and reads that pair as a program
// would: the same bytes, the files at the same read boundaries, the same
// files (inodes), the same senders.
func TestSocketRightsRoundTrip(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	efd, err := unix.Eventfd(3, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	ino := func(fd int) uint64 {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	type msg struct {
		data string
		fds  []int
	}
	tests := []struct {
		name string
		typ  int
		send []msg
		// want: what reads of the restored queue return, in order.
		want []msg
	}{
		{"stream", unix.SOCK_STREAM,
			[]msg{{"abc", nil}, {"d", []int{p[0]}}, {"ef", []int{efd, p[1]}}, {"tail", nil}},
			[]msg{{"abcd", []int{p[0]}}, {"ef", []int{efd, p[1]}}, {"tail", nil}}},
		{"seqpacket", unix.SOCK_SEQPACKET,
			[]msg{{"one", nil}, {"", []int{p[0], efd}}, {"three", []int{p[1]}}},
			[]msg{{"one", nil}, {"", []int{p[0], efd}}, {"three", []int{p[1]}}}},
	}
	recv := func(t *testing.T, fd int) (string, []int, bool) {
		buf := make([]byte, 256)
		oob := make([]byte, unix.CmsgSpace(16*4))
		n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_DONTWAIT|unix.MSG_CMSG_CLOEXEC)
		if err == unix.EAGAIN {
			return "", nil, false
		}
		if err != nil {
			t.Fatalf("recvmsg: %v", err)
		}
		fds, err := parseRights(oob[:oobn])
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n]), fds, true
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := unix.Socketpair(unix.AF_UNIX, tt.typ|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(src[0])
			defer unix.Close(src[1])
			for _, m := range tt.send {
				var oob []byte
				if m.fds != nil {
					oob = unix.UnixRights(m.fds...)
				}
				if _, err := kernel.Sendmsg(src[1], []byte(m.data), oob, 0); err != nil {
					t.Fatal(err)
				}
			}
			q, rights, _, _, err := peekSocket(src[0], tt.typ)
			if err != nil {
				t.Fatalf("peekSocket: %v", err)
			}
			defer closeRights(rights)
			dst, err := unix.Socketpair(unix.AF_UNIX, tt.typ|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(dst[0])
			defer unix.Close(dst[1])
			if err := sendQueue(dst[1], nil, q, rights, nil, tt.typ); err != nil {
				t.Fatalf("sendQueue: %v", err)
			}
			for _, from := range []int{src[0], dst[0]} { // the original is untouched, and the copy the same
				for i, w := range tt.want {
					data, fds, ok := recv(t, from)
					if !ok {
						t.Fatalf("read %d: queue ended, want %q", i, w.data)
					}
					if data != w.data || len(fds) != len(w.fds) {
						t.Errorf("read %d: %q with %d files, want %q with %d", i, data, len(fds), w.data, len(w.fds))
					}
					for j := range min(len(fds), len(w.fds)) {
						if ino(fds[j]) != ino(w.fds[j]) {
							t.Errorf("read %d file %d: inode %d, want %d", i, j, ino(fds[j]), ino(w.fds[j]))
						}
					}
					closeRights([][]int{fds})
				}
				if data, _, ok := recv(t, from); ok {
					t.Errorf("more queued than sent: %q", data)
				}
			}
		})
	}
}

// TestPeekSenders checks that peekSocket reports each datagram's sender.
func TestPeekSenders(t *testing.T) {
	name := fmt.Sprintf("@ferry-test-%d", os.Getpid())
	srv, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(srv)
	if err := unix.Bind(srv, &unix.SockaddrUnix{Name: name}); err != nil {
		t.Fatal(err)
	}
	named, _ := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	defer unix.Close(named)
	if err := unix.Bind(named, &unix.SockaddrUnix{Name: name + "-c"}); err != nil {
		t.Fatal(err)
	}
	anon, _ := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	defer unix.Close(anon)
	to := &unix.SockaddrUnix{Name: name}
	for _, s := range []int{anon, named, anon} {
		if err := unix.Sendto(s, []byte("x"), 0, to); err != nil {
			t.Fatal(err)
		}
	}
	_, _, from, _, err := peekSocket(srv, unix.SOCK_DGRAM)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"", name + "-c", ""}; !slices.Equal(from, want) {
		t.Errorf("senders %q, want %q", from, want)
	}
}

// TestRightsBadImage feeds the Restorer records whose files in flight do
// not add up: each is a clear error from Prepare, not a crash or a queue
// sent without its files.
func TestRightsBadImage(t *testing.T) {
	pipe := image.FD{Num: -1, Desc: "p", Kind: image.FDPipe, PipeID: "9", Flags: unix.O_RDONLY}
	sock := func(rights [][]string) image.FD {
		return image.FD{Num: 5, Desc: "a", Kind: image.FDUnix, SockType: unix.SOCK_STREAM,
			SockQueue: [][]byte{[]byte("x")}, SockRights: rights}
	}
	tests := []struct {
		name     string
		rec      image.FD
		inflight []image.FD
		want     string
	}{
		{"more rights than messages", sock([][]string{{"p"}, {"p"}}), []image.FD{pipe}, "files in flight for 2 messages"},
		{"unknown description", sock([][]string{{"nope"}}), nil, "file in flight nope has no record"},
		{"in flight without a record", sock([][]string{{"p"}}), []image.FD{{Num: -1, Desc: "p"}}, "has no full record"},
		{"in flight and held", sock([][]string{{"a"}}), []image.FD{{Num: -1, Desc: "a", Kind: image.FDUnix}}, "also held by a process"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRestorer(testLogger(t), []*image.Process{{PID: 1, FDs: []image.FD{tt.rec}}}, tt.inflight, nil, nil)
			defer r.Close()
			err := r.Prepare()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Prepare: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestCredsRoundTrip peeks a queue whose receiver passes credentials
// (SO_PASSCRED): messages sent with and without them, and a stream whose
// reads must not join bytes of different credentials; sendQueue gives a
// fresh pair the same.
func TestCredsRoundTrip(t *testing.T) {
	me := image.SockCred{PID: int32(os.Getpid()), UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
	for _, typ := range []int{unix.SOCK_DGRAM, unix.SOCK_STREAM} {
		t.Run(strconv.Itoa(typ), func(t *testing.T) {
			src, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(src[0])
			defer unix.Close(src[1])
			writeAll(src[1], []byte("plain")) // before SO_PASSCRED: no credentials
			setInt(t, src[0], unix.SO_PASSCRED, 1)
			writeAll(src[1], []byte("cred")) // the receiver passes them: ours
			q, _, _, creds, err := peekSocket(src[0], typ)
			if err != nil {
				t.Fatal(err)
			}
			want := []image.SockCred{{}, me}
			if len(q) != 2 || string(q[0]) != "plain" || string(q[1]) != "cred" || !slices.Equal(creds, want) {
				t.Fatalf("peek: %q with credentials %v, want [plain cred] with %v", q, creds, want)
			}
			dst, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(dst[0])
			defer unix.Close(dst[1])
			if err := sendQueue(dst[1], nil, q, nil, creds, typ); err != nil {
				t.Fatalf("sendQueue: %v", err)
			}
			setInt(t, dst[0], unix.SO_PASSCRED, 1)
			q2, _, _, creds2, err := peekSocket(dst[0], typ)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(q, q2, bytes.Equal) || !slices.Equal(creds, creds2) {
				t.Errorf("after sendQueue: %q with %v, want %q with %v", q2, creds2, q, creds)
			}
		})
	}
}

// TestRemovedBlockDeviceElsewhere: a block device opened through a node
// since removed is not made again on another machine or boot, where its
// number may name another disk.
func TestRemovedBlockDeviceElsewhere(t *testing.T) {
	rec := image.FD{Num: 44, Desc: "b", Kind: image.FDBlock, Unlinked: true, Path: "/tmp/blk",
		Mode: unix.S_IFBLK | 0o600, Rdev: unix.Mkdev(7, 0)}
	for _, boot := range []string{"", "another-boot"} {
		r := NewRestorer(testLogger(t), []*image.Process{{PID: 1, FDs: []image.FD{rec}}}, nil, nil, nil)
		r.BootID = boot
		err := r.Prepare()
		r.Close()
		if err == nil || !strings.Contains(err.Error(), "machine and boot of the dump") {
			t.Errorf("boot id %q: Prepare = %v, want a refusal naming the machine and boot", boot, err)
		}
	}
}
