/*
 * tcpoll against a real Modbus TCP server on 127.0.0.1 (a thread of this test that
 * answers with mbpdu_serve over a register image the test controls, and can delay,
 * drop, fragment, mis-number, forge or refuse its replies). Asserts: schedules, decoded
 * values, isolation of dead and slow devices, exceptions, reconnects, guard time, a
 * forged trailing frame never taken, a wall-clock
 * step, descriptors past 1023, a prompt stop, the circuit breaker, the splitting of
 * refused merged reads, and writes of each kind. Bounds on time are generous (the test
 * also runs under valgrind): they tell a schedule from a stall, not fast from slow.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "mberr.h"
#include "mbpdu.h"
#include "poller_fixture.h"
#include "reading.h"
#include "tcpoll.h"

/* --- the server ---------------------------------------------------------------------- */

#define MAXCL 32
#define MAXREQ 4096

/* SRV_FORGE_SAME, SRV_FORGE_LATER: each reply is followed by a forged one to the same
 * request, with the next transaction id and FORGED in every register, in the same send or
 * 5 ms later (before the next request is taken). */
enum srv_mode { SRV_NORMAL, SRV_DROP, SRV_CLOSE, SRV_BADTID, SRV_FORGE_SAME, SRV_FORGE_LATER };
#define FORGED 6666

struct client {
	int fd;
	uint8_t in[1024];
	size_t inlen;
	uint8_t out[2 * MBTCP_ADU_MAX];
	size_t outlen, outoff;
	size_t split;            /* SRV_FORGE_LATER: where the forged frame begins */
	int64_t due_us;
	bool pending;
};

struct srv {
	int lfd;
	uint16_t port;
	struct fx_thread thr;
	pthread_mutex_t mu;
	struct image img;        /* the tables, with their exception range */
	/* behaviour, changed by the test under mu */
	int mode;
	int drop_unit;           /* >= 0: never answer this unit */
	int delay_ms;
	int late_n, late_ms;     /* the next late_n replies wait late_ms */
	int mute_from, mute_to;  /* register reads touching [from, to) get no reply */
	bool fragment;           /* one byte per 2 ms */
	/* what it saw */
	int accepted;
	int nreq;
	int64_t req_us[MAXREQ];
	uint8_t req_unit[MAXREQ];
	uint16_t req_tid[MAXREQ];
	uint8_t req_fc[MAXREQ];
	uint16_t req_start[MAXREQ], req_count[MAXREQ];
	struct client cl[MAXCL];
	size_t ncl;
};

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void srv_drop_client(struct srv *s, size_t i)
{
	close(s->cl[i].fd);
	s->cl[i] = s->cl[--s->ncl];
}

/* Handle the complete requests in c->in. Returns false when the client was closed. */
static bool srv_requests(struct srv *s, size_t ci)
{
	struct client *c = &s->cl[ci];

	/* one reply at a time: the next request waits until this one is out */
	while (c->inlen >= MBTCP_HDR && !c->pending) {
		uint16_t tid;
		uint8_t unit, resp[MB_PDU_MAX];
		int pdulen = mbtcp_header(c->in, &tid, &unit);
		size_t total, rlen;
		int delay;

		if (pdulen < 0) {
			srv_drop_client(s, ci);
			return false;
		}
		total = MBTCP_HDR + (size_t)pdulen;
		if (c->inlen < total)
			return true;
		pthread_mutex_lock(&s->mu);
		const uint8_t *pdu = c->in + MBTCP_HDR;
		uint8_t fc = pdu[0];
		uint16_t rstart = pdulen >= 3 ? (uint16_t)(pdu[1] << 8 | pdu[2]) : 0;
		uint16_t rcount = fc == 5 || fc == 6 ? 1 :
				  pdulen >= 5 ? (uint16_t)(pdu[3] << 8 | pdu[4]) : 0;
		bool muted = (fc == 3 || fc == 4) && rstart < s->mute_to &&
			     rstart + rcount > s->mute_from;
		if (s->nreq < MAXREQ) {
			s->req_us[s->nreq] = now_us();
			s->req_unit[s->nreq] = unit;
			s->req_tid[s->nreq] = tid;
			s->req_fc[s->nreq] = fc;
			s->req_start[s->nreq] = rstart;
			s->req_count[s->nreq] = rcount;
		}
		s->nreq++;
		if (s->mode == SRV_CLOSE) {
			pthread_mutex_unlock(&s->mu);
			srv_drop_client(s, ci);
			return false;
		}
		if (s->mode == SRV_DROP || s->drop_unit == unit || muted) {
			pthread_mutex_unlock(&s->mu);
		} else {
			rlen = img_serve(&s->img, c->in + MBTCP_HDR, (size_t)pdulen, resp);
			c->outlen = mbtcp_frame(c->out, s->mode == SRV_BADTID ? tid + 1 : tid, unit,
						resp, rlen);
			c->outoff = 0;
			c->split = 0;
			if ((s->mode == SRV_FORGE_SAME || s->mode == SRV_FORGE_LATER) &&
			    (fc == 3 || fc == 4) && rcount <= MB_MAX_READ_REGS) {
				uint8_t forged[2 + 2 * MB_MAX_READ_REGS] = { fc, (uint8_t)(2 * rcount) };
				for (uint16_t k = 0; k < rcount; k++) {
					forged[2 + 2 * k] = FORGED >> 8;
					forged[3 + 2 * k] = FORGED & 0xFF;
				}
				if (s->mode == SRV_FORGE_LATER)
					c->split = c->outlen;
				c->outlen += mbtcp_frame(c->out + c->outlen, (uint16_t)(tid + 1), unit,
							 forged, 2 + 2 * (size_t)rcount);
			}
			delay = s->delay_ms;
			if (s->late_n > 0) {
				s->late_n--;
				delay = s->late_ms;
			}
			c->due_us = now_us() + (int64_t)delay * 1000;
			c->pending = true;
			pthread_mutex_unlock(&s->mu);
		}
		memmove(c->in, c->in + total, c->inlen - total);
		c->inlen -= total;
	}
	return true;
}

static void *srv_main(void *arg)
{
	struct srv *s = arg;

	for (;;) {
		struct pollfd pf[2 + MAXCL];
		int64_t now = now_us(), next = now + 50000;
		int timeout;

		pf[0] = (struct pollfd){ .fd = s->thr.wake[0], .events = POLLIN };
		pf[1] = (struct pollfd){ .fd = s->lfd, .events = POLLIN };
		for (size_t i = 0; i < s->ncl; i++) {
			pf[2 + i] = (struct pollfd){ .fd = s->cl[i].fd, .events = POLLIN };
			if (s->cl[i].pending && s->cl[i].due_us < next)
				next = s->cl[i].due_us;
		}
		timeout = next <= now ? 0 : (int)((next - now + 999) / 1000);
		if (poll(pf, 2 + s->ncl, timeout) < 0 && errno != EINTR)
			break;
		if (pf[0].revents)
			break;
		/* clients, from the end so that dropping one (swap with the last) is safe;
		 * new ones are accepted after, so every client here has its pollfd */
		for (size_t i = s->ncl; i-- > 0;) {
			struct client *c = &s->cl[i];
			if (pf[2 + i].fd == c->fd && pf[2 + i].revents) {
				ssize_t n = recv(c->fd, c->in + c->inlen, sizeof c->in - c->inlen, 0);
				if (n <= 0) {
					if (n < 0 && errno == EAGAIN)
						continue;
					srv_drop_client(s, i);
					continue;
				}
				c->inlen += (size_t)n;
				if (!srv_requests(s, i))
					continue;
			}
			now = now_us();
			if (c->pending && c->due_us <= now) {
				size_t len = s->fragment ? 1 : c->outlen - c->outoff;
				if (c->split > c->outoff && c->outoff + len > c->split)
					len = c->split - c->outoff;
				ssize_t n = send(c->fd, c->out + c->outoff, len, MSG_NOSIGNAL);
				if (n > 0)
					c->outoff += (size_t)n;
				if (n < 0 && errno != EAGAIN) {
					srv_drop_client(s, i);
					continue;
				}
				if (c->outoff >= c->outlen) {
					c->pending = false;
					if (!srv_requests(s, i)) /* one that waited its turn */
						continue;
				} else if (c->outoff == c->split) {
					c->split = 0;
					c->due_us = now + 5000;
				} else {
					c->due_us = now + 2000;
				}
			}
		}
		if (pf[1].revents & POLLIN) {
			int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd >= 0 && s->ncl < MAXCL) {
				memset(&s->cl[s->ncl], 0, sizeof s->cl[s->ncl]);
				s->cl[s->ncl++].fd = fd;
				pthread_mutex_lock(&s->mu);
				s->accepted++;
				pthread_mutex_unlock(&s->mu);
			} else if (fd >= 0) {
				close(fd);
			}
		}
	}
	while (s->ncl > 0)
		srv_drop_client(s, s->ncl - 1);
	return NULL;
}

/* A server on 127.0.0.1 (AF_INET) or ::1 (AF_INET6); NULL when that loopback is missing. */
static struct srv *srv_start_af(int af)
{
	struct srv *s = calloc(1, sizeof *s);

	assert_non_null(s);
	s->lfd = fx_listen(af, &s->port);
	if (s->lfd < 0) {
		free(s);
		return NULL;
	}
	pthread_mutex_init(&s->mu, NULL);
	s->drop_unit = -1;
	fx_thread_start(&s->thr, srv_main, s);
	return s;
}

static struct srv *srv_start(void)
{
	struct srv *s = srv_start_af(AF_INET);
	assert_non_null(s);
	return s;
}

