/*
 * mbclient: address parsing, and transactions against peers on 127.0.0.1 run by this
 * test: one that answers with mbpdu_serve, one that accepts and never answers (the
 * timeout must bound the wait), one that answers for another transaction id, and one
 * that follows each reply with a forged one carrying the next transaction id; and, as
 * root, a host name the resolver never answers for (the wait is bounded all the same).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mbclient.h"
#include "mberr.h"
#include "mbpdu.h"
#include "poller_fixture.h"

static void test_parse_addr(void **state)
{
	(void)state;
	char host[64];
	uint16_t port = 0;

	assert_int_equal(mbclient_parse_addr("127.0.0.1:1502", host, sizeof host, &port), 0);
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 1502);
	assert_int_equal(mbclient_parse_addr("[::1]:503", host, sizeof host, &port), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 503);
	assert_int_equal(mbclient_parse_addr("[fe80::1]", host, sizeof host, &port), 0);
	assert_string_equal(host, "fe80::1");
	assert_int_equal(port, 502);
	assert_int_equal(mbclient_parse_addr("meter-3", host, sizeof host, &port), 0);
	assert_string_equal(host, "meter-3");
	assert_int_equal(port, 502);

	static const char *const bad[] = { "", ":502", "host:", "host:0", "host:65536",
					   "host:12x", "::1:502", "[::1", "[::1]x", "[]:502" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (mbclient_parse_addr(bad[i], host, sizeof host, &port) != -1)
			fail_msg("'%s' accepted", bad[i]);
	assert_int_equal(mbclient_parse_addr("a-rather-long-host-name:1", host, 8, &port), -1);
}

/* --- a one-connection peer --------------------------------------------------------- */

/* PEER_FORGE_SAME, PEER_FORGE_LATER: each reply is followed by a forged reply to the same
 * request, with the next transaction id and FORGED in every register, in the same send
 * or 5 ms later. */
enum peer_mode { PEER_SERVE, PEER_MUTE, PEER_BADTID, PEER_FORGE_SAME, PEER_FORGE_LATER };
#define FORGED 6666

struct peer {
	int lfd;
	uint16_t port;
	int mode;
	pthread_t th;
	uint16_t regs[16];
	int accepted;            /* read after peer_stop */
	uint16_t tids[16];
	int ntids;
};

static int peer_read_regs(void *ctx, enum mb_table t, uint16_t start, uint16_t count,
			  uint16_t *out)
{
	struct peer *p = ctx;

	(void)t;
	if ((unsigned)start + count > 16)
		return 2;
	memcpy(out, &p->regs[start], count * sizeof *out);
	return 0;
}

/* Serve one connection until it closes or goes quiet for 3 s. */
static void peer_serve(struct peer *p, int fd)
{
	struct mbpdu_server ms = { .ctx = p, .read_regs = peer_read_regs };
	uint8_t in[MBTCP_ADU_MAX], out[2 * MBTCP_ADU_MAX], resp[MB_PDU_MAX];
	size_t len = 0;

	for (;;) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		if (poll(&pf, 1, 3000) <= 0)
			break;
		ssize_t n = recv(fd, in + len, sizeof in - len, 0);
		if (n <= 0)
			break;
		len += (size_t)n;
		uint16_t tid;
		uint8_t unit;
		int pdulen = len >= MBTCP_HDR ? mbtcp_header(in, &tid, &unit) : 0;
		if (pdulen <= 0 || len < MBTCP_HDR + (size_t)pdulen)
			continue;
		if (p->ntids < 16)
			p->tids[p->ntids++] = tid;
		if (p->mode != PEER_MUTE) {
			size_t rl = mbpdu_serve(&ms, in + MBTCP_HDR, (size_t)pdulen, resp);
			size_t ol = mbtcp_frame(out, p->mode == PEER_BADTID ? tid + 1 : tid, unit,
						resp, rl);
			size_t first = ol;
			if (p->mode == PEER_FORGE_SAME || p->mode == PEER_FORGE_LATER) {
				for (size_t k = 2; k + 1 < rl; k += 2) {
					resp[k] = FORGED >> 8;
					resp[k + 1] = FORGED & 0xFF;
				}
				ol += mbtcp_frame(out + ol, (uint16_t)(tid + 1), unit, resp, rl);
				if (p->mode == PEER_FORGE_LATER) {
					if (send(fd, out, first, MSG_NOSIGNAL) < 0)
						break;
					struct timespec ts = { 0, 5000000 };
					nanosleep(&ts, NULL);
				} else {
					first = 0;
				}
			} else {
				first = 0;
			}
			if (send(fd, out + first, ol - first, MSG_NOSIGNAL) < 0)
				break;
		}
		len = 0;
	}
	close(fd);
}

/* Connections one after another, until peer_stop. */
static void *peer_main(void *arg)
{
	struct peer *p = arg;
	int fd;

	while ((fd = accept(p->lfd, NULL, NULL)) >= 0) {
		p->accepted++;
		peer_serve(p, fd);
	}
	return NULL;
}

static void peer_start(struct peer *p, int mode)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof a;

	p->mode = mode;
	p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(p->lfd >= 0);
	assert_int_equal(bind(p->lfd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(p->lfd, 4), 0);
	assert_int_equal(getsockname(p->lfd, (struct sockaddr *)&a, &alen), 0);
	p->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&p->th, NULL, peer_main, p), 0);
}

static void peer_stop(struct peer *p)
{
	shutdown(p->lfd, SHUT_RDWR);
	pthread_join(p->th, NULL);
	close(p->lfd);
}

