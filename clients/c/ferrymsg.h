/* ferrymsg: the C client of ferry's in-job message endpoint.
 *
 * libc only, C99. A process of a ferry job connects to its node's
 * endpoint (a unix SOCK_SEQPACKET socket at /run/ferry/msg.sock, or
 * $FERRY_MSG_SOCKET) and sends messages of up to 64 KiB to other
 * processes by their location-independent id, "<job>.<pid>" such as
 * "n1-4.101". The protocol is specified in the Go package ferry/msg
 * (msg/doc.go).
 *
 * A connection is not thread-safe: use it from one thread at a time.
 * Every call returns 0 or a negative FM_E* code; fm_strerror names it,
 * fm_detail gives the node's text for the last failure. */
#ifndef FERRYMSG_H
#define FERRYMSG_H

#include <stddef.h>
#include <stdint.h>

#define FM_DEFAULT_PATH "/run/ferry/msg.sock"
#define FM_PATH_ENV "FERRY_MSG_SOCKET"
#define FM_MAX_PAYLOAD 65536
#define FM_MAX_ID 255
#define FM_ID_BUF (FM_MAX_ID + 1) /* an id and its NUL */

enum {
	FM_OK = 0,
	FM_EAGAIN = -1,        /* non-blocking call: nothing to do now */
	FM_ETOOBIG = -2,       /* payload over 64 KiB: nothing was sent */
	FM_EUNKNOWNID = -3,    /* the cluster knows no such id */
	FM_EENDED = -4,        /* the receiver has ended */
	FM_EUNREACHABLE = -5,  /* retried until the node's deadline */
	FM_EMALFORMED = -6,    /* the node says our packet was malformed */
	FM_EDENIED = -7,       /* not allowed to send to that id */
	FM_EUNDELIVERABLE = -8,/* refused for a reason this library does not know */
	FM_EPROTO = -9,        /* the node broke the protocol; connection unusable */
	FM_ECLOSED = -10,      /* the connection is closed */
	FM_ESYS = -11,         /* a system call failed; see errno */
	FM_EBADID = -12,       /* not an id */
	FM_ESPACE = -13,       /* buffer too small; *len says what is needed, message kept */
	FM_ENOSEQ = -14        /* no outcome pending for that sequence number */
};

typedef struct fm_conn fm_conn;

/* Connect to $FERRY_MSG_SOCKET or FM_DEFAULT_PATH and read the node's
 * HELLO. */
int fm_connect(fm_conn **out);
/* Connect to path (NULL: as fm_connect). */
int fm_connect_path(const char *path, fm_conn **out);

/* This process's id, as the node told it. */
const char *fm_id(const fm_conn *c);

/* Send and wait for the node's outcome: 0 once delivered. */
int fm_send(fm_conn *c, const char *to, const void *buf, size_t len);
/* Send without blocking (FM_EAGAIN if the socket is full, nothing
 * sent); *seq names the outcome, collected with fm_result. */
int fm_send_nb(fm_conn *c, const char *to, const void *buf, size_t len, uint32_t *seq);
/* The outcome of the message seq: 0, an error, or (block == 0)
 * FM_EAGAIN if not yet known. Outcomes are kept until collected. */
int fm_result(fm_conn *c, uint32_t seq, int block);

/* Receive a message: the sender's id into from, the payload into buf
 * (cap bytes), its length into *len. If cap is too small: FM_ESPACE,
 * *len = the length needed, the message stays queued. */
int fm_recv(fm_conn *c, char from[FM_ID_BUF], void *buf, size_t cap, size_t *len);
/* As fm_recv, but FM_EAGAIN when no message is waiting. */
int fm_recv_nb(fm_conn *c, char from[FM_ID_BUF], void *buf, size_t cap, size_t *len);

/* Messages read off the socket (by fm_send or fm_result) and queued:
 * they do not make fm_fd readable. */
int fm_pending(const fm_conn *c);
/* The socket, to poll for POLLIN with other descriptors; do not read,
 * write or close it. When it polls readable (and before polling, if
 * fm_pending > 0), call fm_recv_nb until FM_EAGAIN. */
int fm_fd(const fm_conn *c);

/* The node's text (or this library's) for the last failure. */
const char *fm_detail(const fm_conn *c);
const char *fm_strerror(int code);

void fm_close(fm_conn *c);

#endif
