/*
 * tcpoll: the Modbus TCP pollers. Owns the pollers' threads, their epoll sets and every
 * TCP socket to a Modbus TCP device or gateway. It must never block anywhere but in
 * epoll_wait (getaddrinfo of a host name excepted, see below), never select() (the
 * descriptors may be past 1023), never let one connection's trouble delay another
 * connection, and never touch the reading after handing it to the sink.
 *
 * Shape. One connection per BUS_TCP bus, shared by that bus's devices; connections are
 * dealt round-robin to a small fixed set of threads. A thread owns its connections and
 * their devices outright (nothing is shared between threads but the atomic counters), so
 * there are no locks. Each thread runs one loop: fire every timer that is due, then
 * epoll_wait until the next timer. Timers live in one indexed min-heap per thread and
 * are of two kinds: a device's next poll, and a connection's deadline (connect
 * timeout, reply timeout, or the end of a guard interval). epoll_wait sleeps on the
 * monotonic clock (it is a relative timeout), and every deadline is computed from
 * clock_mono_ms(), so a step of the wall clock moves only the readings' ts_ms.
 *
 * A poll. When a device is due, its poll joins its connection's FIFO; the connection
 * sends the requests of the poll at its head one after another (one request in flight
 * per connection, as a plain Modbus TCP device expects), then the next poll. A reply
 * is matched by transaction id and unit id; a mismatch, a timeout, a reset or an
 * unsolicited byte closes the connection, since whatever arrives next could belong to
 * an earlier request; the next poll that needs the connection opens it again.
 *
 * Failures, and why they are handled this way:
 * - An exception reply fails only the points of its request; the poll goes on, because
 *   the device is alive and other ranges may read fine.
 * - A timeout (or closed connection, I/O or framing error) fails the request in flight
 *   *and the rest of that poll* with the same code, unsent. The device has just shown
 *   it is not answering; sending its remaining requests would hold the shared
 *   connection for one timeout per request, and DESIGN allows a dead device to delay
 *   its neighbours by its timeout only.
 * - A failed connect fails every poll queued on the connection with MBE_CONNECT and
 *   starts a backoff (1 s, doubling to 30 s). During the backoff, polls still happen on
 *   schedule and fail at once, so each one still yields a reading, and the failing
 *   device costs nothing; the next poll after the backoff tries again.
 *
 * Schedule. A device's first poll falls at a fixed fraction of its first interval
 * (a Weyl sequence over the device index, so a thousand devices at 1 s spread evenly
 * instead of firing together). The next poll is planned when a poll completes: due +
 * interval; if that is already past (the poll took longer than an interval, e.g. a
 * timeout on a device polled as often as its timeout), the grid is re-anchored at now
 * rather than skipping to the next future slot. That keeps the rule "at most one poll
 * per interval, never a catch-up burst" while a device whose polls outlast its interval
 * is polled back to back instead of every other slot, so its gaps stay within
 * max(interval, poll time) and not interval + poll time.
 *
 * Name resolution: a numeric host (the usual case on a plant network) is resolved with
 * AI_NUMERICHOST and never blocks. A host name falls back to a blocking getaddrinfo at
 * each (re)connect, bounded in frequency by the backoff; it stalls this thread's other
 * connections while the resolver runs. An asynchronous resolver is the fix if sites
 * come to name their devices.
 */
#include "tcpoll.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "mberr.h"
#include "mbpdu.h"
#include "plan.h"

#define TP_MAX_THREADS 4
#define TP_BACKOFF_MIN_MS 1000
#define TP_BACKOFF_MAX_MS 30000
#define TP_DEFAULT_TIMEOUT_MS 1000
#define TP_DEFAULT_INTERVAL_MS 10000
#define TP_MAX_SLEEP_MS 60000
#define TP_EVENTS 64

#define container_of(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))

enum tm_kind { TM_DEVICE, TM_CONN };

struct tp_timer {
	int64_t at;   /* monotonic ms */
	size_t pos;   /* index in its thread's heap, or TM_UNARMED */
	uint8_t kind; /* enum tm_kind */
};
#define TM_UNARMED SIZE_MAX

enum conn_state { CS_DOWN, CS_CONNECTING, CS_UP };

struct tp_conn;

