/*
 * serpoll against a real RTU slave: a thread of this test that answers RTU frames
 * (drivers/rtu + mbpdu_serve over register images the test controls) on the master side
 * of a pseudo-terminal (openpty; serpoll opens the slave side through libmodbus) or on a
 * TCP socket on 127.0.0.1 (RTU over TCP). It can leave a unit dead, corrupt the CRC of
 * a unit's replies, or answer as another unit. Asserts: values, one request at a time
 * with the guard, a dead unit costing only its timeout while a healthy one keeps its
 * interval, the circuit breaker, a missing tty retried with MBE_CONNECT readings,
 * protocol errors, writes (FC 5, 6, 16, read-modify-write), a prompt stop, a DTU that
 * talks without pause (a failed poll like any other) and, as root, one whose name the
 * resolver never answers for. Time
 * bounds are generous (valgrind): they tell a schedule from a stall.
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
#include <pty.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "mberr.h"
#include "mbpdu.h"
#include "poller_fixture.h"
#include "reading.h"
#include "rtu.h"
#include "serpoll.h"

/* --- the slave ----------------------------------------------------------------------- */

#define NUNITS 8

struct slave {
	struct fx_thread thr;
	pthread_mutex_t mu;
	int fd;            /* pty master, or the accepted connection */
	int lfd;           /* TCP: the listener */
	int ptyslave;      /* held open so the master does not see a hang-up */
	char path[64];
	uint16_t port;
	struct image img[NUNITS];
	bool alive[NUNITS];
	int bad_crc_unit, wrong_unit;
	unsigned requests[NUNITS];
	int64_t last_req_ms, min_gap_ms; /* between the end of a reply and the next request */
	uint8_t in[512];
	size_t inlen;
};

static void slave_frame(struct slave *s, const uint8_t *f, size_t len)
{
	uint8_t unit, resp[MB_PDU_MAX], adu[RTU_ADU_MAX];
	const uint8_t *pdu;
	size_t plen, rlen, alen;
	int64_t now = clock_mono_ms();

	if (rtu_unframe(f, len, &unit, &pdu, &plen) != 0 || unit >= NUNITS)
		return;
	pthread_mutex_lock(&s->mu);
	if (s->last_req_ms && now - s->last_req_ms < s->min_gap_ms)
		s->min_gap_ms = now - s->last_req_ms;
	s->requests[unit]++;
	if (!s->alive[unit]) {
		pthread_mutex_unlock(&s->mu);
		return;
	}
	rlen = img_serve(&s->img[unit], pdu, plen, resp);
	alen = rtu_frame(adu, unit == s->wrong_unit ? (uint8_t)(unit + 1) : unit, resp, rlen);
	if (unit == s->bad_crc_unit)
		adu[alen - 1] ^= 0x55;
	/* stamped before the write: the master cannot have the reply earlier, so the gap
	 * measured to the next request is never shorter than the real one (a stamp taken
	 * after write() returns is late whenever this thread is descheduled, as under
	 * valgrind) */
	s->last_req_ms = clock_mono_ms();
	pthread_mutex_unlock(&s->mu);
	if (alen && write(s->fd, adu, alen) != (ssize_t)alen)
		return;
}

