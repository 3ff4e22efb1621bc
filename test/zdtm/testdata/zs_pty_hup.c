/*
 * zs_pty_hup: a pty slave held alone after its master was closed. The
 * program opens /dev/ptmx, unlocks it, opens the slave /dev/pts/N as fd 20
 * (O_RDWR|O_NOCTTY|O_NONBLOCK), clears ECHO on it, then closes the master:
 * the slave is hung up and its /dev/pts/N node is gone. Before ready it
 * records how fd 20 answers tcgetattr, read and write (EIO or 0 here).
 * ferry refuses it ("pty slave whose master was closed", fd 20): a node
 * made with its number would be a live terminal, not a hung-up one. The
 * process must be left untouched: after go fd 20 is the same character
 * device (the old rdev) and answers the three calls the same way.
 * Modelled on zdtm's pty01 and tty03 (a slave whose master is gone).
 */
#include "zdtm.h"
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <termios.h>

struct probe {
	int tc, tc_errno;
	ssize_t rd, wr;
	int rd_errno, wr_errno;
};

static void probe(struct probe *p)
{
	struct termios t;
	char buf[16];

	errno = 0;
	p->tc = tcgetattr(20, &t);
	p->tc_errno = p->tc ? errno : 0;
	errno = 0;
	p->rd = read(20, buf, sizeof(buf));
	p->rd_errno = p->rd < 0 ? errno : 0;
	errno = 0;
	p->wr = write(20, "x", 1);
	p->wr_errno = p->wr < 0 ? errno : 0;
}

int main(void)
{
	struct probe p0, p1;
	struct termios t;
	struct stat st0, st;
	char name[64];
	int m, s, n;

	zdtm_init();
	m = open("/dev/ptmx", O_RDWR | O_NOCTTY);
	if (m < 0 || grantpt(m) || unlockpt(m) || ioctl(m, TIOCGPTN, &n))
		zdtm_die("ptmx");
	snprintf(name, sizeof(name), "/dev/pts/%d", n);
	s = open(name, O_RDWR | O_NOCTTY | O_NONBLOCK);
	if (s < 0 || dup2(s, 20) != 20)
		zdtm_die("open %s", name);
	close(s);
	if (tcgetattr(20, &t))
		zdtm_die("tcgetattr");
	t.c_lflag &= ~ECHO;
	if (tcsetattr(20, TCSANOW, &t))
		zdtm_die("tcsetattr");
	if (fstat(20, &st0))
		zdtm_die("fstat");
	close(m);
	probe(&p0);
	if (p0.wr >= 0)
		zdtm_die("the hung-up slave takes writes");

	zdtm_ready();
	zdtm_wait_go();

	if (fstat(20, &st))
		fail("fstat fd 20: %s", strerror(errno));
	else
		CHECK(S_ISCHR(st.st_mode) && st.st_rdev == st0.st_rdev, "fd 20 is %o %u:%u, want chr %u:%u",
		      st.st_mode, major(st.st_rdev), minor(st.st_rdev), major(st0.st_rdev), minor(st0.st_rdev));
	probe(&p1);
	CHECK(p1.tc == p0.tc && p1.tc_errno == p0.tc_errno, "tcgetattr fd 20 = %d (%s), before the dump %d (%s)",
	      p1.tc, strerror(p1.tc_errno), p0.tc, strerror(p0.tc_errno));
	CHECK(p1.rd == p0.rd && p1.rd_errno == p0.rd_errno, "read fd 20 = %zd (%s), before the dump %zd (%s)",
	      p1.rd, strerror(p1.rd_errno), p0.rd, strerror(p0.rd_errno));
	CHECK(p1.wr == p0.wr && p1.wr_errno == p0.wr_errno, "write fd 20 = %zd (%s), before the dump %zd (%s)",
	      p1.wr, strerror(p1.wr_errno), p0.wr, strerror(p0.wr_errno));
	zdtm_finish();
}
