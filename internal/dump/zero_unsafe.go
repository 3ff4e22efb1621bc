package dump

import "unsafe"

// isZero reports whether b holds only zero bytes, eight at a time.
func isZero(b []byte) bool {
	n := len(b) / 8
	if n > 0 {
		words := unsafe.Slice((*uint64)(unsafe.Pointer(&b[0])), n)
		var acc uint64
		for i := 0; i < n; i += 4 {
			if i+4 <= n {
				acc |= words[i] | words[i+1] | words[i+2] | words[i+3]
			} else {
				for _, w := range words[i:] {
					acc |= w
				}
			}
			if acc != 0 {
				return false
			}
		}
	}
	for _, x := range b[n*8:] {
		if x != 0 {
			return false
		}
	}
	return true
}
