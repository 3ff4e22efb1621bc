/*
 * fd_eventfd: eventfds with counts. E1 (fd 34) holds 0x123456789,
 * non-blocking; E2 (fd 35) is EFD_SEMAPHORE with count 3. After restore
 * the fdinfo count and flags are the same, E1 reads the whole count then
 * EAGAIN, E2 reads 1 three times then EAGAIN.
 */
#include "zdtm.h"
#include <sys/eventfd.h>

int main(void)
{
	char cnt1[64], cnt2[64], v[64];
	uint64_t x;
	int e1, e2, fl1, fl2, i;

	zdtm_init();
	e1 = eventfd(0, EFD_NONBLOCK);
	e2 = eventfd(0, EFD_SEMAPHORE | EFD_NONBLOCK | EFD_CLOEXEC);
	if (e1 < 0 || e2 < 0 || dup2(e1, 34) != 34 || dup3(e2, 35, O_CLOEXEC) != 35)
		zdtm_die("eventfd");
	close(e1);
	close(e2);
	x = 0x123456789ULL;
	if (write(34, &x, 8) != 8)
		zdtm_die("write e1");
	x = 3;
	if (write(35, &x, 8) != 8)
		zdtm_die("write e2");
	fl1 = fcntl(34, F_GETFL);
	fl2 = fcntl(35, F_GETFL);
	if (zdtm_fdinfo_field(34, "eventfd-count", cnt1, sizeof(cnt1)) ||
	    zdtm_fdinfo_field(35, "eventfd-count", cnt2, sizeof(cnt2)))
		zdtm_die("fdinfo");

	zdtm_ready();
	zdtm_wait_go();

	CHECK(zdtm_fdinfo_field(34, "eventfd-count", v, sizeof(v)) == 0 && strcmp(v, cnt1) == 0, "fd 34 count %s, want %s",
	      v, cnt1);
	CHECK(zdtm_fdinfo_field(35, "eventfd-count", v, sizeof(v)) == 0 && strcmp(v, cnt2) == 0, "fd 35 count %s, want %s",
	      v, cnt2);
	CHECK(fcntl(34, F_GETFL) == fl1 && fcntl(35, F_GETFL) == fl2, "flags %#o %#o, want %#o %#o", fcntl(34, F_GETFL),
	      fcntl(35, F_GETFL), fl1, fl2);
	CHECK(fcntl(35, F_GETFD) == FD_CLOEXEC, "fd 35 lost FD_CLOEXEC");
	CHECK(read(34, &x, 8) == 8 && x == 0x123456789ULL, "fd 34 read %#lx", (unsigned long)x);
	CHECK(read(34, &x, 8) == -1 && errno == EAGAIN, "fd 34 not empty after reading the count");
	for (i = 0; i < 3; i++)
		CHECK(read(35, &x, 8) == 8 && x == 1, "semaphore read %d: %lu (%s)", i, (unsigned long)x, strerror(errno));
	CHECK(read(35, &x, 8) == -1 && errno == EAGAIN, "semaphore eventfd had more than 3");
	zdtm_finish();
}
