/*
 * serpoll: the serial-line pollers. Owns one thread per line, the line's tty (through
 * libmodbus) or its socket to a DTU (RTU framing of our own, drivers/rtu), the line's
 * write queue, and each of its devices' schedule and circuit breaker. It must never
 * have two requests on one line at once, never let one line wait on another, never give
 * libmodbus a descriptor past 1023 (it select()s), and never touch a reading after
 * handing it to the sink.
 *
 * Shape. A line's thread runs one loop: do a queued write if there is one (alert
 * actions should not wait a whole poll cycle), else poll the device that is due
 * first, else sleep until the next one is due. A poll sends the device's planned
 * requests one after another, each after the line's guard time of silence. The
 * transports are two backends behind one table of functions (struct sp_backend):
 * libmodbus RTU on a tty, and RTU frames on a TCP socket, waited on with poll().
 *
 * Timeout. DESIGN defines a timeout as the time allowed for the reply to begin; on a
 * serial line the transfer time of the request and of the expected reply, at the
 * line's character time (start, data, parity and stop bits), is added: write() to a
 * tty returns when the bytes are queued, not sent, and a 125-register reply takes
 * 266 ms at 9600 baud. libmodbus gets that sum as its response timeout and no byte
 * timeout, which makes it a deadline for the whole reply.
 *
 * Failures. An exception reply fails only the points of its request: the device is
 * alive. Anything else (timeout, bad CRC, wrong unit, I/O error) fails the request and
 * the rest of that poll unsent: the device has just shown it is not answering, and a
 * dead device may cost its line only its timeout per attempt. A poll in which no
 * request got an answer is a failed poll; after offline_after of them in a row the
 * device is offline: its readings say so (online false, last_err), it is polled at a
 * slower pace (SP_OFFLINE_*), logged once and then at widening intervals, and logged
 * again once when it answers. A line that cannot be opened (a USB adapter not plugged
 * in, a DTU out of coverage) is retried with a backoff; meanwhile its polls still
 * happen on schedule and fail at once with MBE_CONNECT, so each still yields a reading.
 *
 * Schedule: as in tcpoll. The first poll of a device falls at a Weyl-sequence fraction
 * of its first interval; the next is due + interval, re-anchored at now when that is
 * past (never a catch-up burst). All on the monotonic clock.
 */
#include "serpoll.h"

#include <errno.h>
#include <fcntl.h>
#include <modbus.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "codec.h"
#include "log.h"
#include "mberr.h"
#include "mbpdu.h"
#include "plan.h"
#include "pollshared.h"
#include "rtu.h"

#define SP_DEFAULT_TIMEOUT_MS 1000
#define SP_DEFAULT_INTERVAL_MS 10000
#define SP_BACKOFF_MIN_MS 1000
#define SP_BACKOFF_MAX_MS 30000
#define SP_CONNECT_MIN_MS 1000   /* a DTU on a cellular link is slow to accept */
#define SP_OFFLINE_MIN_MS 5000   /* an offline device is polled every max(interval, 5 s), */
#define SP_OFFLINE_MAX_MS 60000  /* doubling to max(interval, 60 s) */
#define SP_MAX_WRITES 64         /* queued per line */
#define SP_WAIT_SLICE_MS 60000
#define SP_QUIET_MS 20           /* silence that ends a garbled reply */
#define SP_QUIET_MAX_MS 500
#define SP_STOPPED (-1)          /* not an MBE_* code: the line is stopping */

struct sp_line;

struct sp_backend {
	const char *name;
	/* 0, or MBE_CONNECT with err filled; SP_STOPPED when stopping interrupted it */
	int (*open)(struct sp_line *l, char *err, size_t errlen);
	void (*close)(struct sp_line *l);
	bool (*is_open)(const struct sp_line *l);
	/* 0, MBE_EXC_BASE + code, another MBE_* code, or SP_STOPPED */
	int (*read)(struct sp_line *l, uint8_t unit, const struct plan_req *rq, uint16_t *regs,
		    uint8_t *bits);
	int (*write)(struct sp_line *l, uint8_t unit, const struct pollshared_wreq *w);
};

struct sp_dev {
	const struct device_cfg *cfg;
	uint32_t index;              /* into config.devices */
	struct sp_line *line;
	struct read_plan plan;
	size_t strbytes;
	int64_t interval;
	int64_t retry_delay;         /* while offline: until the next attempt */
	int64_t due;
	unsigned offline_after;
	unsigned fails;              /* polls in a row without an answer */
	bool online;
	int last_err;
	int64_t offline_since;
	struct pollshared_logpace log;
};

struct sp_write {
	struct sp_write *next;
	struct sp_dev *dev;
	uint16_t point;
	uint64_t tag;
	double value;
	struct pollshared_wreq w;
};

struct sp_line {
	struct serpoll *sp;
	const struct bus_cfg *bus;
	const struct sp_backend *be;
	pthread_t thread;
	bool started;
	int wakefd;                  /* eventfd: a write queued, or stop */
	struct sp_dev **devs;
	size_t ndevs;
	int64_t timeout;             /* until the reply begins */
	int64_t guard;               /* silence between requests */
	unsigned char_bits;
	int64_t last_end;            /* when the line last fell silent */

	int64_t backoff, retry_at;   /* opening */
	unsigned open_fails;
	struct pollshared_logpace log;

	modbus_t *mb;                /* BUS_RTU */
	int fd;                      /* BUS_RTU_OVER_TCP */
	uint8_t rx[RTU_ADU_MAX];

	pthread_mutex_t mu;          /* the write queue */
	bool mu_init;
	struct sp_write *wq_head, *wq_tail;
	size_t nwq;
};

