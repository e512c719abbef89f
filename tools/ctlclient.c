/*
 * ctlclient: owns sluicectl's one connection to the daemon's control socket. Every wait
 * is a poll() with a deadline; the daemon's replies are outside input, read with jread,
 * at most CTLCLIENT_REPLY_MAX bytes. It must never decide that no daemon runs when it
 * only could not ask one (ctlclient_open tells the two apart), and never write to the
 * data directory.
 */
#include "ctlclient.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "control.h"
#include "json.h"

/* A status of many thousand devices is a few megabytes. */
#define CTLCLIENT_REPLY_MAX (64 << 20)

struct ctlclient {
	int fd;
	char path[sizeof ((struct sockaddr_un *)0)->sun_path];
	struct jval *hello;
	char *buf;                   /* bytes read past the last reply's newline */
	size_t len, cap;
};

/* Wait for events on c->fd until deadline: 1 ready, 0 timed out, -1 error. */
static int wait_fd(struct ctlclient *c, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd p = { .fd = c->fd, .events = events };
		int64_t left = deadline - clock_mono_ms();
		int n;

		if (left <= 0)
			return 0;
		n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (n > 0)
			return 1;
		if (n < 0 && errno != EINTR)
			return -1;
	}
}

struct jval *ctlclient_call(struct ctlclient *c, const char *req, int timeout_ms, char *why,
			    size_t whylen)
{
	int64_t deadline = clock_mono_ms() + timeout_ms;
	size_t off = 0, n = strlen(req);
	char *nl = NULL, err[96];
	struct jval *v;

	while (off <= n) {
		/* the request, then its newline */
		const char *p = off < n ? req + off : "\n";
		size_t left = off < n ? n - off : 1;
		ssize_t w = send(c->fd, p, left, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
			if (wait_fd(c, POLLOUT, deadline) <= 0) {
				snprintf(why, whylen, "sluiced at %s did not take the request within "
					 "%d ms", c->path, timeout_ms);
				return NULL;
			}
			continue;
		}
		if (w < 0) {
			snprintf(why, whylen, "%s: %s", c->path, strerror(errno));
			return NULL;
		}
		off += (size_t)w;
	}
	while (!(nl = c->len ? memchr(c->buf, '\n', c->len) : NULL)) {
		ssize_t r;

		if (c->len == c->cap) {
			size_t ncap = c->cap ? c->cap * 2 : 65536;
			char *nb = ncap <= CTLCLIENT_REPLY_MAX ? realloc(c->buf, ncap) : NULL;
			if (!nb) {
				snprintf(why, whylen, "sluiced's reply is larger than %d MiB",
					 CTLCLIENT_REPLY_MAX >> 20);
				return NULL;
			}
			c->buf = nb;
			c->cap = ncap;
		}
		r = recv(c->fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT);
		if (r > 0) {
			c->len += (size_t)r;
			continue;
		}
		if (r == 0) {
			snprintf(why, whylen, "sluiced closed %s without a reply", c->path);
			return NULL;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			snprintf(why, whylen, "%s: %s", c->path, strerror(errno));
			return NULL;
		}
		if (wait_fd(c, POLLIN, deadline) <= 0) {
			snprintf(why, whylen, "sluiced at %s did not answer within %d ms", c->path,
				 timeout_ms);
			return NULL;
		}
	}
	v = jread_parse(c->buf, (size_t)(nl - c->buf), err, sizeof err);
	c->len -= (size_t)(nl + 1 - c->buf);
	memmove(c->buf, nl + 1, c->len);
	if (!v || v->type != J_OBJ) {
		snprintf(why, whylen, "sluiced's reply is not a JSON object: %s", v ? "" : err);
		jread_free(v);
		return NULL;
	}
	return v;
}

int ctlclient_open(const char *data_dir, struct ctlclient **out, char *why, size_t whylen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ctlclient *c;
	const char *dd, *err;
	struct jval *v;
	char a[PATH_MAX], b[PATH_MAX];
	int e;

	*out = NULL;
	c = calloc(1, sizeof *c);
	if (!c) {
		snprintf(why, whylen, "out of memory");
		return CTL_UNREACHABLE;
	}
	if (snprintf(c->path, sizeof c->path, "%s/%s", data_dir, CONTROL_SOCKET_NAME) >=
	    (int)sizeof c->path) {
		/* a daemon cannot listen there either (control_socket_path) */
		snprintf(why, whylen, "%s/%s: too long for a socket", data_dir, CONTROL_SOCKET_NAME);
		free(c);
		return CTL_NONE;
	}
	memcpy(sa.sun_path, c->path, strlen(c->path) + 1);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		e = errno;
		snprintf(why, whylen, "%s: %s", c->path, strerror(e));
		ctlclient_close(c);
		/* no socket, or one nobody listens on any more (a daemon that did not stop
		 * cleanly): no daemon. EAGAIN: its backlog is full, it is there. */
		return e == ENOENT || e == ECONNREFUSED || e == ENOTDIR ? CTL_NONE
									 : CTL_UNREACHABLE;
	}
	v = ctlclient_call(c, "{\"v\":1,\"op\":\"hello\"}", CTLCLIENT_TIMEOUT_MS, why, whylen);
	if (!v) {
		ctlclient_close(c);
		return CTL_UNREACHABLE;
	}
	if (!jread_bool(v, "ok", false)) {
		err = jread_str(v, "message");
		snprintf(why, whylen, "sluiced at %s: %s", c->path, err ? err : "refused");
		jread_free(v);
		ctlclient_close(c);
		return CTL_UNREACHABLE;
	}
	/* the daemon of this data directory, and no other (a link left pointing elsewhere) */
	dd = jread_str(v, "data_dir");
	if (!dd || (strcmp(dd, data_dir) != 0 &&
		    (!realpath(dd, a) || !realpath(data_dir, b) || strcmp(a, b) != 0))) {
		snprintf(why, whylen, "the sluiced at %s serves %s, not %s", c->path,
			 dd ? dd : "another data directory", data_dir);
		jread_free(v);
		ctlclient_close(c);
		return CTL_UNREACHABLE;
	}
	c->hello = v;
	*out = c;
	return CTL_FOUND;
}

const struct jval *ctlclient_hello(const struct ctlclient *c)
{
	return c->hello;
}

const char *ctlclient_path(const struct ctlclient *c)
{
	return c->path;
}

void ctlclient_close(struct ctlclient *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	jread_free(c->hello);
	free(c->buf);
	free(c);
}
