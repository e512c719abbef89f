/* notify: a datagram to $NOTIFY_SOCKET (a path, or '@' for the abstract namespace). */
#include "notify.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int notify_send(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t plen;
	int fd, rc;

	if (!path || !*path)
		return 0;
	plen = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || plen >= sizeof sa.sun_path)
		return -1;
	memcpy(sa.sun_path, path, plen);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/*
	 * Never waits: the core loop sends STATUS= every few seconds, and a datagram socket
	 * whose reader has stopped reading (a hung service manager, a test harness that
	 * only waited for READY=1) takes net.unix.max_dgram_qlen (10) before a blocking
	 * send would hold the loop — polling, delivery, the watchdog — for good. A state
	 * that finds the queue full is not sent (-1); the next one says the same.
	 */
	rc = sendto(fd, state, strlen(state), MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&sa,
		    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen)) < 0 ? -1 : 1;
	close(fd);
	return rc;
}

int64_t notify_watchdog_ms(void)
{
	const char *usec = getenv("WATCHDOG_USEC");
	const char *pid = getenv("WATCHDOG_PID");
	char *end;
	long long v;

	if (!usec)
		return 0;
	if (pid && strtol(pid, NULL, 10) != (long)getpid())
		return 0;
	v = strtoll(usec, &end, 10);
	if (*end || v <= 0)
		return 0;
	return v / 1000;
}