struct serpoll {
	struct site site;            /* the config's buses and devices */
	uint32_t generation;
	struct poller_sink sink;
	struct sp_line *lines;
	size_t nlines;
	struct sp_dev *devs;
	size_t ndevs;
	struct sp_dev **dev_of;      /* by config device index; NULL when not ours */
	size_t ncfgdevs;
	bool started, running;
	int64_t retry_min, retry_max;/* the offline pace */
	atomic_bool stopping;
	_Atomic uint64_t polls, failed, requests, timeouts, proto_errors, opens, open_fails,
		writes, write_fails, offline;
};

static void stat_inc(_Atomic uint64_t *s)
{
	atomic_fetch_add_explicit(s, 1, memory_order_relaxed);
}

static bool line_stopping(const struct sp_line *l)
{
	return atomic_load_explicit(&l->sp->stopping, memory_order_relaxed);
}

static int64_t min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

static int64_t max64(int64_t a, int64_t b)
{
	return a > b ? a : b;
}

static void wake_drain(struct sp_line *l)
{
	uint64_t v;

	while (read(l->wakefd, &v, sizeof v) == (ssize_t)sizeof v)
		;
}

/*
 * Wait for events on fd (or, with fd < 0, just sleep) until deadline. Returns 1 when fd
 * is ready, 0 at the deadline, 2 when a sleep (fd < 0) was woken by a queued write,
 * SP_STOPPED when the line is stopping. A wake-up while waiting on fd is drained and the
 * wait goes on: a write waits for the request in progress.
 */
static int line_wait(struct sp_line *l, int fd, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd p[2] = { { .fd = l->wakefd, .events = POLLIN },
				       { .fd = fd, .events = events } };
		int64_t left;
		int n;

		if (line_stopping(l))
			return SP_STOPPED;
		left = deadline - clock_mono_ms();
		if (left < 0)
			left = 0;
		n = poll(p, fd >= 0 ? 2 : 1, (int)min64(left, SP_WAIT_SLICE_MS));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_warn("bus %s: poll", l->bus->id);
			return 0;
		}
		if (p[0].revents) {
			wake_drain(l);
			if (line_stopping(l))
				return SP_STOPPED;
			if (fd < 0)
				return 2;
		}
		if (fd >= 0 && p[1].revents)
			return 1;
		if (clock_mono_ms() >= deadline)
			return 0;
	}
}

/* The guard time: silence since the line's last transaction. SP_STOPPED or 0. */
static int line_guard(struct sp_line *l)
{
	int64_t until = l->last_end + l->guard;

	while (clock_mono_ms() < until) {
		int rc = line_wait(l, -1, 0, until);
		if (rc == SP_STOPPED)
			return SP_STOPPED;
	}
	return line_stopping(l) ? SP_STOPPED : 0;
}

/* Transfer time of a request of reqlen ADU bytes and its reply of replylen. */
static int64_t line_transfer_ms(const struct sp_line *l, size_t reqlen, size_t replylen)
{
	return rtu_transfer_ms(l->bus->baud, l->char_bits, reqlen + replylen);
}

/* --- backend: RTU on a tty through libmodbus ---------------------------------------- */

static int mbl_code(int e)
{
	if (e > MODBUS_ENOBASE && e < MODBUS_ENOBASE + MODBUS_EXCEPTION_MAX)
		return MBE_EXC_BASE + (e - MODBUS_ENOBASE);
	if (e == ETIMEDOUT)
		return MBE_TIMEOUT;
	if (e == EMBBADCRC)
		return MBE_BAD_CRC;
	if (e == EMBBADSLAVE)
		return MBE_WRONG_UNIT;
	if (e == EMBBADDATA || e == EMBBADEXC || e == EMBUNKEXC || e == EMBMDATA)
		return MBE_PROTO;
	return MBE_IO;
}

static int mbl_open(struct sp_line *l, char *err, size_t errlen)
{
	const struct bus_cfg *b = l->bus;
	modbus_t *mb;
	int fd;

	mb = modbus_new_rtu(b->device, (int)b->baud, b->parity, b->data_bits, b->stop_bits);
	if (mb == NULL) {
		snprintf(err, errlen, "%s: %s", b->device, modbus_strerror(errno));
		return MBE_CONNECT;
	}
	if (modbus_connect(mb) != 0) {
		snprintf(err, errlen, "cannot open %s: %s", b->device, modbus_strerror(errno));
		modbus_free(mb);
		return MBE_CONNECT;
	}
	fd = modbus_get_socket(mb);
	if (fd >= FD_SETSIZE) {
		/* libmodbus would abort in select(): move the descriptor down, or refuse */
		int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		if (nfd < 0 || nfd >= FD_SETSIZE) {
			snprintf(err, errlen, "%s: its descriptor is %d, past %d, which libmodbus "
				 "cannot wait on (serial lines must be opened before the TCP "
				 "sockets)", b->device, nfd < 0 ? fd : nfd, FD_SETSIZE - 1);
			if (nfd >= 0)
				close(nfd);
			modbus_close(mb);
			modbus_free(mb);
			return MBE_CONNECT;
		}
		close(fd);
		modbus_set_socket(mb, nfd);
	}
	if (b->rs485 && modbus_rtu_set_serial_mode(mb, MODBUS_RTU_RS485) != 0) {
		snprintf(err, errlen, "%s: cannot switch to RS-485 mode: %s (a pseudo-terminal, "
			 "or an adapter that does RS-485 by itself: set rs485: false)", b->device,
			 modbus_strerror(errno));
		modbus_close(mb);
		modbus_free(mb);
		return MBE_CONNECT;
	}
	/* no byte timeout: the response timeout is then a deadline for the whole reply */
	modbus_set_byte_timeout(mb, 0, 0);
	l->mb = mb;
	return 0;
}

