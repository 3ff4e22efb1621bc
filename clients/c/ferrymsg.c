/* ferrymsg: see ferrymsg.h; the protocol is in ferry/msg (msg/doc.go). */
#define _GNU_SOURCE
#include "ferrymsg.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

enum { T_HELLO = 1, T_SEND = 2, T_MSG = 3, T_RESULT = 4, T_ERROR = 5 };
#define HDR 8
#define VERSION 1
#define MAX_PACKET (HDR + 1 + FM_MAX_ID + FM_MAX_PAYLOAD)
#define MAX_TEXT 1024

struct msgq {
	struct msgq *next;
	char from[FM_ID_BUF];
	size_t len;
	unsigned char data[];
};

struct outcome {
	struct outcome *next;
	uint32_t seq;
	int done;
	int code;
	char text[MAX_TEXT + 1];
};

struct fm_conn {
	int fd;
	char id[FM_ID_BUF];
	size_t max_payload;
	uint32_t seq;
	int broken; /* 0 or the code every call returns */
	unsigned char *buf; /* MAX_PACKET, for reading and writing */
	struct msgq *qhead, *qtail;
	int qlen;
	struct outcome *outcomes;
	char detail[MAX_TEXT + 64];
};

static void put32(unsigned char *p, uint32_t v) { p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24; }
static uint32_t get32(const unsigned char *p) { return p[0] | p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static unsigned get16(const unsigned char *p) { return p[0] | p[1] << 8; }

static void detail(fm_conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->detail, sizeof c->detail, fmt, ap);
	va_end(ap);
}

static int fail(fm_conn *c, int code)
{
	if (!c->broken)
		c->broken = code;
	return c->broken;
}

/* An id: "<job>.<pid>", job of [A-Za-z0-9._-], pid decimal without
 * leading zeros below 2^31, at most 255 bytes. */
static int valid_id(const char *s)
{
	size_t n = strlen(s);
	const char *dot = strrchr(s, '.');
	if (n == 0 || n > FM_MAX_ID || !dot || dot == s)
		return 0;
	for (const char *p = s; p < dot; p++) {
		char ch = *p;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '-' || ch == '_' || ch == '.'))
			return 0;
	}
	const char *d = dot + 1;
	size_t dl = strlen(d);
	if (dl == 0 || dl > 10 || (dl > 1 && d[0] == '0'))
		return 0;
	unsigned long long v = 0;
	for (; *d; d++) {
		if (*d < '0' || *d > '9')
			return 0;
		v = v * 10 + (unsigned)(*d - '0');
	}
	return v <= 2147483647ULL;
}

static int code_of(unsigned wire)
{
	switch (wire) {
	case 0: return FM_OK;
	case 1: return FM_EUNKNOWNID;
	case 2: return FM_EENDED;
	case 3: return FM_EUNREACHABLE;
	case 4: return FM_ETOOBIG;
	case 5: return FM_EMALFORMED;
	case 6: return FM_EDENIED;
	}
	return FM_EUNDELIVERABLE;
}

/* Read an id field at p (1+n bytes within end) into out. */
static const unsigned char *get_id(const unsigned char *p, const unsigned char *end, char out[FM_ID_BUF])
{
	if (p >= end || p[0] == 0 || end - p < 1 + p[0])
		return NULL;
	memcpy(out, p + 1, p[0]);
	out[p[0]] = 0;
	return p + 1 + p[0];
}

/* Read one packet into c->buf. Returns its length, FM_EAGAIN, or the
 * connection's failure. */
static int read_packet(fm_conn *c, int block)
{
	struct iovec iov = { c->buf, MAX_PACKET };
	struct msghdr mh;
	memset(&mh, 0, sizeof mh);
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	ssize_t n;
	do
		n = recvmsg(c->fd, &mh, block ? 0 : MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return FM_EAGAIN;
	if (n < 0) {
		detail(c, "recvmsg: %s", strerror(errno));
		return fail(c, FM_ESYS);
	}
	if (n == 0) {
		detail(c, "the node closed the connection");
		return fail(c, FM_ECLOSED);
	}
	if (mh.msg_flags & MSG_TRUNC) {
		detail(c, "protocol error: packet over %d bytes (truncated on receipt)", MAX_PACKET);
		return fail(c, FM_EPROTO);
	}
	if (n < HDR) {
		detail(c, "protocol error: %d bytes, shorter than the %d-byte header", (int)n, HDR);
		return fail(c, FM_EPROTO);
	}
	if (c->buf[0] != 'F' || c->buf[1] != 'M') {
		detail(c, "protocol error: bad magic %#x %#x", c->buf[0], c->buf[1]);
		return fail(c, FM_EPROTO);
	}
	if (c->buf[2] != VERSION) {
		detail(c, "protocol error: node speaks version %d, this library %d", c->buf[2], VERSION);
		return fail(c, FM_EPROTO);
	}
	return (int)n;
}

static struct outcome *find(fm_conn *c, uint32_t seq, struct outcome ***link)
{
	struct outcome **pp = &c->outcomes;
	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->seq == seq) {
			if (link)
				*link = pp;
			return *pp;
		}
	return NULL;
}

