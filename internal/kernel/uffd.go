package kernel

import "encoding/binary"

// userfaultfd ABI from include/uapi/linux/userfaultfd.h as of Linux 6.18.
// Debian 12 ships 6.1 headers, which lack UFFD_FEATURE_WP_UNPOPULATED (6.4),
// UFFD_FEATURE_WP_ASYNC (6.7), UFFDIO_MOVE (6.8) and UFFDIO_POISON (6.6).
//
// The wrappers live in uffd_unsafe.go. A userfaultfd works on the address
// space of the process that created it, wherever the fd is used from: ferry
// creates it inside the target (injected userfaultfd()), takes it with
// pidfd_getfd and issues every ioctl below itself, so range addresses are
// the target's, while UFFDIO_COPY's source is in the caller's memory.

// Flags of userfaultfd(2) and USERFAULTFD_IOC_NEW besides O_CLOEXEC and
// O_NONBLOCK.
const (
	// UFFD_USER_MODE_ONLY makes faults taken by the kernel (a read(2) into a
	// missing page, say) fail with EFAULT instead of waiting for the handler.
	// Postcopy must not set it: the target's syscalls have to block too.
	UFFD_USER_MODE_ONLY = 1
)

// USERFAULTFD_IOC_NEW, issued on an open /dev/userfaultfd (5.11+), returns a
// new userfaultfd; its argument is the flags userfaultfd(2) takes. Access is
// governed by the device node's mode rather than vm.unprivileged_userfaultfd.
const (
	USERFAULTFD_IOC     = 0xAA
	USERFAULTFD_IOC_NEW = uapiIocNone<<uapiIocDirShift | USERFAULTFD_IOC<<uapiIocTypeShift | 0x00
)

// UFFD_API is the only API version; UFFDIO_API must be the first ioctl on a
// new userfaultfd and may be issued once.
const UFFD_API = 0xAA

// Feature bits of uffdio_api.features. Requesting features = 0 in UFFDIO_API
// returns every feature this kernel supports.
const (
	UFFD_FEATURE_PAGEFAULT_FLAG_WP  = 1 << 0
	UFFD_FEATURE_EVENT_FORK         = 1 << 1
	UFFD_FEATURE_EVENT_REMAP        = 1 << 2
	UFFD_FEATURE_EVENT_REMOVE       = 1 << 3
	UFFD_FEATURE_MISSING_HUGETLBFS  = 1 << 4
	UFFD_FEATURE_MISSING_SHMEM      = 1 << 5
	UFFD_FEATURE_EVENT_UNMAP        = 1 << 6
	UFFD_FEATURE_SIGBUS             = 1 << 7
	UFFD_FEATURE_THREAD_ID          = 1 << 8
	UFFD_FEATURE_MINOR_HUGETLBFS    = 1 << 9
	UFFD_FEATURE_MINOR_SHMEM        = 1 << 10
	UFFD_FEATURE_EXACT_ADDRESS      = 1 << 11
	UFFD_FEATURE_WP_HUGETLBFS_SHMEM = 1 << 12
	UFFD_FEATURE_WP_UNPOPULATED     = 1 << 13 // 6.4
	UFFD_FEATURE_POISON             = 1 << 14 // 6.6
	UFFD_FEATURE_WP_ASYNC           = 1 << 15 // 6.7
	UFFD_FEATURE_MOVE               = 1 << 16 // 6.8
)

// Ioctl numbers within the 0xAA space; uffdio_api.ioctls and
// uffdio_register.ioctls report 1<<_UFFDIO_x for each ioctl allowed.
const (
	_UFFDIO_REGISTER     = 0x00
	_UFFDIO_UNREGISTER   = 0x01
	_UFFDIO_WAKE         = 0x02
	_UFFDIO_COPY         = 0x03
	_UFFDIO_ZEROPAGE     = 0x04
	_UFFDIO_MOVE         = 0x05
	_UFFDIO_WRITEPROTECT = 0x06
	_UFFDIO_CONTINUE     = 0x07
	_UFFDIO_POISON       = 0x08
	_UFFDIO_API          = 0x3F
)

// Bits of uffdio_api.ioctls and uffdio_register.ioctls (1 << _UFFDIO_x in C).
const (
	UFFD_IOCTL_REGISTER     = 1 << _UFFDIO_REGISTER
	UFFD_IOCTL_UNREGISTER   = 1 << _UFFDIO_UNREGISTER
	UFFD_IOCTL_WAKE         = 1 << _UFFDIO_WAKE
	UFFD_IOCTL_COPY         = 1 << _UFFDIO_COPY
	UFFD_IOCTL_ZEROPAGE     = 1 << _UFFDIO_ZEROPAGE
	UFFD_IOCTL_MOVE         = 1 << _UFFDIO_MOVE
	UFFD_IOCTL_WRITEPROTECT = 1 << _UFFDIO_WRITEPROTECT
	UFFD_IOCTL_CONTINUE     = 1 << _UFFDIO_CONTINUE
	UFFD_IOCTL_POISON       = 1 << _UFFDIO_POISON
	UFFD_IOCTL_API          = 1 << _UFFDIO_API
)

