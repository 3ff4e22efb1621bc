/*
 * fd_unix_listen_pending_data: a listening unix stream socket (fd 10)
 * with a connection pending in its backlog (not accepted) whose client end
 * (fd 11) is ours and has already written "ping", which sits in a socket
 * no system call reads until accept. ferry refuses it (naming fd 11 and
 * the unix socket): the process must be left untouched: after "go" the
 * connection is still acceptable and data flows both ways.
 */
#include "zdtm.h"
#include <sys/socket.h>
#include <sys/un.h>

int main(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char cwd[256], buf[8];
	int s, c, a;

	zdtm_init();
	if (!getcwd(cwd, sizeof(cwd)) || strlen(cwd) > 100)
		zdtm_die("work dir path too long for sun_path");
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s/p.sock", cwd);
	unlink(sa.sun_path);
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) || listen(s, 3) || dup2(s, 10) != 10)
		zdtm_die("listen on %s", sa.sun_path);
	close(s);
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof(sa)) || dup2(c, 11) != 11)
		zdtm_die("connect");
	close(c);
	zdtm_write_all(11, "ping", 4);

	zdtm_ready();
	zdtm_wait_go();

	fcntl(10, F_SETFL, O_NONBLOCK);
	a = accept(10, NULL, NULL);
	CHECK(a >= 0, "accept: %s", strerror(errno));
	if (a >= 0) {
		fcntl(a, F_SETFL, O_NONBLOCK);
		fcntl(11, F_SETFL, O_NONBLOCK);
		CHECK(read(a, buf, 8) == 4 && memcmp(buf, "ping", 4) == 0, "client -> server");
		CHECK(write(a, "pong", 4) == 4 && read(11, buf, 8) == 4 && memcmp(buf, "pong", 4) == 0, "server -> client");
	}
	zdtm_finish();
}
