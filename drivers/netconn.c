/*
 * netconn: resolving and connecting, non-blocking (drivers/netconn.h). Owns the socket of
 * a connect in progress until the caller takes it, the last good addresses of a name,
 * and its lookups: each runs getaddrinfo on a detached thread of its own and is shared
 * by that thread and its netconn until both are done with it (a count of two), so that
 * one left behind by its deadline, or by its netconn, frees itself when it ends. It
 * never blocks but in netconn_open's waiter; it never reads from or writes to a
 * connection.
 *
 * Why a thread per lookup and not getaddrinfo_a: glibc's (2.36) makes valgrind report an
 * error at every exit once it has been used (its free_res frees pool rows it never
 * filled), and its workers linger a second after their last lookup; a lookup here is one
 * thread that ends with it. NETCONN_LOOKUPS_MAX bounds them, for the day a resolver
 * stops answering a site with many named devices.
 */
#include "netconn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define NC_LOOKUP_STACK (256 * 1024) /* getaddrinfo and the NSS modules need less */

struct netconn_lookup {
	atomic_int refs;             /* the thread's and the netconn's, while both hold it */
	atomic_bool done;            /* rc and res are set */
	int efd;                     /* eventfd: written when done */
	int rc;                      /* getaddrinfo's */
	int sys_errno;               /* its errno, for EAI_SYSTEM */
	struct addrinfo *res;
	int64_t started;             /* monotonic ms */
	uint16_t port;
	char host[];
};

static atomic_uint nc_running;

unsigned netconn_lookups_running(void)
{
	return atomic_load(&nc_running);
}

int64_t netconn_lookup_ms(int64_t timeout_ms)
{
	return timeout_ms > NETCONN_LOOKUP_MIN_MS ? timeout_ms : NETCONN_LOOKUP_MIN_MS;
}

static void nc_lookup_put(struct netconn_lookup *lk)
{
	if (atomic_fetch_sub(&lk->refs, 1) != 1)
		return;
	if (lk->res != NULL)
		freeaddrinfo(lk->res);
	close(lk->efd);
	free(lk);
}

static void *nc_lookup_main(void *arg)
{
	struct netconn_lookup *lk = arg;
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG,
	};
	char serv[8];
	uint64_t one = 1;

	snprintf(serv, sizeof serv, "%u", (unsigned)lk->port);
	lk->rc = getaddrinfo(lk->host, serv, &hints, &lk->res);
	lk->sys_errno = errno;
	if (lk->rc != 0)
		lk->res = NULL;
	atomic_store_explicit(&lk->done, true, memory_order_release);
	if (write(lk->efd, &one, sizeof one) < 0)
		log_warn("netconn: cannot signal the end of the lookup of %s", lk->host);
	nc_lookup_put(lk);
	atomic_fetch_sub(&nc_running, 1);
	return NULL;
}

/* Start looking host up: 0, or -1 with why filled. */
static int nc_lookup_start(struct netconn *nc, const char *host, uint16_t port, char *why,
			   size_t whylen)
{
	size_t hl = strlen(host);
	struct netconn_lookup *lk;
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t th;
	int rc;

	if (atomic_fetch_add(&nc_running, 1) >= NETCONN_LOOKUPS_MAX) {
		atomic_fetch_sub(&nc_running, 1);
		snprintf(why, whylen, "%d lookups already wait for the resolver",
			 NETCONN_LOOKUPS_MAX);
		return -1;
	}
	lk = calloc(1, sizeof *lk + hl + 1);
	if (lk == NULL || (lk->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		snprintf(why, whylen, "cannot start a lookup: %s", strerror(errno));
		free(lk);
		atomic_fetch_sub(&nc_running, 1);
		return -1;
	}
	atomic_init(&lk->refs, 2);
	atomic_init(&lk->done, false);
	lk->port = port;
	lk->started = clock_mono_ms();
	memcpy(lk->host, host, hl + 1);
	/* the thread takes no signal: they are the daemon's main thread's business */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, NC_LOOKUP_STACK);
	rc = pthread_create(&th, &attr, nc_lookup_main, lk);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		snprintf(why, whylen, "cannot start a lookup: %s", strerror(rc));
		close(lk->efd);
		free(lk);
		atomic_fetch_sub(&nc_running, 1);
		return -1;
	}
	nc->lookup = lk;
	nc->overdue = false;
	return 0;
}