static void srv_stop(struct srv *s)
{
	fx_thread_stop(&s->thr);
	close(s->lfd);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

static int srv_get(struct srv *s, int *field)
{
	pthread_mutex_lock(&s->mu);
	int v = *field;
	pthread_mutex_unlock(&s->mu);
	return v;
}

/* --- a config built by hand ---------------------------------------------------------- */

/* A Modbus TCP bus to 127.0.0.1. */
static size_t add_tcp_bus(struct tcfg *t, const char *id, uint16_t port, int64_t timeout_ms,
			  int64_t guard_ms)
{
	return add_bus(t, id, BUS_TCP, "127.0.0.1", port, timeout_ms, guard_ms);
}

static struct tcpoll *start_retry(struct tcfg *t, unsigned nthreads, struct sink *sk,
				  int64_t retry_min, int64_t retry_max)
{
	struct poller_sink ps = sink_poller(sk);
	char err[256] = "";
	struct tcpoll *tp = tcpoll_new(&t->cfg, 42, nthreads, &ps, err, sizeof err);

	if (tp == NULL)
		fail_msg("tcpoll_new: %s", err);
	if (retry_min > 0)
		tcpoll_set_offline_retry(tp, retry_min, retry_max);
	assert_int_equal(tcpoll_start(tp), 0);
	return tp;
}

static struct tcpoll *start(struct tcfg *t, unsigned nthreads, struct sink *sk)
{
	return start_retry(t, nthreads, sk, 0, 0);
}

/* Every point of r failed with code. */
static void assert_all_err(const struct reading *r, int code)
{
	for (uint16_t i = 0; i < r->nvalues; i++) {
		assert_int_equal(r->values[i].kind, VAL_NONE);
		assert_int_equal(r->values[i].err, code);
	}
}

static bool all_ok(const struct reading *r)
{
	for (uint16_t i = 0; i < r->nvalues; i++)
		if (r->values[i].kind == VAL_NONE)
			return false;
	return true;
}

/* Start-to-start gaps never exceed max_gap; scheduled times never come closer than
 * the interval, and a poll never starts more than max_gap - interval after it was due
 * (a schedule that catches up falls ever further behind, or bursts). */
static void assert_schedule(struct reading **v, size_t n, int64_t interval, int64_t max_gap)
{
	for (size_t i = 1; i < n; i++) {
		int64_t gap = v[i]->start_mono_ms - v[i - 1]->start_mono_ms;
		int64_t sgap = v[i]->sched_mono_ms - v[i - 1]->sched_mono_ms;
		if (gap > max_gap)
			fail_msg("poll %zu started %lld ms after the previous one (max %lld)", i,
				 (long long)gap, (long long)max_gap);
		if (sgap < interval)
			fail_msg("poll %zu scheduled %lld ms after the previous one (interval %lld)",
				 i, (long long)sgap, (long long)interval);
		assert_true(v[i]->start_mono_ms >= v[i]->sched_mono_ms);
		if (v[i]->start_mono_ms - v[i]->sched_mono_ms > max_gap - interval)
			fail_msg("poll %zu started %lld ms late", i,
				 (long long)(v[i]->start_mono_ms - v[i]->sched_mono_ms));
	}
}

/* --- tests ------------------------------------------------------------------------------ */

static void test_values_decoded(void **state)
{
	(void)state;
	struct srv *s = srv_start();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[64] = { 0 };
	struct point_def *p;
	int64_t t0 = clock_real_ms();

	/* float32 12.5, big word order */
	s->img.regs[1][0] = 0x4148;
	s->img.regs[1][1] = 0x0000;
	/* uint32 4000000000, little word order */
	s->img.regs[1][2] = 0x2800;
	s->img.regs[1][3] = 0xEE6B;
	s->img.regs[1][10] = 0x0008;                      /* bit 3 */
	memcpy(&s->img.regs[1][20], (uint16_t[]){ 0x5055, 0x4D50, 0x2D31, 0x2020 }, 8);
	memcpy(&s->img.regs[1][30], (uint16_t[]){ 0x0123, 0x4567, 0x89AB, 0xCDEF }, 8);
	s->img.regs[0][0] = 0xFB2E;                       /* int16 -1234 */
	s->img.regs[0][1] = 0xFFFB;                       /* int16 -5 */
	s->img.bits[0][5] = 1;
	s->img.bits[1][3] = 1;

	size_t b = add_tcp_bus(t, "plant", s->port, 1000, 0);
	uint32_t d = add_dev(t, "meter", b, 7, 200);
	add_pt(t, d, "flow", MB_HOLDING, 0, PT_FLOAT32);
	p = add_pt(t, d, "total", MB_HOLDING, 2, PT_UINT32);
	p->word_order = ORDER_LITTLE;
	p = add_pt(t, d, "run", MB_HOLDING, 10, PT_BOOL);
	p->bit = 3;
	p = add_pt(t, d, "name", MB_HOLDING, 20, PT_STRING);
	p->length = 4;
	add_pt(t, d, "count", MB_HOLDING, 30, PT_UINT64);
	p = add_pt(t, d, "temp", MB_INPUT, 0, PT_INT16);
	p->scale = 0.1;
	add_pt(t, d, "delta", MB_INPUT, 1, PT_INT16);
	add_pt(t, d, "pump", MB_COIL, 5, PT_BOOL);
	add_pt(t, d, "valve", MB_COIL, 6, PT_BOOL);
	add_pt(t, d, "alarm", MB_DISCRETE, 3, PT_BOOL);

	sink_init(&sk);
	struct tcpoll *tp = start(t, 2, &sk);
	assert_int_equal(tcpoll_ndevices(tp), 1);
	assert_true(wait_readings(&sk, d, 3, 3000));
	tcpoll_stop(tp);

	size_t n = sink_of(&sk, d, v, 64);
	for (size_t i = 0; i < n; i++) {
		struct reading *r = v[i];
		assert_int_equal(r->device, d);
		assert_int_equal(r->generation, 42);
		assert_int_equal(r->nvalues, 10);
		assert_true(r->ts_ms >= t0 - 1 && r->ts_ms <= clock_real_ms() + 1);
		assert_true(all_ok(r));
		assert_int_equal(r->values[0].kind, VAL_DOUBLE);
		assert_true(r->values[0].v.d == 12.5);
		assert_int_equal(r->values[1].kind, VAL_UINT);
		assert_int_equal(r->values[1].v.u, 4000000000u);
		assert_int_equal(r->values[2].kind, VAL_BOOL);
		assert_true(r->values[2].v.b);
		assert_int_equal(r->values[3].kind, VAL_STRING);
		assert_string_equal(r->values[3].s, "PUMP-1");
		assert_true(r->values[3].s >= r->strings && r->values[3].s < r->strings + r->strcap);
		assert_int_equal(r->values[4].kind, VAL_UINT);
		assert_true(r->values[4].v.u == UINT64_C(0x0123456789ABCDEF));
		assert_int_equal(r->values[5].kind, VAL_DOUBLE);
		assert_true(fabs(r->values[5].v.d - -123.4) < 1e-9);
		assert_int_equal(r->values[6].kind, VAL_INT);
		assert_int_equal(r->values[6].v.i, -5);
		assert_true(r->values[7].v.b);
		assert_false(r->values[8].v.b);
		assert_int_equal(r->values[8].kind, VAL_BOOL);
		assert_true(r->values[9].v.b);
	}

	/* the image changes: the next polls read the new value, not a stale one */
	FX_SET(s, img.regs[0][1], 77);
	size_t before = n;
	struct tcpoll_stats st;
	tcpoll_get_stats(tp, &st);
	assert_int_equal(st.polls, n);
	assert_int_equal(st.failed, 0);
	assert_true(st.connects >= 1);
	/* holding 0-3, 10, 20-23, 30-33, input 0-1, coils 5-6, discrete 3: six requests a
	 * poll, and perhaps part of one more abandoned by the stop */
	assert_true(st.requests >= 6 * n && st.requests < 6 * (n + 1));
	tcpoll_free(tp);

	tp = start(t, 1, &sk);
	assert_true(wait_readings(&sk, d, before + 1, 3000));
	tcpoll_free(tp);
	n = sink_of(&sk, d, v, 64);
	assert_int_equal(v[n - 1]->values[6].v.i, 77);

	sink_fini(&sk);
	free(t);
	srv_stop(s);
}

static void test_each_device_on_its_interval(void **state)
{
	(void)state;
	struct srv *s1 = srv_start(), *s2 = srv_start();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[256];
	const int64_t run = 2500, timeout = 500;
	static const int64_t iv[3] = { 200, 300, 250 };

	size_t ba = add_tcp_bus(t, "a", s1->port, timeout, 0);
	size_t bb = add_tcp_bus(t, "b", s2->port, timeout, 0);
	uint32_t d[3];
	d[0] = add_dev(t, "a1", ba, 1, iv[0]);
	d[1] = add_dev(t, "a2", ba, 2, iv[1]);
	d[2] = add_dev(t, "b1", bb, 1, iv[2]);
	for (int i = 0; i < 3; i++) {
		add_pt(t, d[i], "x", MB_HOLDING, 0, PT_UINT16);
		add_pt(t, d[i], "y", MB_INPUT, 100, PT_INT32);
	}
	s1->img.regs[1][0] = 321;
	s2->img.regs[1][0] = 654;

	sink_init(&sk);
	int64_t t0 = clock_mono_ms();
	struct tcpoll *tp = start(t, 2, &sk);
	sleep_ms(run);
	/* what really elapsed: under valgrind the sleep and the stop run long */
	int64_t ran = clock_mono_ms() - t0;
	tcpoll_stop(tp);

	for (int i = 0; i < 3; i++) {
		size_t n = sink_of(&sk, d[i], v, 256);
		/* the first poll falls within the first interval, then one per interval:
		 * never more than the time allows (no catch-up burst) */
		assert_true(n >= (size_t)(run / iv[i]) - 2);
		assert_true(n <= (size_t)(ran / iv[i]) + 1);
		assert_true(v[0]->sched_mono_ms >= t0 && v[0]->sched_mono_ms <= t0 + iv[i] + 5);
		assert_schedule(v, n, iv[i], iv[i] + timeout);
		for (size_t k = 0; k < n; k++) {
			assert_true(all_ok(v[k]));
			assert_int_equal(v[k]->values[0].v.u, i < 2 ? 321 : 654);
		}
	}
	/* a1 and a2 share bus a's one connection */
	assert_int_equal(srv_get(s1, &s1->accepted), 1);
	assert_int_equal(srv_get(s2, &s2->accepted), 1);
	tcpoll_free(tp);
	sink_fini(&sk);
	free(t);
	srv_stop(s1);
	srv_stop(s2);
}

/* The first polls of many devices are spread over the interval, not fired together. */
static void test_first_polls_spread(void **state)
{
	(void)state;
	struct srv *s = srv_start();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[8];
	int64_t first[MAXD];

	size_t b = add_tcp_bus(t, "a", s->port, 1000, 0);
	for (int i = 0; i < MAXD; i++) {
		char id[8];
		snprintf(id, sizeof id, "d%d", i);
		uint32_t d = add_dev(t, id, b, (uint8_t)(i + 1), 800);
		add_pt(t, d, "x", MB_HOLDING, (uint16_t)i, PT_UINT16);
	}
	sink_init(&sk);
	int64_t t0 = clock_mono_ms();
	struct tcpoll *tp = start(t, 1, &sk);
	for (int i = 0; i < MAXD; i++)
		assert_true(wait_readings(&sk, (uint32_t)i, 1, 3000));
	tcpoll_free(tp);
	for (int i = 0; i < MAXD; i++) {
		assert_true(sink_of(&sk, (uint32_t)i, v, 8) >= 1);
		first[i] = v[0]->sched_mono_ms - t0;
		assert_true(first[i] >= 0 && first[i] < 800 + 5);
	}
	/* no two of the 8 first polls within 800/8/4 ms of each other */
	for (int i = 0; i < MAXD; i++)
		for (int k = i + 1; k < MAXD; k++)
			assert_true(llabs(first[i] - first[k]) >= 800 / MAXD / 4);
	sink_fini(&sk);
	free(t);
	srv_stop(s);
}

/*
 * A refused endpoint and a server that never answers, on the same poller thread as a
 * healthy device: the healthy one keeps its schedule, the dead ones still yield a
 * reading per poll, with the right error, and the refused one is retried with backoff.
 */
static void test_dead_endpoints_do_not_delay_others(void **state)
{
	(void)state;
	struct srv *ok = srv_start(), *mute = srv_start();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[256];
	const int64_t run = 2500;

	mute->mode = SRV_DROP;
	ok->img.regs[1][0] = 5;
	size_t bh = add_tcp_bus(t, "healthy", ok->port, 500, 0);
	size_t br = add_tcp_bus(t, "refused", dead_port(), 500, 0);
	size_t bm = add_tcp_bus(t, "mute", mute->port, 400, 0);
	uint32_t dh = add_dev(t, "h", bh, 1, 200);
	uint32_t dr = add_dev(t, "r", br, 1, 200);
	uint32_t dm = add_dev(t, "m", bm, 1, 300);
	for (uint32_t i = 0; i < 3; i++) {
		add_pt(t, i, "x", MB_HOLDING, 0, PT_UINT16);
		add_pt(t, i, "y", MB_HOLDING, 50, PT_UINT16); /* a second request */
		/* the connection's own handling, not the device breaker (tested below) */
		t->devs[i].offline_after = 1000;
	}

	sink_init(&sk);
	struct tcpoll *tp = start(t, 1, &sk);
	sleep_ms(run);
	tcpoll_stop(tp);

	size_t n = sink_of(&sk, dh, v, 256);
	assert_true(n >= run / 200 - 2);
	assert_schedule(v, n, 200, 200 + 500);
	for (size_t k = 0; k < n; k++) {
		assert_true(all_ok(v[k]));
		assert_int_equal(v[k]->values[0].v.u, 5);
	}

	/* refused: a reading per interval all the same, failing at once */
	n = sink_of(&sk, dr, v, 256);
	assert_true(n >= run / 200 - 2);
	assert_schedule(v, n, 200, 200 + 500);
	for (size_t k = 0; k < n; k++)
		assert_all_err(v[k], MBE_CONNECT);

	/* mute: each poll waits its timeout, then fails; the second request is not sent */
	n = sink_of(&sk, dm, v, 256);
	assert_true(n >= 3);
	assert_schedule(v, n, 300, 300 + 400 + 100);
	for (size_t k = 0; k < n; k++)
		assert_all_err(v[k], MBE_TIMEOUT);
	assert_true(srv_get(mute, &mute->nreq) <= (int)n + 1);

	struct tcpoll_stats st;
	tcpoll_get_stats(tp, &st);
	assert_true(st.timeouts >= n);
	/* connect attempts at 0, +1 s, +3 s: backoff, not one per poll */
	assert_true(st.connect_fails >= 1 && st.connect_fails <= 3);
	assert_true(st.failed >= sink_count(&sk, dr) + n);
	tcpoll_free(tp);
	sink_fini(&sk);
	free(t);
	srv_stop(ok);
	srv_stop(mute);
}

/*
 * A device that never answers behind a gateway shares the connection with a healthy
 * one: the healthy device waits at most one timeout, and the dead one's poll stops at
 * its first timed-out request.
 */
static void test_dead_unit_on_shared_connection(void **state)
{
	(void)state;
	struct srv *s = srv_start();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[256];
	const int64_t timeout = 300;

	s->drop_unit = 9;
	s->img.regs[1][0] = 11;
	size_t b = add_tcp_bus(t, "gw", s->port, timeout, 0);
	uint32_t dd = add_dev(t, "dead", b, 9, 300);
	uint32_t dh = add_dev(t, "alive", b, 1, 200);
	add_pt(t, dd, "a", MB_HOLDING, 0, PT_UINT16);
	add_pt(t, dd, "b", MB_HOLDING, 100, PT_UINT16);
	add_pt(t, dd, "c", MB_INPUT, 0, PT_UINT16);
	add_pt(t, dh, "x", MB_HOLDING, 0, PT_UINT16);

	sink_init(&sk);
	struct tcpoll *tp = start(t, 1, &sk);
	sleep_ms(2500);
	tcpoll_stop(tp);

	size_t n = sink_of(&sk, dh, v, 256);
	assert_true(n >= 5);
	/* slack for the reconnect after each timeout */
	assert_schedule(v, n, 200, 200 + timeout + 150);
	for (size_t k = 0; k < n; k++)
		assert_int_equal(v[k]->values[0].v.u, 11);

	n = sink_of(&sk, dd, v, 256);
	assert_true(n >= 3);
	for (size_t k = 0; k < n; k++)
		assert_all_err(v[k], MBE_TIMEOUT);
	/* one request per poll of the dead unit, not three */
	pthread_mutex_lock(&s->mu);
	int dead_reqs = 0;
	for (int i = 0; i < s->nreq && i < MAXREQ; i++)
		dead_reqs += s->req_unit[i] == 9;
	pthread_mutex_unlock(&s->mu);
	assert_true(dead_reqs >= (int)n && dead_reqs <= (int)n + 1);

	tcpoll_free(tp);
	sink_fini(&sk);
	free(t);
	srv_stop(s);
}

static void test_exception_fails_only_its_request(void **state)
{
	(void)state;
	struct srv *s = srv_start();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[64] = { 0 };

	s->img.exc_from = 100;
	s->img.exc_to = 110;
	s->img.regs[1][0] = 1;
	s->img.regs[1][200] = 3;
	size_t b = add_tcp_bus(t, "a", s->port, 1000, 0);
	uint32_t d = add_dev(t, "dev", b, 1, 150);
	add_pt(t, d, "first", MB_HOLDING, 0, PT_UINT16);
	add_pt(t, d, "bad1", MB_HOLDING, 100, PT_UINT16);
	add_pt(t, d, "bad2", MB_HOLDING, 101, PT_INT16);
	add_pt(t, d, "last", MB_HOLDING, 200, PT_UINT16);

	sink_init(&sk);
	struct tcpoll *tp = start(t, 1, &sk);
	assert_true(wait_readings(&sk, d, 3, 3000));
	tcpoll_stop(tp);
	size_t n = sink_of(&sk, d, v, 64);
	for (size_t k = 0; k < n; k++) {
		assert_int_equal(v[k]->values[0].kind, VAL_UINT);
		assert_int_equal(v[k]->values[0].v.u, 1);
		assert_int_equal(v[k]->values[1].kind, VAL_NONE);
		assert_int_equal(v[k]->values[1].err, MBE_EXC_BASE + 2);
		assert_int_equal(v[k]->values[2].kind, VAL_NONE);
		assert_int_equal(v[k]->values[2].err, MBE_EXC_BASE + 2);
		assert_int_equal(v[k]->values[3].kind, VAL_UINT);
		assert_int_equal(v[k]->values[3].v.u, 3);
	}
	struct tcpoll_stats st;
	tcpoll_get_stats(tp, &st);
	assert_int_equal(st.failed, st.polls);
	assert_int_equal(st.connects, 1); /* an exception does not cost the connection */
	tcpoll_free(tp);
	sink_fini(&sk);
	free(t);
	srv_stop(s);
}

static void test_peer_close_then_recover(void **state)
{
	(void)state;
	struct srv *s = srv_start();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[128] = { 0 };

	s->mode = SRV_CLOSE;
	s->img.regs[1][7] = 99;
	size_t b = add_tcp_bus(t, "a", s->port, 1000, 0);
	uint32_t d = add_dev(t, "dev", b, 1, 150);
	add_pt(t, d, "x", MB_HOLDING, 7, PT_UINT16);
	t->devs[d].offline_after = 1000; /* reconnects, not the breaker */

	sink_init(&sk);
	struct tcpoll *tp = start(t, 1, &sk);
	assert_true(wait_readings(&sk, d, 3, 3000));
	FX_SET(s, mode, SRV_NORMAL);
	size_t n0 = sink_count(&sk, d);
	assert_true(wait_readings(&sk, d, n0 + 3, 3000));
	tcpoll_stop(tp);

	size_t n = sink_of(&sk, d, v, 128);
	for (size_t k = 0; k < 3; k++)
		assert_all_err(v[k], MBE_CLOSED);
	for (size_t k = n0 + 1; k < n; k++) {
		assert_true(all_ok(v[k]));
		assert_int_equal(v[k]->values[0].v.u, 99);
	}
	/* reconnected after every close, without backoff: the connects themselves worked */
	struct tcpoll_stats st;
	tcpoll_get_stats(tp, &st);
	assert_true(st.connects >= 4);
	assert_int_equal(st.connect_fails, 0);
	assert_int_equal(srv_get(s, &s->accepted), (int)st.connects);
	tcpoll_free(tp);
	sink_fini(&sk);
	free(t);
	srv_stop(s);
}

/* Replies that come after the timeout fail their poll and never answer a later one. */
static void test_late_replies_do_not_desync(void **state)
{
	(void)state;
	struct srv *s = srv_start();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[128] = { 0 };

	s->late_n = 2;
	s->late_ms = 500;
	s->img.regs[1][0] = 1;
	s->img.regs[1][1] = 2;
	size_t b = add_tcp_bus(t, "a", s->port, 250, 0);
	uint32_t d = add_dev(t, "dev", b, 1, 150);
	add_pt(t, d, "x", MB_HOLDING, 0, PT_UINT16);
	add_pt(t, d, "y", MB_HOLDING, 1, PT_UINT16);
	/* a second device on the connection, reading other registers */
	uint32_t d2 = add_dev(t, "dev2", b, 2, 150);
	add_pt(t, d2, "z", MB_HOLDING, 300, PT_UINT16);
	s->img.regs[1][300] = 3;

	sink_init(&sk);
	struct tcpoll *tp = start(t, 1, &sk);
	assert_true(wait_readings(&sk, d, 6, 4000));
	assert_true(wait_readings(&sk, d2, 6, 4000));
	tcpoll_stop(tp);

	size_t timeouts = 0;
	size_t n = sink_of(&sk, d, v, 128);
	for (size_t k = 0; k < n; k++) {
		if (!all_ok(v[k])) {
			assert_all_err(v[k], MBE_TIMEOUT);
			timeouts++;
			continue;
		}
		assert_int_equal(v[k]->values[0].v.u, 1);
		assert_int_equal(v[k]->values[1].v.u, 2);
	}
	n = sink_of(&sk, d2, v, 128);
	for (size_t k = 0; k < n; k++) {
		if (!all_ok(v[k])) {
			assert_all_err(v[k], MBE_TIMEOUT);
			timeouts++;
			continue;
		}
		assert_int_equal(v[k]->values[0].v.u, 3);
	}
	assert_int_equal(timeouts, 2);
	struct tcpoll_stats st;
	tcpoll_get_stats(tp, &st);
	assert_int_equal(st.timeouts, 2);
	assert_int_equal(st.connects, 3);
	tcpoll_free(tp);
	sink_fini(&sk);
	free(t);
	srv_stop(s);
}

static void test_wrong_transaction_id_is_a_protocol_error(void **state)
{
	(void)state;
	struct srv *s = srv_start();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[64] = { 0 };

	s->mode = SRV_BADTID;
	size_t b = add_tcp_bus(t, "a", s->port, 1000, 0);
	uint32_t d = add_dev(t, "dev", b, 1, 150);
	add_pt(t, d, "x", MB_HOLDING, 0, PT_UINT16);

	sink_init(&sk);
	struct tcpoll *tp = start(t, 1, &sk);
	assert_true(wait_readings(&sk, d, 3, 3000));
	tcpoll_stop(tp);
	size_t n = sink_of(&sk, d, v, 64);
	for (size_t k = 0; k < n; k++)
		assert_all_err(v[k], MBE_PROTO);
	struct tcpoll_stats st;
	tcpoll_get_stats(tp, &st);
	assert_true(st.connects >= n); /* the stream is not trusted after a mismatch */
	tcpoll_free(tp);
	sink_fini(&sk);
	free(t);
	srv_stop(s);
}

/* A device (or a broken gateway) that follows each reply with a forged second reply to
 * the same request carrying the next transaction id: in the same send, the bytes wait
 * when the next request is about to go out and the connection is dropped first; 5 ms
 * later, after the next request went out, its random id does not match and the request
 * fails. Either way the forged value is never taken; before, it was taken for the next
 * request's reply on every poll. */
static void run_forged(int mode)
{
	struct srv *s = srv_start();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[64] = { 0 };
	size_t true_b = 0;

	s->mode = mode;
	s->img.regs[1][0] = s->img.regs[1][300] = 1111;
	size_t b = add_tcp_bus(t, "a", s->port, 1000, 0);
	uint32_t d = add_dev(t, "dev", b, 1, 100);
	add_pt(t, d, "a", MB_HOLDING, 0, PT_UINT16);
	add_pt(t, d, "b", MB_HOLDING, 300, PT_UINT16); /* a second request in each poll */

	sink_init(&sk);
	struct tcpoll *tp = start(t, 1, &sk);
	wait_count(&sk, d, 8, 5000);
	tcpoll_stop(tp);
	size_t n = sink_of(&sk, d, v, 64);
	for (size_t k = 0; k < n; k++) {
		for (uint16_t i = 0; i < 2; i++)
			if (v[k]->values[i].kind != VAL_NONE && v[k]->values[i].v.u != 1111)
				fail_msg("poll %zu: %s = %llu, a value the device never served", k,
					 i ? "b" : "a", (unsigned long long)v[k]->values[i].v.u);
		assert_int_equal(v[k]->values[0].v.u, 1111); /* the first read is never in doubt */
		if (v[k]->values[1].kind != VAL_NONE)
			true_b++;
		else
			assert_int_equal(v[k]->values[1].err, MBE_PROTO);
		assert_true(v[k]->online);
	}
	if (mode == SRV_FORGE_SAME)
		assert_int_equal(true_b, n); /* dropped before the request: it still reads */
	/* the ids do not count up: no request's id follows the one before */
	pthread_mutex_lock(&s->mu);
	int nreq = s->nreq < MAXREQ ? s->nreq : MAXREQ, steps1 = 0;
	for (int i = 1; i < nreq; i++)
		steps1 += s->req_tid[i] == (uint16_t)(s->req_tid[i - 1] + 1);
	pthread_mutex_unlock(&s->mu);
	assert_int_equal(steps1, 0);
	print_message("forged frame %s: %zu polls, b read %zu times, %d connections\n",
		      mode == SRV_FORGE_SAME ? "in the same send" : "5 ms later", n, true_b,
		      srv_get(s, &s->accepted));
	tcpoll_free(tp);
	sink_fini(&sk);
	free(t);
	srv_stop(s);
}

static void test_forged_trailing_frame(void **state)
{
	(void)state;
	run_forged(SRV_FORGE_SAME);
	run_forged(SRV_FORGE_LATER);
}

/* A device that talks without pause from the moment it is connected: each poll fails
 * (MBE_PROTO) after one connect, never a reconnect loop; it goes offline after
 * offline_after polls; a healthy device on the same thread keeps its interval; a stop
 * is prompt while the flood goes on. */
static void test_flooding_device(void **state)
{
	(void)state;
	struct fx_flood *fl = fx_flood_new();
	struct srv *s = srv_start();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[64] = { 0 };

	s->img.regs[1][0] = 5;
	size_t bf = add_tcp_bus(t, "flood", fl->port, 300, 0);
	size_t bh = add_tcp_bus(t, "ok", s->port, 300, 0);
	uint32_t df = add_dev(t, "chatty", bf, 1, 100);
	uint32_t dh = add_dev(t, "healthy", bh, 1, 100);
	add_pt(t, df, "x", MB_HOLDING, 0, PT_UINT16);
	add_pt(t, dh, "x", MB_HOLDING, 0, PT_UINT16);

	sink_init(&sk);
	struct tcpoll *tp = start_retry(t, 1, &sk, 300, 600);
	wait_count(&sk, df, 6, 5000);
	wait_count(&sk, dh, 10, 5000);
	int64_t t0 = clock_mono_ms();
	tcpoll_stop(tp);
	int64_t stop_ms = clock_mono_ms() - t0;
	assert_true(stop_ms < 200);
	size_t n = sink_of(&sk, df, v, 64);
	for (size_t k = 0; k < n; k++) {
		assert_all_err(v[k], MBE_PROTO);
		assert_int_equal(v[k]->online, k < 2);
	}
	struct tcpoll_stats st;
	tcpoll_get_stats(tp, &st);
	assert_int_equal(st.offline, 1);
	/* one connection per failed poll (and perhaps one the stop cut short) */
	assert_true(fx_flood_accepted(fl) <= n + 1);
	n = sink_of(&sk, dh, v, 64);
	for (size_t k = 0; k < n; k++)
		assert_int_equal(v[k]->values[0].v.u, 5);
	assert_schedule(v, n, 100, 100 + 300);
	print_message("flooding device: %zu polls, %u connections, stop in %lld ms\n",
		      sink_count(&sk, df), fx_flood_accepted(fl), (long long)stop_ms);
	tcpoll_free(tp);
	sink_fini(&sk);
	free(t);
	srv_stop(s);
	fx_flood_free(fl);
}

static void test_fragmented_and_delayed_replies(void **state)
{
	(void)state;
	struct srv *s = srv_start();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[64] = { 0 };

	s->fragment = true;
	s->delay_ms = 40;
	for (int i = 0; i < 100; i++)
		s->img.regs[0][i] = (uint16_t)(1000 + i);
	size_t b = add_tcp_bus(t, "a", s->port, 1500, 0);
	uint32_t d = add_dev(t, "dev", b, 1, 300);
	add_pt(t, d, "first", MB_INPUT, 0, PT_UINT16);
	add_pt(t, d, "last", MB_INPUT, 99, PT_UINT16);
	t->devs[d].max_gap = 100; /* one request of 100 registers: a 207-byte reply */

	sink_init(&sk);
	struct tcpoll *tp = start(t, 1, &sk);
	assert_true(wait_readings(&sk, d, 2, 5000));
	tcpoll_free(tp);
	size_t n = sink_of(&sk, d, v, 64);
	for (size_t k = 0; k < n; k++) {
		assert_true(all_ok(v[k]));
		assert_int_equal(v[k]->values[0].v.u, 1000);
		assert_int_equal(v[k]->values[1].v.u, 1099);
	}
	sink_fini(&sk);
	free(t);
	srv_stop(s);
}

static void test_guard_between_requests(void **state)
{
	(void)state;
	struct srv *s = srv_start();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	const int64_t guard = 80;

	size_t b = add_tcp_bus(t, "a", s->port, 1000, guard);
	uint32_t d = add_dev(t, "dev", b, 1, 1000);
	add_pt(t, d, "a", MB_HOLDING, 0, PT_UINT16);
	add_pt(t, d, "b", MB_HOLDING, 10, PT_UINT16);
	add_pt(t, d, "c", MB_HOLDING, 20, PT_UINT16);

	sink_init(&sk);
	struct tcpoll *tp = start(t, 1, &sk);
	assert_true(wait_readings(&sk, d, 2, 4000));
	tcpoll_free(tp);
	pthread_mutex_lock(&s->mu);
	assert_true(s->nreq >= 6);
	for (int i = 1; i < s->nreq; i++) {
		int64_t gap = s->req_us[i] - s->req_us[i - 1];
		if (gap < (guard - 1) * 1000)
			fail_msg("requests %d and %d only %lld us apart", i - 1, i, (long long)gap);
	}
	pthread_mutex_unlock(&s->mu);
	struct reading *v[8];
	assert_true(sink_of(&sk, d, v, 8) >= 2);
	assert_true(all_ok(v[0]) && all_ok(v[1]));
	sink_fini(&sk);
	free(t);
	srv_stop(s);
}

/* A wall-clock step moves the stamps, not the schedule. */
static void test_clock_step(void **state)
{
	(void)state;
	struct srv *s = srv_start();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[128] = { 0 };
	const int64_t step = -3600 * 1000;

	size_t b = add_tcp_bus(t, "a", s->port, 500, 0);
	uint32_t d = add_dev(t, "dev", b, 1, 200);
	add_pt(t, d, "x", MB_HOLDING, 0, PT_UINT16);

	sink_init(&sk);
	struct tcpoll *tp = start(t, 1, &sk);
	sleep_ms(1000);
	size_t nbefore = sink_count(&sk, d);
	int64_t at = clock_mono_ms();
	clock_set_real_offset(step);
	sleep_ms(1000);
	tcpoll_stop(tp);
	clock_set_real_offset(0);

	size_t n = sink_of(&sk, d, v, 128);
	assert_true(nbefore >= 3);
	assert_true(n - nbefore >= 3 && n - nbefore <= 6);
	assert_schedule(v, n, 200, 200 + 500);
	for (size_t k = 1; k < n; k++) {
		int64_t dts = v[k]->ts_ms - v[k - 1]->ts_ms;
		bool across = v[k - 1]->start_mono_ms < at && v[k]->start_mono_ms > at + 5;
		if (across)
			assert_true(dts < step + 1000);
		else if (v[k - 1]->start_mono_ms > at + 5)
			assert_true(dts >= 0 && dts < 1000);
	}
	tcpoll_free(tp);
	sink_fini(&sk);
	free(t);
	srv_stop(s);
}

static void test_stop_is_prompt(void **state)
{
	(void)state;
	struct srv *mute = srv_start();
	struct tcfg *t = tcfg_new();
	struct sink sk;

	mute->mode = SRV_DROP;
	size_t b = add_tcp_bus(t, "mute", mute->port, 5000, 0);
	size_t b2 = add_tcp_bus(t, "refused", dead_port(), 5000, 0);
	uint32_t d = add_dev(t, "dev", b, 1, 100);
	add_pt(t, d, "x", MB_HOLDING, 0, PT_STRING)->length = 8;
	uint32_t d2 = add_dev(t, "dev2", b2, 1, 100);
	add_pt(t, d2, "x", MB_HOLDING, 0, PT_UINT16);

	sink_init(&sk);
	struct tcpoll *tp = start(t, 2, &sk);
	/* the request is in flight, waiting out its 5 s timeout */
	int64_t end = clock_mono_ms() + 3000;
	while (srv_get(mute, &mute->nreq) < 1 && clock_mono_ms() < end)
		sleep_ms(10);
	assert_int_equal(srv_get(mute, &mute->nreq), 1);
	int64_t t0 = clock_mono_ms();
	tcpoll_stop(tp);
	int64_t took = clock_mono_ms() - t0;
	if (took > 500)
		fail_msg("tcpoll_stop took %lld ms", (long long)took);
	/* the abandoned poll yields no reading, and freeing it leaks nothing */
	assert_int_equal(sink_count(&sk, d), 0);
	tcpoll_stop(tp); /* twice is harmless */
	tcpoll_free(tp);
	sink_fini(&sk);
	free(t);
	srv_stop(mute);
}

static void test_which_devices(void **state)
{
	(void)state;
	struct tcfg *t = tcfg_new();
	struct poller_sink ps = { .ctx = NULL, .emit = NULL };
	char err[256] = "";
	struct tcpoll *tp;

	size_t b = add_tcp_bus(t, "tcp", 1502, 1000, 0);
	size_t r = add_tcp_bus(t, "serial", 0, 1000, 0);
	t->buses[r].kind = BUS_RTU;
	size_t unused = add_tcp_bus(t, "unused", 1503, 1000, 0);
	(void)unused;
	add_pt(t, add_dev(t, "plain", b, 1, 1000), "x", MB_HOLDING, 0, PT_UINT16);
	add_pt(t, add_dev(t, "rtu", r, 1, 1000), "x", MB_HOLDING, 0, PT_UINT16);
	t->devs[add_dev(t, "inverter", b, 2, 1000)].sunspec = true;

	tp = tcpoll_new(&t->cfg, 1, 0, &ps, err, sizeof err);
	assert_non_null(tp);
	assert_int_equal(tcpoll_ndevices(tp), 1);
	tcpoll_free(tp); /* never started */

	/* nothing to poll: a tcpoll that starts and stops with no thread */
	t->cfg.ndevices = 0;
	tp = tcpoll_new(&t->cfg, 1, 3, &ps, err, sizeof err);
	assert_non_null(tp);
	assert_int_equal(tcpoll_ndevices(tp), 0);
	assert_int_equal(tcpoll_start(tp), 0);
	assert_int_equal(tcpoll_start(tp), -1); /* once only */
	tcpoll_free(tp);

	/* a device on a bus that does not exist is refused by name */
	t->cfg.ndevices = 0;
	add_dev(t, "lost", 7, 1, 1000);
	tp = tcpoll_new(&t->cfg, 1, 0, &ps, err, sizeof err);
	assert_null(tp);
	assert_non_null(strstr(err, "lost"));

	/* a point the plan cannot hold is refused by device */
	t->cfg.ndevices = 0;
	uint32_t d = add_dev(t, "far", b, 1, 1000);
	add_pt(t, d, "x", MB_HOLDING, 65535, PT_UINT32);
	tp = tcpoll_new(&t->cfg, 1, 0, &ps, err, sizeof err);
	assert_null(tp);
	assert_non_null(strstr(err, "far"));
	free(t);
}

/* Descriptors past 1023 are served like any other (the reason this module exists). */
static void test_descriptors_past_1023(void **state)
{
	(void)state;
	struct rlimit rl;
	int fillers[1100];
	int nf = 0;

	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur < 1200) {
		rlim_t want = rl.rlim_max < 2048 ? rl.rlim_max : 2048;
		rl.rlim_cur = want;
		if (want < 1200 || setrlimit(RLIMIT_NOFILE, &rl) != 0) {
			skip();
			return;
		}
	}
	struct srv *s = srv_start();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[16];

	for (;;) {
		int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		assert_true(fd >= 0);
		fillers[nf++] = fd;
		if (fd >= 1060 || nf == 1100)
			break;
	}
	s->img.regs[1][0] = 1024;
	size_t b = add_tcp_bus(t, "a", s->port, 1000, 0);
	uint32_t d = add_dev(t, "dev", b, 1, 100);
	add_pt(t, d, "x", MB_HOLDING, 0, PT_UINT16);
	sink_init(&sk);
	struct tcpoll *tp = start(t, 1, &sk);
	assert_true(wait_readings(&sk, d, 3, 3000));
	tcpoll_free(tp);
	/* every descriptor below 1061 was taken, so tcpoll's were numbered past 1023 */
	int probe = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(probe > 1023);
	close(probe);
	size_t n = sink_of(&sk, d, v, 16);
	for (size_t k = 0; k < n; k++) {
		assert_true(all_ok(v[k]));
		assert_int_equal(v[k]->values[0].v.u, 1024);
	}
	while (nf > 0)
		close(fillers[--nf]);
	sink_fini(&sk);
	free(t);
	srv_stop(s);
}

