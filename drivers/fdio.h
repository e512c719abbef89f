/*
 * fdio: blocking I/O with a deadline on a non-blocking descriptor (a socket or a tty),
 * for the callers that may wait: a serial line's thread (serpoll), which must still
 * hear that it is to stop, and sluicectl probe's client (mbclient), which has nothing
 * else to do. tcpoll never waits here: its sockets are in its epoll loop.
 *
 * A caller that must be interruptible passes a waiter; the functions here hand its own
 * codes back unchanged.
 */
#ifndef SLUICE_FDIO_H
#define SLUICE_FDIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fdio_waiter {
	/* Wait for events (POLLIN, POLLOUT) on fd until deadline (monotonic ms): 1 when
	 * ready, 0 at the deadline, or a negative code of the caller's (say, "stopping"). */
	int (*wait)(void *ctx, int fd, short events, int64_t deadline);
	void *ctx;
};

/* w->wait, or with w NULL a plain poll(): 1 ready, 0 at the deadline (or when poll()
 * itself fails), or the waiter's negative code. */
int fdio_wait(const struct fdio_waiter *w, int fd, short events, int64_t deadline);

/* Write all of buf before deadline (send() without SIGPIPE on a socket, write() on a
 * tty): 0, MBE_TIMEOUT, MBE_CLOSED (reset, broken pipe), MBE_IO, or the waiter's code. */
int fdio_write_all(const struct fdio_waiter *w, int fd, bool is_socket, const uint8_t *buf,
		   size_t n, int64_t deadline);

/* Read exactly n bytes before deadline: 0, MBE_TIMEOUT, MBE_CLOSED (the peer closed or
 * reset), MBE_IO, or the waiter's code. */
int fdio_read_all(const struct fdio_waiter *w, int fd, uint8_t *buf, size_t n,
		  int64_t deadline);

#endif
