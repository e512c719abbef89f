/*
 * netconn: resolving and connecting, non-blocking (drivers/netconn.h). Owns the socket
 * and the address list of a connect in progress until the caller takes the socket. It
 * never blocks but in getaddrinfo of a host name and, in netconn_open, in its caller's
 * waiter; it never reads from or writes to a connection.
 */
#include "netconn.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int netconn_resolve(struct netconn *nc, const char *host, uint16_t port, char *err,
		    size_t errlen)
{
	struct addrinfo hints;
	char serv[8];
	int rc;

	netconn_clear(nc);
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	/* an address (the usual case on a plant network) is parsed, never looked up */
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	snprintf(serv, sizeof serv, "%u", (unsigned)port);
	rc = getaddrinfo(host, serv, &hints, &nc->addrs);
	if (rc == EAI_NONAME) {
		/* a host name: the resolver, which may block (see netconn.h) */
		hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
		rc = getaddrinfo(host, serv, &hints, &nc->addrs);
	}
	if (rc != 0) {
		nc->addrs = NULL;
		snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
		return -1;
	}
	nc->next = nc->addrs;
	nc->err = ECONNREFUSED;
	return 0;
}

int netconn_try(struct netconn *nc)
{
	while (nc->next != NULL) {
		struct addrinfo *a = nc->next;
		int one = 1;
		int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

		nc->next = a->ai_next;
		if (fd < 0) {
			nc->err = errno;
			continue;
		}
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		/* even on loopback, completion is learnt from writability and SO_ERROR: one
		 * path for every caller */
		if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
			nc->err = errno;
			close(fd);
			continue;
		}
		nc->fd = fd;
		return 0;
	}
	return -1;
}

void netconn_drop(struct netconn *nc, int e)
{
	if (nc->fd >= 0)
		close(nc->fd);
	nc->fd = -1;
	nc->err = e;
}

int netconn_done(struct netconn *nc)
{
	int soerr = 0;
	socklen_t len = sizeof soerr;

	if (getsockopt(nc->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
		soerr = errno;
	if (soerr != 0)
		netconn_drop(nc, soerr);
	return soerr;
}

int netconn_take(struct netconn *nc)
{
	int fd = nc->fd;

	nc->fd = -1;
	netconn_clear(nc);
	return fd;
}

void netconn_clear(struct netconn *nc)
{
	if (nc->fd >= 0)
		close(nc->fd);
	nc->fd = -1;
	if (nc->addrs != NULL)
		freeaddrinfo(nc->addrs);
	nc->addrs = nc->next = NULL;
}

void netconn_strerror(char *buf, size_t len, const char *host, uint16_t port, int e)
{
	snprintf(buf, len, "cannot connect to %s port %u: %s", host, (unsigned)port,
		 e == ETIMEDOUT ? "no answer (timed out)" : strerror(e));
}

int netconn_open(const char *host, uint16_t port, int64_t deadline, const struct fdio_waiter *w,
		 int *fd, char *err, size_t errlen)
{
	struct netconn nc = NETCONN_INIT;
	int rc;

	if (netconn_resolve(&nc, host, port, err, errlen) != 0)
		return EHOSTUNREACH;
	while (netconn_try(&nc) == 0) {
		rc = fdio_wait(w, nc.fd, POLLOUT, deadline);
		if (rc != 1) {
			/* the deadline holds for every address: none is left time to try */
			netconn_clear(&nc);
			if (rc < 0)
				return rc;
			netconn_strerror(err, errlen, host, port, ETIMEDOUT);
			return ETIMEDOUT;
		}
		if (netconn_done(&nc) == 0) {
			*fd = netconn_take(&nc);
			return 0;
		}
	}
	rc = nc.err;
	netconn_clear(&nc);
	netconn_strerror(err, errlen, host, port, rc);
	return rc;
}