static void mbl_close(struct sp_line *l)
{
	if (l->mb == NULL)
		return;
	modbus_close(l->mb);
	modbus_free(l->mb);
	l->mb = NULL;
}

static bool mbl_is_open(const struct sp_line *l)
{
	return l->mb != NULL;
}

static void mbl_prepare(struct sp_line *l, uint8_t unit, size_t reqlen, size_t replylen)
{
	int64_t ms = l->timeout + line_transfer_ms(l, reqlen, replylen);

	modbus_set_slave(l->mb, unit);
	/* whatever a late reply or line noise left must not be read as this reply */
	modbus_flush(l->mb);
	modbus_set_response_timeout(l->mb, (uint32_t)(ms / 1000), (uint32_t)(ms % 1000) * 1000);
}

static int mbl_read(struct sp_line *l, uint8_t unit, const struct plan_req *rq, uint16_t *regs,
		    uint8_t *bits)
{
	uint8_t req[5];
	int rc;

	mbpdu_read_req(req, rq->table, rq->start, rq->count);
	mbl_prepare(l, unit, 8, rtu_reply_size(req, sizeof req));
	switch (rq->table) {
	case MB_COIL:
		rc = modbus_read_bits(l->mb, rq->start, rq->count, bits);
		break;
	case MB_DISCRETE:
		rc = modbus_read_input_bits(l->mb, rq->start, rq->count, bits);
		break;
	case MB_HOLDING:
		rc = modbus_read_registers(l->mb, rq->start, rq->count, regs);
		break;
	default:
		rc = modbus_read_input_registers(l->mb, rq->start, rq->count, regs);
		break;
	}
	if (rc < 0)
		return mbl_code(errno);
	return rc == rq->count ? 0 : MBE_PROTO;
}

static int mbl_write(struct sp_line *l, uint8_t unit, const struct pollshared_wreq *w)
{
	int rc;

	if (w->fc == MB_FC_WRITE_REGISTERS)
		mbl_prepare(l, unit, 9 + 2 * (size_t)w->n, 8);
	else
		mbl_prepare(l, unit, 8, 8);
	switch (w->fc) {
	case MB_FC_WRITE_COIL:
		rc = modbus_write_bit(l->mb, w->addr, w->on);
		break;
	case MB_FC_WRITE_REGISTER:
		rc = modbus_write_register(l->mb, w->addr, w->regs[0]);
		break;
	default:
		rc = modbus_write_registers(l->mb, w->addr, w->n, w->regs);
		break;
	}
	return rc < 0 ? mbl_code(errno) : 0;
}

static const struct sp_backend mbl_backend = {
	.name = "rtu",
	.open = mbl_open,
	.close = mbl_close,
	.is_open = mbl_is_open,
	.read = mbl_read,
	.write = mbl_write,
};

/* --- backend: RTU frames over TCP (a DTU, a serial server) ---------------------------- */

static int rot_open(struct sp_line *l, char *err, size_t errlen)
{
	const struct bus_cfg *b = l->bus;
	struct addrinfo hints, *res = NULL, *a;
	char port[8];
	int rc, lasterr = ECONNREFUSED;
	int64_t deadline = clock_mono_ms() + max64(l->timeout, SP_CONNECT_MIN_MS);

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	snprintf(port, sizeof port, "%u", (unsigned)b->port);
	rc = getaddrinfo(b->host, port, &hints, &res);
	if (rc == EAI_NONAME) {
		/* a host name: this line's own thread may block on the resolver */
		hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
		rc = getaddrinfo(b->host, port, &hints, &res);
	}
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", b->host, gai_strerror(rc));
		return MBE_CONNECT;
	}
	for (a = res; a != NULL; a = a->ai_next) {
		int one = 1, soerr = 0;
		socklen_t sl = sizeof soerr;
		int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

		if (fd < 0) {
			lasterr = errno;
			continue;
		}
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
			if (errno != EINPROGRESS) {
				lasterr = errno;
				close(fd);
				continue;
			}
			rc = line_wait(l, fd, POLLOUT, deadline);
			if (rc != 1) {
				close(fd);
				freeaddrinfo(res);
				if (rc == SP_STOPPED)
					return SP_STOPPED;
				snprintf(err, errlen, "cannot connect to %s port %u: timed out",
					 b->host, (unsigned)b->port);
				return MBE_CONNECT;
			}
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
				soerr = errno;
			if (soerr != 0) {
				lasterr = soerr;
				close(fd);
				continue;
			}
		}
		l->fd = fd;
		freeaddrinfo(res);
		return 0;
	}
	freeaddrinfo(res);
	snprintf(err, errlen, "cannot connect to %s port %u: %s", b->host, (unsigned)b->port,
		 strerror(lasterr));
	return MBE_CONNECT;
}

static void rot_close(struct sp_line *l)
{
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
}

static bool rot_is_open(const struct sp_line *l)
{
	return l->fd >= 0;
}

/* Drop what is waiting: a late reply to a request that timed out, or noise. 0, or
 * MBE_CLOSED / MBE_IO when the connection is gone. */
static int rot_flush(struct sp_line *l)
{
	uint8_t junk[256];

	for (;;) {
		ssize_t n = recv(l->fd, junk, sizeof junk, MSG_DONTWAIT);
		if (n > 0) {
			log_debug("bus %s: %zd stale bytes dropped", l->bus->id, n);
			continue;
		}
		if (n == 0)
			return MBE_CLOSED;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		return errno == ECONNRESET ? MBE_CLOSED : MBE_IO;
	}
}