static int64_t ms_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_read_and_exception(void **state)
{
	(void)state;
	struct peer p = { .regs = { 0x4148, 0x0000, 7 } };
	char err[256];
	uint16_t regs[4];

	peer_start(&p, PEER_SERVE);
	struct mbclient *c = mbclient_open_tcp("127.0.0.1", p.port, 1000, err, sizeof err);
	assert_non_null(c);
	assert_int_equal(mbclient_read(c, 1, MB_HOLDING, 0, 3, regs, NULL), 0);
	assert_int_equal(regs[0], 0x4148);
	assert_int_equal(regs[2], 7);
	/* an exception is an answer: the connection stays */
	assert_int_equal(mbclient_read(c, 1, MB_HOLDING, 15, 2, regs, NULL), MBE_EXC_BASE + 2);
	assert_int_equal(mbclient_read(c, 1, MB_HOLDING, 2, 1, regs, NULL), 0);
	assert_int_equal(regs[0], 7);
	mbclient_close(c);
	peer_stop(&p);
}

static void test_timeout_is_bounded(void **state)
{
	(void)state;
	struct peer p = { 0 };
	char err[256];
	uint16_t regs[2];

	peer_start(&p, PEER_MUTE);
	struct mbclient *c = mbclient_open_tcp("127.0.0.1", p.port, 200, err, sizeof err);
	assert_non_null(c);
	int64_t t0 = ms_now();
	assert_int_equal(mbclient_read(c, 1, MB_HOLDING, 0, 1, regs, NULL), MBE_TIMEOUT);
	int64_t took = ms_now() - t0;
	if (took < 190 || took > 1000)
		fail_msg("timed out after %lld ms, not 200", (long long)took);
	mbclient_close(c);
	peer_stop(&p);
}

static void test_wrong_tid_and_refused(void **state)
{
	(void)state;
	struct peer p = { 0 };
	char err[256];
	uint16_t regs[2];

	peer_start(&p, PEER_BADTID);
	struct mbclient *c = mbclient_open_tcp("127.0.0.1", p.port, 500, err, sizeof err);
	assert_non_null(c);
	assert_int_equal(mbclient_read(c, 1, MB_HOLDING, 0, 1, regs, NULL), MBE_PROTO);
	/* the stream was dropped; with the peer gone, reconnecting fails */
	peer_stop(&p);
	assert_int_equal(mbclient_read(c, 1, MB_HOLDING, 0, 1, regs, NULL), MBE_CONNECT);
	mbclient_close(c);

	assert_null(mbclient_open_tcp("127.0.0.1", p.port, 500, err, sizeof err));
	assert_non_null(strstr(err, "cannot connect to 127.0.0.1 port"));
}

/* A trailing frame with the next transaction id, after each reply: never returned as
 * the next read's reply (before, the second read returned FORGED). */
static void test_forged_trailing_frame(void **state)
{
	(void)state;
	for (int mode = PEER_FORGE_SAME; mode <= PEER_FORGE_LATER; mode++) {
		struct peer p = { .regs = { 1111, 1111 } };
		char err[256];
		uint16_t regs[2];
		int rc;

		peer_start(&p, mode);
		struct mbclient *c = mbclient_open_tcp("127.0.0.1", p.port, 500, err, sizeof err);
		assert_non_null(c);
		for (int i = 0; i < 4; i++) {
			regs[0] = regs[1] = 0;
			rc = mbclient_read(c, 1, MB_HOLDING, 0, 2, regs, NULL);
			if (rc == 0 && (regs[0] != 1111 || regs[1] != 1111))
				fail_msg("read %d returned %u %u, not what the device served", i,
					 regs[0], regs[1]);
			/* in the same send: the bytes wait before the next request and the
			 * connection is renewed first; 5 ms later: the first frame after the
			 * request is the forged one, whose id is not the request's */
			if (mode == PEER_FORGE_SAME || i == 0)
				assert_int_equal(rc, 0);
			else if (i > 0)
				assert_true(rc == 0 || rc == MBE_PROTO);
		}
		mbclient_close(c);
		peer_stop(&p);
		assert_true(p.accepted >= 2);
		for (int i = 1; i < p.ntids; i++)
			assert_true(p.tids[i] != (uint16_t)(p.tids[i - 1] + 1));
	}
}

/* A host name the resolver never answers for: the probe gives up after the lookup's
 * deadline and says why. Before, it waited for the resolver (30 s here). */
static void test_resolver_never_answers(void **state)
{
	(void)state;
	struct fx_dns *dns = fx_dns_new(NULL);
	char err[256] = "";

	if (dns == NULL)
		skip();
	int64_t t0 = ms_now();
	assert_null(mbclient_open_tcp(FX_HUNG_NAME, 502, 300, err, sizeof err));
	int64_t took = ms_now() - t0;
	if (took < NETCONN_LOOKUP_MIN_MS - 10 || took > NETCONN_LOOKUP_MIN_MS + 1000)
		fail_msg("gave up after %lld ms", (long long)took);
	assert_non_null(strstr(err, "cannot resolve " FX_HUNG_NAME ": no answer from the "
				    "resolver within"));
	fx_dns_free(dns);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_addr),
		cmocka_unit_test(test_read_and_exception),
		cmocka_unit_test(test_timeout_is_bounded),
		cmocka_unit_test(test_wrong_tid_and_refused),
		cmocka_unit_test(test_forged_trailing_frame),
		cmocka_unit_test(test_resolver_never_answers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