/* IPv6 literals and host names reach the same code path as 127.0.0.1. */
static void test_ipv6_and_host_name(void **state)
{
	(void)state;
	struct srv *s4 = srv_start(), *s6 = srv_start_af(AF_INET6);
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[16];
	uint32_t d6 = UINT32_MAX;

	s4->img.regs[1][0] = 4;
	size_t bn = add_tcp_bus(t, "named", s4->port, 1000, 0);
	t->buses[bn].host = (char *)"localhost";
	uint32_t dn = add_dev(t, "dn", bn, 1, 150);
	add_pt(t, dn, "x", MB_HOLDING, 0, PT_UINT16);
	if (s6 != NULL) {
		s6->img.regs[1][0] = 6;
		size_t b6 = add_tcp_bus(t, "v6", s6->port, 1000, 0);
		t->buses[b6].host = (char *)"::1";
		d6 = add_dev(t, "d6", b6, 1, 150);
		add_pt(t, d6, "x", MB_HOLDING, 0, PT_UINT16);
	} else {
		print_message("no ::1 here: IPv6 part skipped\n");
	}

	sink_init(&sk);
	struct tcpoll *tp = start(t, 2, &sk);
	assert_true(wait_readings(&sk, dn, 2, 3000));
	if (s6 != NULL)
		assert_true(wait_readings(&sk, d6, 2, 3000));
	tcpoll_free(tp);
	size_t n = sink_of(&sk, dn, v, 16);
	for (size_t k = 0; k < n; k++)
		assert_int_equal(v[k]->values[0].v.u, 4);
	if (s6 != NULL) {
		n = sink_of(&sk, d6, v, 16);
		for (size_t k = 0; k < n; k++)
			assert_int_equal(v[k]->values[0].v.u, 6);
		srv_stop(s6);
	}
	sink_fini(&sk);
	free(t);
	srv_stop(s4);
}