/* After a garbled reply, read until the line has been quiet a while, as an RTU master
 * waits out the rest of a frame it could not follow. */
static void rot_quiet(struct sp_line *l)
{
	int64_t end = clock_mono_ms() + SP_QUIET_MAX_MS;
	int64_t quiet = max64(SP_QUIET_MS, l->guard);

	for (;;) {
		uint8_t junk[256];
		int64_t now = clock_mono_ms();
		if (now >= end || line_wait(l, l->fd, POLLIN, min64(now + quiet, end)) != 1)
			return;
		if (recv(l->fd, junk, sizeof junk, MSG_DONTWAIT) <= 0)
			return;
	}
}

static int sock_code(int e)
{
	return e == ECONNRESET || e == EPIPE ? MBE_CLOSED : MBE_IO;
}

/* Send pdu to unit, and receive the reply PDU into rpdu (MB_PDU_MAX bytes). */
static int rot_transact(struct sp_line *l, uint8_t unit, const uint8_t *pdu, size_t pdulen,
			uint8_t *rpdu, size_t *rlen)
{
	uint8_t adu[RTU_ADU_MAX];
	size_t alen = rtu_frame(adu, unit, pdu, pdulen), off = 0, have = 0;
	const uint8_t *p;
	size_t plen;
	uint8_t u;
	int64_t deadline;
	int want, rc;

	if (alen == 0)
		return MBE_PROTO;
	if ((rc = rot_flush(l)) != 0)
		return rc;
	deadline = clock_mono_ms() + l->timeout +
		   line_transfer_ms(l, alen, rtu_reply_size(pdu, pdulen));
	while (off < alen) {
		ssize_t n = send(l->fd, adu + off, alen - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n >= 0) {
			off += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return sock_code(errno);
		rc = line_wait(l, l->fd, POLLOUT, deadline);
		if (rc != 1)
			return rc == SP_STOPPED ? SP_STOPPED : MBE_TIMEOUT;
	}
	for (;;) {
		size_t need;
		ssize_t n;

		want = rtu_reply_len(l->rx, have);
		if (want < 0) {
			rot_quiet(l);
			return MBE_PROTO;
		}
		if (want > 0 && have >= (size_t)want)
			break;
		/* read no further than this frame: anything after it is stale */
		need = want > 0 ? (size_t)want - have : (have < 2 ? 2 : 3) - have;
		rc = line_wait(l, l->fd, POLLIN, deadline);
		if (rc != 1)
			return rc == SP_STOPPED ? SP_STOPPED : MBE_TIMEOUT;
		n = recv(l->fd, l->rx + have, need, MSG_DONTWAIT);
		if (n == 0)
			return MBE_CLOSED;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			return sock_code(errno);
		}
		have += (size_t)n;
	}
	if (rtu_unframe(l->rx, (size_t)want, &u, &p, &plen) != 0) {
		log_debug("bus %s: unit %u: reply with a bad CRC", l->bus->id, unit);
		rot_quiet(l);
		return MBE_BAD_CRC;
	}
	if (u != unit) {
		log_debug("bus %s: reply from unit %u to a request to unit %u", l->bus->id, u, unit);
		return MBE_WRONG_UNIT;
	}
	memcpy(rpdu, p, plen);
	*rlen = plen;
	return 0;
}

static int rot_read(struct sp_line *l, uint8_t unit, const struct plan_req *rq, uint16_t *regs,
		    uint8_t *bits)
{
	uint8_t req[8], resp[MB_PDU_MAX];
	size_t reqlen = mbpdu_read_req(req, rq->table, rq->start, rq->count), rlen = 0;
	int rc;

	if (reqlen == 0)
		return MBE_UNSUPPORTED;
	rc = rot_transact(l, unit, req, reqlen, resp, &rlen);
	if (rc != 0)
		return rc;
	return mbpdu_read_resp(resp, rlen, rq->table, rq->count, regs, bits);
}

static int rot_write(struct sp_line *l, uint8_t unit, const struct pollshared_wreq *w)
{
	uint8_t req[MB_PDU_MAX], resp[MB_PDU_MAX];
	size_t reqlen, rlen = 0;
	int rc;

	switch (w->fc) {
	case MB_FC_WRITE_COIL:
		reqlen = mbpdu_write_coil_req(req, w->addr, w->on);
		break;
	case MB_FC_WRITE_REGISTER:
		reqlen = mbpdu_write_reg_req(req, w->addr, w->regs[0]);
		break;
	default:
		reqlen = mbpdu_write_regs_req(req, w->addr, w->regs, w->n);
		break;
	}
	if (reqlen == 0)
		return MBE_UNSUPPORTED;
	rc = rot_transact(l, unit, req, reqlen, resp, &rlen);
	if (rc != 0)
		return rc;
	return mbpdu_write_resp(req, reqlen, resp, rlen);
}

static const struct sp_backend rot_backend = {
	.name = "rtu_over_tcp",
	.open = rot_open,
	.close = rot_close,
	.is_open = rot_is_open,
	.read = rot_read,
	.write = rot_write,
};

/* --- the line ------------------------------------------------------------------------ */

/* "still offline" after a minute, then 2, 4 ... minutes after the last line, at most
 * hourly: for a line that will not open and for a device that does not answer. */
static const struct pollshared_logsched sp_logsched = {
	.first = 60000,
	.max = 3600000,
};

static const char *line_what(const struct sp_line *l)
{
	return l->bus->kind == BUS_RTU ? l->bus->device : l->bus->host;
}

