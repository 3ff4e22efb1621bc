// Package ipc is the routing of ferry's location-independent messages: the
// process ids, the envelope between nodes, and the chapter's forwarding
// mechanisms as a state machine without I/O, with a deterministic
// simulated cluster (Sim) that checks the guarantees.
//
// What belongs here: ID and its text form; Envelope; Router, whose
// Handle(now, event) returns actions and does nothing else; Sim. What does
// not: the node's sockets and TLS (package node carries Transmit and
// Broadcast actions and feeds Receive events), the endpoint inside a job,
// the client libraries (msg/, clients/).
//
// # Ids
//
// A process is "<job>.<pid>", e.g. n1-4.101: the job id the creating node
// gave ("<node>-<n>") and the PID in the job's PID namespace, which stays
// the same after a move. The creating node is the job id up to its last
// "-" (DEMOS/MP's creating node; Sprite's home node).
//
// # Envelope (between nodes)
//
// Kind; FromNode (who put it on the wire); From, To (process ids); Seq (per
// From→To pair, from 1); Floor (every seq below it is acknowledged or was
// given up and reported by the sender); SrcNode (the node holding the
// sender's outbox: acks and refusals go there); Hops; Loc (node and epoch);
// UpTo (cumulative ack); Job (control kinds); Payload. Kinds: data, ack
// (carries the receiver's location: path shortening), try-later (type 1
// under resend), unknown (type 2 with nothing left here), ended, locate
// (broadcast) and its reply, link update and its ack (Charlotte), origin
// update and its ack, end notice. A job's epoch rises at each change of
// location, so older news never overwrites newer. The wire encoding is
// the node's business (not fixed here yet).
//
// # Mechanisms, for messages of type 1 (receiver frozen), 2 (at the old
// node after the commit) and 3 (sent after the move)
//
//   - resend (V-System, Amoeba): type 1 gets try-later, type 2 unknown; the
//     sender's node locates by broadcast and sends again; type 3 goes to
//     the location the sender learnt. The old node keeps nothing.
//   - origin (Sprite, AIX TCF): every message goes to the creating node,
//     which forwards it to where its table says; the destination tells the
//     creating node at arrival (retried until acknowledged). Type 1 is
//     buffered at the frozen job and travels with it; type 2 (the table
//     was stale) gets unknown and is sent again through the origin.
//   - link (DEMOS/MP): type 1 is buffered and travels with the job; the
//     source keeps a link; types 2 and 3 follow the chain from the sender's
//     cached location or else from the creating node. Every ack carries
//     the location, so the sender's next message goes straight there (path
//     shortening). Links stay until the job ends (its end notice drops
//     them); Stats.Links counts what is left.
//   - update (Charlotte): when the job freezes the source tells the nodes
//     of every partner (every node a message to the job came from) the
//     new location; at the commit it waits for the acks not in yet (at
//     most Config.UpdateWait), then hands off; type 1 is buffered and travels with the job; type 2 is
//     forwarded by the source for Config.UpdateGrace, then the link is
//     dropped; a stranger locates by broadcast.
//   - auto (ferry): update the partners, leave a link (dropped after
//     Config.LinkTTL unused), keep the creating node informed, and on each
//     miss (no ack within Config.Retransmit, or unknown) try the next of:
//     cached location, creating node, broadcast. No single node down, other
//     than the job's own, makes a living job unreachable.
//
// # Exactly once, in order
//
// Delivery is end to end. A sent message stays in its sender job's outbox
// until the node delivering it acknowledges (cumulatively, per pair); it is
// sent again every Config.Retransmit, so a mechanism may lose a copy (a
// refusal, a node down, the network) but never the message. The
// delivering node keeps per receiver and sender the next seq to deliver and
// a reorder buffer; a seq below is a duplicate (acknowledged again), a seq
// above waits. This receive state, the send counters and the outbox are
// the job's and travel with it at the handoff, so a move of sender or
// receiver changes nothing; a rollback resumes with both untouched. A
// message not acknowledged by Config.Deadline is reported Undeliverable
// (ErrEnded if the receiver's job ended — its tombstone on the node where
// it ended still acknowledges what was delivered — else ErrUnreachable)
// and later messages carry a Floor past it, so the receiver does not wait
// for it.
//
// # Durable
//
// Kept across a restart of the node (see Durable; the node journals it):
// jobs with their sequence state and outboxes, outboxes of ended jobs,
// links, the creating node's table, tombstones, control messages not yet
// acknowledged. Lost: reorder and type-1 buffers (their messages are still
// in some outbox), location caches, locates in progress, migrations in
// flight (rolled back). The migration itself hands the JobState over
// (Handoff, then Committed or Rollback): that transfer is the migration's
// channel, not the router's.
package ipc
