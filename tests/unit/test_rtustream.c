/*
 * test_rtustream: one RTU exchange on a byte stream (a socketpair), against a peer
 * thread that reads the request and answers from a script: a good reply after noise
 * left from before, a bad CRC, another unit, another function, a frame no reply begins
 * with, no reply, one cut short, a slow one, a closed peer, unit 0; and the waiter's own
 * code handed back. Asserts the MBE_* code, the words of the detail and the time spent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "mberr.h"
#include "mbpdu.h"
#include "rtu.h"
#include "rtustream.h"

struct peer {
	int fd;
	pthread_t th;
	uint8_t pre[8];          /* sent before the request: stale bytes */
	size_t npre;
	uint8_t out[RTU_ADU_MAX];/* the answer */
	size_t nout, first;      /* first bytes sent after delay_ms, the rest after split_ms */
	int delay_ms, split_ms;
	bool close;              /* close instead of answering */
	int flood;               /* 1: send bytes without pause from the start, 2: once the
				    request is in; until stop */
	atomic_bool stop;
	size_t flooded;          /* bytes sent so */
	uint8_t req[RTU_ADU_MAX];
	size_t nreq;
};

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Noise without pause, as fast as the reader takes it, until told to stop. */
static void peer_flood(struct peer *p)
{
	uint8_t noise[4096];
	uint32_t x = 0x9E3779B9u;

	for (size_t i = 0; i < sizeof noise; i++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		noise[i] = (uint8_t)x;
	}
	while (!atomic_load(&p->stop)) {
		struct pollfd pf = { .fd = p->fd, .events = POLLOUT };
		ssize_t n;

		if (poll(&pf, 1, 10) <= 0)
			continue;
		n = write(p->fd, noise, sizeof noise);
		if (n < 0 && errno != EAGAIN)
			return;
		if (n > 0)
			p->flooded += (size_t)n;
	}
}

static void *peer_main(void *arg)
{
	struct peer *p = arg;

	if (p->flood == 1) {
		peer_flood(p);
		return NULL;
	}
	if (p->npre > 0 && write(p->fd, p->pre, p->npre) < 0)
		return NULL;
	for (;;) {
		struct pollfd pf = { .fd = p->fd, .events = POLLIN };
		int len = rtu_request_len(p->req, p->nreq);
		if (len > 0 && p->nreq >= (size_t)len)
			break;
		if (poll(&pf, 1, 2000) <= 0)
			return NULL;
		ssize_t n = read(p->fd, p->req + p->nreq, sizeof p->req - p->nreq);
		if (n <= 0)
			return NULL;
		p->nreq += (size_t)n;
	}
	if (p->close) {
		shutdown(p->fd, SHUT_RDWR);
		return NULL;
	}
	if (p->flood == 2) {
		peer_flood(p);
		return NULL;
	}
	sleep_ms(p->delay_ms);
	if (p->first > 0 && p->first < p->nout) {
		if (write(p->fd, p->out, p->first) < 0)
			return NULL;
		sleep_ms(p->split_ms);
		if (write(p->fd, p->out + p->first, p->nout - p->first) < 0)
			return NULL;
	} else if (p->nout > 0 && write(p->fd, p->out, p->nout) < 0) {
		return NULL;
	}
	return NULL;
}

/* The reply of unit to a read of 2 holding registers holding 0x0102 0x0304. */
static size_t good_reply(uint8_t *adu, uint8_t unit)
{
	const uint8_t pdu[] = { 3, 4, 1, 2, 3, 4 };
	return rtu_frame(adu, unit, pdu, sizeof pdu);
}

struct run {
	int rc;
	int64_t took;
	uint8_t resp[MB_PDU_MAX];
	size_t resplen;
	char detail[320];
	size_t stale;
	bool flooded;
};

/* Read 2 holding registers at 0 from unit through stream settings s, peer p answering. */
static struct run exchange(struct peer *p, struct rtustream s, uint8_t unit)
{
	int sv[2];
	struct run r = { 0 };
	uint8_t req[5];
	size_t reqlen = mbpdu_read_req(req, MB_HOLDING, 0, 2);

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	p->fd = sv[1];
	assert_int_equal(pthread_create(&p->th, NULL, peer_main, p), 0);
	if (p->npre > 0 || p->flood == 1)
		sleep_ms(20); /* the stale bytes are there before the request */
	s.fd = sv[0];
	s.is_socket = true;
	s.detail = r.detail;
	s.detaillen = sizeof r.detail;
	int64_t t0 = clock_mono_ms();
	r.rc = rtustream_exchange(&s, unit, req, reqlen, r.resp, &r.resplen);
	r.took = clock_mono_ms() - t0;
	r.stale = s.stale;
	r.flooded = s.flooded;
	atomic_store(&p->stop, true);
	pthread_join(p->th, NULL);
	close(sv[0]);
	close(sv[1]);
	return r;
}