/* Read one packet and file it. Returns 0, FM_EAGAIN or the failure. */
static int read_one(fm_conn *c, int block)
{
	int n = read_packet(c, block);
	if (n < 0)
		return n;
	const unsigned char *p = c->buf, *end = c->buf + n, *body = p + HDR;
	uint32_t seq = get32(p + 4);
	char id[FM_ID_BUF];
	switch (p[3]) {
	case T_HELLO: {
		const unsigned char *e = (end - body >= 5) ? get_id(body + 4, end, id) : NULL;
		if (!e || e != end || strcmp(id, c->id) != 0) {
			detail(c, "protocol error: HELLO again, not with id %s", c->id);
			return fail(c, FM_EPROTO);
		}
		return 0;
	}
	case T_MSG: {
		const unsigned char *pl = get_id(body, end, id);
		if (!pl || !valid_id(id) || end - pl > FM_MAX_PAYLOAD) {
			detail(c, "protocol error: MSG: bad sender id or length");
			return fail(c, FM_EPROTO);
		}
		size_t len = (size_t)(end - pl);
		struct msgq *m = malloc(sizeof *m + len + 1);
		if (!m) {
			detail(c, "out of memory");
			return fail(c, FM_ESYS);
		}
		m->next = NULL;
		strcpy(m->from, id);
		m->len = len;
		memcpy(m->data, pl, len);
		if (c->qtail)
			c->qtail->next = m;
		else
			c->qhead = m;
		c->qtail = m;
		c->qlen++;
		return 0;
	}
	case T_RESULT:
	case T_ERROR: {
		unsigned tl = end - body >= 4 ? get16(body + 2) : 0;
		if (end - body < 4 || tl > MAX_TEXT || (size_t)(end - body) != 4 + tl) {
			detail(c, "protocol error: %s: text length does not match the packet",
			       p[3] == T_RESULT ? "RESULT" : "ERROR");
			return fail(c, FM_EPROTO);
		}
		if (p[3] == T_ERROR) {
			detail(c, "protocol error: node reports code %u: %.*s", get16(body), (int)tl, (const char *)body + 4);
			return fail(c, FM_EPROTO);
		}
		struct outcome *o = find(c, seq, NULL);
		if (!o || o->done) {
			detail(c, "protocol error: RESULT for message %u, which is not waiting for one", (unsigned)seq);
			return fail(c, FM_EPROTO);
		}
		o->done = 1;
		o->code = code_of(get16(body));
		memcpy(o->text, body + 4, tl);
		o->text[tl] = 0;
		return 0;
	}
	}
	detail(c, "protocol error: unknown packet type %d", p[3]);
	return fail(c, FM_EPROTO);
}

int fm_connect(fm_conn **out) { return fm_connect_path(NULL, out); }

int fm_connect_path(const char *path, fm_conn **out)
{
	*out = NULL;
	if (!path)
		path = getenv(FM_PATH_ENV);
	if (!path || !*path)
		path = FM_DEFAULT_PATH;
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sa.sun_path) {
		errno = ENAMETOOLONG;
		return FM_ESYS;
	}
	strcpy(sa.sun_path, path);
	fm_conn *c = calloc(1, sizeof *c);
	if (!c || !(c->buf = malloc(MAX_PACKET))) {
		free(c);
		errno = ENOMEM;
		return FM_ESYS;
	}
	c->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		int e = errno;
		fm_close(c);
		errno = e;
		return FM_ESYS;
	}
	int n = read_packet(c, 1);
	int rc = n < 0 ? n : 0;
	if (!rc) {
		const unsigned char *body = c->buf + HDR, *end = c->buf + n;
		const unsigned char *e = (c->buf[3] == T_HELLO && end - body >= 5) ? get_id(body + 4, end, c->id) : NULL;
		if (!e || e != end || !valid_id(c->id))
			rc = FM_EPROTO;
		else {
			c->max_payload = get32(body);
			if (c->max_payload > FM_MAX_PAYLOAD)
				c->max_payload = FM_MAX_PAYLOAD;
		}
	}
	if (rc) {
		fm_close(c);
		return rc;
	}
	*out = c;
	return 0;
}

const char *fm_id(const fm_conn *c) { return c->id; }
int fm_fd(const fm_conn *c) { return c->fd; }
int fm_pending(const fm_conn *c) { return c->qlen; }
const char *fm_detail(const fm_conn *c) { return c->detail; }

