/*
 * fdio: waiting reads and writes on a non-blocking descriptor (drivers/fdio.h). Owns no
 * descriptor: it works on the one its caller passes and never closes it. Every wait is
 * bounded by the caller's deadline; it never select()s (descriptors may be past 1023).
 */
#include "fdio.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "mberr.h"

static int fdio_poll(int fd, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd pf = { .fd = fd, .events = events };
		int64_t left = deadline - clock_mono_ms();
		int rc;

		if (left < 0)
			left = 0;
		rc = poll(&pf, 1, (int)(left > 60000 ? 60000 : left));
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc > 0)
			return 1;
		if (rc == 0 && clock_mono_ms() < deadline)
			continue; /* a slice of a long wait */
		return 0;
	}
}

int fdio_wait(const struct fdio_waiter *w, int fd, short events, int64_t deadline)
{
	if (w != NULL && w->wait != NULL)
		return w->wait(w->ctx, fd, events, deadline);
	return fdio_poll(fd, events, deadline);
}

static int fdio_code(int e)
{
	return e == ECONNRESET || e == EPIPE ? MBE_CLOSED : MBE_IO;
}

int fdio_write_all(const struct fdio_waiter *w, int fd, bool is_socket, const uint8_t *buf,
		   size_t n, int64_t deadline)
{
	size_t off = 0;

	while (off < n) {
		ssize_t k = is_socket ? send(fd, buf + off, n - off, MSG_NOSIGNAL | MSG_DONTWAIT)
				      : write(fd, buf + off, n - off);
		if (k >= 0) {
			off += (size_t)k;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return fdio_code(errno);
		int rc = fdio_wait(w, fd, POLLOUT, deadline);
		if (rc != 1)
			return rc == 0 ? MBE_TIMEOUT : rc;
	}
	return 0;
}

int fdio_read_all(const struct fdio_waiter *w, int fd, uint8_t *buf, size_t n,
		  int64_t deadline)
{
	size_t got = 0;

	while (got < n) {
		int rc = fdio_wait(w, fd, POLLIN, deadline);
		ssize_t k;

		if (rc != 1)
			return rc == 0 ? MBE_TIMEOUT : rc;
		k = read(fd, buf + got, n - got);
		if (k == 0)
			return MBE_CLOSED;
		if (k < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			return fdio_code(errno);
		}
		got += (size_t)k;
	}
	return 0;
}
