// Package image is ferry's checkpoint image: the process state types
// (state.go), the versioned, integrity-checked stream format that carries
// them (format.go), a directory sink and source for that stream (dir.go)
// and a human/JSON summary of an image (inspect.go).
//
// Nothing here touches a live process. Dumping fills a Checkpoint and
// writes pages through a Writer; restoring reads them back through a
// Reader. The same stream goes to a file (Create, Open) or over a network
// connection in a migration, so the format is a sequence of
// self-describing records, never an index with seeks.
//
// # Stream layout
//
// All integers are little-endian. CRC32C is CRC-32 with the Castagnoli
// polynomial (hash/crc32, hardware-accelerated on amd64 and arm64).
//
// The stream header and the record headers are package frame's stream
// header and frame header (frame does the encoding and checksums, and
// refuses a length over MaxPayload before anything is allocated); the
// layout is repeated here because it is this format's.
//
// The stream opens with a 20-byte header:
//
//	offset size  field
//	0      8     magic "FERRYIMG"
//	8      4     format version (u32), currently 1
//	12     4     flags (u32); none are defined in version 1, must be 0
//	16     4     CRC32C of bytes 0..15
//
// Records follow, back to back. Each is a 16-byte record header and a
// payload:
//
//	offset size  field
//	0      2     type (u16)
//	2      2     flags (u16); none are defined in version 1, must be 0
//	4      4     payload length (u32), at most MaxPayload (64 MiB)
//	8      4     payload CRC32C: over record header bytes 0..7, then the payload
//	12     4     header CRC32C: over record header bytes 0..11
//	16     n     payload
//
// The header CRC lets a reader trust the type and length before it reads
// or allocates anything for the payload; a length above MaxPayload is
// rejected even when its header CRC matches.
//
// Record types and payloads:
//
//	1 state     JSON of *Checkpoint (encoding/json, see state.go). Its
//	            PageSize is 0 (meaning 4096) or a power of two from 4096
//	            to 1 MiB; its process PIDs are positive and distinct.
//	2 filedata  offset (u64) | id length (u16, 1..4096) | id | content bytes
//	            Content of the file object id (ObjectID: a memfd, an
//	            unlinked file, a shared anonymous mapping) at that byte
//	            offset. An object may span many records; a record with
//	            no content says the object exists.
//	3 pages     pid (u32) | start address (u64) | page contents
//	            The contents of consecutive pages of process pid starting
//	            at the address. The address is page-aligned and the
//	            contents are a positive multiple of Checkpoint.PageSize
//	            (4096 when zero) long; pid is a process of the checkpoint.
//	4 trailer   records (u64) | payload bytes (u64) | running CRC32C (u32) | reserved (u32, 0)
//	            The number of records before the trailer, the sum of their
//	            payload lengths, and the running CRC32C: over bytes 0..15 of
//	            the stream header, then bytes 0..11 of every record header
//	            before the trailer, in order. The CRC fields that check a
//	            header itself are left out: a CRC over bytes followed by
//	            their own CRC always ends in the same residue, so they would
//	            make the running CRC blind to the headers.
//	5 signals   JSON of []PendingSignal: {pid, tid (0: process-wide), info
//	            (128-byte siginfo)}. Signals that became pending while the
//	            process was frozen, after the state record was written;
//	            restore queues them with the state's own pending signals.
//	            Added in version 1 streams; a reader that predates it
//	            refuses the stream as malformed rather than drop a signal.
//	6 lazy      pid (u32) | reserved (u32, 0) | VMA start (u64) | VMA end (u64)
//	            | n >= 1 runs of { address (u64) | pages (u64) }
//	            Postcopy: a private anonymous VMA of process pid whose
//	            pages are not in this stream but stay on the source; the
//	            runs (aligned, ascending, disjoint, inside the VMA) hold
//	            data, every other page of the VMA is zero. Lazy records
//	            come before every pages record (see lazy.go). Added in
//	            version 1 streams like signals: an older reader refuses
//	            the stream instead of restoring zeros.
//
// Records are numbered from 0 in error messages.
//
// # Order
//
// The state record comes first and appears once: pages and file data are
// checked against it (page size, pids). File data and pages follow in any
// order and may interleave, so a live migration can send pages late, as
// they are asked for. The trailer ends the stream; nothing after it
// belongs to the image.
//
// # Integrity
//
// Every record is checked on its own (header CRC, payload CRC) as it is
// read, so a consumer never acts on damaged bytes. Each record header
// holds its payload's CRC, so the trailer's running CRC over the record
// headers covers the whole stream at the cost of 12 bytes per record: a
// record dropped, duplicated or moved is detected at the trailer even
// though every record checks out alone. A stream without a valid trailer
// is incomplete; a Reader reports io.EOF only after one.
//
// Errors from a Reader are *FormatError values naming the record index,
// its byte offset and its type, and wrapping one sentinel: ErrBadMagic
// (not an image), ErrVersion (newer format, or unknown header flags),
// ErrChecksum (damaged bytes, or the trailer does not match the records),
// ErrTruncated (the stream ended before the trailer) or ErrMalformed
// (checksums match but the content is impossible: unknown type, bad
// length or alignment, bad JSON, records out of order). An I/O error from
// the underlying reader is wrapped instead of a sentinel.
//
// # Record sizes and buffers
//
// Any payload up to MaxPayload is valid. This package's Writer splits
// page and file content into records of 64 KiB: small next to the
// Reader's 512 KiB read buffer, so each record is checksummed and handed
// out in place in that buffer, while it is still in the CPU cache, with
// no second copy and no per-record allocation. Record.Data therefore
// aliases the Reader's buffers and is valid only until the next Next.
// Larger records from other writers are read into a separate buffer that
// grows as their bytes arrive, never ahead of them.
//
// # Versioning
//
// The magic and the version field never move. A reader checks the magic,
// then rejects a version newer than its own with ErrVersion before it
// looks at anything else, since the rest of the layout belongs to that
// version. Readers accept every version from 1 up to their own; writers
// write the current one. Any change to the header, the record header, a
// payload layout or the meaning of an existing field needs a new
// version, as does a new record type or flag (a reader rejects unknown
// types and non-zero flags). Fields may be added to the state JSON
// without a new version as long as their zero value means "absent / old
// behaviour": readers ignore JSON fields they do not know. A new FD kind
// is such an addition (FDMsg, the message-endpoint connection, was one): a
// reader that predates it refuses the fd as of unknown kind rather than
// restore something else.
//
// # Directories
//
// On disk an image is one file, ferry.img, in an image directory. Create
// writes it under a temporary name and renames it into place only when
// Close succeeds, so a half-written image is never taken for a whole one;
// fsync is off by default (see CreateOptions).
package image
