package kernel

import (
	"encoding/binary"
	"fmt"
)

// Linux AIO (include/linux/aio.h, fs/aio.c): io_setup maps a ring of
// completion events into the process; the context id is the ring's
// address. The ring starts with struct aio_ring.
const (
	AIO_RING_MAGIC    = 0xa10a10a1
	AioRingHeaderSize = 32
	// AioRingMapsPath is the path /proc/PID/maps shows for a ring
	// (with " (deleted)").
	AioRingMapsPath = "/[aio]"
)

// IoEventSize is sizeof(struct io_event); IocbSize sizeof(struct iocb).
const (
	IoEventSize = 32
	IocbSize    = 64
)

// IocbPread0 is a struct iocb that reads 0 bytes from fd: it completes at
// once, with data as its io_event's data.
func IocbPread0(fd uint32, data uint64) []byte {
	b := make([]byte, IocbSize)
	binary.LittleEndian.PutUint64(b[0:], data)
	// aio_lio_opcode (16) = IOCB_CMD_PREAD (0); aio_fildes at 20; aio_buf,
	// aio_nbytes, aio_offset 0.
	binary.LittleEndian.PutUint32(b[20:], fd)
	return b
}

// AioRing is the header of an AIO ring.
type AioRing struct {
	ID, Nr, Head, Tail, Magic uint32
}

// ParseAioRing decodes a ring header read from the process.
func ParseAioRing(b []byte) (AioRing, error) {
	if len(b) < AioRingHeaderSize {
		return AioRing{}, fmt.Errorf("aio ring header: %d bytes", len(b))
	}
	le := binary.LittleEndian
	r := AioRing{ID: le.Uint32(b[0:]), Nr: le.Uint32(b[4:]), Head: le.Uint32(b[8:]), Tail: le.Uint32(b[12:]), Magic: le.Uint32(b[16:])}
	if r.Magic != AIO_RING_MAGIC {
		return r, fmt.Errorf("aio ring header: magic %#x, want %#x", r.Magic, uint32(AIO_RING_MAGIC))
	}
	if r.Nr == 0 || r.Head >= r.Nr || r.Tail >= r.Nr {
		return r, fmt.Errorf("aio ring header: nr %d head %d tail %d", r.Nr, r.Head, r.Tail)
	}
	return r, nil
}

// EventOffset is where the i-th event after head sits in the ring.
func (r AioRing) EventOffset(i uint32) uint64 {
	return AioRingHeaderSize + uint64((r.Head+i)%r.Nr)*IoEventSize
}

// Pending is the number of completed events not yet reaped.
func (r AioRing) Pending() uint32 { return (r.Tail + r.Nr - r.Head) % r.Nr }