static void *slave_main(void *arg)
{
	struct slave *s = arg;

	for (;;) {
		struct pollfd p[2] = { { .fd = s->thr.wake[0], .events = POLLIN },
				       { .fd = s->fd >= 0 ? s->fd : s->lfd, .events = POLLIN } };
		if (poll(p, 2, 1000) < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			break;
		if (!p[1].revents)
			continue;
		if (s->fd < 0) {
			s->fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
			continue;
		}
		ssize_t n = read(s->fd, s->in + s->inlen, sizeof s->in - s->inlen);
		if (n <= 0) {
			if (s->lfd >= 0) { /* TCP: the master went away; take the next one */
				close(s->fd);
				s->fd = -1;
				s->inlen = 0;
				continue;
			}
			sleep_ms(5);
			continue;
		}
		s->inlen += (size_t)n;
		for (;;) {
			int len = rtu_request_len(s->in, s->inlen);
			if (len < 0) {
				s->inlen = 0;
				break;
			}
			if (len == 0 || s->inlen < (size_t)len)
				break;
			slave_frame(s, s->in, (size_t)len);
			memmove(s->in, s->in + len, s->inlen - (size_t)len);
			s->inlen -= (size_t)len;
		}
	}
	return NULL;
}

static struct slave *slave_new(void)
{
	struct slave *s = calloc(1, sizeof *s);

	assert_non_null(s);
	pthread_mutex_init(&s->mu, NULL);
	s->fd = s->lfd = s->ptyslave = -1;
	s->bad_crc_unit = s->wrong_unit = -1;
	s->min_gap_ms = INT64_MAX;
	for (int u = 0; u < NUNITS; u++) {
		s->alive[u] = true;
		for (int i = 0; i < 64; i++) /* the same in the input and holding tables */
			s->img[u].regs[0][i] = s->img[u].regs[1][i] = (uint16_t)(u * 1000 + i);
	}
	return s;
}

static struct slave *slave_pty(void)
{
	struct slave *s = slave_new();
	struct termios t;

	assert_int_equal(openpty(&s->fd, &s->ptyslave, s->path, NULL, NULL), 0);
	assert_int_equal(tcgetattr(s->ptyslave, &t), 0);
	cfmakeraw(&t);
	assert_int_equal(tcsetattr(s->ptyslave, TCSANOW, &t), 0);
	fx_thread_start(&s->thr, slave_main, s);
	return s;
}

static struct slave *slave_tcp(void)
{
	struct slave *s = slave_new();

	s->lfd = fx_listen(AF_INET, &s->port);
	assert_true(s->lfd >= 0);
	fx_thread_start(&s->thr, slave_main, s);
	return s;
}

static void slave_free(struct slave *s)
{
	fx_thread_stop(&s->thr);
	if (s->fd >= 0)
		close(s->fd);
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->ptyslave >= 0)
		close(s->ptyslave);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

static unsigned slave_requests(struct slave *s, int unit)
{
	pthread_mutex_lock(&s->mu);
	unsigned n = s->requests[unit];
	pthread_mutex_unlock(&s->mu);
	return n;
}

/* --- devices ---------------------------------------------------------------------- */

/* Two uint16 points in two requests (a hole between them), so a poll is 2 requests. */
static uint32_t add_meter(struct tcfg *t, const char *id, size_t bus, uint8_t unit,
			  int64_t interval)
{
	uint32_t d = add_dev(t, id, bus, unit, interval);
	add_pt(t, d, "a", MB_HOLDING, 1, PT_UINT16);
	add_pt(t, d, "b", MB_INPUT, 5, PT_UINT16);
	return d;
}

static struct serpoll *start(struct tcfg *t, struct sink *sk, int64_t retry_min)
{
	struct poller_sink ps = sink_poller(sk);
	char err[256] = "";
	struct serpoll *sp = serpoll_new(&t->cfg, 7, &ps, err, sizeof err);

	if (sp == NULL)
		fail_msg("serpoll_new: %s", err);
	if (retry_min > 0)
		serpoll_set_offline_retry(sp, retry_min, retry_min * 4);
	assert_int_equal(serpoll_start(sp), 0);
	return sp;
}

static void assert_meter(const struct reading *r, uint8_t unit)
{
	assert_int_equal(r->nvalues, 2);
	assert_int_equal(r->values[0].kind, VAL_UINT);
	assert_int_equal(r->values[0].v.u, unit * 1000 + 1);
	assert_int_equal(r->values[1].kind, VAL_UINT);
	assert_int_equal(r->values[1].v.u, unit * 1000 + 5);
	assert_true(r->online);
}

/* --- tests ------------------------------------------------------------------------- */

static void test_values_over_pty(void **state)
{
	struct slave *sl = slave_pty();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[64];
	size_t b = add_bus(t, "line1", BUS_RTU, sl->path, 0, 200, 5);
	uint32_t d1 = add_meter(t, "m1", b, 1, 150);
	uint32_t d2 = add_meter(t, "m2", b, 2, 150);
	uint32_t d3 = add_dev(t, "mixed", b, 3, 150);
	struct point_def *p;

	(void)state;
	add_pt(t, d3, "f", MB_HOLDING, 10, PT_FLOAT32);
	p = add_pt(t, d3, "bit", MB_HOLDING, 12, PT_BOOL);
	p->bit = 2;
	add_pt(t, d3, "coil", MB_COIL, 3, PT_BOOL);
	sl->img[3].regs[1][10] = 0x4148; /* 12.5f */
	sl->img[3].regs[1][11] = 0x0000;
	sl->img[3].regs[1][12] = 0x0004;
	sl->img[3].bits[0][3] = 1;
	sink_init(&sk);
	struct serpoll *sp = start(t, &sk, 0);
	assert_int_equal(serpoll_nlines(sp), 1);
	assert_int_equal(serpoll_ndevices(sp), 3);
	assert_true(serpoll_owns(sp, d2));
	wait_count(&sk, d1, 4, 5000);
	wait_count(&sk, d2, 4, 5000);
	wait_count(&sk, d3, 2, 5000);
	serpoll_stop(sp);

	size_t n = sink_of(&sk, d1, v, 64);
	for (size_t i = 0; i < n; i++) {
		assert_meter(v[i], 1);
		assert_int_equal(v[i]->generation, 7);
		assert_int_equal(v[i]->last_err, 0);
		if (i > 0) /* on its interval, not faster */
			assert_true(v[i]->sched_mono_ms - v[i - 1]->sched_mono_ms >= 150);
	}
	n = sink_of(&sk, d2, v, 64);
	for (size_t i = 0; i < n; i++)
		assert_meter(v[i], 2);
	n = sink_of(&sk, d3, v, 64);
	assert_int_equal(v[0]->values[0].kind, VAL_DOUBLE);
	assert_true(fabs(v[0]->values[0].v.d - 12.5) < 1e-9);
	assert_int_equal(v[0]->values[1].kind, VAL_BOOL);
	assert_true(v[0]->values[1].v.b);
	assert_int_equal(v[0]->values[2].kind, VAL_BOOL);
	assert_true(v[0]->values[2].v.b);

	struct serpoll_stats st;
	serpoll_get_stats(sp, &st);
	assert_true(st.polls >= 10);
	assert_int_equal(st.failed, 0);
	assert_int_equal(st.opens, 1);
	/* one request at a time, with the guard of silence between them */
	pthread_mutex_lock(&sl->mu);
	int64_t gap = sl->min_gap_ms;
	pthread_mutex_unlock(&sl->mu);
	assert_true(gap >= 4);
	serpoll_free(sp);
	sink_fini(&sk);
	free(t);
	slave_free(sl);
}

/* A dead unit costs its line one timeout per attempt; a healthy unit on the same line
 * keeps its interval (gaps within interval + the dead one's timeout), and the dead one
 * goes offline after offline_after polls, then is polled at the slower pace. */
static void run_dead_unit(bool tcp)
{
	struct slave *sl = tcp ? slave_tcp() : slave_pty();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[256];
	size_t b = add_bus(t, "line", tcp ? BUS_RTU_OVER_TCP : BUS_RTU,
			   tcp ? "127.0.0.1" : sl->path, sl->port, 150, 5);
	uint32_t ok = add_meter(t, "ok", b, 1, 200);
	uint32_t dead = add_meter(t, "dead", b, 4, 200);

	sl->alive[4] = false;
	sink_init(&sk);
	struct serpoll *sp = start(t, &sk, 1000);
	wait_count(&sk, dead, 4, 8000);
	wait_count(&sk, ok, 12, 8000);
	serpoll_stop(sp);

	size_t n = sink_of(&sk, dead, v, 256);
	for (size_t i = 0; i < n; i++) {
		/* the first request timed out; the second was never sent */
		assert_int_equal(v[i]->values[0].err, MBE_TIMEOUT);
		assert_int_equal(v[i]->values[1].err, MBE_TIMEOUT);
		assert_int_equal(v[i]->last_err, MBE_TIMEOUT);
		assert_true(v[i]->online == (i < 2));
		/* each attempt costs one timeout (+ transfer), not more */
		if (i + 1 < n) {
			int64_t took = v[i + 1]->start_mono_ms - v[i]->start_mono_ms;
			if (i >= 2) /* offline: the slower pace */
				assert_true(took >= 900);
		}
	}
	/* one request per attempt (and perhaps one more, abandoned by the stop) */
	assert_true(slave_requests(sl, 4) >= n && slave_requests(sl, 4) <= n + 1);
	n = sink_of(&sk, ok, v, 256);
	for (size_t i = 1; i < n; i++) {
		int64_t gap = v[i]->start_mono_ms - v[i - 1]->start_mono_ms;
		assert_meter(v[i], 1);
		if (gap > 200 + 150 + 100)
			fail_msg("healthy device: poll %zu came %lld ms after the previous", i,
				 (long long)gap);
	}
	struct serpoll_stats st;
	serpoll_get_stats(sp, &st);
	assert_int_equal(st.offline, 1);
	assert_true(st.timeouts >= 4);
	serpoll_free(sp);
	sink_fini(&sk);
	free(t);
	slave_free(sl);
}

static void test_dead_unit_pty(void **state)
{
	(void)state;
	run_dead_unit(false);
}

static void test_dead_unit_rtu_over_tcp(void **state)
{
	(void)state;
	run_dead_unit(true);
}

static void test_rtu_over_tcp_values_and_garbage(void **state)
{
	struct slave *sl = slave_tcp();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[64];
	size_t b = add_bus(t, "dtu", BUS_RTU_OVER_TCP, "127.0.0.1", sl->port, 200, 0);
	uint32_t d1 = add_meter(t, "m1", b, 1, 100);
	uint32_t dc = add_meter(t, "crc", b, 2, 100);
	uint32_t dw = add_meter(t, "wrong", b, 3, 100);

	(void)state;
	sl->bad_crc_unit = 2;
	sl->wrong_unit = 3;
	sink_init(&sk);
	struct serpoll *sp = start(t, &sk, 0);
	wait_count(&sk, d1, 5, 5000);
	wait_count(&sk, dc, 4, 5000);
	wait_count(&sk, dw, 4, 5000);
	serpoll_stop(sp);
	size_t n = sink_of(&sk, d1, v, 64);
	for (size_t i = 0; i < n; i++)
		assert_meter(v[i], 1);
	n = sink_of(&sk, dc, v, 64);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(v[i]->values[0].err, MBE_BAD_CRC);
		assert_int_equal(v[i]->online, i < 2);
	}
	n = sink_of(&sk, dw, v, 64);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(v[i]->values[0].err, MBE_WRONG_UNIT);
	struct serpoll_stats st;
	serpoll_get_stats(sp, &st);
	assert_true(st.proto_errors >= 8);
	serpoll_free(sp);

	/* the same unit recovers once its replies are good again */
	FX_SET(sl, bad_crc_unit, -1);
	sink_fini(&sk);
	sink_init(&sk);
	sp = start(t, &sk, 200);
	wait_count(&sk, dc, 2, 5000);
	serpoll_stop(sp);
	n = sink_of(&sk, dc, v, 64);
	assert_meter(v[n - 1], 2);
	serpoll_free(sp);
	sink_fini(&sk);
	free(t);
	slave_free(sl);
}