/* --- host names and a resolver that never answers ------------------------------------ */

/* A device named by a host name nobody resolves shares the poller thread with a device
 * at an address and one at a name the hosts file answers: the first fails its polls
 * (MBE_CONNECT) and goes offline, with one lookup left running, not one per connect; the
 * others keep their interval; a stop is prompt while the lookup still hangs. Before, the thread waited in getaddrinfo (30 s
 * here), and neither device was polled. */
static void test_resolver_never_answers(void **state)
{
	(void)state;
	struct fx_dns *dns = fx_dns_new(NULL);
	if (dns == NULL)
		skip();
	struct srv *s = srv_start();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[256] = { 0 };

	s->img.regs[1][0] = 3;
	size_t bn = add_bus(t, "named", BUS_TCP, FX_HUNG_NAME, dead_port(), 300, 0);
	size_t bh = add_tcp_bus(t, "ok", s->port, 300, 0);
	/* another name, which the hosts file answers, through its own lookups */
	size_t bl = add_bus(t, "local", BUS_TCP, "localhost", s->port, 300, 0);
	uint32_t dn = add_dev(t, "named", bn, 1, 200);
	uint32_t dh = add_dev(t, "healthy", bh, 1, 200);
	uint32_t dl = add_dev(t, "local", bl, 1, 200);
	add_pt(t, dn, "x", MB_HOLDING, 0, PT_UINT16);
	add_pt(t, dh, "x", MB_HOLDING, 0, PT_UINT16);
	add_pt(t, dl, "x", MB_HOLDING, 0, PT_UINT16);

	sink_init(&sk);
	struct tcpoll *tp = start_retry(t, 1, &sk, 500, 1000);
	wait_count(&sk, dn, 4, 8000);
	wait_count(&sk, dh, 15, 8000);
	wait_count(&sk, dl, 15, 8000);
	assert_true(netconn_lookups_running() == 1);
	int64_t t0 = clock_mono_ms();
	tcpoll_stop(tp);
	int64_t stop_ms = clock_mono_ms() - t0;
	assert_true(stop_ms < 200);
	size_t n = sink_of(&sk, dn, v, 256);
	for (size_t k = 0; k < n; k++) {
		assert_all_err(v[k], MBE_CONNECT);
		assert_int_equal(v[k]->online, k < 2);
	}
	for (int i = 0; i < 2; i++) {
		n = sink_of(&sk, i ? dl : dh, v, 256);
		for (size_t k = 0; k < n; k++)
			assert_int_equal(v[k]->values[0].v.u, 3);
		assert_schedule(v, n, 200, 200 + 300);
	}
	assert_true(fx_dns_queries(dns) >= 1);
	print_message("unresolved name: %zu polls of the named device, %zu of the other, "
		      "%u queries to the resolver, stop in %lld ms\n", sink_count(&sk, dn), n,
		      fx_dns_queries(dns), (long long)stop_ms);
	tcpoll_free(tp);
	sink_fini(&sk);
	free(t);
	srv_stop(s);
	fx_dns_free(dns);
}

