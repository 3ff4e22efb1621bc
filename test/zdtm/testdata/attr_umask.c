/*
 * attr_umask: the file mode creation mask (027). After restore umask()
 * reads it back and a file created 0666 gets mode 0640.
 */
#include "zdtm.h"

int main(void)
{
	char buf[64];
	struct stat st;
	mode_t m;
	int fd;

	zdtm_init();
	umask(027);

	zdtm_ready();
	zdtm_wait_go();

	m = umask(027);
	CHECK(m == 027, "umask %03o, want 027", m);
	if (zdtm_status_field("/proc/self/status", "Umask", buf, sizeof(buf)) == 0)
		CHECK(strcmp(buf, "0027") == 0, "Umask in status %s, want 0027", buf);
	unlink("umask-probe");
	fd = open("umask-probe", O_WRONLY | O_CREAT | O_EXCL, 0666);
	if (fd < 0 || fstat(fd, &st))
		fail("create umask-probe: %s", strerror(errno));
	else
		CHECK((st.st_mode & 0777) == 0640, "new file mode %03o, want 640", st.st_mode & 0777);
	zdtm_finish();
}