/* 0 when the line is open, else MBE_CONNECT (or SP_STOPPED). Opening is retried with a
 * backoff, and its failures logged once, then at widening intervals. */
static int line_open(struct sp_line *l)
{
	struct serpoll *sp = l->sp;
	char err[512];
	int64_t now = clock_mono_ms();
	int rc;

	if (l->be->is_open(l))
		return 0;
	if (now < l->retry_at)
		return MBE_CONNECT;
	err[0] = '\0';
	rc = l->be->open(l, err, sizeof err);
	if (rc == SP_STOPPED)
		return SP_STOPPED;
	now = clock_mono_ms();
	if (rc == 0) {
		stat_inc(&sp->opens);
		if (l->open_fails > 0)
			log_info("bus %s: %s is open again, after %u failed attempt%s", l->bus->id,
				 line_what(l), l->open_fails, l->open_fails == 1 ? "" : "s");
		l->open_fails = 0;
		l->backoff = 0;
		l->last_end = now; /* a fresh line: let it settle one guard time */
		return 0;
	}
	stat_inc(&sp->open_fails);
	l->open_fails++;
	if (l->open_fails == 1) {
		log_warnx("bus %s: %s; retrying, its devices fail with \"%s\" meanwhile",
			  l->bus->id, err, mb_strerror(MBE_CONNECT));
		pollshared_logpace_start(&l->log, &sp_logsched, now);
	} else if (pollshared_logpace_due(&l->log, &sp_logsched, now, now)) {
		log_warnx("bus %s: still failing after %u attempts: %s", l->bus->id, l->open_fails,
			  err);
	} else {
		log_debug("bus %s: %s", l->bus->id, err);
	}
	l->backoff = l->backoff == 0 ? SP_BACKOFF_MIN_MS : min64(2 * l->backoff, SP_BACKOFF_MAX_MS);
	l->retry_at = now + l->backoff;
	return MBE_CONNECT;
}

static void line_count(struct sp_line *l, int rc)
{
	if (rc == MBE_TIMEOUT)
		stat_inc(&l->sp->timeouts);
	else if (rc == MBE_PROTO || rc == MBE_BAD_CRC || rc == MBE_WRONG_UNIT)
		stat_inc(&l->sp->proto_errors);
}

/* One request: open the line if need be, keep the guard, send, note when it ended. An
 * I/O error or a closed connection closes the line; the next request reopens it. */
static int line_read(struct sp_line *l, uint8_t unit, const struct plan_req *rq, uint16_t *regs,
		     uint8_t *bits)
{
	int rc = line_open(l);

	if (rc != 0)
		return rc;
	if (line_guard(l) != 0)
		return SP_STOPPED;
	stat_inc(&l->sp->requests);
	rc = l->be->read(l, unit, rq, regs, bits);
	l->last_end = clock_mono_ms();
	line_count(l, rc);
	if (rc == MBE_IO || rc == MBE_CLOSED) {
		log_debug("bus %s: %s, closing the line", l->bus->id, mb_strerror(rc));
		l->be->close(l);
	}
	return rc;
}

static int line_write(struct sp_line *l, uint8_t unit, const struct pollshared_wreq *w)
{
	int rc = line_open(l);

	if (rc != 0)
		return rc;
	if (line_guard(l) != 0)
		return SP_STOPPED;
	stat_inc(&l->sp->requests);
	rc = l->be->write(l, unit, w);
	l->last_end = clock_mono_ms();
	line_count(l, rc);
	if (rc == MBE_IO || rc == MBE_CLOSED)
		l->be->close(l);
	return rc;
}

/* --- polls ------------------------------------------------------------------------- */

/* The circuit breaker, after a poll that got an answer or not. */
static void dev_breaker(struct sp_dev *d, bool answered, int err, int64_t now)
{
	struct serpoll *sp = d->line->sp;
	char dur[32];

	if (answered) {
		if (!d->online) {
			pollshared_fmt_span(dur, sizeof dur, now - d->offline_since,
					    POLLSHARED_SPAN_COARSE);
			log_info("device %s (bus %s, unit %u): answers again, after %s offline",
				 d->cfg->id, d->line->bus->id, d->cfg->unit_id, dur);
			atomic_fetch_sub(&sp->offline, 1);
		}
		d->online = true;
		d->fails = 0;
		return;
	}
	d->fails++;
	d->last_err = err;
	if (d->online) {
		if (d->fails < d->offline_after)
			return;
		d->online = false;
		d->offline_since = now;
		pollshared_logpace_start(&d->log, &sp_logsched, now);
		d->retry_delay = max64(d->interval, sp->retry_min);
		atomic_fetch_add(&sp->offline, 1);
		log_warnx("device %s (bus %s, unit %u): offline after %u failed polls in a row: "
			  "%s", d->cfg->id, d->line->bus->id, d->cfg->unit_id, d->fails,
			  mb_strerror(err));
		return;
	}
	d->retry_delay = min64(2 * d->retry_delay, max64(d->interval, sp->retry_max));
	if (pollshared_logpace_due(&d->log, &sp_logsched, d->offline_since, now)) {
		pollshared_fmt_span(dur, sizeof dur, now - d->offline_since,
				    POLLSHARED_SPAN_COARSE);
		log_warnx("device %s (bus %s, unit %u): still offline after %s: %s", d->cfg->id,
			  d->line->bus->id, d->cfg->unit_id, dur, mb_strerror(err));
	}
}

static void dev_reschedule(struct sp_dev *d, int64_t now)
{
	int64_t next = d->due + (d->online ? d->interval : d->retry_delay);

	if (next < now)
		next = now; /* behind: re-anchor, never catch up */
	d->due = next;
}

