/*
 * fd_tcp_listen: a TCP socket listening on 127.0.0.1 (ephemeral port) at
 * fd 10. Used by the harness to check that `ferry dump` refuses it (TCP is
 * not supported) and leaves the process untouched: after go the socket
 * still listens on the same port and accepts a connection from ourselves.
 */
#include "zdtm.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define LFD 10

int main(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET }, b;
	socklen_t l = sizeof(a);
	int fd, c, s;

	zdtm_init();
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 4) || dup2(fd, LFD) != LFD)
		zdtm_die("listen on 127.0.0.1");
	close(fd);
	if (getsockname(LFD, (struct sockaddr *)&a, &l))
		zdtm_die("getsockname");
	zdtm_log("listening on 127.0.0.1:%d at fd %d", ntohs(a.sin_port), LFD);

	zdtm_ready();
	zdtm_wait_go();

	l = sizeof(b);
	CHECK(getsockname(LFD, (struct sockaddr *)&b, &l) == 0 && b.sin_port == a.sin_port &&
		      b.sin_addr.s_addr == htonl(INADDR_LOOPBACK),
	      "fd %d is not bound to 127.0.0.1:%d any more", LFD, ntohs(a.sin_port));
	c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a))) {
		fail("connect to 127.0.0.1:%d: %s", ntohs(a.sin_port), strerror(errno));
	} else {
		s = accept(LFD, NULL, NULL);
		CHECK(s >= 0, "accept: %s", strerror(errno));
		close(s);
	}
	close(c);
	zdtm_finish();
}
