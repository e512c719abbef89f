/*
 * poller_fixture: what the pollers' unit tests (test_tcpoll.c, test_serpoll.c) share —
 * a sink that keeps every reading and write result under a lock, waits on it with a
 * bound, a site built by hand (buses, devices, points), and for the fake servers (a
 * Modbus TCP server, an RTU slave) their thread, a register image they answer from
 * through mbpdu_serve, loopback ports that listen or that nobody listens on, a peer that
 * sends noise without pause on every connection (fx_flood), and, as root, a resolver
 * that never answers (fx_dns).
 * Include after <cmocka.h>.
 */
#ifndef SLUICE_TEST_POLLER_FIXTURE_H
#define SLUICE_TEST_POLLER_FIXTURE_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "mbpdu.h"
#include "netconn.h"
#include "poller.h"
#include "reading.h"
#include "site.h"

static inline void sleep_ms(int64_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Set a field of a fake server (anything with a mutex mu) under its lock. */
#define FX_SET(s, field, val)                  \
	do {                                   \
		pthread_mutex_lock(&(s)->mu);  \
		(s)->field = (val);            \
		pthread_mutex_unlock(&(s)->mu); \
	} while (0)

/* A fake server's thread, told to stop through a pipe its loop polls (wake[0]). */
struct fx_thread {
	pthread_t th;
	int wake[2];
};

static inline void fx_thread_start(struct fx_thread *t, void *(*main)(void *), void *arg)
{
	assert_int_equal(pipe2(t->wake, O_CLOEXEC), 0);
	assert_int_equal(pthread_create(&t->th, NULL, main, arg), 0);
}

static inline void fx_thread_stop(struct fx_thread *t)
{
	assert_int_equal(write(t->wake[1], "x", 1), 1);
	pthread_join(t->th, NULL);
	close(t->wake[0]);
	close(t->wake[1]);
}

/* --- the sink: a locked list ------------------------------------------------------ */

#define FX_MAX_WRITES 64

struct wres {
	uint32_t device;
	uint16_t point;
	uint64_t tag;
	int err;
};

struct sink {
	pthread_mutex_t mu;
	struct reading **v;
	size_t n, cap;
	struct wres w[FX_MAX_WRITES];
	size_t nw;
};

static inline void sink_emit(void *ctx, struct reading *r)
{
	struct sink *s = ctx;

	pthread_mutex_lock(&s->mu);
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 64;
		struct reading **v = realloc(s->v, cap * sizeof *v);
		if (v == NULL) {
			pthread_mutex_unlock(&s->mu);
			reading_free(r);
			return;
		}
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = r;
	pthread_mutex_unlock(&s->mu);
}

static inline void sink_write_done(void *ctx, uint32_t device, uint16_t point, uint64_t tag,
				   int err)
{
	struct sink *s = ctx;

	pthread_mutex_lock(&s->mu);
	if (s->nw < FX_MAX_WRITES)
		s->w[s->nw++] = (struct wres){ device, point, tag, err };
	pthread_mutex_unlock(&s->mu);
}

static inline void sink_init(struct sink *s)
{
	memset(s, 0, sizeof *s);
	pthread_mutex_init(&s->mu, NULL);
}

static inline void sink_fini(struct sink *s)
{
	for (size_t i = 0; i < s->n; i++)
		reading_free(s->v[i]);
	free(s->v);
	pthread_mutex_destroy(&s->mu);
}

/* The poller's view of the sink: readings and write results both. */
static inline struct poller_sink sink_poller(struct sink *s)
{
	return (struct poller_sink){ .ctx = s, .emit = sink_emit, .write_done = sink_write_done };
}

/* Readings of one device, in the order emitted (one device's polls never overlap). */
static inline size_t sink_of(struct sink *s, uint32_t dev, struct reading **out, size_t max)
{
	size_t k = 0;

	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i]->device == dev && k < max)
			out[k++] = s->v[i];
	pthread_mutex_unlock(&s->mu);
	return k;
}

static inline size_t sink_count(struct sink *s, uint32_t dev)
{
	struct reading *tmp[1024];
	return sink_of(s, dev, tmp, 1024);
}

