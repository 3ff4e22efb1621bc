package procfs

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// benchMappings gives the test process n extra VMAs (alternating
// protections keep them from merging) so Maps has a realistic amount of
// text to chew on.
func benchMappings(b *testing.B, n int) {
	page := PageSize()
	mem, err := unix.Mmap(-1, 0, n*page, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Munmap(mem) })
	for i := 0; i < n; i += 2 {
		if err := unix.Mprotect(mem[i*page:(i+1)*page], unix.PROT_READ|unix.PROT_WRITE); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMaps(b *testing.B) {
	benchMappings(b, 1000)
	pid := os.Getpid()
	size := 0
	withFile(pidPath(pid, "maps"), false, func(t []byte) error { size = len(t); return nil })
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Maps(pid); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseMaps(b *testing.B) {
	benchMappings(b, 1000)
	var text []byte
	withFile(pidPath(os.Getpid(), "maps"), false, func(t []byte) error { text = append([]byte(nil), t...); return nil })
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseMaps(text, "maps"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStat(b *testing.B) {
	pid := os.Getpid()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Stat(pid); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStatus(b *testing.B) {
	pid := os.Getpid()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Status(pid); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPagemapGiB reads the entries of 1 GiB of address space (2 MiB
// of pagemap); throughput is in bytes of address space covered.
func BenchmarkPagemapGiB(b *testing.B) {
	const size = 1 << 30
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Munmap(mem)
	pm, err := OpenPagemap(os.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	defer pm.Close()
	start := addrOf(mem)
	var es []uint64
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if es, err = pm.Read(start, start+size, es); err != nil {
			b.Fatal(err)
		}
	}
}