#define CACHED_NAME "plc-cached.sluice-test.example"

/* The last good address of a name: a device whose name resolved (from the hosts file),
 * and whose next lookup hangs, is connected to at that address once the lookup has missed
 * its deadline; its polls go on. */
static void test_resolver_last_good_address(void **state)
{
	(void)state;
	struct fx_dns *dns = fx_dns_new("127.0.0.1 localhost\n127.0.0.1 " CACHED_NAME "\n");
	if (dns == NULL)
		skip();
	struct srv *s = srv_start();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[256] = { 0 };

	s->img.regs[1][0] = 9;
	size_t b = add_bus(t, "named", BUS_TCP, CACHED_NAME, s->port, 300, 0);
	uint32_t d = add_dev(t, "dev", b, 1, 100);
	add_pt(t, d, "x", MB_HOLDING, 0, PT_UINT16);

	sink_init(&sk);
	struct tcpoll *tp = start(t, 1, &sk);
	wait_count(&sk, d, 3, 5000);
	assert_int_equal(fx_dns_queries(dns), 0); /* the hosts file answered */
	/* the name leaves the hosts file, and the device drops its connection once */
	fx_dns_set_hosts(dns, "127.0.0.1 localhost\n");
	FX_SET(s, mode, SRV_CLOSE);
	int64_t end = clock_mono_ms() + 5000;
	size_t n;
	for (;;) {
		n = sink_of(&sk, d, v, 256);
		if (n > 0 && v[n - 1]->values[0].err == MBE_CLOSED)
			break;
		if (clock_mono_ms() > end)
			fail_msg("the device's connection was never dropped");
		sleep_ms(5);
	}
	FX_SET(s, mode, SRV_NORMAL);
	size_t n0 = n;
	wait_count(&sk, d, n0 + 5, 8000);
	tcpoll_stop(tp);
	n = sink_of(&sk, d, v, 256);
	for (size_t k = n0; k < n; k++) /* one may fail: the lookup's deadline passed */
		if (k > n0 || v[k]->values[0].kind != VAL_NONE)
			assert_int_equal(v[k]->values[0].v.u, 9);
	assert_true(v[n - 1]->online);
	assert_true(fx_dns_queries(dns) >= 1); /* the resolver was asked, and did not answer */
	struct tcpoll_stats st;
	tcpoll_get_stats(tp, &st);
	assert_true(st.connects >= 2);
	tcpoll_free(tp);
	sink_fini(&sk);
	free(t);
	srv_stop(s);
	fx_dns_free(dns);
}