struct tp_dev {
	struct tp_timer tm;          /* next due */
	const struct device_cfg *cfg;
	uint32_t index;              /* into config.devices */
	struct tp_conn *conn;
	struct read_plan plan;
	size_t strbytes;             /* string room a reading of this device needs */
	int64_t interval;
	int64_t due;                 /* of the poll queued or in progress */
	struct reading *r;           /* the poll in progress, NULL when not begun */
	size_t req;                  /* next request of the poll to send */
	struct tp_dev *qnext;
};

struct tp_thread;

struct tp_conn {
	struct tp_timer tm;          /* connect deadline, reply deadline or end of guard */
	const struct bus_cfg *bus;
	struct tp_thread *th;
	int fd;
	int state;                   /* enum conn_state */
	uint32_t events;             /* the mask registered with epoll */
	struct addrinfo *ai;         /* while connecting: the addresses, and the one tried */
	struct addrinfo *ai_cur;
	int64_t connect_deadline;
	int64_t timeout;
	int64_t guard;
	int64_t guard_until;         /* no request before this */
	int64_t backoff;             /* 0 while connects succeed */
	int64_t retry_at;            /* no connect before this */
	uint16_t tid;
	bool inflight;
	uint8_t tx[MBTCP_ADU_MAX];
	size_t txlen, txoff;
	uint8_t rx[MBTCP_ADU_MAX];
	size_t rxlen, rxneed;
	struct tp_dev *qhead, *qtail;
};

struct tp_thread {
	struct tcpoll *tp;
	pthread_t thread;
	bool started;
	int epfd;
	int evfd;                    /* written by tcpoll_stop */
	struct tp_timer **heap;
	size_t nheap, capheap;
};

struct tcpoll {
	const struct config *cfg;
	uint32_t generation;
	struct poller_sink sink;
	struct tp_conn *conns;
	size_t nconns;
	struct tp_dev *devs;
	size_t ndevs;
	struct tp_thread *threads;
	size_t nthreads;
	bool started;                /* tcpoll_start was called (once only) */
	bool running;                /* threads to stop */
	_Atomic uint64_t polls, failed, requests, timeouts, connects, connect_fails;
};

static void conn_kick(struct tp_conn *c, int64_t now);

static void stat_inc(_Atomic uint64_t *s)
{
	atomic_fetch_add_explicit(s, 1, memory_order_relaxed);
}

/* --- timers: an indexed binary min-heap, so a deadline can be moved or removed ---- */

static void heap_swap(struct tp_thread *th, size_t a, size_t b)
{
	struct tp_timer *t = th->heap[a];
	th->heap[a] = th->heap[b];
	th->heap[b] = t;
	th->heap[a]->pos = a;
	th->heap[b]->pos = b;
}

static void heap_up(struct tp_thread *th, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (th->heap[p]->at <= th->heap[i]->at)
			break;
		heap_swap(th, i, p);
		i = p;
	}
}

static void heap_down(struct tp_thread *th, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < th->nheap && th->heap[l]->at < th->heap[m]->at)
			m = l;
		if (r < th->nheap && th->heap[r]->at < th->heap[m]->at)
			m = r;
		if (m == i)
			return;
		heap_swap(th, i, m);
		i = m;
	}
}

static void timer_clear(struct tp_thread *th, struct tp_timer *t)
{
	size_t i = t->pos;

	if (i == TM_UNARMED)
		return;
	th->nheap--;
	if (i != th->nheap) {
		th->heap[i] = th->heap[th->nheap];
		th->heap[i]->pos = i;
		heap_down(th, i);
		heap_up(th, i);
	}
	t->pos = TM_UNARMED;
}

/* The heap was sized at construction for every timer the thread owns: never grows. */
static void timer_set(struct tp_thread *th, struct tp_timer *t, int64_t at)
{
	timer_clear(th, t);
	t->at = at;
	t->pos = th->nheap;
	th->heap[th->nheap++] = t;
	heap_up(th, t->pos);
}

/* --- polls ------------------------------------------------------------------------ */

/* Where the first poll falls in the first interval: the fractional parts of i*phi are
 * evenly spread for any number of devices, unlike a hash modulo the interval. */
static int64_t dev_phase(uint32_t index, int64_t interval)
{
	uint64_t frac = ((uint64_t)index * UINT64_C(0x9E3779B97F4A7C15)) >> 32;
	return (int64_t)((frac * (uint64_t)interval) >> 32);
}

static void dev_reschedule(struct tp_dev *d, int64_t now)
{
	int64_t next = d->due + d->interval;

	if (next < now)
		next = now; /* behind: re-anchor, never catch up (see the top of this file) */
	timer_set(d->conn->th, &d->tm, next);
}

