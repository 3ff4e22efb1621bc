package bench

import (
	"os"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/kernel"
)

func uffdFill(t *testing.T, size, chunk int, src []byte) time.Duration {
	start := time.Now()
	b, err := mapFresh(size)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := kernel.Userfaultfd(unix.O_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	api := kernel.UffdioAPIArg{API: kernel.UFFD_API}
	if err := kernel.UffdioAPI(fd, &api); err != nil {
		t.Fatal(err)
	}
	reg := kernel.UffdioRegisterArg{Range: kernel.UffdioRange{Start: uint64(addrOf(b)), Len: uint64(size)}, Mode: kernel.UFFDIO_REGISTER_MODE_MISSING}
	if err := kernel.UffdioRegister(fd, &reg); err != nil {
		t.Fatal(err)
	}
	for off := 0; off < size; off += chunk {
		a := kernel.UffdioCopyArg{Dst: uint64(addrOf(b[off:])), Src: &src[0], Len: uint64(chunk)}
		if err := kernel.UffdioCopy(fd, &a); err != nil {
			t.Fatal(err)
		}
	}
	d := time.Since(start)
	unix.Munmap(b)
	return d
}

func TestExpUffd(t *testing.T) {
	src := NewBuffer(ChunkSize)
	for _, size := range []int{64 << 20, 1 << 30} {
		var u64, u1m, wv, fw []time.Duration
		for range 7 {
			u64 = append(u64, uffdFill(t, size, 64<<10, src))
			u1m = append(u1m, uffdFill(t, size, 1<<20, src))
			d, _ := WritevFresh(size, 64<<10, src)
			wv = append(wv, d)
			d, _ = FreshWrite(size, src)
			fw = append(fw, d)
		}
		for _, s := range []struct {
			n string
			d []time.Duration
		}{{"uffd64k", u64}, {"uffd1m", u1m}, {"writev64k", wv}, {"copy", fw}} {
			slices.Sort(s.d)
			t.Logf("%d MiB %-10s median %.1f ms %.2f GB/s min %.1f max %.1f", size>>20, s.n, ms(s.d[3]), gbps(int64(size), s.d[3]), ms(s.d[0]), ms(s.d[6]))
		}
	}
	_ = os.Getpid
}