// UFFDIO is the ioctl type of userfaultfd requests.
const UFFDIO = 0xAA

// Request codes (_IOWR/_IOR of the structs below; the sizes are checked at
// compile time in uffd_unsafe.go).
const (
	UFFDIO_API          = uapiIocRW<<uapiIocDirShift | 24<<uapiIocSizeShift | UFFDIO<<uapiIocTypeShift | _UFFDIO_API
	UFFDIO_REGISTER     = uapiIocRW<<uapiIocDirShift | 32<<uapiIocSizeShift | UFFDIO<<uapiIocTypeShift | _UFFDIO_REGISTER
	UFFDIO_UNREGISTER   = uapiIocR<<uapiIocDirShift | 16<<uapiIocSizeShift | UFFDIO<<uapiIocTypeShift | _UFFDIO_UNREGISTER
	UFFDIO_WAKE         = uapiIocR<<uapiIocDirShift | 16<<uapiIocSizeShift | UFFDIO<<uapiIocTypeShift | _UFFDIO_WAKE
	UFFDIO_COPY         = uapiIocRW<<uapiIocDirShift | 40<<uapiIocSizeShift | UFFDIO<<uapiIocTypeShift | _UFFDIO_COPY
	UFFDIO_ZEROPAGE     = uapiIocRW<<uapiIocDirShift | 32<<uapiIocSizeShift | UFFDIO<<uapiIocTypeShift | _UFFDIO_ZEROPAGE
	UFFDIO_MOVE         = uapiIocRW<<uapiIocDirShift | 40<<uapiIocSizeShift | UFFDIO<<uapiIocTypeShift | _UFFDIO_MOVE
	UFFDIO_WRITEPROTECT = uapiIocRW<<uapiIocDirShift | 24<<uapiIocSizeShift | UFFDIO<<uapiIocTypeShift | _UFFDIO_WRITEPROTECT
	UFFDIO_CONTINUE     = uapiIocRW<<uapiIocDirShift | 32<<uapiIocSizeShift | UFFDIO<<uapiIocTypeShift | _UFFDIO_CONTINUE
	UFFDIO_POISON       = uapiIocRW<<uapiIocDirShift | 32<<uapiIocSizeShift | UFFDIO<<uapiIocTypeShift | _UFFDIO_POISON
)

// _IOC encoding (include/uapi/asm-generic/ioctl.h), shared with pagemap.go.
const (
	uapiIocNone      = 0
	uapiIocW         = 1
	uapiIocR         = 2
	uapiIocRW        = uapiIocR | uapiIocW
	uapiIocTypeShift = 8
	uapiIocSizeShift = 16
	uapiIocDirShift  = 30
)

// UffdioAPIArg is struct uffdio_api.
type UffdioAPIArg struct {
	API      uint64 // in: UFFD_API
	Features uint64 // in: features wanted (0: report all); out: features enabled or supported
	Ioctls   uint64 // out: 1<<_UFFDIO_x of the ioctls allowed on the fd
}

// UffdioRange is struct uffdio_range. Start and Len must be page aligned.
type UffdioRange struct {
	Start uint64
	Len   uint64
}

// Modes of uffdio_register.mode.
const (
	UFFDIO_REGISTER_MODE_MISSING = 1 << 0
	UFFDIO_REGISTER_MODE_WP      = 1 << 1
	UFFDIO_REGISTER_MODE_MINOR   = 1 << 2
)

// UffdioRegisterArg is struct uffdio_register.
type UffdioRegisterArg struct {
	Range  UffdioRange
	Mode   uint64 // UFFDIO_REGISTER_MODE_*
	Ioctls uint64 // out: 1<<_UFFDIO_x of the ioctls allowed on the range
}

// Modes of uffdio_copy.mode.
const (
	UFFDIO_COPY_MODE_DONTWAKE = 1 << 0
	UFFDIO_COPY_MODE_WP       = 1 << 1 // map the page write-protected
)

// UffdioCopyArg is struct uffdio_copy. Src is in the caller's address space
// (a Go pointer keeps the buffer alive; memory from mmap works too), Dst in
// the address space the userfaultfd belongs to.
type UffdioCopyArg struct {
	Dst  uint64
	Src  *byte
	Len  uint64
	Mode uint64 // UFFDIO_COPY_MODE_*
	// Copy is written by the kernel: bytes copied, or a negated errno. On
	// EAGAIN (the mm changed under the copy) it tells how far it got.
	Copy int64
}