static const struct rtustream base = { .timeout_ms = 150, .quiet_ms = 20 };

static void test_good_reply_after_stale_bytes(void **state)
{
	(void)state;
	struct peer p = { .pre = { 0x11, 0x22, 0x33 }, .npre = 3 };

	p.nout = good_reply(p.out, 5);
	struct run r = exchange(&p, base, 5);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.stale, 3);
	assert_int_equal(r.resplen, 6);
	assert_memory_equal(r.resp, ((uint8_t[]){ 3, 4, 1, 2, 3, 4 }), 6);
	assert_string_equal(r.detail, "");
	/* the request went out as an RTU frame */
	assert_int_equal(p.nreq, 8);
	assert_int_equal(rtu_unframe(p.req, p.nreq, NULL, NULL, NULL), 0);
	assert_int_equal(p.req[0], 5);
}

static void test_exception_is_a_reply(void **state)
{
	(void)state;
	struct peer p = { 0 };
	const uint8_t exc[] = { 0x83, 0x02 };

	p.nout = rtu_frame(p.out, 5, exc, sizeof exc);
	struct run r = exchange(&p, base, 5);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.resplen, 2);
	assert_int_equal(r.resp[0], 0x83);
}

static void test_bad_crc_wrong_unit_wrong_function(void **state)
{
	(void)state;
	struct peer p = { 0 };
	const uint8_t other_fc[] = { 4, 4, 1, 2, 3, 4 };

	p.nout = good_reply(p.out, 5);
	p.out[p.nout - 1] ^= 0x55;
	struct run r = exchange(&p, base, 5);
	assert_int_equal(r.rc, MBE_BAD_CRC);
	assert_non_null(strstr(r.detail, "CRC error in the reply (computed "));
	/* the garbled frame was drained: the exchange waited for the line to fall quiet */
	assert_true(r.took >= 20);

	memset(&p, 0, sizeof p);
	p.nout = good_reply(p.out, 6);
	r = exchange(&p, base, 5);
	assert_int_equal(r.rc, MBE_WRONG_UNIT);
	assert_non_null(strstr(r.detail, "the reply came from unit 6, not unit 5"));

	memset(&p, 0, sizeof p);
	p.nout = rtu_frame(p.out, 5, other_fc, sizeof other_fc);
	r = exchange(&p, base, 5);
	assert_int_equal(r.rc, MBE_PROTO);
	assert_string_equal(r.detail, "the reply answers function 4, not 3");
}

static void test_not_a_frame(void **state)
{
	(void)state;
	struct peer p = { .out = { 5, 0x47, 0x99, 1, 2, 3 }, .nout = 6 };

	struct run r = exchange(&p, base, 5);
	assert_int_equal(r.rc, MBE_PROTO);
	assert_non_null(strstr(r.detail, "does not begin like a Modbus RTU frame (05 47"));
}

static void test_timeouts(void **state)
{
	(void)state;
	struct peer p = { 0 };

	/* nothing: the timeout, and no more */
	struct run r = exchange(&p, base, 5);
	assert_int_equal(r.rc, MBE_TIMEOUT);
	assert_string_equal(r.detail, "no reply within 150 ms");
	assert_in_range(r.took, 145, 600);

	/* three bytes of a seven-byte reply */
	memset(&p, 0, sizeof p);
	p.nout = good_reply(p.out, 5);
	p.first = 3;
	p.split_ms = 1000;
	r = exchange(&p, base, 5);
	assert_int_equal(r.rc, MBE_TIMEOUT);
	assert_non_null(strstr(r.detail, "the reply stopped after 3 bytes"));

	/* unit 0 is broadcast: nobody answers, and nobody is waited for */
	memset(&p, 0, sizeof p);
	r = exchange(&p, base, 0);
	assert_int_equal(r.rc, MBE_TIMEOUT);
	assert_non_null(strstr(r.detail, "broadcast"));
	assert_true(r.took < 100);
	assert_int_equal(p.nreq, 8); /* it was sent all the same */
}