static bool poll_begin(struct tp_dev *d, int64_t now)
{
	struct tcpoll *tp = d->conn->th->tp;

	d->r = reading_new(d->index, (uint16_t)d->cfg->npoints, d->strbytes);
	if (d->r == NULL) {
		log_warnx("device %s: out of memory, poll skipped", d->cfg->id);
		return false;
	}
	d->r->generation = tp->generation;
	d->r->ts_ms = clock_real_ms();
	d->r->sched_mono_ms = d->due;
	d->r->start_mono_ms = now;
	d->req = 0;
	return true;
}

/* Fail the points of requests [from, to). */
static void poll_fail_reqs(struct tp_dev *d, size_t from, size_t to, int code)
{
	for (size_t i = 0; i < d->plan.npoints; i++) {
		if (d->plan.slots[i].req < from || d->plan.slots[i].req >= to)
			continue;
		memset(&d->r->values[i], 0, sizeof d->r->values[i]);
		d->r->values[i].kind = VAL_NONE;
		d->r->values[i].err = code;
	}
}

/* Fail the points of requests [from, nreqs) and mark the poll's requests all done. */
static void poll_fail_from(struct tp_dev *d, size_t from, int code)
{
	poll_fail_reqs(d, from, d->plan.nreqs, code);
	d->req = d->plan.nreqs;
}

static void poll_finish(struct tp_dev *d, int64_t now)
{
	struct tcpoll *tp = d->conn->th->tp;
	struct reading *r = d->r;
	bool failed = false;

	d->r = NULL;
	for (uint16_t i = 0; i < r->nvalues; i++)
		if (r->values[i].kind == VAL_NONE)
			failed = true;
	stat_inc(&tp->polls);
	if (failed)
		stat_inc(&tp->failed);
	if (tp->sink.emit != NULL)
		tp->sink.emit(tp->sink.ctx, r);
	else
		reading_free(r);
	dev_reschedule(d, now);
}

static void decode_request(struct tp_dev *d, size_t reqi, const uint16_t *regs,
			   const uint8_t *bits)
{
	const struct plan_req *rq = &d->plan.reqs[reqi];

	for (size_t i = 0; i < d->plan.npoints; i++) {
		const struct point_def *p = &d->cfg->points[i];
		const struct plan_slot *s = &d->plan.slots[i];
		struct value v;
		int rc = 0;

		if (s->req != reqi)
			continue;
		memset(&v, 0, sizeof v);
		if ((unsigned)s->offset + codec_width(p) > rq->count) {
			rc = -1; /* a plan that does not cover its point: a bug, not the device's */
		} else if (p->table == MB_COIL || p->table == MB_DISCRETE) {
			codec_decode_bit(p, bits[s->offset], &v);
		} else if (p->type == PT_STRING) {
			size_t cap = 2 * (size_t)p->length + 1;
			char *buf = reading_strbuf(d->r, cap);
			rc = buf == NULL ? -1 : codec_decode_regs(p, regs + s->offset, &v, buf, cap);
		} else {
			rc = codec_decode_regs(p, regs + s->offset, &v, NULL, 0);
		}
		if (rc != 0) {
			memset(&v, 0, sizeof v);
			v.kind = VAL_NONE;
			v.err = MBE_UNSUPPORTED;
		}
		d->r->values[i] = v;
	}
}

/* --- connections -------------------------------------------------------------------- */

