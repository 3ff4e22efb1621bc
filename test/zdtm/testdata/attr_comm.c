/*
 * attr_comm: the process name set with prctl(PR_SET_NAME). After restore
 * PR_GET_NAME and /proc/self/comm give it back (not the executable name).
 */
#include "zdtm.h"
#include <sys/prctl.h>

#define NAME "zdtm-renamed"

int main(void)
{
	char name[17] = { 0 }, comm[64];

	zdtm_init();
	if (prctl(PR_SET_NAME, NAME, 0, 0, 0))
		zdtm_die("PR_SET_NAME");

	zdtm_ready();
	zdtm_wait_go();

	prctl(PR_GET_NAME, name, 0, 0, 0);
	CHECK(strcmp(name, NAME) == 0, "PR_GET_NAME \"%s\", want \"%s\"", name, NAME);
	if (zdtm_read_file("/proc/self/comm", comm, sizeof(comm)) < 0)
		fail("read /proc/self/comm: %s", strerror(errno));
	else {
		comm[strcspn(comm, "\n")] = 0;
		CHECK(strcmp(comm, NAME) == 0, "/proc/self/comm \"%s\", want \"%s\"", comm, NAME);
	}
	zdtm_finish();
}
