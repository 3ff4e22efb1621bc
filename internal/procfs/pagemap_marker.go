package procfs

// A pagemap entry flagged swapped holds, when the reader has
// CAP_SYS_ADMIN, the swap entry: its type in bits 0-4 and its offset
// above. The kernel encodes non-swap entries as the highest types, and
// the very highest, 31 (SWP_PTE_MARKER, include/linux/swapops.h), is a pte
// marker: a page table entry that holds no page at all — the
// userfaultfd write-protection kept on an unpopulated page
// (UFFD_FEATURE_WP_UNPOPULATED, or a page zapped while protected), a
// guard region, a poisoned page. Swap devices use the lowest types.
const (
	pagemapSwapTypeMask = 1<<5 - 1
	swpPteMarker        = 31
)

// Marker reports an entry that looks swapped but is a pte marker: no data
// behind it (an anonymous page reads as zeros, a file page as the file).
// Without CAP_SYS_ADMIN the swap type reads as 0 and Marker is false, so
// callers that skip markers fall back to treating them as swapped.
func Marker(e uint64) bool {
	return Swapped(e) && e&pagemapSwapTypeMask == swpPteMarker
}
