/*
 * tcpoll: the Modbus TCP pollers. Owns the pollers' threads, their epoll sets and every
 * TCP socket to a Modbus TCP device or gateway. It must never block anywhere but in
 * epoll_wait (a host name is looked up elsewhere, see below), never select() (the
 * descriptors may be past 1023), never let one connection's trouble delay another
 * connection, and never touch the reading after handing it to the sink.
 *
 * Shape. One connection per BUS_TCP bus, shared by that bus's devices; connections are
 * dealt round-robin to a small fixed set of threads. A thread owns its connections and
 * their devices outright (nothing is shared between threads but the atomic counters and
 * each thread's inbox of writes, the one lock), so the poll path takes no lock. Each thread runs one loop: fire every timer that is due, then
 * epoll_wait until the next timer. Timers live in one indexed min-heap per thread and
 * are of two kinds: a device's next poll, and a connection's deadline (connect
 * timeout, reply timeout, or the end of a guard interval). epoll_wait sleeps on the
 * monotonic clock (it is a relative timeout), and every deadline is computed from
 * clock_mono_ms(), so a step of the wall clock moves only the readings' ts_ms.
 *
 * A poll. When a device is due, its poll joins its connection's FIFO; the connection
 * sends the requests of the poll at its head one after another (one request in flight
 * per connection, as a plain Modbus TCP device expects), then the next poll. A reply
 * is matched by transaction id and unit id, and only while its request is in flight; a
 * mismatch, a timeout, a reset or an unsolicited byte (one that arrives while nothing is
 * asked, or is waiting when the next request is about to go out) closes the
 * connection, since whatever arrives next could belong to an earlier request or to
 * none; the next poll that needs the connection opens it again. Transaction ids are
 * drawn at random (drivers/mbtid.h): a frame sent before its request cannot name it.
 *
 * Failures, and why they are handled this way:
 * - An exception reply fails only the points of its request; the poll goes on, because
 *   the device is alive and other ranges may read fine.
 * - A timeout (or closed connection, I/O or framing error) fails the request in flight
 *   *and the rest of that poll* with the same code, unsent. The device has just shown
 *   it is not answering; sending its remaining requests would hold the shared
 *   connection for one timeout per request, and a dead device may delay its
 *   neighbours by its timeout only (docs/design.md, "How a reading travels").
 * - A failed connect fails every poll queued on the connection with MBE_CONNECT and
 *   starts a backoff (the connection's link_breaker: 1 s, doubling to 30 s). During the
 *   backoff, polls still happen on schedule and fail at once, so each one still yields
 *   a reading, and the failing device costs nothing; the next poll after the backoff
 *   tries again.
 * - Circuit breaker, per device (drivers/breaker.h, shared with serpoll): a poll fails
 *   when the device answered none of its requests (an exception is an answer: the
 *   device is there; 0x0A/0x0B are a gateway saying its target is not). After
 *   offline_after failed polls in a row the device is offline and tried at a slower,
 *   jittered pace; each attempt still costs its connection one timeout at most.
 * - A merged read refused with ILLEGAL DATA ADDRESS (or ILLEGAL DATA VALUE, which some
 *   devices answer for a length they will not read) is split in halves and the halves
 *   sent at once, recursively, so the same poll still reads every other point and only
 *   the point that fails alone is reported. The split stays in the device's plan for the
 *   run. A merged read that times out while the device answered another request of the
 *   same poll is split the same way, its halves moved to the end of the plan, and tried
 *   on the next poll (the timeout closed the connection). A merged read that times out
 *   as the first request of a poll is moved to the end, so the next poll learns whether
 *   the device answers without it. A single point that keeps timing out stays last, so
 *   it costs the other points nothing but a reconnect.
 *
 * Writes (alert actions) arrive from the core thread through the owning thread's inbox
 * (a mutex-protected list and the thread's eventfd). Each goes on its connection's write
 * queue and is sent between polls, before any poll that has not begun; a read-modify-
 * write's two requests follow each other with no poll between them. Probes (reads asked
 * by `sluicectl probe` through the daemon and by SunSpec discovery, drivers/poller.h)
 * come the same way, go after the writes and before the next poll, their reads one after
 * another; a connection is built for every TCP bus that has a device, even one waiting
 * for discovery, so that discovery reads through it.
 *
 * Schedule (drivers/polldev.h, drivers/breaker.h, shared with serpoll). A device's first
 * poll falls at a fixed fraction of its first interval (a Weyl sequence over the device
 * index, so a thousand devices at 1 s spread evenly instead of firing together). The
 * next poll is planned when a poll completes: due + interval; if that is already past
 * (the poll took longer than an interval, e.g. a timeout on a device polled as often as
 * its timeout), the grid is re-anchored at now rather than skipping to the next future
 * slot. That keeps the rule "at most one poll per interval, never a catch-up burst"
 * while a device whose polls outlast its interval is polled back to back instead of
 * every other slot, so its gaps stay within max(interval, poll time) and not interval +
 * poll time.
 *
 * Name resolution (drivers/netconn.h): a numeric host (the usual case on a plant
 * network) never calls the resolver. A host name is looked up at each (re)connect on a
 * thread of netconn's; the connection waits for it in this thread's epoll set (state
 * CS_RESOLVING) for netconn_lookup_ms(timeout), while the thread serves its other
 * connections. A name that does not resolve in time is connected to at its last good
 * address, or is a failed connect like any other (backoff, MBE_CONNECT readings).
 */
#include "tcpoll.h"

#include <errno.h>
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

#include "breaker.h"
#include "clock.h"
#include "log.h"
#include "mberr.h"
#include "mbpdu.h"
#include "mbtid.h"
#include "mbwrite.h"
#include "netconn.h"
#include "plan.h"
#include "polldev.h"
#include "reply.h"

