/* rootcheck: a library to preload (LD_PRELOAD) that says so when it is
 * loaded into a process running as root: a caller's environment must never
 * reach a process of the node that runs as root. */
#include <string.h>
#include <unistd.h>

__attribute__((constructor)) static void check(void) {
	if (geteuid() == 0) {
		const char *m = "PRELOADED AS ROOT\n";
		write(2, m, strlen(m));
	}
}