static void conn_set_events(struct tp_conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	if (c->events == events)
		return;
	if (epoll_ctl(c->th->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->events = events;
	else
		log_warn("bus %s: epoll_ctl", c->bus->id);
}

static void conn_close(struct tp_conn *c)
{
	if (c->fd >= 0)
		close(c->fd); /* also leaves the epoll set: the descriptor is not shared */
	c->fd = -1;
	c->state = CS_DOWN;
	c->events = 0;
	c->inflight = false;
	c->txlen = c->txoff = c->rxlen = c->rxneed = 0;
	if (c->ai != NULL)
		freeaddrinfo(c->ai);
	c->ai = c->ai_cur = NULL;
	timer_clear(c->th, &c->tm);
}

static struct tp_dev *conn_pop(struct tp_conn *c)
{
	struct tp_dev *d = c->qhead;

	c->qhead = d->qnext;
	if (c->qhead == NULL)
		c->qtail = NULL;
	d->qnext = NULL;
	return d;
}

/* Every poll waiting on this connection fails with code; each still yields a reading. */
static void conn_fail_queue(struct tp_conn *c, int code, int64_t now)
{
	while (c->qhead != NULL) {
		struct tp_dev *d = conn_pop(c);
		if (d->r == NULL && !poll_begin(d, now)) {
			dev_reschedule(d, now);
			continue;
		}
		poll_fail_from(d, d->req, code);
		poll_finish(d, now);
	}
}

static void conn_connect_failed(struct tp_conn *c, int err, int64_t now)
{
	struct tcpoll *tp = c->th->tp;

	stat_inc(&tp->connect_fails);
	/* log a streak of failures once, then only at debug: a dead device must not flood
	 * the journal; the reading's errors carry every failure to the platform */
	if (c->backoff == 0)
		log_warnx("bus %s: cannot connect to %s port %u: %s", c->bus->id, c->bus->host,
			  c->bus->port, err == ETIMEDOUT ? "timed out" : strerror(err));
	else
		log_debug("bus %s: connect failed again: %s", c->bus->id, strerror(err));
	conn_close(c);
	c->backoff = c->backoff == 0 ? TP_BACKOFF_MIN_MS : c->backoff * 2;
	if (c->backoff > TP_BACKOFF_MAX_MS)
		c->backoff = TP_BACKOFF_MAX_MS;
	c->retry_at = now + c->backoff;
	conn_fail_queue(c, MBE_CONNECT, now);
}

static void conn_connected(struct tp_conn *c)
{
	struct tcpoll *tp = c->th->tp;

	if (c->backoff != 0)
		log_info("bus %s: connected to %s port %u", c->bus->id, c->bus->host, c->bus->port);
	c->backoff = 0;
	c->state = CS_UP;
	freeaddrinfo(c->ai);
	c->ai = c->ai_cur = NULL;
	timer_clear(c->th, &c->tm);
	conn_set_events(c, EPOLLIN | EPOLLRDHUP);
	stat_inc(&tp->connects);
}

/* Try the addresses from c->ai_cur on. Returns 0 when connected or connecting, else an
 * errno of the last attempt. */
static int conn_try_addrs(struct tp_conn *c)
{
	int err = ECONNREFUSED;

	for (; c->ai_cur != NULL; c->ai_cur = c->ai_cur->ai_next) {
		struct addrinfo *a = c->ai_cur;
		struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
		int one = 1;
		int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

		if (fd < 0) {
			err = errno;
			continue;
		}
		/* one small request at a time: Nagle would only add latency */
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
			err = errno;
			close(fd);
			continue;
		}
		if (epoll_ctl(c->th->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
			err = errno;
			close(fd);
			continue;
		}
		/* even on loopback, report completion through EPOLLOUT and SO_ERROR: one path */
		c->fd = fd;
		c->events = EPOLLOUT;
		c->state = CS_CONNECTING;
		timer_set(c->th, &c->tm, c->connect_deadline);
		return 0;
	}
	return err;
}

static void conn_connect(struct tp_conn *c, int64_t now)
{
	struct addrinfo hints;
	char port[8];
	int rc, err;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	snprintf(port, sizeof port, "%u", (unsigned)c->bus->port);
	rc = getaddrinfo(c->bus->host, port, &hints, &c->ai);
	if (rc == EAI_NONAME) {
		/* a host name: blocking resolution (see the top of this file) */
		hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
		rc = getaddrinfo(c->bus->host, port, &hints, &c->ai);
	}
	if (rc != 0) {
		c->ai = NULL;
		if (c->backoff == 0)
			log_warnx("bus %s: cannot resolve %s: %s", c->bus->id, c->bus->host,
				  gai_strerror(rc));
		conn_connect_failed(c, EHOSTUNREACH, now);
		return;
	}
	c->ai_cur = c->ai;
	c->connect_deadline = now + c->timeout;
	err = conn_try_addrs(c);
	if (err != 0)
		conn_connect_failed(c, err, now);
}

/* The connecting socket is writable or in error: connected, or try the next address. */
static void conn_connect_done(struct tp_conn *c, int64_t now)
{
	int soerr = 0, err;
	socklen_t len = sizeof soerr;

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
		soerr = errno;
	if (soerr == 0) {
		conn_connected(c);
		conn_kick(c, now);
		return;
	}
	close(c->fd);
	c->fd = -1;
	c->events = 0;
	c->ai_cur = c->ai_cur->ai_next;
	err = conn_try_addrs(c);
	if (err == 0)
		return;
	if (err == ECONNREFUSED)
		err = soerr;
	conn_connect_failed(c, err, now);
}

/*
 * The request in flight failed in a way that leaves the stream in doubt: close, fail
 * the rest of that poll with the same code, and let the queue go on (the next poll
 * reconnects at once: the connect itself worked, so no backoff).
 */
static void conn_abort(struct tp_conn *c, int code, int64_t now)
{
	struct tp_dev *d = c->qhead;

	conn_close(c);
	if (d != NULL && d->r != NULL) {
		conn_pop(c);
		poll_fail_from(d, d->req, code);
		poll_finish(d, now);
	}
	conn_kick(c, now);
}

static int errno_code(int err)
{
	return err == ECONNRESET || err == EPIPE ? MBE_CLOSED : MBE_IO;
}

static void conn_write(struct tp_conn *c, int64_t now)
{
	while (c->txoff < c->txlen) {
		ssize_t n = send(c->fd, c->tx + c->txoff, c->txlen - c->txoff,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				conn_set_events(c, EPOLLIN | EPOLLRDHUP | EPOLLOUT);
				return;
			}
			log_debug("bus %s: send: %s", c->bus->id, strerror(errno));
			conn_abort(c, errno_code(errno), now);
			return;
		}
		c->txoff += (size_t)n;
	}
	conn_set_events(c, EPOLLIN | EPOLLRDHUP);
}

static void conn_send_request(struct tp_conn *c, struct tp_dev *d, int64_t now)
{
	const struct plan_req *rq = &d->plan.reqs[d->req];
	uint8_t pdu[MB_PDU_MAX];
	size_t pdulen = mbpdu_read_req(pdu, rq->table, rq->start, rq->count);

	c->tid++;
	c->txlen = mbtcp_frame(c->tx, c->tid, d->cfg->unit_id, pdu, pdulen);
	c->txoff = 0;
	c->rxlen = 0;
	c->rxneed = MBTCP_HDR;
	c->inflight = true;
	timer_set(c->th, &c->tm, now + c->timeout);
	stat_inc(&c->th->tp->requests);
	conn_write(c, now);
}

static void conn_reply(struct tp_conn *c, int64_t now)
{
	struct tp_dev *d = c->qhead;
	const struct plan_req *rq = &d->plan.reqs[d->req];
	uint16_t regs[MB_MAX_READ_REGS];
	uint8_t bits[MB_MAX_READ_BITS];
	int rc;

	c->inflight = false;
	timer_clear(c->th, &c->tm);
	rc = mbpdu_read_resp(c->rx + MBTCP_HDR, c->rxlen - MBTCP_HDR, rq->table, rq->count, regs,
			     bits);
	if (rc == 0)
		decode_request(d, d->req, regs, bits);
	else
		/* an exception, or a PDU that does not fit the request: the MBAP length kept
		 * the stream framed, so only this request fails and the poll goes on */
		poll_fail_reqs(d, d->req, d->req + 1, rc);
	d->req++;
	c->guard_until = now + c->guard;
	conn_kick(c, now);
}

/* Readable (or hung up) while up. */
static void conn_read(struct tp_conn *c, int64_t now)
{
	while (c->state == CS_UP) {
		ssize_t n;

		if (!c->inflight) {
			/* nothing asked: this is the peer closing an idle connection, or bytes
			 * nobody asked for; either way the connection is done */
			uint8_t b;
			n = recv(c->fd, &b, 1, MSG_DONTWAIT);
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
				return;
			if (n > 0)
				log_debug("bus %s: unsolicited data, reconnecting", c->bus->id);
			conn_close(c);
			return;
		}
		n = recv(c->fd, c->rx + c->rxlen, c->rxneed - c->rxlen, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			log_debug("bus %s: recv: %s", c->bus->id, strerror(errno));
			conn_abort(c, errno_code(errno), now);
			return;
		}
		if (n == 0) {
			log_debug("bus %s: closed by the peer", c->bus->id);
			conn_abort(c, MBE_CLOSED, now);
			return;
		}
		c->rxlen += (size_t)n;
		if (c->rxlen < c->rxneed)
			continue;
		if (c->rxneed == MBTCP_HDR) {
			uint16_t tid;
			uint8_t unit;
			int pdulen = mbtcp_header(c->rx, &tid, &unit);
			if (pdulen < 0 || tid != c->tid || unit != c->qhead->cfg->unit_id) {
				log_debug("bus %s: reply header does not match the request "
					  "(tid %u/%u, unit %u/%u)", c->bus->id, tid, c->tid, unit,
					  c->qhead->cfg->unit_id);
				conn_abort(c, MBE_PROTO, now);
				return;
			}
			c->rxneed = MBTCP_HDR + (size_t)pdulen;
			continue;
		}
		conn_reply(c, now);
		return; /* conn_kick may have sent the next request: wait for epoll */
	}
}

/*
 * Make progress on the connection's queue until it has to wait (for a connect, a reply,
 * a guard interval) or the queue is empty.
 */
static void conn_kick(struct tp_conn *c, int64_t now)
{
	while (c->qhead != NULL && !c->inflight && c->state != CS_CONNECTING) {
		struct tp_dev *d = c->qhead;

		if (d->r == NULL && !poll_begin(d, now)) {
			conn_pop(c);
			dev_reschedule(d, now);
			continue;
		}
		if (d->req >= d->plan.nreqs) {
			conn_pop(c);
			poll_finish(d, now);
			continue;
		}
		if (c->state == CS_DOWN) {
			if (now < c->retry_at) {
				conn_fail_queue(c, MBE_CONNECT, now);
				return;
			}
			conn_connect(c, now);
			continue;
		}
		if (now < c->guard_until) {
			timer_set(c->th, &c->tm, c->guard_until);
			return;
		}
		conn_send_request(c, d, now);
	}
}

static void conn_io(struct tp_conn *c, uint32_t events, int64_t now)
{
	if (c->state == CS_CONNECTING) {
		conn_connect_done(c, now);
		return;
	}
	if (c->state != CS_UP)
		return;
	if ((events & (EPOLLOUT | EPOLLERR)) && c->inflight && c->txoff < c->txlen)
		conn_write(c, now);
	if (c->state == CS_UP && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
		conn_read(c, now);
}

static void conn_deadline(struct tp_conn *c, int64_t now)
{
	struct tcpoll *tp = c->th->tp;

	if (c->state == CS_CONNECTING) {
		conn_connect_failed(c, ETIMEDOUT, now);
	} else if (c->state == CS_UP && c->inflight) {
		stat_inc(&tp->timeouts);
		log_debug("bus %s: device %s: no reply within %lld ms", c->bus->id,
			  c->qhead->cfg->id, (long long)c->timeout);
		conn_abort(c, MBE_TIMEOUT, now);
	} else {
		conn_kick(c, now); /* the guard interval is over */
	}
}

static void dev_due(struct tp_dev *d, int64_t now)
{
	struct tp_conn *c = d->conn;

	d->due = d->tm.at;
	d->qnext = NULL;
	if (c->qtail != NULL)
		c->qtail->qnext = d;
	else
		c->qhead = d;
	c->qtail = d;
	conn_kick(c, now);
}

/* --- the threads -------------------------------------------------------------------- */

static void *thread_main(void *arg)
{
	struct tp_thread *th = arg;
	struct epoll_event evs[TP_EVENTS];

	for (;;) {
		int64_t now = clock_mono_ms();
		int timeout = -1;
		int n;

		while (th->nheap > 0 && th->heap[0]->at <= now) {
			struct tp_timer *t = th->heap[0];
			timer_clear(th, t);
			if (t->kind == TM_DEVICE)
				dev_due(container_of(t, struct tp_dev, tm), now);
			else
				conn_deadline(container_of(t, struct tp_conn, tm), now);
		}
		if (th->nheap > 0) {
			int64_t wait = th->heap[0]->at - now;
			timeout = (int)(wait > TP_MAX_SLEEP_MS ? TP_MAX_SLEEP_MS : wait);
		}
		n = epoll_wait(th->epfd, evs, TP_EVENTS, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_err("tcpoll: epoll_wait");
			return NULL;
		}
		now = clock_mono_ms();
		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == NULL)
				return NULL; /* the stop eventfd */
			conn_io(evs[i].data.ptr, evs[i].events, now);
		}
	}
}