/* --- the circuit breaker, splitting, writes --------------------------------------- */

/* Requests the server saw from unit, and of those, how many were reads. */
static int srv_count_unit(struct srv *s, uint8_t unit)
{
	int n = 0;

	pthread_mutex_lock(&s->mu);
	for (int i = 0; i < s->nreq && i < MAXREQ; i++)
		n += s->req_unit[i] == unit;
	pthread_mutex_unlock(&s->mu);
	return n;
}

/*
 * A dead unit behind a gateway goes offline after offline_after failed polls, is then
 * tried at a pace that doubles up to its cap (one request, one timeout per attempt),
 * comes back online at the first answer and resumes its interval; its healthy
 * neighbour on the same connection keeps its schedule throughout.
 */
static void test_breaker_offline_slow_retry_and_recovery(void **state)
{
	(void)state;
	struct srv *s = srv_start();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[256];
	struct tcpoll_stats st;
	const int64_t timeout = 150, iv = 100, rmin = 200, rmax = 800;

	s->drop_unit = 5;
	s->img.regs[1][0] = 11;
	size_t b = add_tcp_bus(t, "gw", s->port, timeout, 0);
	uint32_t dd = add_dev(t, "dead", b, 5, iv);
	uint32_t dh = add_dev(t, "alive", b, 1, iv);
	add_pt(t, dd, "a", MB_HOLDING, 0, PT_UINT16);
	add_pt(t, dd, "b", MB_HOLDING, 100, PT_UINT16);
	add_pt(t, dh, "x", MB_HOLDING, 0, PT_UINT16);

	sink_init(&sk);
	struct tcpoll *tp = start_retry(t, 1, &sk, rmin, rmax);
	/* 3 failed polls, then attempts after about 200, 400, 800 and 800 ms */
	assert_true(wait_readings(&sk, dd, 7, 6000));
	tcpoll_get_stats(tp, &st);
	assert_int_equal(st.offline, 1);
	FX_SET(s, drop_unit, -1);
	size_t up = SIZE_MAX, n;
	int64_t end = clock_mono_ms() + 3000;
	while (up == SIZE_MAX && clock_mono_ms() < end) {
		n = sink_of(&sk, dd, v, 256);
		for (size_t k = 3; k < n && up == SIZE_MAX; k++)
			if (v[k]->online)
				up = k;
		sleep_ms(10);
	}
	if (up == SIZE_MAX || up < 7) {
		n = sink_of(&sk, dd, v, 256);
		for (size_t k = 0; k < n; k++)
			print_message("%zu: online %d err %d start %lld\n", k, v[k]->online,
				      v[k]->values[0].err, (long long)v[k]->start_mono_ms);
		print_message("now %lld alive %zu unit5 %d\n", (long long)clock_mono_ms(),
			      sink_count(&sk, dh), srv_count_unit(s, 5));
	}
	assert_true(up != SIZE_MAX && up >= 7);
	assert_true(wait_readings(&sk, dd, up + 5, 3000));
	tcpoll_stop(tp);

	n = sink_of(&sk, dd, v, 256);
	for (size_t k = 0; k < up; k++) {
		assert_all_err(v[k], MBE_TIMEOUT);
		assert_int_equal(v[k]->last_err, MBE_TIMEOUT);
		/* online for the first offline_after - 1 failures, then offline */
		if (k < 2)
			assert_true(v[k]->online);
		else
			assert_false(v[k]->online);
	}
	for (size_t k = 3; k < up; k++) {
		int64_t delay = rmin << (k - 3);
		int64_t gap = v[k]->start_mono_ms - v[k - 1]->start_mono_ms;
		if (delay > rmax)
			delay = rmax;
		/* the attempt took its timeout, then waited delay +- 10 % */
		if (gap < delay * 9 / 10 + timeout - 5 || gap > delay * 11 / 10 + timeout + 150)
			fail_msg("offline attempt %zu came %lld ms after the previous one "
				 "(expected about %lld + %lld)", k, (long long)gap,
				 (long long)delay, (long long)timeout);
	}
	/* back: values, online, the last failure still named, and the interval again */
	for (size_t k = up; k < n; k++) {
		assert_true(v[k]->online);
		assert_true(all_ok(v[k]));
		assert_int_equal(v[k]->last_err, MBE_TIMEOUT);
	}
	assert_schedule(v + up, n - up, iv, iv + timeout);
	/* one request per failed attempt (not one per point), two per answered poll */
	int reqs = srv_count_unit(s, 5);
	int want = (int)up + 2 * (int)(n - up);
	if (reqs < want || reqs > want + 2)
		fail_msg("unit 5 got %d requests, expected %d", reqs, want);

	n = sink_of(&sk, dh, v, 256);
	assert_true(n >= 20);
	assert_schedule(v, n, iv, iv + timeout + 150);
	for (size_t k = 0; k < n; k++) {
		assert_true(v[k]->online);
		assert_int_equal(v[k]->last_err, 0);
		assert_int_equal(v[k]->values[0].v.u, 11);
	}
	tcpoll_get_stats(tp, &st);
	assert_int_equal(st.offline, 0);
	tcpoll_free(tp);
	sink_fini(&sk);
	free(t);
	srv_stop(s);
}

/* A device that answers only exceptions is there: it never goes offline. A refused
 * connection is a failure like a timeout, and offline_after counts from the config. */
static void test_breaker_what_counts_as_failed(void **state)
{
	(void)state;
	struct srv *s = srv_start();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[128] = { 0 };

	s->img.exc_from = 0;
	s->img.exc_to = 10;
	size_t b = add_tcp_bus(t, "a", s->port, 500, 0);
	size_t br = add_tcp_bus(t, "refused", dead_port(), 500, 0);
	uint32_t de = add_dev(t, "refuser", b, 1, 100);
	add_pt(t, de, "x", MB_HOLDING, 0, PT_UINT16);
	uint32_t dr = add_dev(t, "unplugged", br, 1, 100);
	add_pt(t, dr, "x", MB_HOLDING, 0, PT_UINT16);
	t->devs[dr].offline_after = 5;

	sink_init(&sk);
	struct tcpoll *tp = start_retry(t, 1, &sk, 5000, 5000);
	assert_true(wait_readings(&sk, de, 8, 3000));
	assert_true(wait_readings(&sk, dr, 5, 3000));
	sleep_ms(300); /* long enough for more polls, were dr still on its interval */
	tcpoll_stop(tp);
	size_t n = sink_of(&sk, de, v, 128);
	for (size_t k = 0; k < n; k++) {
		assert_true(v[k]->online);
		assert_int_equal(v[k]->last_err, 0);
		assert_all_err(v[k], MBE_EXC_BASE + 2);
	}
	n = sink_of(&sk, dr, v, 128);
	assert_int_equal(n, 5); /* the 6th attempt is 5 s away */
	for (size_t k = 0; k < n; k++) {
		assert_all_err(v[k], MBE_CONNECT);
		assert_int_equal(v[k]->last_err, MBE_CONNECT);
		assert_true(v[k]->online == (k < 4));
	}
	tcpoll_free(tp);
	sink_fini(&sk);
	free(t);
	srv_stop(s);
}

/*
 * The plan merges 0..6 (max_gap); the device refuses any read touching 2..3. The first
 * poll splits the read in halves until only the point at 3 fails, and still reads every
 * other point; later polls send the split reads straight away.
 */
static void test_split_on_illegal_address(void **state)
{
	(void)state;
	struct srv *s = srv_start();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[64] = { 0 };
	struct tcpoll_stats st;

	s->img.exc_from = 2;
	s->img.exc_to = 4;
	s->img.regs[1][0] = 0x4148; /* float32 12.5 */
	s->img.regs[1][4] = 0xC148; /* float32 -12.5 */
	s->img.regs[1][6] = 66;
	size_t b = add_tcp_bus(t, "a", s->port, 1000, 0);
	uint32_t d = add_dev(t, "meter", b, 1, 150);
	add_pt(t, d, "a", MB_HOLDING, 0, PT_FLOAT32);
	add_pt(t, d, "bad", MB_HOLDING, 3, PT_UINT16);
	add_pt(t, d, "b", MB_HOLDING, 4, PT_FLOAT32);
	add_pt(t, d, "c", MB_HOLDING, 6, PT_UINT16);
	t->devs[d].max_gap = 8;

	sink_init(&sk);
	struct tcpoll *tp = start(t, 1, &sk);
	assert_true(wait_readings(&sk, d, 4, 3000));
	tcpoll_stop(tp);

	size_t n = sink_of(&sk, d, v, 64);
	for (size_t k = 0; k < n; k++) {
		assert_true(v[k]->online);
		assert_int_equal(v[k]->values[0].kind, VAL_DOUBLE);
		assert_true(v[k]->values[0].v.d == 12.5);
		assert_int_equal(v[k]->values[1].kind, VAL_NONE);
		assert_int_equal(v[k]->values[1].err, MBE_EXC_BASE + 2);
		assert_int_equal(v[k]->values[2].kind, VAL_DOUBLE);
		assert_true(v[k]->values[2].v.d == -12.5);
		assert_int_equal(v[k]->values[3].v.u, 66);
	}
	tcpoll_get_stats(tp, &st);
	assert_int_equal(st.splits, 2);        /* 0..6 in halves, then 0..3 in halves */
	assert_int_equal(st.connects, 1);
	/* first poll: 0..6, 0..3, 0..1, 3, 4..6; then 0..1, 3, 4..6 in every poll */
	pthread_mutex_lock(&s->mu);
	static const uint16_t want[][2] = { { 0, 7 }, { 0, 4 }, { 0, 2 }, { 3, 1 }, { 4, 3 },
					    { 0, 2 }, { 3, 1 }, { 4, 3 } };
	assert_true(s->nreq >= 8);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(s->req_fc[i], 3);
		assert_int_equal(s->req_start[i], want[i][0]);
		assert_int_equal(s->req_count[i], want[i][1]);
	}
	assert_true((size_t)s->nreq <= 5 + 3 * (n - 1) + 3);
	pthread_mutex_unlock(&s->mu);
	tcpoll_free(tp);
	sink_fini(&sk);
	free(t);
	srv_stop(s);
}

