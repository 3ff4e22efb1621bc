// Package msg is the client side of ferry's message IPC: how a process
// of a managed job sends messages to other processes by their
// location-independent id, and receives them, through the message
// endpoint its node offers every job. Other Go modules import it as
// ferry/msg; the C library (clients/c) and the Python module
// (clients/python) speak the same protocol.
//
// What belongs here: ids, the client connection and its errors. The
// packet codec is in msg/wire, a fake endpoint for tests in msg/msgtest;
// routing between nodes is the node's (internal/ipc, internal/node).
//
// # Ids
//
// A process's id is "<job>.<pid>", e.g. "n1-4.101": the job id (which
// names the node that created the job) and the pid in the job's own PID
// namespace. It never changes when the process moves. A process can
// compute its own id without connecting (Self: $FERRY_JOB and getpid);
// the node's HELLO tells it too. Syntax: see ParseID.
//
// # The endpoint
//
// A unix SOCK_SEQPACKET socket at /run/ferry/msg.sock inside the job
// (the same path on every node; $FERRY_MSG_SOCKET overrides it). The
// node learns who connected from SO_PEERCRED: the pid it reports is the
// pid in the job, as the job has its own PID namespace.
//
// # Packets (protocol version 1)
//
// One SEQPACKET packet is one protocol packet. All integers are
// little-endian. Every packet opens with an 8-byte header:
//
//	offset size  field
//	0      2     magic 'F' 'M' (0x46 0x4d)
//	2      1     protocol version, 1
//	3      1     type: 1 HELLO, 2 SEND, 3 MSG, 4 RESULT, 5 ERROR
//	4      4     seq (u32), meaning per type (below)
//
// An id field is a length byte (1..255) and that many bytes of the id's
// text. A payload is the rest of the packet, 0..65536 bytes; its length
// is not written, the packet's length gives it.
//
//	HELLO   node → process, the first packet on every connection; seq 0
//	8   4   max payload (u32) the node takes, normally 65536
//	12  1+n the process's own id
//
//	SEND    process → node; seq: the sender's sequence number for it,
//	        1, 2, 3, ... per connection (wrapping to 1, never 0)
//	8   1+n destination id
//	9+n ..  payload
//
//	MSG     node → process; seq: the node's number of this delivery, or
//	        0 (the libraries do not interpret it)
//	8   1+n sender id
//	9+n ..  payload
//
//	RESULT  node → process, exactly one per SEND; seq: that SEND's
//	8   2   code (u16), 0 for delivered, else the reason (below)
//	10  2   text length (u16), at most 1024
//	12  ..  text, UTF-8, naming the id and the reason ("" with code 0)
//
//	ERROR   node → process: a packet the node could not attribute to a
//	        SEND (bad magic, version, type, or shorter than a header);
//	        the node closes the connection after it. seq: the offending
//	        packet's seq if it could be read, else 0. Body as RESULT.
//
// Codes: 0 delivered (the receiver's endpoint holds the message; from
// then on it reaches the receiver exactly once, wherever it moves), 1
// unknown id, 2 receiver ended, 3 unreachable (held and retried until
// the node's deadline), 4 payload too big, 5 malformed packet, 6 denied,
// 7 unsupported protocol version (ERROR only). A library reports an
// unknown code as undeliverable, with the node's text.
//
// Sizes: the largest packet is a SEND or MSG with a 255-byte id and a
// 65536-byte payload, 65800 bytes (wire.MaxPacket). Each side reads
// into a buffer of that size and checks MSG_TRUNC: a truncated packet is
// never taken for a shorter one. The libraries refuse a payload over
// 64 KiB (or the HELLO's max payload) before sending anything; a node
// answers a truncated SEND with RESULT code 4, its seq read from the
// header that survived.
//
// Rules: the node sends HELLO first and may send it again (after it
// re-established the connection, say) only with the same id. A SEND
// whose header is readable (magic, version 1, type 2, seq ≠ 0) is
// always answered by RESULT, also when malformed (code 5) or too big
// (code 4). A process sends only SENDs. A library that receives a
// malformed or truncated packet, a RESULT for no waiting SEND, or an
// ERROR reports the error (ErrProtocol) and the connection is unusable
// afterwards, though messages already read are still returned.
//
// # When the process moves
//
// The connection moves with it: the node stops writing into it while the
// process is frozen, and on the destination the same descriptor is a new
// connection to the new node, with the packets that were unread queued in
// it first (the node then sends what was held for the process). A SEND
// whose RESULT had not come yet gets it from the new node. Nothing is
// sent again by the process, and a library needs nothing to handle it:
// it never sees a HELLO again for a carried connection. A process polling
// Fd with epoll keeps its registration (it is restored with the
// descriptor).
//
// # Using it
//
// Send blocks until the node's RESULT; TrySend never blocks and gives a
// Ticket whose outcome Result or TryResult collect. Recv blocks, TryRecv
// returns ErrWouldBlock when nothing is waiting. To wait on the
// endpoint with other descriptors, poll Fd for reading, then call
// TryRecv until ErrWouldBlock. Errors match with errors.Is: ErrTooBig,
// ErrUndeliverable (every refusal) and ErrUnknownID, ErrReceiverEnded,
// ErrUnreachable, ErrDenied, ErrMalformed, and ErrProtocol, ErrClosed,
// ErrWouldBlock, ErrBadID.
package msg