/* --- the public side ---------------------------------------------------------------- */

static unsigned default_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		n = 1;
	if (n > TP_MAX_THREADS)
		n = TP_MAX_THREADS;
	return (unsigned)n;
}

static bool dev_polled(const struct config *cfg, const struct device_cfg *d)
{
	return d->bus < cfg->nbuses && cfg->buses[d->bus].kind == BUS_TCP && !d->sunspec;
}

struct tcpoll *tcpoll_new(const struct config *cfg, uint32_t generation, unsigned nthreads,
			  const struct poller_sink *sink, char *err, size_t errlen)
{
	struct tcpoll *tp;
	size_t *conn_of_bus = NULL;
	size_t nd = 0, nc = 0;

	tp = calloc(1, sizeof *tp);
	if (tp == NULL)
		goto nomem;
	tp->cfg = cfg;
	tp->generation = generation;
	if (sink != NULL)
		tp->sink = *sink;

	for (size_t i = 0; i < cfg->ndevices; i++) {
		const struct device_cfg *d = &cfg->devices[i];
		if (d->bus >= cfg->nbuses) {
			snprintf(err, errlen, "device %s: bus index %zu out of range", d->id, d->bus);
			goto fail;
		}
		if (d->npoints > UINT16_MAX) {
			snprintf(err, errlen, "device %s: %zu points, at most %u", d->id, d->npoints,
				 UINT16_MAX);
			goto fail;
		}
		if (dev_polled(cfg, d))
			nd++;
	}
	conn_of_bus = malloc((cfg->nbuses ? cfg->nbuses : 1) * sizeof *conn_of_bus);
	tp->devs = calloc(nd ? nd : 1, sizeof *tp->devs);
	tp->conns = calloc(cfg->nbuses ? cfg->nbuses : 1, sizeof *tp->conns);
	if (conn_of_bus == NULL || tp->devs == NULL || tp->conns == NULL)
		goto nomem;

	/* a connection for each TCP bus that has a device to poll */
	for (size_t b = 0; b < cfg->nbuses; b++) {
		conn_of_bus[b] = SIZE_MAX;
		if (cfg->buses[b].kind != BUS_TCP)
			continue;
		for (size_t i = 0; i < cfg->ndevices; i++) {
			if (cfg->devices[i].bus == b && dev_polled(cfg, &cfg->devices[i])) {
				conn_of_bus[b] = nc++;
				break;
			}
		}
	}
	for (size_t b = 0; b < cfg->nbuses; b++) {
		const struct bus_cfg *bus = &cfg->buses[b];
		struct tp_conn *c;
		if (conn_of_bus[b] == SIZE_MAX)
			continue;
		if (bus->host == NULL || bus->host[0] == '\0') {
			snprintf(err, errlen, "bus %s: no host", bus->id);
			goto fail;
		}
		c = &tp->conns[conn_of_bus[b]];
		c->tm.kind = TM_CONN;
		c->tm.pos = TM_UNARMED;
		c->bus = bus;
		c->fd = -1;
		c->timeout = bus->timeout_ms > 0 ? bus->timeout_ms : TP_DEFAULT_TIMEOUT_MS;
		c->guard = bus->guard_ms > 0 ? bus->guard_ms : 0;
	}
	tp->nconns = nc;

	for (size_t i = 0; i < cfg->ndevices; i++) {
		const struct device_cfg *dc = &cfg->devices[i];
		struct tp_dev *d;
		if (!dev_polled(cfg, dc))
			continue;
		d = &tp->devs[tp->ndevs];
		d->tm.kind = TM_DEVICE;
		d->tm.pos = TM_UNARMED;
		d->cfg = dc;
		d->index = (uint32_t)i;
		d->conn = &tp->conns[conn_of_bus[dc->bus]];
		d->interval = dc->interval_ms > 0 ? dc->interval_ms : TP_DEFAULT_INTERVAL_MS;
		if (plan_build(dc->points, dc->npoints, dc->max_registers, dc->max_gap,
			       &d->plan) != 0) {
			snprintf(err, errlen, "device %s: cannot plan its reads (out of memory, or "
				 "a point past address 65535)", dc->id);
			goto fail;
		}
		tp->ndevs++;
		for (size_t k = 0; k < dc->npoints; k++)
			if (dc->points[k].type == PT_STRING)
				d->strbytes += 2 * (size_t)dc->points[k].length + 1;
	}

	if (nthreads == 0)
		nthreads = default_threads();
	if (nthreads > nc)
		nthreads = (unsigned)nc; /* an idle thread serves nobody */
	tp->threads = calloc(nthreads ? nthreads : 1, sizeof *tp->threads);
	if (tp->threads == NULL)
		goto nomem;
	for (size_t t = 0; t < nthreads; t++) {
		tp->threads[t].epfd = -1;
		tp->threads[t].evfd = -1;
	}
	tp->nthreads = nthreads;
	for (size_t k = 0; k < nc; k++)
		tp->conns[k].th = &tp->threads[k % nthreads];
	for (size_t k = 0; k < tp->ndevs; k++)
		tp->devs[k].conn->th->capheap++;
	for (size_t k = 0; k < nc; k++)
		tp->conns[k].th->capheap++;
	for (size_t t = 0; t < nthreads; t++) {
		struct tp_thread *th = &tp->threads[t];
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

		th->tp = tp;
		th->heap = calloc(th->capheap, sizeof *th->heap);
		if (th->heap == NULL)
			goto nomem;
		th->epfd = epoll_create1(EPOLL_CLOEXEC);
		th->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (th->epfd < 0 || th->evfd < 0 ||
		    epoll_ctl(th->epfd, EPOLL_CTL_ADD, th->evfd, &ev) != 0) {
			snprintf(err, errlen, "tcpoll: epoll or eventfd: %s", strerror(errno));
			goto fail;
		}
	}
	free(conn_of_bus);
	return tp;

nomem:
	snprintf(err, errlen, "tcpoll: out of memory");
fail:
	free(conn_of_bus);
	tcpoll_free(tp);
	return NULL;
}

