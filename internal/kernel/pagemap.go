package kernel

// /proc/PID/pagemap: the 64-bit entries read(2) returns
// (Documentation/admin-guide/mm/pagemap.rst; defined in fs/proc/task_mmu.c,
// not in uapi headers) and the PAGEMAP_SCAN ioctl (include/uapi/linux/fs.h,
// 6.7+; Debian 12's 6.1 headers lack it).

// Bits of a pagemap entry, one entry per virtual page at offset
// (addr / page size) * 8.
const (
	PM_PFRAME_MASK    = 1<<55 - 1 // PFN when present (zero without CAP_SYS_ADMIN), swap type/offset when swapped
	PM_SOFT_DIRTY     = 1 << 55   // only with CONFIG_MEM_SOFT_DIRTY; cleared by writing 4 to clear_refs
	PM_MMAP_EXCLUSIVE = 1 << 56   // page mapped by this process only
	PM_UFFD_WP        = 1 << 57   // userfaultfd write-protected
	PM_GUARD_REGION   = 1 << 58   // MADV_GUARD_INSTALL (6.14+)
	PM_FILE           = 1 << 61   // file page or shared anonymous
	PM_SWAP           = 1 << 62
	PM_PRESENT        = 1 << 63
)

// PAGEMAP_SCAN is _IOWR('f', 16, struct pm_scan_arg). It is issued on an
// open /proc/PID/pagemap and works on that process's memory; the fd's opener
// needs PTRACE_MODE_READ on it.
const PAGEMAP_SCAN = uapiIocRW<<uapiIocDirShift | PmScanArgSize<<uapiIocSizeShift | 'f'<<uapiIocTypeShift | 16

// Page categories: the masks of pm_scan_arg and page_region.categories.
const (
	PAGE_IS_WPALLOWED  = 1 << 0 // in a range registered for uffd-wp on an async fd
	PAGE_IS_WRITTEN    = 1 << 1 // not write-protected by uffd-wp (written since protected)
	PAGE_IS_FILE       = 1 << 2
	PAGE_IS_PRESENT    = 1 << 3
	PAGE_IS_SWAPPED    = 1 << 4
	PAGE_IS_PFNZERO    = 1 << 5
	PAGE_IS_HUGE       = 1 << 6
	PAGE_IS_SOFT_DIRTY = 1 << 7
	PAGE_IS_GUARD      = 1 << 8 // 6.14+
)

// Flags of pm_scan_arg.flags.
const (
	// PM_SCAN_WP_MATCHING write-protects the pages it reports, turning a scan
	// for PAGE_IS_WRITTEN into an atomic get-and-clear of the dirty set.
	PM_SCAN_WP_MATCHING = 1 << 0
	// PM_SCAN_CHECK_WPASYNC fails the scan with EPERM when it meets a range
	// not registered uffd-wp on a UFFD_FEATURE_WP_ASYNC userfaultfd, instead
	// of silently skipping it.
	PM_SCAN_CHECK_WPASYNC = 1 << 1
)

// PageRegionSize is sizeof(struct page_region).
const PageRegionSize = 24

// PageRegion is struct page_region: a run of pages [Start, End) whose
// categories, masked by pm_scan_arg.return_mask, are all Categories.
type PageRegion struct {
	Start      uint64
	End        uint64
	Categories uint64
}

// PmScanArgSize is sizeof(struct pm_scan_arg); pm_scan_arg.size must hold it.
const PmScanArgSize = 96

// PmScanArg is struct pm_scan_arg. A page matches when
//
//	((categories ^ CategoryInverted) & CategoryMask) == CategoryMask &&
//	(CategoryAnyofMask == 0 || (categories ^ CategoryInverted) & CategoryAnyofMask != 0)
//
// and is reported with its categories masked by ReturnMask; adjacent matches
// with equal reported categories merge into one PageRegion.
//
// Vec is the C __u64 vec, typed as a Go pointer so that the buffer it names
// stays alive while the struct does; set it with SetVec.
type PmScanArg struct {
	Size    uint64 // set by PagemapScan
	Flags   uint64 // PM_SCAN_*
	Start   uint64 // page aligned
	End     uint64
	WalkEnd uint64 // out: where the walk stopped (End when it finished)
	Vec     *PageRegion
	VecLen  uint64
	// MaxPages caps the number of pages reported (0: no cap); a walk that
	// reaches it stops early with WalkEnd < End.
	MaxPages          uint64
	CategoryInverted  uint64
	CategoryMask      uint64
	CategoryAnyofMask uint64
	ReturnMask        uint64
}

// SetVec points the scan's output at v.
func (a *PmScanArg) SetVec(v []PageRegion) {
	if len(v) == 0 {
		a.Vec, a.VecLen = nil, 0
		return
	}
	a.Vec, a.VecLen = &v[0], uint64(len(v))
}

// Pages returns the number of pages in r.
func (r PageRegion) Pages(pageSize int) int {
	return int((r.End - r.Start) / uint64(pageSize))
}