#define TP_MAX_THREADS 4
#define TP_DEFAULT_TIMEOUT_MS 1000
#define TP_MAX_SLEEP_MS 60000
#define TP_EVENTS 64
#define TP_MAX_WRITES 1024     /* waiting, per tcpoll: alert actions are few */
#define TP_MAX_PROBES 64       /* waiting, per tcpoll: a person's probes and discovery's */

#define container_of(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))

enum tm_kind { TM_DEVICE, TM_CONN };

struct tp_timer {
	int64_t at;   /* monotonic ms */
	size_t pos;   /* index in its thread's heap, or TM_UNARMED */
	uint8_t kind; /* enum tm_kind */
};
#define TM_UNARMED SIZE_MAX

/* CS_RESOLVING: a host name's lookup runs (netconn), its descriptor in the epoll set */
enum conn_state { CS_DOWN, CS_RESOLVING, CS_CONNECTING, CS_UP };

struct tp_conn;

struct tp_dev {
	struct tp_timer tm;          /* next due */
	struct polldev pd;           /* config, plan, breaker */
	struct tp_conn *conn;
	int64_t due;                 /* of the poll queued or in progress */
	struct reading *r;           /* the poll in progress, NULL when not begun */
	size_t req;                  /* next request of the poll to send */
	struct tp_dev *qnext;
	/* this poll */
	bool answered;               /* some request got a reply from the device */
	int poll_err;                /* the first failure's MBE_* code */
};

struct tp_write {
	struct tp_write *next;
	struct tp_dev *d;
	uint16_t point;
	uint64_t tag;
	double value;
	struct mbwrite w;            /* w.rmw: the register is read first */
	uint8_t pdu[MB_PDU_MAX];     /* the request of the current step */
	size_t pdulen;
};

struct tp_thread;

struct tp_conn {
	struct tp_timer tm;          /* connect deadline, reply deadline or end of guard */
	const struct bus_cfg *bus;
	struct tp_thread *th;
	int fd;
	int state;                   /* enum conn_state */
	uint32_t events;             /* the mask registered with epoll */
	struct netconn nc;           /* the addresses, a lookup, a socket connecting */
	int64_t connect_deadline;
	int64_t timeout;
	int64_t guard;
	int64_t guard_until;         /* no request before this */
	struct link_breaker link;    /* the backoff between failed connects */
	struct mbtid tids;           /* the ids of its requests */
	uint16_t tid;                /* of the request in flight */
	bool asked;                  /* a request has gone out on this connection */
	bool inflight;
	uint8_t unit;                /* of the request in flight */
	struct tp_write *cur_write;  /* the request in flight is this write's, not a poll's */
	struct tp_write *wqhead, *wqtail;
	struct poller_probe *pqhead, *pqtail; /* probes; the head's reads go out in turn */
	size_t probe_i;              /* the head probe's next read */
	bool probe_begun;            /* the head probe has sent a read (it is not late) */
	bool probing;                /* the request in flight is the head probe's read */
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
	int evfd;                    /* written by tcpoll_stop and tcpoll_write */
	atomic_bool stop;
	pthread_mutex_t wmu;         /* guards inbox */
	bool wmu_init;
	struct tp_write *inbox, *inbox_tail;
	struct poller_probe *pinbox, *pinbox_tail;
	struct tp_timer **heap;
	size_t nheap, capheap;
};