static int do_send(fm_conn *c, const char *to, const void *buf, size_t len, uint32_t *seq, int block)
{
	if (c->broken)
		return c->broken;
	if (!valid_id(to)) {
		detail(c, "bad id \"%.255s\": want <job>.<pid>", to);
		return FM_EBADID;
	}
	if (len > c->max_payload) {
		detail(c, "send to %s: payload of %zu bytes, limit %zu", to, len, c->max_payload);
		return FM_ETOOBIG;
	}
	struct outcome *o = calloc(1, sizeof *o);
	if (!o) {
		errno = ENOMEM;
		return FM_ESYS;
	}
	if (++c->seq == 0)
		c->seq = 1;
	size_t tl = strlen(to);
	unsigned char hdr[HDR + 1 + FM_MAX_ID];
	hdr[0] = 'F'; hdr[1] = 'M'; hdr[2] = VERSION; hdr[3] = T_SEND;
	put32(hdr + 4, c->seq);
	hdr[8] = (unsigned char)tl;
	memcpy(hdr + 9, to, tl);
	struct iovec iov[2] = { { hdr, HDR + 1 + tl }, { (void *)buf, len } };
	struct msghdr mh;
	memset(&mh, 0, sizeof mh);
	mh.msg_iov = iov;
	mh.msg_iovlen = 2;
	ssize_t n;
	do
		n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | (block ? 0 : MSG_DONTWAIT));
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		free(o);
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return FM_EAGAIN;
		if (errno == EPIPE || errno == ECONNRESET) {
			detail(c, "send: the node closed the connection");
			return fail(c, FM_ECLOSED);
		}
		detail(c, "sendmsg: %s", strerror(errno));
		return FM_ESYS;
	}
	o->seq = c->seq;
	o->next = c->outcomes;
	c->outcomes = o;
	*seq = c->seq;
	return 0;
}

int fm_send_nb(fm_conn *c, const char *to, const void *buf, size_t len, uint32_t *seq)
{
	return do_send(c, to, buf, len, seq, 0);
}

int fm_send(fm_conn *c, const char *to, const void *buf, size_t len)
{
	uint32_t seq;
	int rc = do_send(c, to, buf, len, &seq, 1);
	return rc ? rc : fm_result(c, seq, 1);
}

int fm_result(fm_conn *c, uint32_t seq, int block)
{
	for (;;) {
		struct outcome **link;
		struct outcome *o = find(c, seq, &link);
		if (!o)
			return FM_ENOSEQ;
		if (o->done || c->broken) {
			int rc = o->done ? o->code : c->broken;
			if (o->done && rc)
				detail(c, "%s", o->text);
			*link = o->next;
			free(o);
			return rc;
		}
		int r = read_one(c, block);
		if (r == FM_EAGAIN)
			return FM_EAGAIN;
	}
}

static int recv_common(fm_conn *c, char from[FM_ID_BUF], void *buf, size_t cap, size_t *len, int block)
{
	while (!c->qhead) {
		if (c->broken)
			return c->broken;
		int r = read_one(c, block);
		if (r == FM_EAGAIN)
			return FM_EAGAIN;
	}
	struct msgq *m = c->qhead;
	*len = m->len;
	if (m->len > cap)
		return FM_ESPACE;
	strcpy(from, m->from);
	memcpy(buf, m->data, m->len);
	c->qhead = m->next;
	if (!c->qhead)
		c->qtail = NULL;
	c->qlen--;
	free(m);
	return 0;
}

int fm_recv(fm_conn *c, char from[FM_ID_BUF], void *buf, size_t cap, size_t *len)
{
	return recv_common(c, from, buf, cap, len, 1);
}

int fm_recv_nb(fm_conn *c, char from[FM_ID_BUF], void *buf, size_t cap, size_t *len)
{
	return recv_common(c, from, buf, cap, len, 0);
}

const char *fm_strerror(int code)
{
	switch (code) {
	case FM_OK: return "ok";
	case FM_EAGAIN: return "would block";
	case FM_ETOOBIG: return "payload too big (over 64 KiB)";
	case FM_EUNKNOWNID: return "unknown id";
	case FM_EENDED: return "receiver ended";
	case FM_EUNREACHABLE: return "receiver unreachable";
	case FM_EMALFORMED: return "malformed packet";
	case FM_EDENIED: return "denied";
	case FM_EUNDELIVERABLE: return "message not delivered";
	case FM_EPROTO: return "message endpoint protocol error";
	case FM_ECLOSED: return "message endpoint closed";
	case FM_ESYS: return "system call failed";
	case FM_EBADID: return "bad id";
	case FM_ESPACE: return "buffer too small";
	case FM_ENOSEQ: return "no outcome pending for that sequence number";
	}
	return "unknown error";
}

void fm_close(fm_conn *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	while (c->qhead) {
		struct msgq *m = c->qhead;
		c->qhead = m->next;
		free(m);
	}
	while (c->outcomes) {
		struct outcome *o = c->outcomes;
		c->outcomes = o->next;
		free(o);
	}
	free(c->buf);
	free(c);
}