int tcpoll_start(struct tcpoll *tp)
{
	int64_t now = clock_mono_ms();

	if (tp->started) {
		errno = EALREADY; /* queues and timers are not rebuilt: one run per tcpoll */
		return -1;
	}
	tp->started = true;
	/* the first polls are armed before any thread runs: the heaps are not yet shared */
	for (size_t k = 0; k < tp->ndevs; k++) {
		struct tp_dev *d = &tp->devs[k];
		timer_set(d->conn->th, &d->tm, now + dev_phase(d->index, d->interval));
	}
	for (size_t t = 0; t < tp->nthreads; t++) {
		struct tp_thread *th = &tp->threads[t];
		int rc = pthread_create(&th->thread, NULL, thread_main, th);
		if (rc != 0) {
			errno = rc;
			log_err("tcpoll: cannot start a poller thread");
			tp->running = true;
			tcpoll_stop(tp);
			return -1;
		}
		th->started = true;
	}
	tp->running = true;
	return 0;
}

void tcpoll_stop(struct tcpoll *tp)
{
	if (tp == NULL || !tp->running)
		return;
	for (size_t t = 0; t < tp->nthreads; t++) {
		uint64_t one = 1;
		if (tp->threads[t].started && write(tp->threads[t].evfd, &one, sizeof one) < 0)
			log_warn("tcpoll: cannot signal a poller thread to stop");
	}
	for (size_t t = 0; t < tp->nthreads; t++) {
		if (tp->threads[t].started)
			pthread_join(tp->threads[t].thread, NULL);
		tp->threads[t].started = false;
	}
	tp->running = false;
}

