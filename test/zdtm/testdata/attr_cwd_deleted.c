/*
 * attr_cwd_deleted: the working directory was removed while the program
 * stays in it. It chdirs into "gone dir/inner" (mode 0751, owner
 * 4321:4322), then removes both directories. After restore the cwd is
 * still a deleted directory with that mode and owner: /proc/self/cwd
 * reads "<path> (deleted)", "." has no links, files cannot be created in
 * it, and neither name is back in the file system.
 */
#include "zdtm.h"

int main(void)
{
	char top[4096], want[4200], link[4200];
	struct stat st;
	ssize_t n;

	zdtm_init();
	if (!getcwd(top, sizeof(top)))
		zdtm_die("getcwd");
	if (mkdir("gone dir", 0755) || mkdir("gone dir/inner", 0700) || chdir("gone dir/inner"))
		zdtm_die("mkdir/chdir");
	if (chmod(".", 0751) || chown(".", 4321, 4322))
		zdtm_die("chmod/chown");
	snprintf(want, sizeof(want), "%s/gone dir/inner (deleted)", top);
	if (rmdir("../inner") || rmdir("../../gone dir"))
		zdtm_die("rmdir");

	zdtm_ready();
	zdtm_wait_go();

	n = readlink("/proc/self/cwd", link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	CHECK(strcmp(link, want) == 0, "cwd links to \"%s\", want \"%s\"", link, want);
	if (stat(".", &st))
		fail("stat .: %s", strerror(errno));
	else {
		CHECK(S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0751, "\".\" mode %o, want directory 0751", st.st_mode);
		CHECK(st.st_nlink == 0, "\".\" has %lu links, want 0", (unsigned long)st.st_nlink);
		CHECK(st.st_uid == 4321 && st.st_gid == 4322, "\".\" owner %u:%u, want 4321:4322", st.st_uid, st.st_gid);
	}
	CHECK(open("newfile", O_WRONLY | O_CREAT, 0644) == -1 && errno == ENOENT,
	      "creating a file in the deleted cwd did not fail with ENOENT");
	CHECK(chdir(top) == 0, "chdir back to %s: %s", top, strerror(errno));
	CHECK(access("gone dir", F_OK) == -1, "\"gone dir\" came back to the file system");
	zdtm_finish();
}