static void nc_lookup_drop(struct netconn *nc)
{
	if (nc->lookup != NULL)
		nc_lookup_put(nc->lookup);
	nc->lookup = NULL;
	nc->overdue = false;
}

static void nc_addr_text(const union netconn_addr *a, char *buf, size_t len)
{
	const void *p = a->sa.sa_family == AF_INET6 ? (const void *)&a->in6.sin6_addr
						     : (const void *)&a->in.sin_addr;

	if (inet_ntop(a->sa.sa_family, p, buf, (socklen_t)len) == NULL)
		snprintf(buf, len, "?");
}

/* Keep what res holds of IPv4 and IPv6 stream addresses: their number. */
static size_t nc_keep(struct netconn *nc, const struct addrinfo *res)
{
	size_t n = 0;

	for (const struct addrinfo *a = res; a != NULL && n < NETCONN_MAX_ADDRS; a = a->ai_next) {
		if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) ||
		    a->ai_addrlen > sizeof nc->addrs[0])
			continue;
		memset(&nc->addrs[n], 0, sizeof nc->addrs[n]);
		memcpy(&nc->addrs[n], a->ai_addr, a->ai_addrlen);
		n++;
	}
	if (n > 0)
		nc->naddrs = n;
	nc->next = 0;
	nc->err = ECONNREFUSED;
	return n;
}

/* The name did not resolve (why): its last good addresses, said once per streak, or -1. */
static int nc_fallback(struct netconn *nc, const char *host, const char *why, char *err,
		       size_t errlen)
{
	char addr[INET6_ADDRSTRLEN];

	if (nc->naddrs == 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", host, why);
		return -1;
	}
	nc_addr_text(&nc->addrs[0], addr, sizeof addr);
	if (!nc->stale)
		log_warnx("cannot resolve %s (%s): connecting to its last known address %s",
			  host, why, addr);
	else
		log_debug("cannot resolve %s (%s): still connecting to %s", host, why, addr);
	nc->stale = true;
	nc->next = 0;
	nc->err = ECONNREFUSED;
	return NETCONN_READY;
}

/* The lookup is over: its answer, or the fallback. */
static int nc_lookup_take(struct netconn *nc, const char *host, char *err, size_t errlen)
{
	struct netconn_lookup *lk = nc->lookup;
	char why[160];
	int rc = lk->rc;

	if (rc == 0 && nc_keep(nc, lk->res) > 0) {
		nc_lookup_drop(nc);
		if (nc->stale) {
			char addr[INET6_ADDRSTRLEN];
			nc_addr_text(&nc->addrs[0], addr, sizeof addr);
			log_info("%s resolves again (%s)", host, addr);
		}
		nc->stale = false;
		return NETCONN_READY;
	}
	snprintf(why, sizeof why, "%s", rc == 0 ? "no IPv4 or IPv6 address" :
				       rc == EAI_SYSTEM ? strerror(lk->sys_errno) : gai_strerror(rc));
	nc_lookup_drop(nc);
	return nc_fallback(nc, host, why, err, errlen);
}

static bool nc_lookup_done(const struct netconn *nc)
{
	return atomic_load_explicit(&nc->lookup->done, memory_order_acquire);
}

