package relay

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/deputy"
	"ferry/internal/testutil"
)

func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

func pipe(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	return r, w
}

// TestEnds: two ends over loopback TCP with real pipes, the connection
// broken and made again twice while the bytes flow. Each way 4 MiB go
// through, every byte once and in order, and the end of file reaches the
// reader; a reader that closes makes the writer at the other end get
// EPIPE; the signals cross; the moved process's exit reaches home after
// every byte it wrote.
func TestEnds(t *testing.T) {
	streams := []deputy.Stream{{ID: 1, Dir: deputy.ToAway}, {ID: 2, Dir: deputy.ToHome}, {ID: 3, Dir: deputy.ToHome}}
	// Stream 1: a home process writes into in1w, the moved process reads
	// out1r. Stream 2: the moved process writes in2w, a home process
	// reads out2r. Stream 3: the moved process writes in3w; the home
	// reader out3r closes early.
	in1r, in1w := pipe(t)
	out1r, out1w := pipe(t)
	in2r, in2w := pipe(t)
	out2r, out2w := pipe(t)
	in3r, in3w := pipe(t)
	out3r, out3w := pipe(t)
	cfg := deputy.Config{Streams: streams, Window: 64 << 10, PeerTimeout: 10 * time.Second}
	var mu sync.Mutex
	var mirrored []deputy.Status
	var killedAway, killedHome []int
	var bytesAtExit int
	got2 := &bytes.Buffer{}
	home := &End{Config: cfg, FDs: map[deputy.StreamID]*os.File{1: in1r, 2: out2w, 3: out3w},
		Log: testutil.Logger(t, 0),
		Kill: func(target, sig int) error {
			mu.Lock()
			defer mu.Unlock()
			killedHome = append(killedHome, sig)
			return nil
		},
		Mirror: func(s deputy.Status) error {
			mu.Lock()
			defer mu.Unlock()
			mirrored = append(mirrored, s)
			// Written into the home pipe: read by the home process,
			// or still in the pipe.
			queued, _ := unix.IoctlGetInt(int(out2r.Fd()), unix.TIOCINQ) // FIONREAD
			bytesAtExit = got2.Len() + queued
			return nil
		}}
	cfg.Side = deputy.Away
	away := &End{Config: cfg, FDs: map[deputy.StreamID]*os.File{1: out1w, 2: in2r, 3: in3r},
		Log: testutil.Logger(t, 0),
		Kill: func(target, sig int) error {
			mu.Lock()
			defer mu.Unlock()
			killedAway = append(killedAway, sig)
			return nil
		}}
	home.Config.Side = deputy.Home
	home.Init()
	away.Init()
	hc, ac := make(chan net.Conn, 1), make(chan net.Conn, 1)
	connect := func() (net.Conn, net.Conn) {
		a, b := tcpPair(t)
		hc <- a
		ac <- b
		return a, b
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 2)
	go func() { done <- home.Run(ctx, hc) }()
	go func() { done <- away.Run(ctx, ac) }()
	a, b := connect()

	const size = 4 << 20
	data := func(seed int64) []byte {
		b := make([]byte, size)
		rand.New(rand.NewSource(seed)).Read(b)
		return b
	}
	want1, want2 := data(1), data(2)
	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); in1w.Write(want1); in1w.Close() }()
	var got1 []byte
	go func() { defer wg.Done(); got1, _ = io.ReadAll(out1r) }()
	var w2err error
	w2done := make(chan struct{})
	go func() {
		defer wg.Done()
		defer close(w2done)
		for off := 0; off < size; off += 64 << 10 {
			if _, w2err = in2w.Write(want2[off : off+64<<10]); w2err != nil {
				return
			}
		}
	}()
	go func() {
		// The home process: each read and its count under mu, so that
		// Mirror's count (got2 and what is still in the pipe) misses no
		// byte taken out of the pipe but not yet counted.
		defer wg.Done()
		buf := make([]byte, 32<<10)
		fd := int(out2r.Fd())
		unix.SetNonblock(fd, true)
		for {
			unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 100)
			mu.Lock()
			n, err := unix.Read(fd, buf)
			if n > 0 {
				got2.Write(buf[:n])
			}
			mu.Unlock()
			if err == unix.EAGAIN || err == unix.EINTR {
				continue
			}
			if n <= 0 {
				return
			}
		}
	}()
	// Stream 3: its reader at home takes 1000 bytes and goes.
	var w3err error
	w3done := make(chan struct{})
	go func() {
		defer close(w3done)
		chunk := make([]byte, 4096)
		for i := 0; i < 10000; i++ {
			if _, w3err = in3w.Write(chunk); w3err != nil {
				return
			}
		}
	}()
	io.ReadFull(out3r, make([]byte, 1000))
	out3r.Close()

	// The link breaks twice while the bytes flow.
	for i := 0; i < 2; i++ {
		time.Sleep(30 * time.Millisecond)
		a.Close()
		b.Close()
		time.Sleep(20 * time.Millisecond)
		a, b = connect()
	}
	home.Caught(0, int(syscall.SIGUSR1))
	away.Caught(1, int(syscall.SIGUSR2))
	<-w3done
	if !errors.Is(w3err, syscall.EPIPE) {
		t.Errorf("the moved process's write after its home reader closed: %v, want EPIPE", w3err)
	}
	in3w.Close()
	// The moved process has written it all (into its pipe: not yet
	// relayed, most of it), closes its end and exits.
	<-w2done
	if w2err != nil {
		t.Fatal(w2err)
	}
	in2w.Close()
	away.ProcState(deputy.Status{Kind: deputy.Exited, Code: 3})
	wg.Wait()
	for i := 0; i < 2; i++ {
		if err := <-done; err != nil {
			t.Fatalf("an end: %v", err)
		}
	}
	if !bytes.Equal(got1, want1) {
		t.Errorf("home → away: %d bytes arrived, not the %d sent (or not in order)", len(got1), size)
	}
	if !bytes.Equal(got2.Bytes(), want2) {
		t.Errorf("away → home: %d bytes arrived, not the %d sent (or not in order)", got2.Len(), size)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(mirrored) != 1 || mirrored[0] != (deputy.Status{Kind: deputy.Exited, Code: 3}) {
		t.Errorf("home mirrored %v, want the exit", mirrored)
	}
	if bytesAtExit != size {
		t.Errorf("the exit reached home with %d of the %d bytes written before it", bytesAtExit, size)
	}
	if len(killedAway) != 1 || killedAway[0] != int(syscall.SIGUSR1) || len(killedHome) != 1 || killedHome[0] != int(syscall.SIGUSR2) {
		t.Errorf("signals: away got %v, home got %v", killedAway, killedHome)
	}
}

