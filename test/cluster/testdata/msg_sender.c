/* A job's process that sends numbered messages to one or more receivers
 * through its node's message endpoint, each a blocking send (it returns
 * once the receiver's node has the message), until a message "stop"
 * comes to it; then it sends "end N" to each receiver and prints
 * "sent N". Any refused message is printed "error ..." and ends it with
 * status 1.
 *
 *	msg_sender INTERVAL_US ID...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ferrymsg.h"

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
	printf("sent %ld\n", i);
	fm_close(c);
	return 0;
}