void tcpoll_free(struct tcpoll *tp)
{
	if (tp == NULL)
		return;
	tcpoll_stop(tp);
	for (size_t k = 0; k < tp->nconns; k++) {
		struct tp_conn *c = &tp->conns[k];
		if (c->fd >= 0)
			close(c->fd);
		if (c->ai != NULL)
			freeaddrinfo(c->ai);
	}
	for (size_t k = 0; k < tp->ndevs; k++) {
		if (tp->devs[k].r != NULL)
			reading_free(tp->devs[k].r); /* a poll abandoned in flight */
		plan_free(&tp->devs[k].plan);
	}
	for (size_t t = 0; t < tp->nthreads; t++) {
		struct tp_thread *th = &tp->threads[t];
		if (th->epfd >= 0)
			close(th->epfd);
		if (th->evfd >= 0)
			close(th->evfd);
		free(th->heap);
	}
	free(tp->threads);
	free(tp->devs);
	free(tp->conns);
	free(tp);
}

void tcpoll_get_stats(struct tcpoll *tp, struct tcpoll_stats *out)
{
	out->polls = atomic_load(&tp->polls);
	out->failed = atomic_load(&tp->failed);
	out->requests = atomic_load(&tp->requests);
	out->timeouts = atomic_load(&tp->timeouts);
	out->connects = atomic_load(&tp->connects);
	out->connect_fails = atomic_load(&tp->connect_fails);
}

size_t tcpoll_ndevices(const struct tcpoll *tp)
{
	return tp->ndevs;
}