static void dev_poll(struct sp_line *l, struct sp_dev *d, int64_t now)
{
	struct serpoll *sp = l->sp;
	struct reading *r;
	uint16_t regs[MB_MAX_READ_REGS];
	uint8_t bits[MB_MAX_READ_BITS];
	bool answered = d->plan.nreqs == 0;
	int err = 0;

	r = reading_new(d->index, (uint16_t)d->cfg->npoints, d->strbytes);
	if (r == NULL) {
		log_warnx("device %s: out of memory, poll skipped", d->cfg->id);
		dev_reschedule(d, now);
		return;
	}
	r->generation = sp->generation;
	r->ts_ms = clock_real_ms();
	r->sched_mono_ms = d->due;
	r->start_mono_ms = now;
	for (size_t i = 0; i < d->plan.nreqs; i++) {
		int rc = line_read(l, d->cfg->unit_id, &d->plan.reqs[i], regs, bits);

		if (rc == SP_STOPPED) {
			reading_free(r); /* abandoned, as the header promises */
			return;
		}
		if (rc == 0) {
			pollshared_decode_request(d->cfg, &d->plan, r, i, regs, bits);
			answered = true;
		} else if (pollshared_is_answer(rc)) {
			/* an exception: the device is there, only this request fails */
			pollshared_fail_reqs(&d->plan, r, i, i + 1, rc);
			answered = true;
		} else {
			pollshared_fail_reqs(&d->plan, r, i, d->plan.nreqs, rc);
			err = rc;
			break;
		}
	}
	now = clock_mono_ms();
	dev_breaker(d, answered, err, now);
	r->online = d->online;
	r->last_err = d->last_err;
	stat_inc(&sp->polls);
	if (pollshared_reading_failed(r))
		stat_inc(&sp->failed);
	dev_reschedule(d, now);
	if (sp->sink.emit != NULL)
		sp->sink.emit(sp->sink.ctx, r);
	else
		reading_free(r);
}

/* --- writes ------------------------------------------------------------------------ */

static struct sp_write *wq_pop(struct sp_line *l)
{
	struct sp_write *w;

	pthread_mutex_lock(&l->mu);
	w = l->wq_head;
	if (w != NULL) {
		l->wq_head = w->next;
		if (l->wq_head == NULL)
			l->wq_tail = NULL;
		l->nwq--;
	}
	pthread_mutex_unlock(&l->mu);
	return w;
}

static void write_report(struct sp_line *l, struct sp_write *w, int rc)
{
	struct serpoll *sp = l->sp;

	stat_inc(&sp->writes);
	if (rc != 0)
		stat_inc(&sp->write_fails);
	if (sp->sink.write_done != NULL)
		sp->sink.write_done(sp->sink.ctx, w->dev->index, w->point, w->tag, rc);
	free(w);
}

static void line_do_write(struct sp_line *l, struct sp_write *w)
{
	const struct device_cfg *dc = w->dev->cfg;
	const struct point_def *p = &dc->points[w->point];
	int rc = 0;

	if (w->w.rmw) {
		/* a bool on a bit shares its register with others: read it, change one bit */
		struct plan_req rq = { .table = MB_HOLDING, .start = p->address, .count = 1 };
		uint16_t reg = 0;
		uint8_t unused[1];

		rc = line_read(l, dc->unit_id, &rq, &reg, unused);
		if (rc == 0) {
			codec_set_bit(p, w->w.on, &reg);
			w->w.regs[0] = reg;
		}
	}
	if (rc == 0)
		rc = line_write(l, dc->unit_id, &w->w);
	if (rc == SP_STOPPED)
		rc = MBE_CLOSED;
	if (rc == 0)
		log_info("device %s: %s = %g written", dc->id, p->name, w->value);
	else
		log_warnx("device %s (bus %s, unit %u): writing %s = %g failed: %s", dc->id,
			  l->bus->id, dc->unit_id, p->name, w->value, mb_strerror(rc));
	write_report(l, w, rc);
}

/* --- the thread -------------------------------------------------------------------- */

static struct sp_dev *line_next_due(struct sp_line *l)
{
	struct sp_dev *best = NULL;

	for (size_t i = 0; i < l->ndevs; i++)
		if (best == NULL || l->devs[i]->due < best->due)
			best = l->devs[i];
	return best;
}

static void *line_main(void *arg)
{
	struct sp_line *l = arg;
	struct sp_write *w;

	while (!line_stopping(l)) {
		int64_t now = clock_mono_ms();
		struct sp_dev *d;

		if ((w = wq_pop(l)) != NULL) {
			line_do_write(l, w);
			continue;
		}
		d = line_next_due(l);
		if (d == NULL) {
			line_wait(l, -1, 0, now + SP_WAIT_SLICE_MS);
			continue;
		}
		if (d->due > now) {
			line_wait(l, -1, 0, d->due);
			continue;
		}
		dev_poll(l, d, now);
	}
	l->be->close(l);
	return NULL;
}

/* --- the public side ------------------------------------------------------------------ */

static bool dev_polled(const struct site *cfg, const struct device_cfg *d)
{
	return pollshared_dev_polled(cfg, d, POLLSHARED_BUS(BUS_RTU) |
						 POLLSHARED_BUS(BUS_RTU_OVER_TCP));
}

