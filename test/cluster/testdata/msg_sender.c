/* A job's process that sends numbered messages to one or more receivers
 * through its node's message endpoint, each a blocking send (it returns
 * once the receiver's node has the message), until a message "stop"
 * comes to it; then it sends "end N" to each receiver and prints
 * "sent N". The receivers send it "ack K" now and then (K = 25, 50, …:
 * how many they got) and "final K" at the end; it checks that each
 * receiver's acks come in order, none missing or repeated, up to its
 * final, and prints "acks ID K". Any refused message or an ack out of
 * order is printed "error ..." and ends it with status 1.
 *
 *	msg_sender INTERVAL_US ID...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ferrymsg.h"

/* check_ack takes one message of a receiver: "ack K" must be its last
 * ack + 25, "final K" its last ack. */
static int check_ack(int argc, char **argv, const char *from, const char *in, long *acked, int *final) {
	for (int k = 2; k < argc; k++) {
		if (strcmp(from, argv[k]) != 0)
			continue;
		long v;
		if (sscanf(in, "ack %ld", &v) == 1) {
			if (v != acked[k - 2] + 25) {
				printf("error ack %ld from %s after %ld\n", v, from, acked[k - 2]);
				return -1;
			}
			acked[k - 2] = v;
			return 0;
		}
		if (sscanf(in, "final %ld", &v) == 1) {
			if (v != acked[k - 2]) {
				printf("error final %ld from %s after ack %ld\n", v, from, acked[k - 2]);
				return -1;
			}
			final[k - 2] = 1;
			return 0;
		}
	}
	printf("error unexpected message %s from %s\n", in, from);
	return -1;
}

int main(int argc, char **argv) {
	if (argc < 3) {
		fprintf(stderr, "usage: msg_sender INTERVAL_US ID...\n");
		return 2;
	}
	long interval = atol(argv[1]);
	fm_conn *c;
	int rc = fm_connect(&c);
	if (rc != 0) {
		printf("error connect: %s\n", fm_strerror(rc));
		return 1;
	}
	printf("ready %s\n", fm_id(c));
	fflush(stdout);
	char buf[64], from[FM_ID_BUF], in[64];
	long i;
	long acked[64] = {0};
	int final[64] = {0};
	if (argc - 2 > 64) {
		fprintf(stderr, "at most 64 receivers\n");
		return 2;
	}
	for (i = 1;; i++) {
		for (int k = 2; k < argc; k++) {
			int n = snprintf(buf, sizeof buf, "%ld", i);
			rc = fm_send(c, argv[k], buf, (size_t)n);
			if (rc != 0) {
				printf("error %ld to %s: %s: %s\n", i, argv[k], fm_strerror(rc), fm_detail(c));
				return 1;
			}
		}
		size_t len;
		rc = fm_recv_nb(c, from, in, sizeof in - 1, &len);
		if (rc == 0) {
			in[len] = 0;
			if (strcmp(in, "stop") == 0)
				break;
			if (check_ack(argc, argv, from, in, acked, final) != 0)
				return 1;
		} else if (rc != FM_EAGAIN) {
			printf("error recv: %s: %s\n", fm_strerror(rc), fm_detail(c));
			return 1;
		}
		if (interval > 0)
			usleep((useconds_t)interval);
	}
	for (int k = 2; k < argc; k++) {
		int n = snprintf(buf, sizeof buf, "end %ld", i);
		rc = fm_send(c, argv[k], buf, (size_t)n);
		if (rc != 0) {
			printf("error end to %s: %s: %s\n", argv[k], fm_strerror(rc), fm_detail(c));
			return 1;
		}
	}
	/* The receivers' last acks, then their finals. */
	for (;;) {
		int all = 1;
		for (int k = 2; k < argc; k++)
			all = all && final[k - 2];
		if (all)
			break;
		size_t len;
		rc = fm_recv(c, from, in, sizeof in - 1, &len);
		if (rc != 0) {
			printf("error recv: %s: %s\n", fm_strerror(rc), fm_detail(c));
			return 1;
		}
		in[len] = 0;
		if (check_ack(argc, argv, from, in, acked, final) != 0)
			return 1;
	}
	for (int k = 2; k < argc; k++)
		printf("acks %s %ld\n", argv[k], acked[k - 2]);
	printf("sent %ld\n", i);
	fm_close(c);
	return 0;
}