static inline size_t sink_nwrites(struct sink *s)
{
	pthread_mutex_lock(&s->mu);
	size_t n = s->nw;
	pthread_mutex_unlock(&s->mu);
	return n;
}

/* The write result with this tag; fails the test when there is none. */
static inline struct wres sink_wres(struct sink *s, uint64_t tag)
{
	struct wres r = { 0 };
	bool found = false;

	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < s->nw; i++)
		if (s->w[i].tag == tag) {
			r = s->w[i];
			found = true;
		}
	pthread_mutex_unlock(&s->mu);
	if (!found)
		fail_msg("no write_done for tag %llu", (unsigned long long)tag);
	return r;
}

/* Wait (bounded) until dev has at least n readings. */
static inline bool wait_readings(struct sink *s, uint32_t dev, size_t n, int64_t max_ms)
{
	int64_t end = clock_mono_ms() + max_ms;

	while (clock_mono_ms() < end) {
		if (sink_count(s, dev) >= n)
			return true;
		sleep_ms(10);
	}
	return sink_count(s, dev) >= n;
}

/* The same, failing the test with the count reached. */
static inline void wait_count(struct sink *s, uint32_t dev, size_t n, int64_t max_ms)
{
	if (!wait_readings(s, dev, n, max_ms))
		fail_msg("device %u: %zu readings after %lld ms, wanted %zu", dev,
			 sink_count(s, dev), (long long)max_ms, n);
}

/* Wait (bounded) until n writes are reported. */
static inline bool wait_writes(struct sink *s, size_t n, int64_t max_ms)
{
	int64_t end = clock_mono_ms() + max_ms;

	while (clock_mono_ms() < end && sink_nwrites(s) < n)
		sleep_ms(10);
	return sink_nwrites(s) >= n;
}

/* --- probes ------------------------------------------------------------------------ */

#define FX_PROBE_READS 8

/* A probe and its reads, with what its done callback saw (done from a poller thread, or
 * from the thread that stopped the poller). */
struct fx_probe {
	struct poller_probe p;
	struct poller_read reads[FX_PROBE_READS];
	pthread_mutex_t mu;
	int ndone;
	int64_t done_ms;
};

static inline void fx_probe_done(struct poller_probe *p)
{
	struct fx_probe *f = p->ctx;

	pthread_mutex_lock(&f->mu);
	f->ndone++;
	f->done_ms = clock_mono_ms();
	pthread_mutex_unlock(&f->mu);
}

/* A probe of unit, start_by 5 s from now, the bus's timeout; reads added with
 * fx_probe_read. Free with fx_probe_free once done. */
static inline struct fx_probe *fx_probe_new(uint8_t unit)
{
	struct fx_probe *f = calloc(1, sizeof *f);

	assert_non_null(f);
	pthread_mutex_init(&f->mu, NULL);
	f->p = (struct poller_probe){ .unit = unit, .start_by = clock_mono_ms() + 5000,
				      .reads = f->reads, .done = fx_probe_done, .ctx = f,
				      .status = -1 };
	return f;
}

static inline void fx_probe_read(struct fx_probe *f, enum mb_table t, uint16_t start,
				 uint16_t count)
{
	assert_true(f->p.nreads < FX_PROBE_READS);
	f->reads[f->p.nreads++] = (struct poller_read){ .table = (uint8_t)t, .start = start,
							.count = count, .err = -1 };
}

static inline int fx_probe_ndone(struct fx_probe *f)
{
	pthread_mutex_lock(&f->mu);
	int n = f->ndone;
	pthread_mutex_unlock(&f->mu);
	return n;
}

/* Wait (bounded) for the probe's done; fails the test when it does not come. */
static inline void fx_probe_wait(struct fx_probe *f, int64_t max_ms)
{
	int64_t end = clock_mono_ms() + max_ms;

	while (clock_mono_ms() < end && fx_probe_ndone(f) == 0)
		sleep_ms(5);
	if (fx_probe_ndone(f) == 0)
		fail_msg("probe not done after %lld ms", (long long)max_ms);
}

static inline void fx_probe_free(struct fx_probe *f)
{
	assert_int_equal(fx_probe_ndone(f), 1); /* done exactly once */
	pthread_mutex_destroy(&f->mu);
	free(f);
}