// TestEOFOnly: a pipe end that a process at home reads too (the job's
// stdin) is not read by the relay: its bytes stay for that reader, and
// the moved process gets the end of file once the last writer closed.
func TestEOFOnly(t *testing.T) {
	inr, inw := pipe(t)   // home: the shared read end, and its writer
	outr, outw := pipe(t) // away: what the moved process reads
	cfg := deputy.Config{Streams: []deputy.Stream{{ID: 1, Dir: deputy.ToAway}}, Window: 64 << 10, PeerTimeout: 10 * time.Second}
	cfg.Side = deputy.Home
	home := &End{Config: cfg, FDs: map[deputy.StreamID]*os.File{1: inr}, EOFOnly: map[deputy.StreamID]bool{1: true},
		Log: testutil.Logger(t, 0)}
	cfg.Side = deputy.Away
	away := &End{Config: cfg, FDs: map[deputy.StreamID]*os.File{1: outw}, Log: testutil.Logger(t, 0)}
	home.Init()
	away.Init()
	hc, ac := make(chan net.Conn, 1), make(chan net.Conn, 1)
	a, b := tcpPair(t)
	hc <- a
	ac <- b
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go home.Run(ctx, hc)
	go away.Run(ctx, ac)
	// A second holder of the read end: the home process that reads it.
	reader, err := unix.Dup(int(inr.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(reader)
	unix.SetNonblock(reader, true) // a stolen byte fails the read, not hangs it
	if _, err := inw.Write([]byte("for home")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	buf := make([]byte, 64)
	n, err := unix.Read(reader, buf)
	if err != nil || string(buf[:n]) != "for home" {
		t.Fatalf("the home reader got %q, %v: the relay took its bytes", buf[:max(n, 0)], err)
	}
	inw.Close()
	done := make(chan []byte)
	go func() { b, _ := io.ReadAll(outr); done <- b }()
	select {
	case b := <-done:
		if len(b) != 0 {
			t.Fatalf("the moved process read %q, want only the end of file", b)
		}
	case <-ctx.Done():
		t.Fatal("the moved process never saw the end of file")
	}
}