int netconn_resolve(struct netconn *nc, const char *host, uint16_t port, char *err,
		    size_t errlen)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		/* an address (the usual case on a plant network) is parsed, never looked up */
		.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
	};
	struct addrinfo *res = NULL;
	char serv[8], why[160];

	netconn_clear(nc);
	snprintf(serv, sizeof serv, "%u", (unsigned)port);
	if (getaddrinfo(host, serv, &hints, &res) == 0) {
		size_t n = nc_keep(nc, res);
		freeaddrinfo(res);
		if (n > 0)
			return NETCONN_READY;
	}
	if (nc->lookup != NULL) {
		if (nc_lookup_done(nc))
			return nc_lookup_take(nc, host, err, errlen);
		if (!nc->overdue)
			return NETCONN_PENDING;
		/* it missed its deadline once: not waited for again, as long as it runs */
		snprintf(why, sizeof why, "no answer from the resolver for %lld ms",
			 (long long)(clock_mono_ms() - nc->lookup->started));
		return nc_fallback(nc, host, why, err, errlen);
	}
	if (nc_lookup_start(nc, host, port, why, sizeof why) != 0)
		return nc_fallback(nc, host, why, err, errlen);
	return NETCONN_PENDING;
}

int netconn_lookup_fd(const struct netconn *nc)
{
	return nc->lookup != NULL ? nc->lookup->efd : -1;
}

int netconn_resolved(struct netconn *nc, const char *host, uint16_t port, char *err,
		     size_t errlen)
{
	char why[160];

	if (nc->lookup == NULL)
		return netconn_resolve(nc, host, port, err, errlen);
	if (nc_lookup_done(nc))
		return nc_lookup_take(nc, host, err, errlen);
	nc->overdue = true;
	snprintf(why, sizeof why, "no answer from the resolver within %lld ms",
		 (long long)(clock_mono_ms() - nc->lookup->started));
	return nc_fallback(nc, host, why, err, errlen);
}

int netconn_try(struct netconn *nc)
{
	while (nc->next < nc->naddrs) {
		const union netconn_addr *a = &nc->addrs[nc->next++];
		socklen_t len = a->sa.sa_family == AF_INET6 ? sizeof a->in6 : sizeof a->in;
		int one = 1;
		int fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

		if (fd < 0) {
			nc->err = errno;
			continue;
		}
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		/* even on loopback, completion is learnt from writability and SO_ERROR: one
		 * path for every caller */
		if (connect(fd, &a->sa, len) != 0 && errno != EINPROGRESS) {
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
	nc->next = 0;
	return fd;
}

void netconn_clear(struct netconn *nc)
{
	if (nc->fd >= 0)
		close(nc->fd);
	nc->fd = -1;
	nc->next = 0;
}

void netconn_fini(struct netconn *nc)
{
	netconn_clear(nc);
	nc_lookup_drop(nc);
	nc->naddrs = 0;
	nc->stale = false;
}

void netconn_strerror(char *buf, size_t len, const char *host, uint16_t port, int e)
{
	snprintf(buf, len, "cannot connect to %s port %u: %s", host, (unsigned)port,
		 e == ETIMEDOUT ? "no answer (timed out)" : strerror(e));
}

int netconn_open(struct netconn *nc, const char *host, uint16_t port, int64_t timeout_ms,
		 const struct fdio_waiter *w, int *fd, char *err, size_t errlen)
{
	int64_t deadline;
	int rc = netconn_resolve(nc, host, port, err, errlen);

	if (rc == NETCONN_PENDING) {
		rc = fdio_wait(w, netconn_lookup_fd(nc), POLLIN,
			       clock_mono_ms() + netconn_lookup_ms(timeout_ms));
		if (rc < 0)
			return rc; /* the lookup stays the netconn's */
		rc = netconn_resolved(nc, host, port, err, errlen);
	}
	if (rc != NETCONN_READY)
		return EHOSTUNREACH;
	deadline = clock_mono_ms() + timeout_ms;
	while (netconn_try(nc) == 0) {
		rc = fdio_wait(w, nc->fd, POLLOUT, deadline);
		if (rc != 1) {
			/* the deadline holds for every address: none is left time to try */
			netconn_clear(nc);
			if (rc < 0)
				return rc;
			netconn_strerror(err, errlen, host, port, ETIMEDOUT);
			return ETIMEDOUT;
		}
		if (netconn_done(nc) == 0) {
			*fd = netconn_take(nc);
			return 0;
		}
	}
	rc = nc->err;
	netconn_clear(nc);
	netconn_strerror(err, errlen, host, port, rc);
	return rc;
}