/* --- a site built by hand ---------------------------------------------------------- */

#define MAXB 4
#define MAXD 8
#define MAXP 16

struct tcfg {
	struct site cfg;
	struct bus_cfg buses[MAXB];
	struct device_cfg devs[MAXD];
	struct point_def pts[MAXD][MAXP];
};

static inline struct tcfg *tcfg_new(void)
{
	struct tcfg *t = calloc(1, sizeof *t);
	assert_non_null(t);
	t->cfg.buses = t->buses;
	t->cfg.devices = t->devs;
	return t;
}

/* A bus of kind at where: a host (tcp, rtu_over_tcp) or a tty (rtu), 115200 8N1. */
static inline size_t add_bus(struct tcfg *t, const char *id, int kind, const char *where,
			     uint16_t port, int64_t timeout_ms, int64_t guard_ms)
{
	struct bus_cfg *b = &t->buses[t->cfg.nbuses];

	snprintf(b->id, sizeof b->id, "%s", id);
	b->kind = kind;
	if (kind == BUS_RTU)
		b->device = (char *)where;
	else
		b->host = (char *)where;
	b->port = port;
	b->baud = 115200;
	b->parity = 'N';
	b->data_bits = 8;
	b->stop_bits = 1;
	b->timeout_ms = timeout_ms;
	b->guard_ms = guard_ms;
	return t->cfg.nbuses++;
}

/* A device with offline_after 3, reads of up to 125 registers, no holes read to merge. */
static inline uint32_t add_dev(struct tcfg *t, const char *id, size_t bus, uint8_t unit,
			       int64_t interval_ms)
{
	size_t i = t->cfg.ndevices++;
	struct device_cfg *d = &t->devs[i];

	memset(d, 0, sizeof *d);
	snprintf(d->id, sizeof d->id, "%s", id);
	d->bus = bus;
	d->unit_id = unit;
	d->points = t->pts[i];
	d->interval_ms = interval_ms;
	d->offline_after = 3;
	d->max_registers = 125;
	d->max_gap = 0;
	return (uint32_t)i;
}

static inline struct point_def *add_pt(struct tcfg *t, uint32_t dev, const char *name,
				       enum mb_table table, uint16_t addr, enum pt_type type)
{
	struct device_cfg *d = &t->devs[dev];
	struct point_def *p = &d->points[d->npoints++];

	snprintf(p->name, sizeof p->name, "%s", name);
	p->table = table;
	p->address = addr;
	p->type = type;
	p->bit = -1;
	p->scale = 1.0;
	return p;
}

/* --- what the fake servers serve ------------------------------------------------- */

#define IMG 512

/* A device's tables: bits[0] coils, bits[1] discrete inputs, regs[0] input registers,
 * regs[1] holding registers. Reads and writes touching [exc_from, exc_to) of a register
 * table get exception 2. The server holds its own lock around mbpdu_serve. */
struct image {
	uint8_t bits[2][IMG];
	uint16_t regs[2][IMG];
	int exc_from, exc_to;
};

static inline int img_read_regs(void *ctx, enum mb_table t, uint16_t start, uint16_t count,
				uint16_t *out)
{
	struct image *im = ctx;

	if ((unsigned)start + count > IMG)
		return 2;
	if (start < im->exc_to && start + count > im->exc_from)
		return 2;
	memcpy(out, &im->regs[t == MB_HOLDING][start], count * sizeof *out);
	return 0;
}

static inline int img_write_regs(void *ctx, uint16_t start, uint16_t count, const uint16_t *in)
{
	struct image *im = ctx;

	if ((unsigned)start + count > IMG)
		return 2;
	if (start < im->exc_to && start + count > im->exc_from)
		return 2;
	memcpy(&im->regs[1][start], in, count * sizeof *in);
	return 0;
}

static inline int img_read_bits(void *ctx, enum mb_table t, uint16_t start, uint16_t count,
				uint8_t *out)
{
	struct image *im = ctx;

	if ((unsigned)start + count > IMG)
		return 2;
	memcpy(out, &im->bits[t == MB_DISCRETE][start], count);
	return 0;
}