static int line_init(struct sp_line *l, struct serpoll *sp, const struct bus_cfg *b, char *err,
		     size_t errlen)
{
	unsigned chars35;

	l->sp = sp;
	l->bus = b;
	l->fd = -1;
	l->wakefd = -1;
	l->be = b->kind == BUS_RTU ? &mbl_backend : &rot_backend;
	if (b->kind == BUS_RTU && (b->device == NULL || b->device[0] == '\0')) {
		snprintf(err, errlen, "bus %s: no serial device", b->id);
		return -1;
	}
	if (b->kind == BUS_RTU_OVER_TCP && (b->host == NULL || b->host[0] == '\0')) {
		snprintf(err, errlen, "bus %s: no host", b->id);
		return -1;
	}
	l->timeout = b->timeout_ms > 0 ? b->timeout_ms : SP_DEFAULT_TIMEOUT_MS;
	l->char_bits = rtu_char_bits(b->data_bits, b->parity, b->stop_bits);
	/* RTU ends a frame with 3.5 characters of silence: a guard shorter than that would
	 * run two frames together at low baud rates */
	chars35 = (unsigned)rtu_transfer_ms(b->baud, l->char_bits * 7, 1);
	chars35 = (chars35 + 1) / 2;
	l->guard = max64(b->guard_ms > 0 ? b->guard_ms : 0, b->kind == BUS_RTU ? chars35 : 0);
	if (pthread_mutex_init(&l->mu, NULL) != 0) {
		snprintf(err, errlen, "serpoll: cannot create a mutex");
		return -1;
	}
	l->mu_init = true;
	return 0;
}

struct serpoll *serpoll_new(const struct site *cfg, uint32_t generation,
			    const struct poller_sink *sink, char *err, size_t errlen)
{
	struct serpoll *sp;
	size_t *line_of_bus = NULL, nd = 0;

	sp = calloc(1, sizeof *sp);
	if (sp == NULL)
		goto nomem;
	sp->site = *cfg;
	sp->generation = generation;
	if (sink != NULL)
		sp->sink = *sink;
	atomic_init(&sp->stopping, false);
	sp->retry_min = SP_OFFLINE_MIN_MS;
	sp->retry_max = SP_OFFLINE_MAX_MS;

	for (size_t i = 0; i < cfg->ndevices; i++) {
		const struct device_cfg *d = &cfg->devices[i];
		if (pollshared_check_device(cfg, d, err, errlen) != 0)
			goto fail;
		if (dev_polled(cfg, d))
			nd++;
	}
	line_of_bus = malloc((cfg->nbuses ? cfg->nbuses : 1) * sizeof *line_of_bus);
	sp->devs = calloc(nd ? nd : 1, sizeof *sp->devs);
	sp->lines = calloc(cfg->nbuses ? cfg->nbuses : 1, sizeof *sp->lines);
	sp->dev_of = calloc(cfg->ndevices ? cfg->ndevices : 1, sizeof *sp->dev_of);
	if (line_of_bus == NULL || sp->devs == NULL || sp->lines == NULL || sp->dev_of == NULL)
		goto nomem;
	sp->ncfgdevs = cfg->ndevices;

	for (size_t b = 0; b < cfg->nbuses; b++) {
		line_of_bus[b] = SIZE_MAX;
		for (size_t i = 0; i < cfg->ndevices; i++) {
			if (cfg->devices[i].bus == b && dev_polled(cfg, &cfg->devices[i])) {
				struct sp_line *l = &sp->lines[sp->nlines];
				line_of_bus[b] = sp->nlines++;
				if (line_init(l, sp, &cfg->buses[b], err, errlen) != 0)
					goto fail;
				break;
			}
		}
	}
	for (size_t i = 0; i < cfg->ndevices; i++) {
		const struct device_cfg *dc = &cfg->devices[i];
		struct sp_dev *d;
		if (!dev_polled(cfg, dc))
			continue;
		d = &sp->devs[sp->ndevs];
		d->cfg = dc;
		d->index = (uint32_t)i;
		d->line = &sp->lines[line_of_bus[dc->bus]];
		d->interval = dc->interval_ms > 0 ? dc->interval_ms : SP_DEFAULT_INTERVAL_MS;
		d->offline_after = dc->offline_after > 0 ? dc->offline_after : 1;
		d->online = true;
		if (plan_build(dc->points, dc->npoints, dc->max_registers, dc->max_gap,
			       &d->plan) != 0) {
			snprintf(err, errlen, "device %s: cannot plan its reads (out of memory, or "
				 "a point past address 65535)", dc->id);
			goto fail;
		}
		sp->ndevs++;
		d->line->ndevs++;
		sp->dev_of[i] = d;
		d->strbytes = pollshared_strbytes(dc);
	}
	for (size_t k = 0; k < sp->nlines; k++) {
		struct sp_line *l = &sp->lines[k];
		l->devs = calloc(l->ndevs ? l->ndevs : 1, sizeof *l->devs);
		if (l->devs == NULL)
			goto nomem;
		l->ndevs = 0;
	}
	for (size_t k = 0; k < sp->ndevs; k++) {
		struct sp_line *l = sp->devs[k].line;
		l->devs[l->ndevs++] = &sp->devs[k];
	}
	/* Serial lines first, while descriptors are low (see serpoll.h); a line that
	 * does not open now is retried by its thread. */
	for (size_t k = 0; k < sp->nlines; k++)
		if (sp->lines[k].bus->kind == BUS_RTU)
			(void)line_open(&sp->lines[k]);
	for (size_t k = 0; k < sp->nlines; k++) {
		sp->lines[k].wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (sp->lines[k].wakefd < 0) {
			snprintf(err, errlen, "serpoll: eventfd: %s", strerror(errno));
			goto fail;
		}
		sp->lines[k].retry_at = 0; /* the thread tries again at its first poll */
		sp->lines[k].backoff = 0;
	}
	free(line_of_bus);
	return sp;

nomem:
	snprintf(err, errlen, "serpoll: out of memory");
fail:
	free(line_of_bus);
	serpoll_free(sp);
	return NULL;
}