/* A reply that begins in time and ends late: a poller's deadline covers the whole reply;
 * a probe's (rest_ms) gives it the time again once it has begun. */
static void test_slow_reply(void **state)
{
	(void)state;
	struct peer p = { 0 };
	struct rtustream poller = base, probe = base;

	poller.timeout_ms = 300;
	p.nout = good_reply(p.out, 5);
	p.first = 2;
	p.delay_ms = 100;
	p.split_ms = 300;
	struct run r = exchange(&p, poller, 5);
	assert_int_equal(r.rc, MBE_TIMEOUT);
	assert_non_null(strstr(r.detail, "stopped after 2 bytes"));

	probe.timeout_ms = 300;
	probe.rest_ms = 500;
	memset(&p, 0, sizeof p);
	p.nout = good_reply(p.out, 5);
	p.first = 2;
	p.delay_ms = 100;
	p.split_ms = 300;
	r = exchange(&p, probe, 5);
	assert_int_equal(r.rc, 0);
}

static void test_closed_peer(void **state)
{
	(void)state;
	struct peer p = { .close = true };

	struct run r = exchange(&p, base, 5);
	assert_int_equal(r.rc, MBE_CLOSED);
}

static int stopping_wait(void *ctx, int fd, short events, int64_t deadline)
{
	(void)ctx;
	(void)fd;
	(void)deadline;
	return events == POLLIN ? -7 : 1;
}

/* The caller's waiter is asked for every wait, and its own code comes back unchanged. */
static void test_waiter_code(void **state)
{
	(void)state;
	struct peer p = { 0 };
	struct fdio_waiter w = { .wait = stopping_wait };
	struct rtustream s = base;

	s.waiter = &w;
	struct run r = exchange(&p, s, 5);
	assert_int_equal(r.rc, -7);
}

/* A peer that never stops sending, before the request and after it: the exchange reads
 * a few kilobytes, fails at once as a flooded stream (its caller closes it) and says so;
 * on the code before the fix the flush before the request never returned. */
static void test_flood(void **state)
{
	(void)state;
	for (int when = 1; when <= 2; when++) {
		struct peer p = { .flood = when };
		struct rtustream s = base;

		s.quiet_ms = 20;
		struct run r = exchange(&p, s, 5);
		assert_int_equal(r.rc, MBE_PROTO);
		assert_true(r.flooded);
		assert_non_null(strstr(r.detail, "the line does not fall silent ("));
		assert_non_null(strstr(r.detail, when == 1 ? "before the request" :
							     "after a garbled reply"));
		assert_true(r.took < 300);
		assert_true(r.stale <= 4096 + 512);
		assert_true(p.flooded > 4096);
		print_message("flood %s the request: %lld ms, %zu bytes read before it\n",
			      when == 1 ? "before" : "after", (long long)r.took, r.stale);
	}
}

/* A noisy reply that ends: drained, and not a flood (the connection may stay). */
static void test_garbled_reply_is_not_a_flood(void **state)
{
	(void)state;
	struct peer p = { 0 };

	p.nout = good_reply(p.out, 5);
	p.out[p.nout - 1] ^= 0x55;
	struct run r = exchange(&p, base, 5);
	assert_int_equal(r.rc, MBE_BAD_CRC);
	assert_false(r.flooded);
}

/* The flush before a request asks the waiter, so a stop is heard even in a flood. */
static void test_flood_hears_stop(void **state)
{
	(void)state;
	struct peer p = { .flood = 1 };
	struct fdio_waiter w = { .wait = stopping_wait };
	struct rtustream s = base;

	s.waiter = &w;
	struct run r = exchange(&p, s, 5);
	assert_int_equal(r.rc, -7);
	assert_true(r.took < 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_reply_after_stale_bytes),
		cmocka_unit_test(test_exception_is_a_reply),
		cmocka_unit_test(test_bad_crc_wrong_unit_wrong_function),
		cmocka_unit_test(test_not_a_frame),
		cmocka_unit_test(test_timeouts),
		cmocka_unit_test(test_slow_reply),
		cmocka_unit_test(test_closed_peer),
		cmocka_unit_test(test_waiter_code),
		cmocka_unit_test(test_flood),
		cmocka_unit_test(test_garbled_reply_is_not_a_flood),
		cmocka_unit_test(test_flood_hears_stop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