static void test_missing_tty(void **state)
{
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[64];
	size_t b = add_bus(t, "usb", BUS_RTU, "/nonexistent/ttyUSB7", 0, 100, 5);
	uint32_t d = add_meter(t, "m", b, 1, 100);

	(void)state;
	sink_init(&sk);
	struct serpoll *sp = start(t, &sk, 300);
	wait_count(&sk, d, 5, 5000);
	int64_t t0 = clock_mono_ms();
	serpoll_stop(sp);
	assert_true(clock_mono_ms() - t0 < 400);
	size_t n = sink_of(&sk, d, v, 64);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(v[i]->values[0].err, MBE_CONNECT);
		assert_int_equal(v[i]->values[1].err, MBE_CONNECT);
		assert_int_equal(v[i]->online, i < 2);
		assert_int_equal(v[i]->last_err, MBE_CONNECT);
	}
	struct serpoll_stats st;
	serpoll_get_stats(sp, &st);
	assert_true(st.open_fails >= 1);
	assert_int_equal(st.opens, 0);
	/* retried with a backoff, not at every poll */
	assert_true(st.open_fails < n + 1);
	serpoll_free(sp);
	sink_fini(&sk);
	free(t);
}

static void run_writes(bool tcp)
{
	struct slave *sl = tcp ? slave_tcp() : slave_pty();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	size_t b = add_bus(t, "line", tcp ? BUS_RTU_OVER_TCP : BUS_RTU,
			   tcp ? "127.0.0.1" : sl->path, sl->port, 200, 5);
	uint32_t d = add_dev(t, "act", b, 1, 60000);
	struct point_def *p;

	add_pt(t, d, "ro", MB_HOLDING, 0, PT_UINT16);
	add_pt(t, d, "sp", MB_HOLDING, 1, PT_INT16)->writable = true;
	add_pt(t, d, "f", MB_HOLDING, 2, PT_FLOAT32)->writable = true;
	add_pt(t, d, "pump", MB_COIL, 4, PT_BOOL)->writable = true;
	p = add_pt(t, d, "sign", MB_HOLDING, 8, PT_BOOL);
	p->bit = 3;
	p->writable = true;
	add_pt(t, d, "in", MB_INPUT, 9, PT_UINT16)->writable = true;
	p = add_pt(t, d, "scaled", MB_HOLDING, 10, PT_UINT16);
	p->scale = 0.1;
	p->writable = true;
	sl->img[1].regs[1][8] = 0x8001;
	sink_init(&sk);
	struct serpoll *sp = start(t, &sk, 0);

	errno = 0;
	assert_int_equal(serpoll_write(sp, d, 0, 1, 1), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(serpoll_write(sp, d, 1, 40000, 1), -1);
	assert_int_equal(errno, ERANGE);
	assert_int_equal(serpoll_write(sp, d, 3, 2, 1), -1);
	assert_int_equal(errno, ERANGE);
	assert_int_equal(serpoll_write(sp, d, 5, 1, 1), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(serpoll_write(sp, d, 6, 7000, 1), -1);
	assert_int_equal(errno, ERANGE); /* 70000 raw does not fit a uint16 */
	assert_int_equal(serpoll_write(sp, d, 99, 1, 1), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(serpoll_write(sp, 42, 0, 1, 1), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(serpoll_write(sp, d, 1, NAN, 1), -1);
	assert_int_equal(errno, ERANGE);

	assert_int_equal(serpoll_write(sp, d, 1, -5, 101), 0);
	assert_int_equal(serpoll_write(sp, d, 2, 2.5, 102), 0);
	assert_int_equal(serpoll_write(sp, d, 3, 1, 103), 0);
	assert_int_equal(serpoll_write(sp, d, 4, 1, 104), 0);
	assert_int_equal(serpoll_write(sp, d, 6, 12.3, 105), 0);
	assert_true(wait_writes(&sk, 5, 5000));
	pthread_mutex_lock(&sk.mu);
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(sk.w[i].tag, 101 + i);
		assert_int_equal(sk.w[i].err, 0);
		assert_int_equal(sk.w[i].device, d);
	}
	pthread_mutex_unlock(&sk.mu);
	pthread_mutex_lock(&sl->mu);
	assert_int_equal((int16_t)sl->img[1].regs[1][1], -5);
	assert_int_equal(sl->img[1].regs[1][2], 0x4020); /* 2.5f, high word first */
	assert_int_equal(sl->img[1].regs[1][3], 0x0000);
	assert_int_equal(sl->img[1].bits[0][4], 1);
	assert_int_equal(sl->img[1].regs[1][8], 0x8009); /* bit 3 set, the others kept */
	assert_int_equal(sl->img[1].regs[1][10], 123);
	pthread_mutex_unlock(&sl->mu);

	/* a dead unit: the write fails with a timeout, reported */
	FX_SET(sl, alive[1], false);
	assert_int_equal(serpoll_write(sp, d, 1, 9, 200), 0);
	assert_true(wait_writes(&sk, 6, 5000));
	pthread_mutex_lock(&sk.mu);
	assert_int_equal(sk.w[5].tag, 200);
	assert_int_equal(sk.w[5].err, MBE_TIMEOUT);
	pthread_mutex_unlock(&sk.mu);
	struct serpoll_stats st;
	serpoll_get_stats(sp, &st);
	assert_int_equal(st.writes, 6);
	assert_int_equal(st.write_fails, 1);
	serpoll_free(sp);
	sink_fini(&sk);
	free(t);
	slave_free(sl);
}

static void test_writes_pty(void **state)
{
	(void)state;
	run_writes(false);
}

static void test_writes_rtu_over_tcp(void **state)
{
	(void)state;
	run_writes(true);
}

/* A DTU that does not accept: MBE_CONNECT readings; and stop is prompt while a request
 * waits for a reply that never comes (RTU over TCP waits in poll(), which stop wakes). */
static void test_stop_is_prompt(void **state)
{
	struct slave *sl = slave_tcp();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	size_t b = add_bus(t, "dtu", BUS_RTU_OVER_TCP, "127.0.0.1", sl->port, 5000, 0);
	uint32_t d = add_meter(t, "m", b, 1, 100);

	(void)state;
	sl->alive[1] = false;
	sink_init(&sk);
	struct serpoll *sp = start(t, &sk, 0);
	int64_t end = clock_mono_ms() + 3000;
	while (slave_requests(sl, 1) == 0 && clock_mono_ms() < end)
		sleep_ms(10);
	assert_int_equal(slave_requests(sl, 1), 1);
	int64_t t0 = clock_mono_ms();
	serpoll_stop(sp);
	assert_true(clock_mono_ms() - t0 < 200);
	assert_int_equal(sink_count(&sk, d), 0); /* the poll in flight was abandoned */
	serpoll_free(sp);
	sink_fini(&sk);
	free(t);
	slave_free(sl);
}

/* A DTU that talks without pause: each poll fails at once (rtustream reads a few
 * kilobytes of the stream, no more, and the connection is closed), the device goes
 * offline after offline_after polls like any other and is retried at the offline pace,
 * and a stop is prompt while the flood goes on. Before rtustream bounded its flush, the
 * line's thread stayed in it: no reading, and no stop. */
static void test_dtu_flood(void **state)
{
	struct fx_flood *fl = fx_flood_new();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[64];
	size_t b = add_bus(t, "dtu", BUS_RTU_OVER_TCP, "127.0.0.1", fl->port, 200, 0);
	uint32_t d = add_meter(t, "m", b, 1, 100);

	(void)state;
	sink_init(&sk);
	struct serpoll *sp = start(t, &sk, 300);
	wait_count(&sk, d, 6, 5000);
	int64_t t0 = clock_mono_ms();
	serpoll_stop(sp);
	int64_t stop_ms = clock_mono_ms() - t0;
	assert_true(stop_ms < 200);

	size_t n = sink_of(&sk, d, v, 64);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(v[i]->values[0].err, MBE_PROTO);
		assert_int_equal(v[i]->values[1].err, MBE_PROTO); /* the rest of the poll unsent */
		assert_int_equal(v[i]->last_err, MBE_PROTO);
		assert_int_equal(v[i]->online, i < 2);
		if (i >= 3) /* offline: the slower pace, not a poll after poll */
			assert_true(v[i]->start_mono_ms - v[i - 1]->start_mono_ms >= 250);
	}
	struct serpoll_stats st;
	serpoll_get_stats(sp, &st);
	assert_int_equal(st.offline, 1);
	assert_true(st.proto_errors >= n);
	/* a new connection for each poll: the flooded one is not read again */
	assert_true(st.opens >= n && fx_flood_accepted(fl) >= n);
	print_message("flooded DTU: %zu polls, %u connections, %llu bytes sent by the peer, "
		      "stop in %lld ms\n", n, fx_flood_accepted(fl),
		      (unsigned long long)fx_flood_sent(fl), (long long)stop_ms);
	serpoll_free(sp);
	sink_fini(&sk);
	free(t);
	fx_flood_free(fl);
}

/* A DTU named by a host name nobody resolves: a stop is prompt while the line waits for
 * the lookup; then its polls fail (MBE_CONNECT) and the device goes offline, one lookup
 * left running, not one per attempt. Before, the line's thread sat in getaddrinfo (30 s
 * here): no reading, and no stop. */
static void test_dtu_resolver_never_answers(void **state)
{
	(void)state;
	struct fx_dns *dns = fx_dns_new(NULL);
	if (dns == NULL)
		skip();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	struct reading *v[64];
	size_t b = add_bus(t, "dtu", BUS_RTU_OVER_TCP, FX_HUNG_NAME, 1, 200, 0);
	uint32_t d = add_meter(t, "m", b, 1, 100);

	sink_init(&sk);
	struct serpoll *sp = start(t, &sk, 300);
	int64_t end = clock_mono_ms() + 3000;
	while (fx_dns_queries(dns) == 0 && clock_mono_ms() < end)
		sleep_ms(5);
	assert_true(fx_dns_queries(dns) > 0); /* the lookup waits for the resolver */
	int64_t t0 = clock_mono_ms();
	serpoll_stop(sp);
	int64_t stop_ms = clock_mono_ms() - t0;
	assert_true(stop_ms < 200);
	assert_int_equal(sink_count(&sk, d), 0); /* the poll in flight was abandoned */
	serpoll_free(sp);
	sink_fini(&sk);

	sink_init(&sk);
	sp = start(t, &sk, 300);
	wait_count(&sk, d, 4, 8000);
	serpoll_stop(sp);
	size_t n = sink_of(&sk, d, v, 64);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(v[i]->values[0].err, MBE_CONNECT);
		assert_int_equal(v[i]->values[1].err, MBE_CONNECT);
		assert_int_equal(v[i]->online, i < 2);
	}
	/* the first serpoll's lookup, left to finish, and this one's */
	assert_true(netconn_lookups_running() <= 2);
	print_message("unresolved DTU: stop in %lld ms while waiting for the lookup; %zu "
		      "failed polls after\n", (long long)stop_ms, n);
	serpoll_free(sp);
	sink_fini(&sk);
	free(t);
	fx_dns_free(dns);
}

static void test_which_devices(void **state)
{
	struct tcfg *t = tcfg_new();
	struct sink sk;
	char err[256];
	size_t tcp = add_bus(t, "tcp", BUS_TCP, "127.0.0.1", 1502, 100, 0);
	size_t rtu = add_bus(t, "rtu", BUS_RTU, "/nonexistent/tty", 0, 100, 0);
	size_t rot = add_bus(t, "rot", BUS_RTU_OVER_TCP, "127.0.0.1", 1, 100, 0);
	uint32_t a = add_meter(t, "a", tcp, 1, 1000);
	uint32_t b = add_meter(t, "b", rtu, 1, 1000);
	uint32_t c = add_meter(t, "c", rot, 1, 1000);
	uint32_t s = add_dev(t, "sunspec", rtu, 2, 1000);

	(void)state;
	t->devs[s].sunspec = true;
	sink_init(&sk);
	struct poller_sink ps = { .ctx = &sk, .emit = sink_emit };
	struct serpoll *sp = serpoll_new(&t->cfg, 1, &ps, err, sizeof err);
	assert_non_null(sp);
	assert_int_equal(serpoll_ndevices(sp), 2);
	assert_int_equal(serpoll_nlines(sp), 2);
	assert_false(serpoll_owns(sp, a));
	assert_true(serpoll_owns(sp, b));
	assert_true(serpoll_owns(sp, c));
	assert_false(serpoll_owns(sp, s));
	assert_false(serpoll_owns(sp, 99));
	serpoll_free(sp); /* never started */

	t->buses[rot].host = NULL;
	assert_null(serpoll_new(&t->cfg, 1, &ps, err, sizeof err));
	assert_non_null(strstr(err, "rot"));
	sink_fini(&sk);
	free(t);
}

/* A probe goes between two polls of the line, its reads one after another: values, an
 * exception that does not stop it, a silent unit that does (stop_on_silence) at the
 * probe's own timeout; a late probe sends nothing; the polls go on. */
static void run_probe(bool tcp)
{
	struct slave *sl = tcp ? slave_tcp() : slave_pty();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	size_t b = add_bus(t, "line", tcp ? BUS_RTU_OVER_TCP : BUS_RTU,
			   tcp ? "127.0.0.1" : sl->path, sl->port, 2000, 5);
	uint32_t d = add_meter(t, "m", b, 1, 50);

	sl->img[4].exc_from = 30;
	sl->img[4].exc_to = 31;
	sl->img[4].bits[0][2] = 1;
	sink_init(&sk);
	struct serpoll *sp = start(t, &sk, 0);
	wait_count(&sk, d, 3, 5000);

	struct fx_probe *f = fx_probe_new(4);
	f->p.stop_on_silence = true;
	fx_probe_read(f, MB_HOLDING, 10, 2);
	fx_probe_read(f, MB_HOLDING, 30, 1);
	fx_probe_read(f, MB_INPUT, 3, 1);
	fx_probe_read(f, MB_COIL, 1, 2);
	unsigned polls_before = slave_requests(sl, 1);
	assert_int_equal(serpoll_probe(sp, b, &f->p), 0);
	fx_probe_wait(f, 5000);
	assert_int_equal(f->p.status, PROBE_DONE);
	assert_int_equal(f->reads[0].err, 0);
	assert_int_equal(f->reads[0].regs[0], 4010);
	assert_int_equal(f->reads[0].regs[1], 4011);
	assert_int_equal(f->reads[1].err, MBE_EXC_BASE + 2);
	assert_int_equal(f->reads[2].err, 0);
	assert_int_equal(f->reads[2].regs[0], 4003);
	assert_int_equal(f->reads[3].err, 0);
	assert_int_equal(f->reads[3].bits[0], 0);
	assert_int_equal(f->reads[3].bits[1], 1);
	assert_int_equal(slave_requests(sl, 4), 4);
	fx_probe_free(f);

	FX_SET(sl, alive[5], false);
	f = fx_probe_new(5);
	f->p.stop_on_silence = true;
	f->p.timeout_ms = 150;
	fx_probe_read(f, MB_HOLDING, 0, 1);
	fx_probe_read(f, MB_HOLDING, 1, 1);
	int64_t t0 = clock_mono_ms();
	assert_int_equal(serpoll_probe(sp, b, &f->p), 0);
	fx_probe_wait(f, 5000);
	assert_true(f->done_ms - t0 < 1500); /* the probe's timeout, not the line's 2 s */
	assert_int_equal(f->reads[0].err, MBE_TIMEOUT);
	assert_int_equal(f->reads[1].err, MBE_TIMEOUT);
	assert_int_equal(slave_requests(sl, 5), 1);
	fx_probe_free(f);

	f = fx_probe_new(4);
	f->p.start_by = clock_mono_ms() - 1;
	fx_probe_read(f, MB_HOLDING, 0, 1);
	assert_int_equal(serpoll_probe(sp, b, &f->p), 0);
	fx_probe_wait(f, 5000);
	assert_int_equal(f->p.status, PROBE_LATE);
	assert_int_equal(slave_requests(sl, 4), 4);
	fx_probe_free(f);

	wait_count(&sk, d, sink_count(&sk, d) + 2, 5000); /* the polls go on */
	assert_true(slave_requests(sl, 1) > polls_before);
	serpoll_free(sp);
	sink_fini(&sk);
	free(t);
	slave_free(sl);
}

static void test_probe_pty(void **state)
{
	(void)state;
	run_probe(false);
}

static void test_probe_rtu_over_tcp(void **state)
{
	(void)state;
	run_probe(true);
}

/* A line whose only device waits for SunSpec discovery is built, polls nothing and
 * serves probes; a bus with no device has no line (ENOENT); a probe queued on a serpoll
 * that never ran is done with PROBE_STOPPED when it is freed; a stopped one refuses. */
static void test_probe_discovery_line_and_stop(void **state)
{
	struct slave *sl = slave_pty();
	struct tcfg *t = tcfg_new();
	struct sink sk;
	char err[256];
	size_t b = add_bus(t, "line", BUS_RTU, sl->path, 0, 500, 5);
	size_t none = add_bus(t, "none", BUS_RTU, "/nonexistent/tty", 0, 500, 5);

	(void)state;
	t->devs[add_dev(t, "inverter", b, 2, 1000)].sunspec = true;
	sink_init(&sk);
	struct serpoll *sp = start(t, &sk, 0);
	assert_int_equal(serpoll_nlines(sp), 1);
	assert_int_equal(serpoll_ndevices(sp), 0);

	struct fx_probe *f = fx_probe_new(2);
	fx_probe_read(f, MB_HOLDING, 7, 1);
	assert_int_equal(serpoll_probe(sp, b, &f->p), 0);
	fx_probe_wait(f, 5000);
	assert_int_equal(f->p.status, PROBE_DONE);
	assert_int_equal(f->reads[0].err, 0);
	assert_int_equal(f->reads[0].regs[0], 2007);
	fx_probe_free(f);

	f = fx_probe_new(2);
	fx_probe_read(f, MB_HOLDING, 7, 1);
	errno = 0;
	assert_int_equal(serpoll_probe(sp, none, &f->p), -1);
	assert_int_equal(errno, ENOENT);
	serpoll_stop(sp);
	assert_int_equal(serpoll_probe(sp, b, &f->p), -1);
	assert_int_equal(errno, ESHUTDOWN);
	free(f);
	serpoll_free(sp);

	struct poller_sink ps = sink_poller(&sk);
	sp = serpoll_new(&t->cfg, 1, &ps, err, sizeof err);
	assert_non_null(sp);
	f = fx_probe_new(2);
	fx_probe_read(f, MB_HOLDING, 7, 1);
	assert_int_equal(serpoll_probe(sp, b, &f->p), 0);
	serpoll_free(sp);
	assert_int_equal(f->p.status, PROBE_STOPPED);
	assert_int_equal(f->reads[0].err, MBE_CLOSED);
	fx_probe_free(f);
	assert_int_equal(sink_count(&sk, 0), 0);
	sink_fini(&sk);
	free(t);
	slave_free(sl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_values_over_pty),
		cmocka_unit_test(test_dead_unit_pty),
		cmocka_unit_test(test_dead_unit_rtu_over_tcp),
		cmocka_unit_test(test_rtu_over_tcp_values_and_garbage),
		cmocka_unit_test(test_missing_tty),
		cmocka_unit_test(test_writes_pty),
		cmocka_unit_test(test_writes_rtu_over_tcp),
		cmocka_unit_test(test_stop_is_prompt),
		cmocka_unit_test(test_dtu_flood),
		cmocka_unit_test(test_dtu_resolver_never_answers),
		cmocka_unit_test(test_which_devices),
		cmocka_unit_test(test_probe_pty),
		cmocka_unit_test(test_probe_rtu_over_tcp),
		cmocka_unit_test(test_probe_discovery_line_and_stop),
	};
	log_init(getenv("SLUICE_TEST_DEBUG") ? 7 : 3, "test_serpoll");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