struct tcpoll {
	struct site site;            /* the config's buses and devices */
	uint32_t generation;
	struct poller_sink sink;
	struct tp_conn *conns;
	size_t nconns;
	struct tp_dev *devs;
	size_t ndevs;
	struct tp_dev **dev_of;      /* by config device index; NULL when not polled here */
	size_t *conn_of_bus;         /* by config bus index; SIZE_MAX when not ours */
	struct breaker_pace pace;    /* of offline retries */
	_Atomic uint64_t nwrites;    /* queued and not yet finished */
	_Atomic uint64_t nprobes;    /* probes handed over and not yet done */
	struct tp_thread *threads;
	size_t nthreads;
	bool started;                /* tcpoll_start was called (once only) */
	bool running;                /* threads to stop */
	_Atomic uint64_t polls, failed, requests, timeouts, connects, connect_fails;
	_Atomic uint64_t offline, splits, writes, write_fails;
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

/* The next poll after the one due at d->due, begun at start, with the breaker's event. */
static void dev_reschedule(struct tp_dev *d, enum breaker_event ev, int64_t start, int64_t now)
{
	timer_set(d->conn->th, &d->tm, breaker_dev_next(&d->pd.brk, ev, d->due, start, now));
}

static bool poll_begin(struct tp_dev *d, int64_t now)
{
	d->r = polldev_reading(&d->pd, d->conn->th->tp->generation, d->due, now);
	if (d->r == NULL)
		return false;
	d->req = 0;
	d->answered = false;
	d->poll_err = 0;
	return true;
}

/* Fail the points of requests [from, to). */
static void poll_fail_reqs(struct tp_dev *d, size_t from, size_t to, int code)
{
	if (d->poll_err == 0)
		d->poll_err = code;
	reply_fail(&d->pd.plan, d->r, from, to, code);
}

/* Fail the points of requests [from, nreqs) and mark the poll's requests all done. */
static void poll_fail_from(struct tp_dev *d, size_t from, int code)
{
	poll_fail_reqs(d, from, d->pd.plan.nreqs, code);
	d->req = d->pd.plan.nreqs;
}

static void poll_finish(struct tp_dev *d, int64_t now)
{
	struct tcpoll *tp = d->conn->th->tp;
	struct reading *r = d->r;
	int64_t start = r->start_mono_ms;
	enum breaker_event ev;

	d->r = NULL;
	stat_inc(&tp->polls);
	if (reply_reading_failed(r))
		stat_inc(&tp->failed);
	ev = polldev_judge(&d->pd, &tp->pace, r, d->pd.plan.nreqs == 0 || d->answered,
			   d->poll_err, now);
	if (ev == BREAKER_DOWN)
		stat_inc(&tp->offline);
	else if (ev == BREAKER_BACK)
		atomic_fetch_sub_explicit(&tp->offline, 1, memory_order_relaxed);
	if (tp->sink.emit != NULL)
		tp->sink.emit(tp->sink.ctx, r);
	else
		reading_free(r);
	dev_reschedule(d, ev, start, now);
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

/* The lookup's descriptor leaves the epoll set (it is the lookup's, closed with it). */
static void conn_unwatch_lookup(struct tp_conn *c)
{
	int lfd = netconn_lookup_fd(&c->nc);

	if (c->state == CS_RESOLVING && lfd >= 0 &&
	    epoll_ctl(c->th->epfd, EPOLL_CTL_DEL, lfd, NULL) != 0)
		log_warn("bus %s: epoll_ctl", c->bus->id);
}

static void conn_close(struct tp_conn *c)
{
	conn_unwatch_lookup(c); /* a lookup still running stays the netconn's */
	if (c->fd >= 0)
		close(c->fd); /* also leaves the epoll set: the descriptor is not shared */
	c->fd = -1;
	c->state = CS_DOWN;
	c->events = 0;
	c->inflight = false;
	c->txlen = c->txoff = c->rxlen = c->rxneed = 0;
	netconn_clear(&c->nc); /* a socket still connecting */
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

/* A write is over: report it and free it. */
static void write_finish(struct tp_write *w, int err)
{
	struct tcpoll *tp = w->d->conn->th->tp;

	stat_inc(&tp->writes);
	if (err != 0)
		stat_inc(&tp->write_fails);
	polldev_log_write(&w->d->pd, w->point, w->value, err);
	atomic_fetch_sub_explicit(&tp->nwrites, 1, memory_order_relaxed);
	if (tp->sink.write_done != NULL)
		tp->sink.write_done(tp->sink.ctx, w->d->pd.index, w->point, w->tag, err);
	free(w);
}

static void conn_fail_writes(struct tp_conn *c, int code)
{
	while (c->wqhead != NULL) {
		struct tp_write *w = c->wqhead;
		c->wqhead = w->next;
		if (c->wqhead == NULL)
			c->wqtail = NULL;
		write_finish(w, code);
	}
}

/* The head probe is over: handed back to its asker. */
static void probe_finish_head(struct tp_conn *c, int status)
{
	struct poller_probe *p = c->pqhead;
	struct tcpoll *tp = c->th->tp;

	c->pqhead = p->next;
	if (c->pqhead == NULL)
		c->pqtail = NULL;
	c->probe_i = 0;
	c->probe_begun = false;
	c->probing = false;
	atomic_fetch_sub_explicit(&tp->nprobes, 1, memory_order_relaxed);
	poller_probe_finish(p, status);
}

/* The head probe's read in flight (or about to go) ended with rc: on to the next one, or,
 * when the device is silent and the probe says so, the rest fail unsent. */
static void probe_read_over(struct tp_conn *c, int rc)
{
	struct poller_probe *p = c->pqhead;

	c->probing = false;
	p->reads[c->probe_i++].err = rc;
	if (rc != 0 && p->stop_on_silence && poller_silent(rc)) {
		poller_probe_fail(p, c->probe_i, rc);
		c->probe_i = p->nreads;
	}
}

/* Every probe waiting on this connection fails with code from its next read on. */
static void conn_fail_probes(struct tp_conn *c, int code)
{
	while (c->pqhead != NULL) {
		poller_probe_fail(c->pqhead, c->probe_i, code);
		probe_finish_head(c, PROBE_DONE);
	}
}

/* Every poll waiting on this connection fails with code; each still yields a reading. */
static void conn_fail_queue(struct tp_conn *c, int code, int64_t now)
{
	while (c->qhead != NULL) {
		struct tp_dev *d = conn_pop(c);
		if (d->r == NULL && !poll_begin(d, now)) {
			dev_reschedule(d, BREAKER_NONE, now, now);
			continue;
		}
		poll_fail_from(d, d->req, code);
		poll_finish(d, now);
	}
}

/* A connect failed (why: in words): back off, and fail what waits on the connection. */
static void conn_connect_failed(struct tp_conn *c, const char *why, int64_t now)
{
	struct tcpoll *tp = c->th->tp;
	enum breaker_event ev;

	stat_inc(&tp->connect_fails);
	ev = breaker_link_failed(&c->link, now);
	breaker_link_log(&c->link, ev, c->bus->id, NULL, why);
	conn_close(c);
	conn_fail_queue(c, MBE_CONNECT, now);
	conn_fail_writes(c, MBE_CONNECT);
	conn_fail_probes(c, MBE_CONNECT);
}

/* The same for a failure known by its errno. */
static void conn_connect_failed_errno(struct tp_conn *c, int err, int64_t now)
{
	char why[320];

	netconn_strerror(why, sizeof why, c->bus->host, c->bus->port, err);
	conn_connect_failed(c, why, now);
}

static void conn_connected(struct tp_conn *c, int64_t now)
{
	struct tcpoll *tp = c->th->tp;
	enum breaker_event ev = breaker_link_opened(&c->link);

	if (ev == BREAKER_BACK) {
		char what[300];
		snprintf(what, sizeof what, "%s port %u", c->bus->host, (unsigned)c->bus->port);
		breaker_link_log(&c->link, ev, c->bus->id, what, NULL);
	}
	c->fd = netconn_take(&c->nc);
	c->state = CS_UP;
	c->asked = false;
	timer_clear(c->th, &c->tm);
	conn_set_events(c, EPOLLIN | EPOLLRDHUP);
	stat_inc(&tp->connects);
	conn_kick(c, now);
}

/* Start connecting to the next address that can be: 0 when connecting, else -1 (none
 * left; c->nc.err says why the last failed). */
static int conn_try_addrs(struct tp_conn *c)
{
	while (netconn_try(&c->nc) == 0) {
		struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };

		if (epoll_ctl(c->th->epfd, EPOLL_CTL_ADD, c->nc.fd, &ev) != 0) {
			netconn_drop(&c->nc, errno);
			continue;
		}
		/* the socket stays netconn's until it is connected (conn_connected) */
		c->events = EPOLLOUT;
		c->state = CS_CONNECTING;
		timer_set(c->th, &c->tm, c->connect_deadline);
		return 0;
	}
	return -1;
}

/* The addresses are known (netconn_resolve or netconn_resolved said rc): connect, or
 * fail with err. */
static void conn_addresses(struct tp_conn *c, int rc, const char *err, int64_t now)
{
	if (rc != NETCONN_READY) {
		conn_connect_failed(c, err, now);
		return;
	}
	c->connect_deadline = now + c->timeout;
	if (conn_try_addrs(c) != 0)
		conn_connect_failed_errno(c, c->nc.err, now);
}

/* Connect: at once to an address, or once a host name's lookup is over (conn_io) or
 * its deadline has passed (conn_deadline), meanwhile serving the thread's other
 * connections. */
static void conn_connect(struct tp_conn *c, int64_t now)
{
	char err[320] = "";
	int rc = netconn_resolve(&c->nc, c->bus->host, c->bus->port, err, sizeof err);

	if (rc == NETCONN_PENDING) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
		if (epoll_ctl(c->th->epfd, EPOLL_CTL_ADD, netconn_lookup_fd(&c->nc), &ev) == 0) {
			c->state = CS_RESOLVING;
			timer_set(c->th, &c->tm, now + netconn_lookup_ms(c->timeout));
			return;
		}
		log_warn("bus %s: epoll_ctl", c->bus->id);
		rc = netconn_resolved(&c->nc, c->bus->host, c->bus->port, err, sizeof err);
	}
	conn_addresses(c, rc, err, now);
}

/* The lookup is over, or its deadline has passed. */
static void conn_lookup_over(struct tp_conn *c, int64_t now)
{
	char err[320] = "";
	int rc;

	conn_unwatch_lookup(c);
	timer_clear(c->th, &c->tm);
	c->state = CS_DOWN;
	rc = netconn_resolved(&c->nc, c->bus->host, c->bus->port, err, sizeof err);
	conn_addresses(c, rc, err, now);
	conn_kick(c, now);
}

/* The connecting socket is writable or in error: connected, or try the next address. */
static void conn_connect_done(struct tp_conn *c, int64_t now)
{
	if (netconn_done(&c->nc) == 0) {
		conn_connected(c, now);
		return;
	}
	c->events = 0;
	if (conn_try_addrs(c) != 0)
		conn_connect_failed_errno(c, c->nc.err, now);
}

/*
 * The request in flight failed in a way that leaves the stream in doubt: close, fail
 * the rest of that poll with the same code, and let the queue go on (the next poll
 * reconnects at once: the connect itself worked, so no backoff).
 */
static void conn_abort(struct tp_conn *c, int code, int64_t now)
{
	struct tp_dev *d = c->qhead;
	struct tp_write *w = c->cur_write;
	bool probing = c->probing;

	conn_close(c);
	c->cur_write = NULL;
	if (w != NULL) {
		write_finish(w, code);
	} else if (probing) {
		probe_read_over(c, code);
	} else if (d != NULL && d->r != NULL) {
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

/*
 * Right before a request: has the peer sent anything since the last reply was read (or
 * closed its side)? Those bytes answer nothing we asked, and a frame among them could
 * carry the id of the request about to go out. 0 when the connection is clean, else the
 * code to fail the request with: MBE_PROTO for bytes, MBE_CLOSED or an error's.
 */
static int conn_unsolicited(struct tp_conn *c)
{
	uint8_t b;
	ssize_t n;

	int e;

	do
		n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	e = errno;
	if (n < 0 && (e == EAGAIN || e == EWOULDBLOCK))
		return 0;
	log_debug("bus %s: %s before a request", c->bus->id,
		  n > 0 ? "unsolicited data" : n == 0 ? "closed by the peer" : strerror(e));
	return n > 0 ? MBE_PROTO : n == 0 ? MBE_CLOSED : errno_code(e);
}

/*
 * The request about to go out (the head write, or the head poll's next request) meets
 * unsolicited bytes (code from conn_unsolicited). On a connection that has carried
 * requests, the connection is let go, as when they come while it is idle, and the
 * request goes out on a new one. On a new connection the peer talks (or hangs up)
 * before it is asked: the request fails as if it had been sent, so that such a peer
 * costs a failure per request, which its breaker counts, and not a reconnect loop.
 */
enum next_req { NEXT_POLL, NEXT_WRITE, NEXT_PROBE };

static void conn_unsolicited_drop(struct tp_conn *c, int next, int code, int64_t now)
{
	bool asked = c->asked;

	conn_close(c);
	if (asked)
		return;
	if (next == NEXT_PROBE) {
		probe_read_over(c, code);
	} else if (next == NEXT_WRITE) {
		struct tp_write *w = c->wqhead;
		c->wqhead = w->next;
		if (c->wqhead == NULL)
			c->wqtail = NULL;
		write_finish(w, code);
	} else {
		struct tp_dev *d = conn_pop(c);
		poll_fail_from(d, d->req, code);
		poll_finish(d, now);
	}
}

static void conn_send_pdu(struct tp_conn *c, uint8_t unit, const uint8_t *pdu, size_t pdulen,
			  int64_t timeout, int64_t now)
{
	c->asked = true;
	c->tid = mbtid_next(&c->tids);
	c->unit = unit;
	c->txlen = mbtcp_frame(c->tx, c->tid, unit, pdu, pdulen);
	c->txoff = 0;
	c->rxlen = 0;
	c->rxneed = MBTCP_HDR;
	c->inflight = true;
	timer_set(c->th, &c->tm, now + timeout);
	stat_inc(&c->th->tp->requests);
	conn_write(c, now);
}

static void conn_send_request(struct tp_conn *c, struct tp_dev *d, int64_t now)
{
	const struct plan_req *rq = &d->pd.plan.reqs[d->req];
	uint8_t pdu[MB_PDU_MAX];
	size_t pdulen = mbpdu_read_req(pdu, rq->table, rq->start, rq->count);

	conn_send_pdu(c, d->pd.cfg->unit_id, pdu, pdulen, c->timeout, now);
}

static void conn_send_write(struct tp_conn *c, int64_t now)
{
	struct tp_write *w = c->wqhead;

	c->wqhead = w->next;
	if (c->wqhead == NULL)
		c->wqtail = NULL;
	w->next = NULL;
	c->cur_write = w;
	conn_send_pdu(c, w->d->pd.cfg->unit_id, w->pdu, w->pdulen, c->timeout, now);
}

static void conn_send_probe(struct tp_conn *c, int64_t now)
{
	const struct poller_probe *p = c->pqhead;
	const struct poller_read *rd = &p->reads[c->probe_i];
	uint8_t pdu[MB_PDU_MAX];
	size_t pdulen = mbpdu_read_req(pdu, (enum mb_table)rd->table, rd->start, rd->count);

	c->probing = true;
	c->probe_begun = true;
	conn_send_pdu(c, p->unit, pdu, pdulen, p->timeout_ms > 0 ? p->timeout_ms : c->timeout, now);
}

/* The reply to a write's request is in c->rx. */
static void conn_write_reply(struct tp_conn *c, int64_t now)
{
	struct tp_write *w = c->cur_write;
	const struct point_def *p = &w->d->pd.cfg->points[w->point];
	const uint8_t *pdu = c->rx + MBTCP_HDR;
	size_t len = c->rxlen - MBTCP_HDR;
	int rc;

	c->cur_write = NULL;
	if (w->w.rmw) {
		uint16_t reg;
		rc = mbpdu_read_resp(pdu, len, MB_HOLDING, 1, &reg, NULL);
		if (rc == 0) {
			/* the write goes next, ahead of any poll: nothing of ours comes between */
			mbwrite_set_bit(&w->w, p, reg);
			w->pdulen = mbwrite_pdu(&w->w, w->pdu);
			w->next = c->wqhead;
			c->wqhead = w;
			if (c->wqtail == NULL)
				c->wqtail = w;
		} else {
			write_finish(w, rc);
		}
	} else {
		write_finish(w, mbpdu_write_resp(w->pdu, w->pdulen, pdu, len));
	}
	c->guard_until = now + c->guard;
	conn_kick(c, now);
}

/*
 * Request d->req of d's poll timed out: learn from it for the next polls (see the top
 * of this file). Only requests from d->req on move, and all of them are failed by the
 * caller, so this poll's reading is the same whatever is done here.
 */
static void plan_after_timeout(struct tp_dev *d)
{
	struct tcpoll *tp = d->conn->th->tp;
	struct read_plan *pl = &d->pd.plan;
	size_t k = d->req;
	struct plan_req rq = pl->reqs[k];

	if (d->answered) {
		if (plan_split(pl, d->pd.cfg->points, k) == 1) {
			stat_inc(&tp->splits);
			log_info("device %s: read of %s %u..%u times out while the device answers "
				 "other reads: splitting it", d->pd.cfg->id, codec_table_name(rq.table),
				 rq.start, rq.start + rq.count - 1);
			plan_move_last(pl, k);
		}
		plan_move_last(pl, k);
	} else if (k == 0 && pl->nreqs > 1) {
		plan_move_last(pl, k);
	}
}

static void conn_reply(struct tp_conn *c, int64_t now)
{
	struct tp_dev *d = c->qhead;
	struct plan_req rq;
	uint16_t regs[MB_MAX_READ_REGS];
	uint8_t bits[MB_MAX_READ_BITS];
	int rc;

	c->inflight = false;
	timer_clear(c->th, &c->tm);
	if (c->cur_write != NULL) {
		conn_write_reply(c, now);
		return;
	}
	if (c->probing) {
		struct poller_read *rd = &c->pqhead->reads[c->probe_i];

		probe_read_over(c, mbpdu_read_resp(c->rx + MBTCP_HDR, c->rxlen - MBTCP_HDR,
						   (enum mb_table)rd->table, rd->count, rd->regs,
						   rd->bits));
		c->guard_until = now + c->guard;
		conn_kick(c, now);
		return;
	}
	rq = d->pd.plan.reqs[d->req];
	rc = mbpdu_read_resp(c->rx + MBTCP_HDR, c->rxlen - MBTCP_HDR, rq.table, rq.count, regs,
			     bits);
	if (reply_is_answer(rc))
		d->answered = true;
	if (rc == 0) {
		reply_decode(d->pd.cfg, &d->pd.plan, d->r, d->req, regs, bits);
		d->req++;
	} else if ((rc == MBE_EXC_BASE + 2 || rc == MBE_EXC_BASE + 3) &&
		   plan_split(&d->pd.plan, d->pd.cfg->points, d->req) == 1) {
		/* refused as merged: the first half goes next, in this same poll */
		stat_inc(&c->th->tp->splits);
		log_info("device %s: read of %s %u..%u refused (%s): splitting it", d->pd.cfg->id,
			 codec_table_name(rq.table), rq.start, rq.start + rq.count - 1,
			 mb_strerror(rc));
	} else {
		/* an exception, or a PDU that does not fit the request: the MBAP length kept
		 * the stream framed, so only this request fails and the poll goes on */
		poll_fail_reqs(d, d->req, d->req + 1, rc);
		d->req++;
	}
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
			if (pdulen < 0 || tid != c->tid || unit != c->unit) {
				log_debug("bus %s: reply header does not match the request "
					  "(tid %u/%u, unit %u/%u)", c->bus->id, tid, c->tid, unit,
					  c->unit);
				/* the right transaction from another unit: a gateway that
				 * answers for the wrong device, or two devices on one id */
				conn_abort(c, pdulen >= 0 && tid == c->tid ? MBE_WRONG_UNIT
									   : MBE_PROTO, now);
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
	while (!c->inflight && (c->state == CS_DOWN || c->state == CS_UP)) {
		struct tp_dev *d = c->qhead;
		int rc;

		/* writes go between polls: never into one that has begun */
		if (c->wqhead != NULL && (d == NULL || d->r == NULL)) {
			if (c->state == CS_DOWN) {
				if (!breaker_link_may_try(&c->link, now))
					conn_fail_writes(c, MBE_CONNECT);
				else
					conn_connect(c, now);
				continue;
			}
			if (now < c->guard_until) {
				timer_set(c->th, &c->tm, c->guard_until);
				return;
			}
			if ((rc = conn_unsolicited(c)) != 0) {
				conn_unsolicited_drop(c, NEXT_WRITE, rc, now);
				continue;
			}
			conn_send_write(c, now);
			continue;
		}
		/* probes too: after the writes, never into a poll that has begun */
		if (c->pqhead != NULL && (d == NULL || d->r == NULL)) {
			struct poller_probe *p = c->pqhead;

			if (!c->probe_begun && now > p->start_by) {
				probe_finish_head(c, PROBE_LATE);
				continue;
			}
			if (c->probe_i >= p->nreads) {
				probe_finish_head(c, PROBE_DONE);
				continue;
			}
			if (c->state == CS_DOWN) {
				c->probe_begun = true; /* its reads are being tried */
				if (!breaker_link_may_try(&c->link, now))
					conn_fail_probes(c, MBE_CONNECT);
				else
					conn_connect(c, now);
				continue;
			}
			if (now < c->guard_until) {
				timer_set(c->th, &c->tm, c->guard_until);
				return;
			}
			if ((rc = conn_unsolicited(c)) != 0) {
				conn_unsolicited_drop(c, NEXT_PROBE, rc, now);
				continue;
			}
			conn_send_probe(c, now);
			continue;
		}
		if (d == NULL)
			return;

		if (d->r == NULL && !poll_begin(d, now)) {
			conn_pop(c);
			dev_reschedule(d, BREAKER_NONE, now, now);
			continue;
		}
		if (d->req >= d->pd.plan.nreqs) {
			conn_pop(c);
			poll_finish(d, now);
			continue;
		}
		if (c->state == CS_DOWN) {
			if (!breaker_link_may_try(&c->link, now)) {
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
		if ((rc = conn_unsolicited(c)) != 0) {
			conn_unsolicited_drop(c, NEXT_POLL, rc, now);
			continue;
		}
		conn_send_request(c, d, now);
	}
}

static void conn_io(struct tp_conn *c, uint32_t events, int64_t now)
{
	if (c->state == CS_RESOLVING) {
		conn_lookup_over(c, now);
		return;
	}
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

	if (c->state == CS_RESOLVING) {
		conn_lookup_over(c, now);
	} else if (c->state == CS_CONNECTING) {
		conn_connect_failed_errno(c, ETIMEDOUT, now);
	} else if (c->state == CS_UP && c->inflight && c->probing) {
		stat_inc(&tp->timeouts);
		log_debug("bus %s: unit %u: no reply to a probe", c->bus->id, c->unit);
		conn_abort(c, MBE_TIMEOUT, now);
	} else if (c->state == CS_UP && c->inflight) {
		struct tp_dev *d = c->cur_write != NULL ? c->cur_write->d : c->qhead;
		stat_inc(&tp->timeouts);
		log_debug("bus %s: device %s: no reply within %lld ms", c->bus->id, d->pd.cfg->id,
			  (long long)c->timeout);
		if (c->cur_write == NULL)
			plan_after_timeout(d);
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

static void thread_take_writes(struct tp_thread *th, int64_t now)
{
	struct tp_write *w;
	struct poller_probe *p;

	pthread_mutex_lock(&th->wmu);
	w = th->inbox;
	th->inbox = th->inbox_tail = NULL;
	p = th->pinbox;
	th->pinbox = th->pinbox_tail = NULL;
	pthread_mutex_unlock(&th->wmu);
	while (p != NULL) {
		struct poller_probe *next = p->next;
		struct tp_conn *c = &th->tp->conns[th->tp->conn_of_bus[p->bus]];

		p->next = NULL;
		if (c->pqtail != NULL)
			c->pqtail->next = p;
		else
			c->pqhead = p;
		c->pqtail = p;
		conn_kick(c, now);
		p = next;
	}
	while (w != NULL) {
		struct tp_write *next = w->next;
		struct tp_conn *c = w->d->conn;

		w->next = NULL;
		if (c->wqtail != NULL)
			c->wqtail->next = w;
		else
			c->wqhead = w;
		c->wqtail = w;
		conn_kick(c, now);
		w = next;
	}
}

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
			if (evs[i].data.ptr == NULL) {
				/* the eventfd: stop, or writes in the inbox */
				uint64_t cnt;
				if (read(th->evfd, &cnt, sizeof cnt) < 0 && errno != EAGAIN)
					log_warn("tcpoll: eventfd");
				if (atomic_load(&th->stop))
					return NULL;
				thread_take_writes(th, now);
				continue;
			}
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

#define TP_KINDS POLLDEV_BUS(BUS_TCP)

struct tcpoll *tcpoll_new(const struct site *cfg, uint32_t generation, unsigned nthreads,
			  const struct poller_sink *sink, char *err, size_t errlen)
{
	struct tcpoll *tp;
	size_t *conn_of_bus;
	size_t nd = 0, nc = 0;

	tp = calloc(1, sizeof *tp);
	if (tp == NULL)
		goto nomem;
	tp->site = *cfg;
	tp->generation = generation;
	if (sink != NULL)
		tp->sink = *sink;

	if (polldev_count(cfg, TP_KINDS, &nd, err, errlen) != 0)
		goto fail;
	conn_of_bus = tp->conn_of_bus = malloc((cfg->nbuses ? cfg->nbuses : 1) *
					       sizeof *conn_of_bus);
	tp->dev_of = calloc(cfg->ndevices ? cfg->ndevices : 1, sizeof *tp->dev_of);
	tp->pace = (struct breaker_pace){ BREAKER_RETRY_MIN_MS, BREAKER_RETRY_MAX_MS };
	tp->devs = calloc(nd ? nd : 1, sizeof *tp->devs);
	tp->conns = calloc(cfg->nbuses ? cfg->nbuses : 1, sizeof *tp->conns);
	if (conn_of_bus == NULL || tp->dev_of == NULL || tp->devs == NULL || tp->conns == NULL)
		goto nomem;

	/* a connection for each TCP bus that has a device, polled or waiting for discovery */
	for (size_t b = 0; b < cfg->nbuses; b++)
		conn_of_bus[b] = polldev_bus_owned(cfg, b, TP_KINDS) ? nc++ : SIZE_MAX;
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
		c->nc = (struct netconn)NETCONN_INIT;
		c->timeout = bus->timeout_ms > 0 ? bus->timeout_ms : TP_DEFAULT_TIMEOUT_MS;
		c->guard = bus->guard_ms > 0 ? bus->guard_ms : 0;
		mbtid_init(&c->tids);
	}
	tp->nconns = nc;

	for (size_t i = 0; i < cfg->ndevices; i++) {
		struct tp_dev *d;
		if (!polldev_selected(cfg, &cfg->devices[i], TP_KINDS))
			continue;
		d = &tp->devs[tp->ndevs];
		d->tm.kind = TM_DEVICE;
		d->tm.pos = TM_UNARMED;
		d->conn = &tp->conns[conn_of_bus[cfg->devices[i].bus]];
		if (polldev_init(&d->pd, cfg, (uint32_t)i, err, errlen) != 0)
			goto fail;
		tp->dev_of[i] = d;
		tp->ndevs++;
	}

	if (nthreads == 0)
		nthreads = default_threads();
	if (nthreads > nc)
		nthreads = (unsigned)nc; /* an idle thread serves nobody */
	tp->threads = calloc(nthreads ? nthreads : 1, sizeof *tp->threads);
	if (tp->threads == NULL)
		goto nomem;
	for (size_t t = 0; t < nthreads; t++) {
		struct tp_thread *th = &tp->threads[t];
		th->epfd = -1;
		th->evfd = -1;
		if (pthread_mutex_init(&th->wmu, NULL) != 0) {
			snprintf(err, errlen, "tcpoll: cannot create a mutex");
			goto fail;
		}
		th->wmu_init = true;
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
	return tp;

nomem:
	snprintf(err, errlen, "tcpoll: out of memory");
fail:
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
		timer_set(d->conn->th, &d->tm, polldev_first_due(&d->pd, now));
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

/* The threads are gone (or never ran): every probe they held, in an inbox or on a
 * connection, is said to its asker. */
static void drop_probes(struct tcpoll *tp)
{
	for (size_t t = 0; t < tp->nthreads; t++) {
		struct tp_thread *th = &tp->threads[t];
		struct poller_probe *p;

		if (!th->wmu_init)
			continue;
		pthread_mutex_lock(&th->wmu);
		p = th->pinbox;
		th->pinbox = th->pinbox_tail = NULL;
		pthread_mutex_unlock(&th->wmu);
		while (p != NULL) {
			struct poller_probe *next = p->next;
			atomic_fetch_sub(&tp->nprobes, 1);
			poller_probe_fail(p, 0, MBE_CLOSED);
			poller_probe_finish(p, PROBE_STOPPED);
			p = next;
		}
	}
	for (size_t k = 0; k < tp->nconns; k++) {
		struct tp_conn *c = &tp->conns[k];

		while (c->pqhead != NULL) {
			poller_probe_fail(c->pqhead, c->probe_i, MBE_CLOSED);
			probe_finish_head(c, PROBE_STOPPED);
		}
	}
}

void tcpoll_stop(struct tcpoll *tp)
{
	if (tp == NULL || !tp->running)
		return;
	for (size_t t = 0; t < tp->nthreads; t++) {
		uint64_t one = 1;
		atomic_store(&tp->threads[t].stop, true);
		if (tp->threads[t].started && write(tp->threads[t].evfd, &one, sizeof one) < 0)
			log_warn("tcpoll: cannot signal a poller thread to stop");
	}
	for (size_t t = 0; t < tp->nthreads; t++) {
		if (tp->threads[t].started)
			pthread_join(tp->threads[t].thread, NULL);
		tp->threads[t].started = false;
	}
	drop_probes(tp);
	tp->running = false;
}

static void free_writes(struct tp_write *w)
{
	while (w != NULL) {
		struct tp_write *next = w->next;
		free(w);
		w = next;
	}
}

void tcpoll_free(struct tcpoll *tp)
{
	if (tp == NULL)
		return;
	tcpoll_stop(tp);
	if (tp->threads != NULL)
		drop_probes(tp); /* a tcpoll never started */
	for (size_t k = 0; k < tp->nconns; k++) {
		struct tp_conn *c = &tp->conns[k];
		if (c->fd >= 0)
			close(c->fd);
		netconn_fini(&c->nc); /* a lookup still running frees itself when it ends */
		free_writes(c->wqhead);
		free(c->cur_write);
	}
	for (size_t k = 0; k < tp->ndevs; k++) {
		if (tp->devs[k].r != NULL)
			reading_free(tp->devs[k].r); /* a poll abandoned in flight */
		polldev_fini(&tp->devs[k].pd);
	}
	for (size_t t = 0; t < tp->nthreads; t++) {
		struct tp_thread *th = &tp->threads[t];
		if (th->epfd >= 0)
			close(th->epfd);
		if (th->evfd >= 0)
			close(th->evfd);
		free(th->heap);
		free_writes(th->inbox);
		if (th->wmu_init)
			pthread_mutex_destroy(&th->wmu);
	}
	free(tp->threads);
	free(tp->conn_of_bus);
	free(tp->dev_of);
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
	out->offline = atomic_load(&tp->offline);
	out->splits = atomic_load(&tp->splits);
	out->writes = atomic_load(&tp->writes);
	out->write_fails = atomic_load(&tp->write_fails);
}

size_t tcpoll_ndevices(const struct tcpoll *tp)
{
	return tp->ndevs;
}

void tcpoll_set_offline_retry(struct tcpoll *tp, int64_t min_ms, int64_t max_ms)
{
	if (tp == NULL || tp->started || min_ms < 1 || max_ms < min_ms)
		return;
	tp->pace = (struct breaker_pace){ min_ms, max_ms };
}

int tcpoll_probe(struct tcpoll *tp, size_t bus, struct poller_probe *p)
{
	struct tp_thread *th;
	uint64_t one = 1;

	if (tp == NULL || bus >= tp->site.nbuses || tp->conn_of_bus[bus] == SIZE_MAX) {
		errno = ENOENT;
		return -1;
	}
	th = tp->conns[tp->conn_of_bus[bus]].th;
	p->next = NULL;
	p->bus = bus;
	pthread_mutex_lock(&th->wmu);
	/* under the lock that tcpoll_stop takes the inbox with: a probe is either taken
	 * there or refused here, never left behind */
	if (atomic_load(&th->stop)) {
		pthread_mutex_unlock(&th->wmu);
		errno = ESHUTDOWN;
		return -1;
	}
	if (atomic_fetch_add(&tp->nprobes, 1) >= TP_MAX_PROBES) {
		atomic_fetch_sub(&tp->nprobes, 1);
		pthread_mutex_unlock(&th->wmu);
		errno = ENOBUFS;
		return -1;
	}
	if (th->pinbox_tail != NULL)
		th->pinbox_tail->next = p;
	else
		th->pinbox = p;
	th->pinbox_tail = p;
	pthread_mutex_unlock(&th->wmu);
	if (write(th->evfd, &one, sizeof one) < 0)
		log_warn("tcpoll: cannot wake a poller thread for a probe");
	return 0;
}

/* tcpoll's refusals, as tcpoll.h documents them: a read-only table is not writable
 * (EPERM), and a bad value is ERANGE whatever the point. */
static const struct mbwrite_rules tp_wrules = {
	.readonly_errno = EPERM,
	.value_first = true,
	.coil_any_type = false,
};

int tcpoll_write(struct tcpoll *tp, uint32_t device, uint16_t point, double value,
		 uint64_t tag)
{
	struct tp_dev *d;
	struct tp_thread *th;
	struct tp_write *w;
	uint64_t one = 1;

	if (tp == NULL || device >= tp->site.ndevices || tp->dev_of[device] == NULL) {
		errno = ENOENT;
		return -1;
	}
	d = tp->dev_of[device];
	if (point >= d->pd.cfg->npoints) {
		errno = ENOENT;
		return -1;
	}
	w = calloc(1, sizeof *w);
	if (w == NULL) {
		errno = ENOMEM;
		return -1;
	}
	w->d = d;
	w->point = point;
	w->tag = tag;
	w->value = value;
	if (mbwrite_prepare(&d->pd.cfg->points[point], value, &tp_wrules, &w->w) != 0) {
		int e = errno;
		free(w);
		errno = e;
		return -1;
	}
	w->pdulen = mbwrite_pdu(&w->w, w->pdu);
	if (w->pdulen == 0) {
		free(w);
		errno = EINVAL;
		return -1;
	}
	if (atomic_fetch_add(&tp->nwrites, 1) >= TP_MAX_WRITES) {
		atomic_fetch_sub(&tp->nwrites, 1);
		free(w);
		errno = ENOBUFS;
		return -1;
	}
	th = d->conn->th;
	pthread_mutex_lock(&th->wmu);
	if (th->inbox_tail != NULL)
		th->inbox_tail->next = w;
	else
		th->inbox = w;
	th->inbox_tail = w;
	pthread_mutex_unlock(&th->wmu);
	/* an eventfd counter cannot fill up at one write per action */
	if (write(th->evfd, &one, sizeof one) < 0)
		log_warn("tcpoll: cannot wake a poller thread for a write");
	return 0;
}