/*
 * A merged read across 12 that the device never answers (some devices stay silent for
 * an unmapped register), while it answers everything else. The read is the first of
 * the poll, so the first poll learns nothing but moves it last; the second poll sees
 * the device answer another read before it times out, and splits it; from the third
 * poll on, every point reads.
 */
static void test_split_on_timeout_only_when_merged(void **state)
{
	(void)state;
	struct srv *s = srv_start();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[64] = { 0 };
	struct tcpoll_stats st;

	s->mute_from = 12;
	s->mute_to = 13;
	s->img.regs[1][10] = 10;
	s->img.regs[1][14] = 14;
	s->img.regs[1][100] = 100;
	size_t b = add_tcp_bus(t, "a", s->port, 200, 0);
	uint32_t d = add_dev(t, "meter", b, 1, 150);
	add_pt(t, d, "a", MB_HOLDING, 10, PT_UINT16);
	add_pt(t, d, "b", MB_HOLDING, 14, PT_UINT16);
	add_pt(t, d, "x", MB_HOLDING, 100, PT_UINT16);
	t->devs[d].max_gap = 8;

	sink_init(&sk);
	struct tcpoll *tp = start(t, 1, &sk);
	assert_true(wait_readings(&sk, d, 6, 4000));
	tcpoll_stop(tp);

	size_t n = sink_of(&sk, d, v, 64);
	/* 1st: the merged read times out first: nothing read */
	assert_all_err(v[0], MBE_TIMEOUT);
	/* 2nd: x reads, the merged read (now last) times out */
	assert_int_equal(v[1]->values[2].v.u, 100);
	assert_int_equal(v[1]->values[0].err, MBE_TIMEOUT);
	assert_int_equal(v[1]->values[1].err, MBE_TIMEOUT);
	for (size_t k = 2; k < n; k++) {
		assert_true(all_ok(v[k]));
		assert_int_equal(v[k]->values[0].v.u, 10);
		assert_int_equal(v[k]->values[1].v.u, 14);
		assert_int_equal(v[k]->values[2].v.u, 100);
	}
	for (size_t k = 0; k < n; k++)
		assert_true(v[k]->online);
	tcpoll_get_stats(tp, &st);
	assert_int_equal(st.splits, 1);
	assert_int_equal(st.timeouts, 2);
	tcpoll_free(tp);
	sink_fini(&sk);
	free(t);
	srv_stop(s);
}

/* Index of the first request from `from` on with this fc and start, or -1. */
static int srv_find_req(struct srv *s, int from, uint8_t fc, uint16_t start)
{
	for (int i = from; i < s->nreq && i < MAXREQ; i++)
		if (s->req_fc[i] == fc && s->req_start[i] == start)
			return i;
	return -1;
}

/* Each kind of write arrives with the right function code and registers. */
static void test_writes_each_kind(void **state)
{
	(void)state;
	struct srv *s = srv_start();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct point_def *p;

	s->img.regs[1][30] = 0x0101;    /* other bits of the bit point's register */
	s->img.regs[1][50] = 0x0001;
	s->img.exc_from = 60;
	s->img.exc_to = 61;
	size_t b = add_tcp_bus(t, "a", s->port, 1000, 0);
	uint32_t d = add_dev(t, "sign", b, 3, 100);
	add_pt(t, d, "pump", MB_COIL, 3, PT_BOOL)->writable = true;            /* 0 */
	p = add_pt(t, d, "setpoint", MB_HOLDING, 10, PT_UINT16);              /* 1 */
	p->scale = 0.1;
	p->writable = true;
	add_pt(t, d, "limit", MB_HOLDING, 20, PT_FLOAT32)->writable = true;    /* 2 */
	p = add_pt(t, d, "lamp", MB_HOLDING, 30, PT_BOOL);                    /* 3 */
	p->bit = 4;
	p->writable = true;
	p = add_pt(t, d, "count", MB_HOLDING, 40, PT_INT32);                  /* 4 */
	p->word_order = ORDER_LITTLE;
	p->writable = true;
	add_pt(t, d, "run", MB_HOLDING, 50, PT_BOOL)->writable = true;         /* 5 */
	add_pt(t, d, "locked", MB_HOLDING, 60, PT_UINT16)->writable = true;    /* 6 */

	sink_init(&sk);
	struct tcpoll *tp = start(t, 1, &sk);
	assert_true(wait_readings(&sk, d, 1, 3000)); /* writes go between polls */
	assert_int_equal(tcpoll_write(tp, d, 0, 1, 100), 0);
	assert_int_equal(tcpoll_write(tp, d, 1, 12.3, 101), 0);
	assert_int_equal(tcpoll_write(tp, d, 2, -2.5, 102), 0);
	assert_int_equal(tcpoll_write(tp, d, 3, 1, 103), 0);
	assert_int_equal(tcpoll_write(tp, d, 4, -2, 104), 0);
	assert_int_equal(tcpoll_write(tp, d, 5, 0, 105), 0);
	assert_int_equal(tcpoll_write(tp, d, 6, 7, 106), 0);
	assert_true(wait_writes(&sk, 7, 3000));
	size_t before = sink_count(&sk, d);
	assert_true(wait_readings(&sk, d, before + 2, 3000)); /* polls go on */
	tcpoll_stop(tp);

	for (uint64_t tag = 100; tag <= 105; tag++) {
		struct wres r = sink_wres(&sk, tag);
		assert_int_equal(r.device, d);
		assert_int_equal(r.point, tag - 100);
		assert_int_equal(r.err, 0);
	}
	assert_int_equal(sink_wres(&sk, 106).err, MBE_EXC_BASE + 2);

	pthread_mutex_lock(&s->mu);
	assert_int_equal(s->img.bits[0][3], 1);
	assert_int_equal(s->img.regs[1][10], 123);
	assert_int_equal(s->img.regs[1][20], 0xC020);
	assert_int_equal(s->img.regs[1][21], 0x0000);
	assert_int_equal(s->img.regs[1][30], 0x0111); /* bit 4 set, the others kept */
	assert_int_equal(s->img.regs[1][40], 0xFFFE); /* -2, low word first */
	assert_int_equal(s->img.regs[1][41], 0xFFFF);
	assert_int_equal(s->img.regs[1][50], 0);
	/* function codes: 5, 6, 16, 3 then 6 right after it, 16, 6, 6 */
	assert_true(srv_find_req(s, 0, 5, 3) >= 0);
	assert_true(srv_find_req(s, 0, 6, 10) >= 0);
	int i = srv_find_req(s, 0, 16, 20);
	assert_true(i >= 0);
	assert_int_equal(s->req_count[i], 2);
	i = srv_find_req(s, 0, 6, 30);
	assert_true(i >= 1);
	assert_int_equal(s->req_fc[i - 1], 3);
	assert_int_equal(s->req_start[i - 1], 30);
	assert_int_equal(s->req_count[i - 1], 1);
	i = srv_find_req(s, 0, 16, 40);
	assert_true(i >= 0);
	assert_int_equal(s->req_count[i], 2);
	assert_true(srv_find_req(s, 0, 6, 50) >= 0);
	assert_true(srv_find_req(s, 0, 6, 60) >= 0);
	for (i = 0; i < s->nreq && i < MAXREQ; i++)
		assert_int_equal(s->req_unit[i], 3);
	pthread_mutex_unlock(&s->mu);

	struct tcpoll_stats st;
	tcpoll_get_stats(tp, &st);
	assert_int_equal(st.writes, 7);
	assert_int_equal(st.write_fails, 1);
	tcpoll_free(tp);
	sink_fini(&sk);
	free(t);
	srv_stop(s);
}

/* Bad writes are refused at once, by errno; a write to a bus that refuses connections
 * is reported through write_done. */