static inline int img_write_bits(void *ctx, uint16_t start, uint16_t count, const uint8_t *in)
{
	struct image *im = ctx;

	if ((unsigned)start + count > IMG)
		return 2;
	memcpy(&im->bits[0][start], in, count);
	return 0;
}

/* Answer one request PDU from im: the response PDU's length in resp. */
static inline size_t img_serve(struct image *im, const uint8_t *req, size_t reqlen,
			       uint8_t *resp)
{
	struct mbpdu_server ms = { .ctx = im, .read_regs = img_read_regs,
				   .read_bits = img_read_bits, .write_regs = img_write_regs,
				   .write_bits = img_write_bits };

	return mbpdu_serve(&ms, req, reqlen, resp);
}

/* A listening socket on the loopback of af (AF_INET 127.0.0.1, AF_INET6 ::1), its port
 * in *port; -1 when this machine has no such loopback. */
static inline int fx_listen(int af, uint16_t *port)
{
	struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	struct sockaddr *a = af == AF_INET ? (struct sockaddr *)&a4 : (struct sockaddr *)&a6;
	socklen_t len = af == AF_INET ? sizeof a4 : sizeof a6;
	int fd = socket(af, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, a, len) != 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	assert_int_equal(listen(fd, 64), 0);
	assert_int_equal(getsockname(fd, a, &len), 0);
	*port = ntohs(af == AF_INET ? a4.sin_port : a6.sin6_port);
	return fd;
}

/* A loopback port nobody listens on: bound, then closed. */
static inline uint16_t dead_port(void)
{
	uint16_t port = 0;
	int fd = fx_listen(AF_INET, &port);

	assert_true(fd >= 0);
	close(fd);
	return port;
}

/* --- a peer that never stops talking ------------------------------------------------- */

#define FX_FLOOD_CONNS 32

/* Every connection accepted on a loopback port gets noise as fast as it is read, until
 * fx_flood_free; a connection the other side closes is let go. */
struct fx_flood {
	struct fx_thread thr;
	pthread_mutex_t mu;
	int lfd;
	uint16_t port;
	unsigned accepted;       /* connections, under mu */
	uint64_t sent;           /* bytes, under mu */
};