// UFFDIO_ZEROPAGE_MODE_DONTWAKE leaves the faulting threads asleep.
const UFFDIO_ZEROPAGE_MODE_DONTWAKE = 1 << 0

// UffdioZeropageArg is struct uffdio_zeropage.
type UffdioZeropageArg struct {
	Range    UffdioRange
	Mode     uint64
	Zeropage int64 // out: bytes mapped or a negated errno
}

// Modes of uffdio_writeprotect.mode.
const (
	UFFDIO_WRITEPROTECT_MODE_WP       = 1 << 0 // set protection; clear it when absent
	UFFDIO_WRITEPROTECT_MODE_DONTWAKE = 1 << 1
)

// UffdioWriteprotectArg is struct uffdio_writeprotect.
type UffdioWriteprotectArg struct {
	Range UffdioRange
	Mode  uint64
}

// Modes of uffdio_continue.mode.
const (
	UFFDIO_CONTINUE_MODE_DONTWAKE = 1 << 0
	UFFDIO_CONTINUE_MODE_WP       = 1 << 1
)

// UffdioContinueArg is struct uffdio_continue (minor faults).
type UffdioContinueArg struct {
	Range  UffdioRange
	Mode   uint64
	Mapped int64 // out
}

// UFFDIO_POISON_MODE_DONTWAKE leaves the faulting threads asleep.
const UFFDIO_POISON_MODE_DONTWAKE = 1 << 0

// UffdioPoisonArg is struct uffdio_poison.
type UffdioPoisonArg struct {
	Range   UffdioRange
	Mode    uint64
	Updated int64 // out
}

// Modes of uffdio_move.mode.
const (
	UFFDIO_MOVE_MODE_DONTWAKE        = 1 << 0
	UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES = 1 << 1
)

// UffdioMoveArg is struct uffdio_move. Unlike UFFDIO_COPY, source and
// destination are both in the userfaultfd's address space.
type UffdioMoveArg struct {
	Dst  uint64
	Src  uint64
	Len  uint64
	Mode uint64
	Move int64 // out
}

// Events of uffd_msg.event.
const (
	UFFD_EVENT_PAGEFAULT = 0x12
	UFFD_EVENT_FORK      = 0x13
	UFFD_EVENT_REMAP     = 0x14
	UFFD_EVENT_REMOVE    = 0x15
	UFFD_EVENT_UNMAP     = 0x16
)

// Flags of a UFFD_EVENT_PAGEFAULT message.
const (
	UFFD_PAGEFAULT_FLAG_WRITE = 1 << 0
	UFFD_PAGEFAULT_FLAG_WP    = 1 << 1
	UFFD_PAGEFAULT_FLAG_MINOR = 1 << 2
)

// UffdMsgSize is sizeof(struct uffd_msg); read(2) on a userfaultfd returns
// whole messages only.
const UffdMsgSize = 32

// UffdMsg is struct uffd_msg (packed, 32 bytes): an event code and a union
// decoded by the methods below according to Event.
type UffdMsg struct {
	Event     uint8
	Reserved1 uint8
	Reserved2 uint16
	Reserved3 uint32
	Arg       [24]byte
}

// UffdPagefault is uffd_msg.arg.pagefault.
type UffdPagefault struct {
	Flags   uint64 // UFFD_PAGEFAULT_FLAG_*
	Address uint64 // page aligned unless UFFD_FEATURE_EXACT_ADDRESS
	Ptid    uint32 // with UFFD_FEATURE_THREAD_ID
}

// Pagefault decodes a UFFD_EVENT_PAGEFAULT message.
func (m *UffdMsg) Pagefault() UffdPagefault {
	return UffdPagefault{
		Flags:   binary.LittleEndian.Uint64(m.Arg[0:]),
		Address: binary.LittleEndian.Uint64(m.Arg[8:]),
		Ptid:    binary.LittleEndian.Uint32(m.Arg[16:]),
	}
}

// Fork decodes a UFFD_EVENT_FORK message: the new userfaultfd for the child,
// already installed in the reader's fd table.
func (m *UffdMsg) Fork() (ufd int) {
	return int(binary.LittleEndian.Uint32(m.Arg[0:]))
}

// Remap decodes a UFFD_EVENT_REMAP message (mremap of a registered range).
func (m *UffdMsg) Remap() (from, to, length uint64) {
	return binary.LittleEndian.Uint64(m.Arg[0:]),
		binary.LittleEndian.Uint64(m.Arg[8:]),
		binary.LittleEndian.Uint64(m.Arg[16:])
}

// Remove decodes a UFFD_EVENT_REMOVE or UFFD_EVENT_UNMAP message: the range
// [start, end) was dropped (madvise DONTNEED/REMOVE) or unmapped.
func (m *UffdMsg) Remove() (start, end uint64) {
	return binary.LittleEndian.Uint64(m.Arg[0:]), binary.LittleEndian.Uint64(m.Arg[8:])
}