int serpoll_start(struct serpoll *sp)
{
	int64_t now = clock_mono_ms();

	if (sp->started) {
		errno = EALREADY;
		return -1;
	}
	sp->started = true;
	for (size_t k = 0; k < sp->ndevs; k++) {
		struct sp_dev *d = &sp->devs[k];
		d->due = now + pollshared_phase(d->index, d->interval);
	}
	sp->running = true;
	for (size_t k = 0; k < sp->nlines; k++) {
		struct sp_line *l = &sp->lines[k];
		int rc = pthread_create(&l->thread, NULL, line_main, l);
		if (rc != 0) {
			errno = rc;
			log_err("serpoll: cannot start the thread of bus %s", l->bus->id);
			serpoll_stop(sp);
			return -1;
		}
		l->started = true;
	}
	return 0;
}

void serpoll_stop(struct serpoll *sp)
{
	if (sp == NULL || !sp->running)
		return;
	atomic_store(&sp->stopping, true);
	for (size_t k = 0; k < sp->nlines; k++) {
		uint64_t one = 1;
		if (sp->lines[k].started && write(sp->lines[k].wakefd, &one, sizeof one) < 0)
			log_warn("serpoll: cannot signal the thread of bus %s", sp->lines[k].bus->id);
	}
	for (size_t k = 0; k < sp->nlines; k++) {
		if (sp->lines[k].started)
			pthread_join(sp->lines[k].thread, NULL);
		sp->lines[k].started = false;
	}
	sp->running = false;
}

void serpoll_free(struct serpoll *sp)
{
	if (sp == NULL)
		return;
	serpoll_stop(sp);
	for (size_t k = 0; k < sp->nlines; k++) {
		struct sp_line *l = &sp->lines[k];
		struct sp_write *w;
		if (l->be != NULL)
			l->be->close(l);
		if (l->wakefd >= 0)
			close(l->wakefd);
		/* writes still queued are dropped without write_done, as tcpoll does */
		while (l->mu_init && (w = wq_pop(l)) != NULL)
			free(w);
		if (l->mu_init)
			pthread_mutex_destroy(&l->mu);
		free(l->devs);
	}
	for (size_t k = 0; k < sp->ndevs; k++)
		plan_free(&sp->devs[k].plan);
	free(sp->lines);
	free(sp->devs);
	free(sp->dev_of);
	free(sp);
}

/* serpoll's refusals, as serpoll.h documents them: a point that cannot be written is
 * EINVAL before its value is looked at, whatever the value. */
static const struct pollshared_wrules sp_wrules = {
	.readonly_errno = EINVAL,
	.value_first = false,
	.coil_any_type = true,
};

int serpoll_write(struct serpoll *sp, uint32_t device, uint16_t point, double value,
		  uint64_t tag)
{
	struct sp_dev *d;
	struct pollshared_wreq q;
	struct sp_write *w;
	struct sp_line *l;
	uint64_t one = 1;

	if (sp == NULL || device >= sp->ncfgdevs || (d = sp->dev_of[device]) == NULL ||
	    point >= d->cfg->npoints) {
		errno = ENOENT;
		return -1;
	}
	if (pollshared_write_prepare(&d->cfg->points[point], value, &sp_wrules, &q) != 0)
		return -1;
	w = calloc(1, sizeof *w);
	if (w == NULL)
		return -1;
	w->dev = d;
	w->point = point;
	w->tag = tag;
	w->value = value;
	w->w = q;
	l = d->line;
	pthread_mutex_lock(&l->mu);
	if (l->nwq >= SP_MAX_WRITES) {
		pthread_mutex_unlock(&l->mu);
		free(w);
		errno = ENOBUFS;
		return -1;
	}
	if (l->wq_tail != NULL)
		l->wq_tail->next = w;
	else
		l->wq_head = w;
	l->wq_tail = w;
	l->nwq++;
	pthread_mutex_unlock(&l->mu);
	if (write(l->wakefd, &one, sizeof one) < 0)
		log_warn("serpoll: cannot wake the thread of bus %s", l->bus->id);
	return 0;
}

void serpoll_get_stats(struct serpoll *sp, struct serpoll_stats *out)
{
	out->polls = atomic_load(&sp->polls);
	out->failed = atomic_load(&sp->failed);
	out->requests = atomic_load(&sp->requests);
	out->timeouts = atomic_load(&sp->timeouts);
	out->proto_errors = atomic_load(&sp->proto_errors);
	out->opens = atomic_load(&sp->opens);
	out->open_fails = atomic_load(&sp->open_fails);
	out->writes = atomic_load(&sp->writes);
	out->write_fails = atomic_load(&sp->write_fails);
	out->offline = atomic_load(&sp->offline);
}

void serpoll_set_offline_retry(struct serpoll *sp, int64_t min_ms, int64_t max_ms)
{
	sp->retry_min = min_ms > 0 ? min_ms : SP_OFFLINE_MIN_MS;
	sp->retry_max = max_ms >= sp->retry_min ? max_ms : sp->retry_min;
}

size_t serpoll_ndevices(const struct serpoll *sp)
{
	return sp->ndevs;
}

size_t serpoll_nlines(const struct serpoll *sp)
{
	return sp->nlines;
}

bool serpoll_owns(const struct serpoll *sp, uint32_t device)
{
	return sp != NULL && device < sp->ncfgdevs && sp->dev_of[device] != NULL;
}