static inline void *fx_flood_main(void *arg)
{
	struct fx_flood *f = arg;
	int fds[FX_FLOOD_CONNS];
	size_t n = 0;
	uint8_t noise[4096];
	uint32_t x = 0x2545F491u;

	for (size_t i = 0; i < sizeof noise; i++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		noise[i] = (uint8_t)x;
	}
	for (;;) {
		struct pollfd p[2 + FX_FLOOD_CONNS] = {
			{ .fd = f->thr.wake[0], .events = POLLIN },
			{ .fd = f->lfd, .events = POLLIN },
		};
		for (size_t i = 0; i < n; i++)
			p[2 + i] = (struct pollfd){ .fd = fds[i], .events = POLLOUT };
		if (poll(p, 2 + n, 100) < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			break;
		if ((p[1].revents & POLLIN) && n < FX_FLOOD_CONNS) {
			int c = accept4(f->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (c >= 0) {
				fds[n++] = c;
				pthread_mutex_lock(&f->mu);
				f->accepted++;
				pthread_mutex_unlock(&f->mu);
			}
		}
		for (size_t i = 0; i < n; i++) {
			ssize_t k;
			if (!p[2 + i].revents)
				continue;
			k = send(fds[i], noise, sizeof noise, MSG_NOSIGNAL);
			if (k > 0) {
				pthread_mutex_lock(&f->mu);
				f->sent += (uint64_t)k;
				pthread_mutex_unlock(&f->mu);
				continue;
			}
			if (k < 0 && errno == EAGAIN)
				continue;
			/* the other side closed it: forget it (p[] is rebuilt next round) */
			close(fds[i]);
			fds[i] = fds[--n];
			p[2 + i] = p[2 + n];
			i--;
		}
	}
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
	return NULL;
}

static inline struct fx_flood *fx_flood_new(void)
{
	struct fx_flood *f = calloc(1, sizeof *f);

	assert_non_null(f);
	pthread_mutex_init(&f->mu, NULL);
	f->lfd = fx_listen(AF_INET, &f->port);
	assert_true(f->lfd >= 0);
	fx_thread_start(&f->thr, fx_flood_main, f);
	return f;
}

static inline unsigned fx_flood_accepted(struct fx_flood *f)
{
	pthread_mutex_lock(&f->mu);
	unsigned n = f->accepted;
	pthread_mutex_unlock(&f->mu);
	return n;
}

static inline uint64_t fx_flood_sent(struct fx_flood *f)
{
	pthread_mutex_lock(&f->mu);
	uint64_t n = f->sent;
	pthread_mutex_unlock(&f->mu);
	return n;
}

static inline void fx_flood_free(struct fx_flood *f)
{
	fx_thread_stop(&f->thr);
	close(f->lfd);
	pthread_mutex_destroy(&f->mu);
	free(f);
}

/* --- a resolver that never answers ------------------------------------------------------- */

#define FX_HUNG_NAME "plc-hang.sluice-test.example" /* in no hosts file */
#define FX_DNS_PENDING 64

/*
 * As root, this process goes into a mount namespace of its own (every thread it starts
 * afterwards with it), where /etc/resolv.conf is a bind mount of a file naming a UDP
 * socket on port 53 of a loopback address, which reads queries and does not answer them
 * until fx_dns_free (then it refuses each, so that the lookups end before the process
 * does: valgrind sees their threads gone). With hosts, /etc/hosts is replaced too (the
 * file fx_dns.hosts, which a test may rewrite). The machine's own files are never
 * touched: the root is made private before anything is mounted, and the mounts vanish
 * with the namespace.
 */
struct fx_dns {
	struct fx_thread thr;
	pthread_mutex_t mu;
	int fd;
	char addr[32];
	char conf[64], hosts[64];
	bool answer;             /* under mu: refuse every query */
	unsigned queries;        /* under mu */
	struct {
		struct sockaddr_in from;
		uint8_t q[512];
		size_t len;
	} pending[FX_DNS_PENDING];
	size_t npending;
};

/* The query with its header turned into a REFUSED answer (the question kept, nothing
 * else): its length, 0 when it is not a query. */
static inline size_t fx_dns_refuse(uint8_t *q, size_t len)
{
	size_t off = 12;

	if (len < 12 || (q[2] & 0x80))
		return 0;
	while (off < len && q[off] != 0)
		off += (size_t)q[off] + 1;
	off += 1 + 4; /* the root label, QTYPE, QCLASS */
	if (off > len)
		return 0;
	q[2] = (uint8_t)(0x80 | (q[2] & 0x79));
	q[3] = 0x80 | 5;
	memset(q + 6, 0, 6);
	return off;
}

static inline void *fx_dns_main(void *arg)
{
	struct fx_dns *d = arg;

	for (;;) {
		struct pollfd p[2] = { { .fd = d->thr.wake[0], .events = POLLIN },
				       { .fd = d->fd, .events = POLLIN } };
		uint8_t q[512];
		struct sockaddr_in from;
		socklen_t fl = sizeof from;
		ssize_t n;

		if (poll(p, 2, 50) < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			break;
		pthread_mutex_lock(&d->mu);
		if (d->answer) {
			for (size_t i = 0; i < d->npending; i++) {
				size_t rl = fx_dns_refuse(d->pending[i].q, d->pending[i].len);
				if (rl > 0)
					(void)sendto(d->fd, d->pending[i].q, rl, 0,
						     (struct sockaddr *)&d->pending[i].from,
						     sizeof d->pending[i].from);
			}
			d->npending = 0;
		}
		pthread_mutex_unlock(&d->mu);
		if (!p[1].revents)
			continue;
		n = recvfrom(d->fd, q, sizeof q, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		if (n <= 0)
			continue;
		pthread_mutex_lock(&d->mu);
		d->queries++;
		if (d->answer) {
			size_t rl = fx_dns_refuse(q, (size_t)n);
			if (rl > 0)
				(void)sendto(d->fd, q, rl, 0, (struct sockaddr *)&from, fl);
		} else if (d->npending < FX_DNS_PENDING) {
			d->pending[d->npending].from = from;
			memcpy(d->pending[d->npending].q, q, (size_t)n);
			d->pending[d->npending++].len = (size_t)n;
		}
		pthread_mutex_unlock(&d->mu);
	}
	return NULL;
}

static inline bool fx_dns_file(char *path, size_t len, const char *text)
{
	int fd;

	snprintf(path, len, "/tmp/sluice-test-XXXXXX");
	fd = mkstemp(path);
	if (fd < 0)
		return false;
	bool ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
	close(fd);
	return ok;
}

/* Rewrite the hosts file in place (the bind mount follows the file, not its name). */
static inline void fx_dns_set_hosts(struct fx_dns *d, const char *text)
{
	FILE *f = fopen(d->hosts, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

/* The resolver, or NULL with the reason printed (the caller skips its test). */
static inline struct fx_dns *fx_dns_new(const char *hosts)
{
	struct fx_dns *d;
	char conf[128];
	const char *why = NULL;

	if (geteuid() != 0) {
		print_message("SKIPPED: a resolver that never answers needs root (a mount "
			      "namespace and port 53)\n");
		return NULL;
	}
	d = calloc(1, sizeof *d);
	assert_non_null(d);
	pthread_mutex_init(&d->mu, NULL);
	d->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(d->fd >= 0);
	for (int i = 0; i < 16; i++) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(53) };
		snprintf(d->addr, sizeof d->addr, "127.0.%d.53", (int)(getpid() + i) % 250 + 1);
		inet_pton(AF_INET, d->addr, &a.sin_addr);
		if (bind(d->fd, (struct sockaddr *)&a, sizeof a) == 0) {
			why = "";
			break;
		}
	}
	snprintf(conf, sizeof conf, "nameserver %s\noptions timeout:30 attempts:1\n", d->addr);
	if (why == NULL)
		why = "no loopback address with port 53 free";
	else if (!fx_dns_file(d->conf, sizeof d->conf, conf) ||
		 (hosts != NULL && !fx_dns_file(d->hosts, sizeof d->hosts, hosts)))
		why = "cannot write a file in /tmp";
	else if (unshare(CLONE_NEWNS) != 0)
		why = "unshare(CLONE_NEWNS) refused";
	/* private before any mount: nothing may reach the machine's own namespace (the
	 * type is ignored for these; "none" rather than NULL keeps valgrind quiet) */
	else if (mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0)
		why = "cannot make the mount namespace private";
	else if (mount(d->conf, "/etc/resolv.conf", "none", MS_BIND, NULL) != 0)
		why = "cannot bind-mount /etc/resolv.conf";
	else if (hosts != NULL && mount(d->hosts, "/etc/hosts", "none", MS_BIND, NULL) != 0)
		why = "cannot bind-mount /etc/hosts";
	if (why[0] != '\0') {
		print_message("SKIPPED: %s: %s\n", why, strerror(errno));
		close(d->fd);
		if (d->conf[0])
			unlink(d->conf);
		if (d->hosts[0])
			unlink(d->hosts);
		pthread_mutex_destroy(&d->mu);
		free(d);
		return NULL;
	}
	fx_thread_start(&d->thr, fx_dns_main, d);
	return d;
}

static inline unsigned fx_dns_queries(struct fx_dns *d)
{
	pthread_mutex_lock(&d->mu);
	unsigned n = d->queries;
	pthread_mutex_unlock(&d->mu);
	return n;
}

/* Refuse every query from now on, wait for the lookups to end, undo the mounts. */
static inline void fx_dns_free(struct fx_dns *d)
{
	int64_t end = clock_mono_ms() + 10000;

	if (d == NULL)
		return;
	FX_SET(d, answer, true);
	while (netconn_lookups_running() > 0 && clock_mono_ms() < end)
		sleep_ms(10);
	if (netconn_lookups_running() > 0)
		fail_msg("%u lookups still running 10 s after the resolver answers",
			 netconn_lookups_running());
	sleep_ms(50); /* their threads return */
	fx_thread_stop(&d->thr);
	(void)umount2("/etc/resolv.conf", MNT_DETACH);
	if (d->hosts[0])
		(void)umount2("/etc/hosts", MNT_DETACH);
	unlink(d->conf);
	if (d->hosts[0])
		unlink(d->hosts);
	close(d->fd);
	pthread_mutex_destroy(&d->mu);
	free(d);
}

#endif