static void test_writes_refused(void **state)
{
	(void)state;
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct point_def *p;

	size_t b = add_tcp_bus(t, "nobody", dead_port(), 500, 0);
	uint32_t d = add_dev(t, "dev", b, 1, 60000);
	p = add_pt(t, d, "setpoint", MB_HOLDING, 10, PT_UINT16);             /* 0 */
	p->scale = 0.1;
	p->writable = true;
	add_pt(t, d, "level", MB_HOLDING, 11, PT_INT16);                     /* 1: read-only */
	add_pt(t, d, "pump", MB_COIL, 3, PT_BOOL)->writable = true;           /* 2 */
	add_pt(t, d, "name", MB_HOLDING, 20, PT_STRING)->writable = true;     /* 3 */
	t->pts[d][3].length = 4;
	add_pt(t, d, "small", MB_HOLDING, 30, PT_INT16)->writable = true;     /* 4 */
	add_pt(t, d, "flag", MB_INPUT, 0, PT_BOOL)->writable = true;          /* 5 */
	add_pt(t, d, "ratio", MB_HOLDING, 40, PT_FLOAT32)->writable = true;   /* 6 */

	sink_init(&sk);
	struct tcpoll *tp = start(t, 1, &sk);
	errno = 0;
	assert_int_equal(tcpoll_write(tp, d, 0, 6553.6, 1), -1); /* 65536 */
	assert_int_equal(errno, ERANGE);
	assert_int_equal(tcpoll_write(tp, d, 0, -0.1, 1), -1);
	assert_int_equal(errno, ERANGE);
	assert_int_equal(tcpoll_write(tp, d, 4, 32768, 1), -1);
	assert_int_equal(errno, ERANGE);
	assert_int_equal(tcpoll_write(tp, d, 4, -32769, 1), -1);
	assert_int_equal(errno, ERANGE);
	assert_int_equal(tcpoll_write(tp, d, 2, 2, 1), -1);
	assert_int_equal(errno, ERANGE);
	assert_int_equal(tcpoll_write(tp, d, 6, NAN, 1), -1);
	assert_int_equal(errno, ERANGE);
	assert_int_equal(tcpoll_write(tp, d, 6, 1e39, 1), -1);
	assert_int_equal(errno, ERANGE);
	assert_int_equal(tcpoll_write(tp, d, 1, 5, 1), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(tcpoll_write(tp, d, 5, 1, 1), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(tcpoll_write(tp, d, 3, 1, 1), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(tcpoll_write(tp, d, 7, 1, 1), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(tcpoll_write(tp, d + 1, 0, 1, 1), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(sink_nwrites(&sk), 0);

	/* in range, but nobody listens */
	assert_int_equal(tcpoll_write(tp, d, 0, 6553.5, 7), 0);
	assert_int_equal(tcpoll_write(tp, d, 4, -32768, 8), 0);
	assert_true(wait_writes(&sk, 2, 3000));
	tcpoll_stop(tp);
	assert_int_equal(sink_wres(&sk, 7).err, MBE_CONNECT);
	assert_int_equal(sink_wres(&sk, 8).err, MBE_CONNECT);
	tcpoll_free(tp);
	sink_fini(&sk);
	free(t);
}

/* A probe goes between two polls, its reads one after another with no poll request among
 * them, answers each from the device's tables (registers, bits, an exception that does
 * not stop it), and the polls go on. */
static void test_probe_between_polls(void **state)
{
	(void)state;
	struct srv *s = srv_start();
	struct tcfg *t = tcfg_new();
	struct sink sk;

	s->img.regs[1][7] = 0x1234;
	s->img.regs[1][8] = 0x5678;
	s->img.regs[0][2] = 77;
	s->img.bits[0][4] = 1;
	s->img.exc_from = 100;
	s->img.exc_to = 101;
	size_t b = add_tcp_bus(t, "a", s->port, 1000, 0);
	uint32_t d = add_dev(t, "m", b, 3, 50);
	add_pt(t, d, "x", MB_HOLDING, 0, PT_UINT16);
	add_pt(t, d, "y", MB_INPUT, 10, PT_UINT16);
	sink_init(&sk);
	struct tcpoll *tp = start(t, 1, &sk);
	assert_true(wait_readings(&sk, d, 3, 3000));

	struct fx_probe *f = fx_probe_new(9);
	f->p.stop_on_silence = true;
	fx_probe_read(f, MB_HOLDING, 7, 2);
	fx_probe_read(f, MB_HOLDING, 100, 1); /* an exception: the device answers */
	fx_probe_read(f, MB_INPUT, 2, 1);
	fx_probe_read(f, MB_COIL, 3, 3);
	assert_int_equal(tcpoll_probe(tp, b, &f->p), 0);
	fx_probe_wait(f, 3000);
	size_t before = sink_count(&sk, d);
	assert_true(wait_readings(&sk, d, before + 2, 3000)); /* the polls go on */
	tcpoll_stop(tp);

	assert_int_equal(f->p.status, PROBE_DONE);
	assert_int_equal(f->reads[0].err, 0);
	assert_int_equal(f->reads[0].regs[0], 0x1234);
	assert_int_equal(f->reads[0].regs[1], 0x5678);
	assert_int_equal(f->reads[1].err, MBE_EXC_BASE + 2);
	assert_int_equal(f->reads[2].err, 0);
	assert_int_equal(f->reads[2].regs[0], 77);
	assert_int_equal(f->reads[3].err, 0);
	assert_int_equal(f->reads[3].bits[0], 0);
	assert_int_equal(f->reads[3].bits[1], 1);
	assert_int_equal(f->reads[3].bits[2], 0);
	/* the probe's four requests, to its unit, one after another */
	pthread_mutex_lock(&s->mu);
	int i = srv_find_req(s, 0, 3, 7);
	assert_true(i >= 0 && i + 3 < s->nreq);
	for (int k = 0; k < 4; k++)
		assert_int_equal(s->req_unit[i + k], 9);
	assert_int_equal(s->req_fc[i + 1], 3);
	assert_int_equal(s->req_fc[i + 2], 4);
	assert_int_equal(s->req_fc[i + 3], 1);
	pthread_mutex_unlock(&s->mu);
	fx_probe_free(f);
	tcpoll_free(tp);
	sink_fini(&sk);
	free(t);
	srv_stop(s);
}

/* A silent unit: with stop_on_silence the first read times out and the rest fail unsent;
 * the probe's own timeout is used, not the bus's; a probe not begun by start_by is late
 * and sends nothing; a bus of no connection is ENOENT. */
static void test_probe_silence_timeout_late(void **state)
{
	(void)state;
	struct srv *s = srv_start();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	size_t b = add_tcp_bus(t, "a", s->port, 2000, 0);
	size_t other = add_tcp_bus(t, "empty", s->port, 2000, 0);
	uint32_t d = add_dev(t, "m", b, 1, 60000);

	add_pt(t, d, "x", MB_HOLDING, 0, PT_UINT16);
	s->drop_unit = 5;
	sink_init(&sk);
	struct tcpoll *tp = start(t, 1, &sk);

	struct fx_probe *f = fx_probe_new(5);
	f->p.stop_on_silence = true;
	f->p.timeout_ms = 150;
	fx_probe_read(f, MB_HOLDING, 0, 1);
	fx_probe_read(f, MB_HOLDING, 1, 1);
	int64_t t0 = clock_mono_ms();
	assert_int_equal(tcpoll_probe(tp, b, &f->p), 0);
	fx_probe_wait(f, 3000);
	int64_t took = f->done_ms - t0;
	assert_true(took >= 140 && took < 1500); /* the probe's timeout, not the bus's 2 s */
	assert_int_equal(f->p.status, PROBE_DONE);
	assert_int_equal(f->reads[0].err, MBE_TIMEOUT);
	assert_int_equal(f->reads[1].err, MBE_TIMEOUT);
	assert_int_equal(srv_count_unit(s, 5), 1); /* the second read was not sent */
	fx_probe_free(f);

	/* without stop_on_silence every read is tried */
	f = fx_probe_new(5);
	f->p.timeout_ms = 100;
	fx_probe_read(f, MB_HOLDING, 0, 1);
	fx_probe_read(f, MB_HOLDING, 1, 1);
	assert_int_equal(tcpoll_probe(tp, b, &f->p), 0);
	fx_probe_wait(f, 3000);
	assert_int_equal(f->reads[1].err, MBE_TIMEOUT);
	assert_int_equal(srv_count_unit(s, 5), 3);
	fx_probe_free(f);

	/* late: nothing sent */
	f = fx_probe_new(1);
	f->p.start_by = clock_mono_ms() - 1;
	fx_probe_read(f, MB_HOLDING, 0, 1);
	int before = srv_get(s, &s->nreq);
	assert_int_equal(tcpoll_probe(tp, b, &f->p), 0);
	fx_probe_wait(f, 3000);
	assert_int_equal(f->p.status, PROBE_LATE);
	assert_int_equal(f->reads[0].err, MBE_TIMEOUT);
	assert_int_equal(srv_get(s, &s->nreq), before);
	fx_probe_free(f);

	/* no connection of this tcpoll: the bus has no device */
	f = fx_probe_new(1);
	fx_probe_read(f, MB_HOLDING, 0, 1);
	errno = 0;
	assert_int_equal(tcpoll_probe(tp, other, &f->p), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(tcpoll_probe(tp, 99, &f->p), -1);
	assert_int_equal(errno, ENOENT);
	tcpoll_stop(tp);
	/* stopped: refused */
	assert_int_equal(tcpoll_probe(tp, b, &f->p), -1);
	assert_int_equal(errno, ESHUTDOWN);
	free(f);
	tcpoll_free(tp);
	sink_fini(&sk);
	free(t);
	srv_stop(s);
}

/* A bus whose only device is a sunspec one waiting for discovery has a connection for
 * discovery's reads, and no poll; a probe to a bus that refuses connections fails with
 * MBE_CONNECT; one still queued when a tcpoll that never ran is freed is done with
 * PROBE_STOPPED. */
static void test_probe_discovery_bus_and_stop(void **state)
{
	(void)state;
	struct srv *s = srv_start();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	size_t b = add_tcp_bus(t, "roof", s->port, 1000, 0);
	size_t dead = add_tcp_bus(t, "dead", dead_port(), 500, 0);

	t->devs[add_dev(t, "inverter", b, 2, 1000)].sunspec = true;
	t->devs[add_dev(t, "gone", dead, 2, 1000)].sunspec = true;
	s->img.regs[1][0] = 0x5375;
	sink_init(&sk);
	struct tcpoll *tp = start(t, 1, &sk);
	assert_int_equal(tcpoll_ndevices(tp), 0);

	struct fx_probe *f = fx_probe_new(2);
	fx_probe_read(f, MB_HOLDING, 0, 1);
	assert_int_equal(tcpoll_probe(tp, b, &f->p), 0);
	fx_probe_wait(f, 3000);
	assert_int_equal(f->p.status, PROBE_DONE);
	assert_int_equal(f->reads[0].err, 0);
	assert_int_equal(f->reads[0].regs[0], 0x5375);
	fx_probe_free(f);

	f = fx_probe_new(2);
	fx_probe_read(f, MB_HOLDING, 0, 1);
	fx_probe_read(f, MB_HOLDING, 1, 1);
	assert_int_equal(tcpoll_probe(tp, dead, &f->p), 0);
	fx_probe_wait(f, 3000);
	assert_int_equal(f->p.status, PROBE_DONE);
	assert_int_equal(f->reads[0].err, MBE_CONNECT);
	assert_int_equal(f->reads[1].err, MBE_CONNECT);
	fx_probe_free(f);
	assert_int_equal(sink_count(&sk, 0), 0);
	tcpoll_free(tp);

	char err[256];
	struct poller_sink ps = sink_poller(&sk);
	tp = tcpoll_new(&t->cfg, 1, 1, &ps, err, sizeof err);
	assert_non_null(tp);
	f = fx_probe_new(2);
	fx_probe_read(f, MB_HOLDING, 0, 1);
	assert_int_equal(tcpoll_probe(tp, b, &f->p), 0);
	tcpoll_free(tp);
	assert_int_equal(f->p.status, PROBE_STOPPED);
	assert_int_equal(f->reads[0].err, MBE_CLOSED);
	fx_probe_free(f);
	sink_fini(&sk);
	free(t);
	srv_stop(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_values_decoded),
		cmocka_unit_test(test_each_device_on_its_interval),
		cmocka_unit_test(test_first_polls_spread),
		cmocka_unit_test(test_dead_endpoints_do_not_delay_others),
		cmocka_unit_test(test_dead_unit_on_shared_connection),
		cmocka_unit_test(test_exception_fails_only_its_request),
		cmocka_unit_test(test_peer_close_then_recover),
		cmocka_unit_test(test_late_replies_do_not_desync),
		cmocka_unit_test(test_wrong_transaction_id_is_a_protocol_error),
		cmocka_unit_test(test_forged_trailing_frame),
		cmocka_unit_test(test_flooding_device),
		cmocka_unit_test(test_fragmented_and_delayed_replies),
		cmocka_unit_test(test_guard_between_requests),
		cmocka_unit_test(test_clock_step),
		cmocka_unit_test(test_stop_is_prompt),
		cmocka_unit_test(test_which_devices),
		cmocka_unit_test(test_descriptors_past_1023),
		cmocka_unit_test(test_ipv6_and_host_name),
		cmocka_unit_test(test_resolver_never_answers),
		cmocka_unit_test(test_resolver_last_good_address),
		cmocka_unit_test(test_breaker_offline_slow_retry_and_recovery),
		cmocka_unit_test(test_breaker_what_counts_as_failed),
		cmocka_unit_test(test_split_on_illegal_address),
		cmocka_unit_test(test_split_on_timeout_only_when_merged),
		cmocka_unit_test(test_writes_each_kind),
		cmocka_unit_test(test_writes_refused),
		cmocka_unit_test(test_probe_between_polls),
		cmocka_unit_test(test_probe_silence_timeout_late),
		cmocka_unit_test(test_probe_discovery_bus_and_stop),
	};

	log_init(getenv("SLUICE_TEST_DEBUG") ? 7 : 3, "test_tcpoll"); /* warnings about the dead endpoints are expected */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
