/* fm_test: ferrymsg against msgtest's fake endpoint, driven by
 * clients/c/c_test.go (which sets FERRY_MSG_SOCKET and the rules for
 * the ids used here). Prints "POLL <id>" before it polls, so that the driver
 * injects a message only then; prints PASS at the end. */
#define _GNU_SOURCE
#include "ferrymsg.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;

#define CHECK(cond, ...)                                              \
	do {                                                              \
		if (!(cond)) {                                                \
			fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);           \
			fprintf(stderr, __VA_ARGS__);                             \
			fprintf(stderr, "\n");                                    \
			failures++;                                               \
		}                                                             \
	} while (0)

#define WANT(call, code)                                                                      \
	do {                                                                                      \
		int rc_ = (call);                                                                     \
		CHECK(rc_ == (code), "%s = %d (%s: %s), want %d (%s)", #call, rc_, fm_strerror(rc_), \
		      fm_detail(c), (code), fm_strerror(code));                                       \
	} while (0)

static unsigned char big[FM_MAX_PAYLOAD + 1], got[FM_MAX_PAYLOAD];

int main(void)
{
	fm_conn *c;
	int rc = fm_connect(&c);
	if (rc) {
		fprintf(stderr, "fm_connect: %s\n", fm_strerror(rc));
		return 1;
	}
	char self[FM_ID_BUF], from[FM_ID_BUF];
	snprintf(self, sizeof self, "t1-1.%d", (int)getpid());
	CHECK(strcmp(fm_id(c), self) == 0, "fm_id = %s, want %s", fm_id(c), self);
	size_t len;

	/* Nothing queued. */
	WANT(fm_recv_nb(c, from, got, sizeof got, &len), FM_EAGAIN);

	/* Round trip to itself. */
	WANT(fm_send(c, self, "hello", 5), FM_OK);
	WANT(fm_recv(c, from, got, sizeof got, &len), FM_OK);
	CHECK(strcmp(from, self) == 0 && len == 5 && memcmp(got, "hello", 5) == 0, "recv: from %s, %zu bytes", from, len);

	/* 64 KiB exactly; a small buffer first keeps the message. */
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (unsigned char)(i * 7);
	WANT(fm_send(c, self, big, FM_MAX_PAYLOAD), FM_OK);
	WANT(fm_recv(c, from, got, 10, &len), FM_ESPACE);
	CHECK(len == FM_MAX_PAYLOAD, "FM_ESPACE: len %zu, want %d", len, FM_MAX_PAYLOAD);
	WANT(fm_recv(c, from, got, sizeof got, &len), FM_OK);
	CHECK(len == FM_MAX_PAYLOAD && memcmp(got, big, len) == 0, "64 KiB: %zu bytes or content differs", len);

	/* 64 KiB + 1 is refused before sending. */
	WANT(fm_send(c, self, big, FM_MAX_PAYLOAD + 1), FM_ETOOBIG);

	/* The node's refusals, with its text. */
	WANT(fm_send(c, "nobody.1", "x", 1), FM_EUNKNOWNID);
	CHECK(strstr(fm_detail(c), "nobody.1") != NULL, "detail %s does not name the id", fm_detail(c));
	WANT(fm_send(c, "ended.1", "x", 1), FM_EENDED);
	WANT(fm_send(c, "far.1", "x", 1), FM_EUNREACHABLE);
	WANT(fm_send(c, "nodot", "x", 1), FM_EBADID);

	/* Non-blocking send; the outcome collected later. */
	uint32_t seq;
	WANT(fm_send_nb(c, self, "nb", 2, &seq), FM_OK);
	WANT(fm_result(c, seq, 1), FM_OK);
	WANT(fm_result(c, seq, 1), FM_ENOSEQ);
	CHECK(fm_pending(c) == 1, "fm_pending = %d, want 1 (read by fm_result)", fm_pending(c));
	WANT(fm_recv_nb(c, from, got, sizeof got, &len), FM_OK);
	CHECK(len == 2 && memcmp(got, "nb", 2) == 0, "recv_nb after send_nb: %zu bytes", len);

	/* Poll wakes when a message arrives. */
	struct pollfd pfd = { fm_fd(c), POLLIN, 0 };
	CHECK(poll(&pfd, 1, 0) == 0, "fd polls readable with nothing sent");
	printf("POLL %s\n", fm_id(c));
	fflush(stdout);
	pfd.revents = 0;
	CHECK(poll(&pfd, 1, 10000) == 1 && (pfd.revents & POLLIN), "poll did not wake");
	WANT(fm_recv_nb(c, from, got, sizeof got, &len), FM_OK);
	CHECK(strcmp(from, "n2-1.7") == 0 && len == 4 && memcmp(got, "woke", 4) == 0, "after poll: from %s, %zu bytes", from, len);
	WANT(fm_recv_nb(c, from, got, sizeof got, &len), FM_EAGAIN);

	/* A malformed packet from the node: a clear error, then unusable. */
	WANT(fm_send(c, "garbage.1", "x", 1), FM_EPROTO);
	CHECK(strstr(fm_detail(c), "magic") != NULL, "detail %s does not say what was wrong", fm_detail(c));
	WANT(fm_send(c, self, "x", 1), FM_EPROTO);

	fm_close(c);
	if (failures) {
		fprintf(stderr, "%d failures\n", failures);
		return 1;
	}
	printf("PASS\n");
	return 0;
}
