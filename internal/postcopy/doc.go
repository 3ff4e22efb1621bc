// Package postcopy moves a process by transfer on reference: the process
// runs on the destination at once, its memory following on demand. A page
// is fetched from the source the first time the new copy touches it (a
// userfaultfd MISSING fault), together with the pages after it, while a
// background push sends every other page so that the dependency on the
// source ends, and the caller learns when.
//
// What belongs here is the transfer itself: Serve on the source, Pager on
// the destination, and the wire protocol between them. The halves of the
// image come from elsewhere: dump.Options{Lazy: true, Leave: dump.Frozen}
// leaves private anonymous memory out of the image (lazy records say which
// of its pages hold data) and keeps the old copy frozen, to be read with
// process_vm_readv; restore.Options{Lazy: true} maps that memory empty and
// registers it with a userfaultfd per process (restore.Result.Lazy).
//
// # Wiring
//
// Source: dump with Lazy and Leave: Frozen, send the image, then
// Serve(ctx, conn, SourceProcesses(res), opts); when it returns nil the
// destination holds everything: res.Held.Kill. Destination: restore the
// image with Lazy, StartPager(ctx, conn, res.Lazy, opts) at once (the
// processes already run and wait on their first faults), Wait, Close. If
// Wait fails with ErrSourceGone, kill the processes, then Close.
//
// Local source: ServeOptions.Read lets Serve take the pages from a
// function instead of a frozen process, and ServeLocal runs Serve and a
// Pager joined by a socketpair in one process. A precopy destination
// restores with restore.Options{Staged: staging, StagedLazy: true}, lets
// the new copy run, and fills the pages staged during the rounds with
// ServeLocal(ctx, res.Lazy, staging.ReadPages, ...): the freeze no longer
// waits for them, and no other node is involved.
//
// # Wire protocol, version 1
//
// All integers are little-endian; CRC32C is CRC-32 with the Castagnoli
// polynomial. The stream in each direction is a sequence of frames, each
// a 16-byte header and a payload:
//
//	offset size  field
//	0      1     type
//	1      1     flags (none are defined, must be 0)
//	2      2     reserved (0)
//	4      4     payload length (u32), at most MaxPayload (4 MiB)
//	8      4     payload CRC32C: over header bytes 0..7, then the payload
//	12     4     header CRC32C: over header bytes 0..11
//	16     n     payload
//
// This is package frame's frame layout (frame encodes and checks it) with
// a kind below 256 and no flags. A reader checks the header CRC before it
// trusts the length, and the length against MaxPayload and the type
// before it reads the payload. Frame types:
//
//	1 hello      magic "FERRYPCP" | version (u32) | page size (u32) |
//	             prefetch (u32) | reserved (u32, 0). First frame both
//	             ways, once. The source's prefetch is how many pages it
//	             sends for one request; the destination sends 0. A peer
//	             refuses a newer version (ErrVersion) or another page size.
//	2 request    pid (u32) | pages (u32) | address (u64): destination →
//	             source. Send every data page of [address, address+pages)
//	             (cut at the end of the lazy VMA), and the page at address
//	             in any case. pid is the image's. Requests are answered in
//	             order, before any further push.
//	3 pages      pid (u32) | reserved (u32, 0) | address (u64) | contents
//	             (a positive multiple of the page size): source →
//	             destination, for a request or the push.
//	4 zero       pid (u32) | pages (u32) | address (u64): source →
//	             destination: these pages are all zero (or hold no data).
//	5 push-done  data pages sent (u64) | zero pages (u64): every data page
//	             has been sent once. Requests are still answered after it.
//	6 done       pages copied (u64): destination → source: every page is
//	             in place and the userfaultfds are closed; the source may
//	             let go. Both sides close the connection after it.
//	7 error      UTF-8 message (1..4096 bytes): the sender gives up.
//
// The destination only marks as "on its way" pages it asked for, and the
// source sends everything asked for, so neither waits on the other's
// bookkeeping. Errors from decoding wrap ErrChecksum, ErrTruncated,
// ErrMalformed or ErrVersion; the end of a stream before done (source) or
// push-done and all pages (destination) is the peer going away:
// ErrDestinationGone, ErrSourceGone.
//
// # Correctness on the destination
//
// One goroutine reads every userfaultfd and places every page, so that a
// page is never copied in after the process discarded it: the kernel holds
// munmap, madvise(DONTNEED) and mremap of registered memory until their
// event is read, and refuses copies (EAGAIN) meanwhile. Each address space
// has its own view of which source page sits where (mremap moves them) and
// what state it is in; a fork (UFFD_EVENT_FORK) gets a view of its own,
// fed from the same frames, and asks again after the push for what it
// lacks. Pages the source found zero are not populated unless a fault
// waits on them: once the userfaultfds are closed the kernel zero-fills.
package postcopy
