package procfs

import "unsafe"

// wordsAsBytes views w as its bytes in memory, so pagemap entries are read
// straight into the []uint64 the caller gets (native endian, as the kernel
// writes them).
func wordsAsBytes(w []uint64) []byte {
	if len(w) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&w[0])), len(w)*8)
}
