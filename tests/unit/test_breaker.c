/*
 * test_breaker: the circuit breakers both pollers share, on made-up times: a device that
 * stops answering goes offline after offline_after polls, is retried at a doubling,
 * jittered pace, is logged at the widening marks and comes back on its interval; a link
 * that will not open backs off and is logged the same way; the words of every line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "breaker.h"
#include "mberr.h"

#define MIN_MS (60 * 1000LL)
#define HOUR_MS (60 * MIN_MS)

static const struct breaker_pace pace = { .retry_min = 200, .retry_max = 800 };

/* A poll that began at start and took 50 ms; returns its event. */
static enum breaker_event poll_at(struct dev_breaker *b, bool answered, int64_t start)
{
	return breaker_dev_poll(b, &pace, answered, answered ? 0 : MBE_TIMEOUT, start, start + 50);
}

static void assert_text(const struct dev_breaker *b, enum breaker_event ev, int64_t now,
			const char *want)
{
	char buf[160];

	breaker_dev_text(b, ev, now, buf, sizeof buf);
	assert_string_equal(buf, want);
}

/* offline_after polls in a row without an answer, no fewer; then the slower pace. */
static void test_offline_after_and_back(void **state)
{
	(void)state;
	struct dev_breaker b;
	int64_t t = 10000;

	breaker_dev_init(&b, 100, 3, 1);
	assert_true(b.online);
	assert_int_equal(b.last_err, 0);
	assert_int_equal(poll_at(&b, true, t), BREAKER_NONE);
	assert_int_equal(poll_at(&b, false, t += 100), BREAKER_FAILED);
	assert_text(&b, BREAKER_FAILED, t + 50, "poll failed (1 of 3 before offline): timeout");
	assert_int_equal(poll_at(&b, false, t += 100), BREAKER_FAILED);
	assert_true(b.online);
	assert_int_equal(poll_at(&b, false, t += 100), BREAKER_DOWN);
	assert_false(b.online);
	assert_int_equal(b.last_err, MBE_TIMEOUT);
	assert_int_equal(b.down_since, 10100); /* the first failed poll's start */
	assert_text(&b, BREAKER_DOWN, t + 50, "offline after 3 failed polls in a row: timeout");
	assert_int_equal(b.retry_delay, 200);
	/* each further failure doubles the wait, up to the cap */
	assert_int_equal(poll_at(&b, false, t += 300), BREAKER_NONE);
	assert_int_equal(b.retry_delay, 400);
	assert_int_equal(poll_at(&b, false, t += 500), BREAKER_NONE);
	assert_int_equal(b.retry_delay, 800);
	assert_int_equal(poll_at(&b, false, t += 900), BREAKER_NONE);
	assert_int_equal(b.retry_delay, 800);
	/* back: the last failure stays named */
	t = 10100 + 65 * 1000;
	assert_int_equal(poll_at(&b, true, t), BREAKER_BACK);
	assert_true(b.online);
	assert_int_equal(b.last_err, MBE_TIMEOUT);
	assert_text(&b, BREAKER_BACK, t + 50, "answers again, after 1m05s offline");
	assert_int_equal(poll_at(&b, true, t += 100), BREAKER_NONE);
}

/* A failure short of offline, then an answer: said at debug, with the count. */
static void test_recovered_short_of_offline(void **state)
{
	(void)state;
	struct dev_breaker b;

	breaker_dev_init(&b, 1000, 3, 2);
	assert_int_equal(breaker_dev_poll(&b, &pace, false, MBE_EXC_BASE + 0x0B, 0, 10),
			 BREAKER_FAILED);
	assert_int_equal(b.last_err, MBE_EXC_BASE + 0x0B);
	assert_int_equal(breaker_dev_poll(&b, &pace, false, 0, 1000, 1010), BREAKER_FAILED);
	assert_int_equal(b.last_err, MBE_TIMEOUT); /* no code: a timeout */
	assert_int_equal(poll_at(&b, true, 2000), BREAKER_RECOVERED);
	assert_text(&b, BREAKER_RECOVERED, 2050, "answers again, after 2 failed polls");
	assert_true(b.online);
	assert_int_equal(b.fails, 0);
	/* offline_after 0 is the default, 3; 1 takes a device offline at its first failure */
	breaker_dev_init(&b, 0, 0, 3);
	assert_int_equal(b.offline_after, 3);
	assert_int_equal(b.interval, 10000);
	breaker_dev_init(&b, 1000, 1, 3);
	assert_int_equal(poll_at(&b, false, 0), BREAKER_DOWN);
}

/* "Still offline" at 1 min, 10 min and 1 h from the start of the outage, then every 6
 * h; a check that comes late skips the marks it passed instead of logging them late. */
static void test_still_down_marks(void **state)
{
	(void)state;
	struct dev_breaker b;
	int64_t t0 = 5000, t = t0;
	const struct breaker_pace slow = { .retry_min = 30 * 1000, .retry_max = 30 * 1000 };

	breaker_dev_init(&b, 1000, 1, 4);
	assert_int_equal(breaker_dev_poll(&b, &slow, false, MBE_CONNECT, t, t + 10), BREAKER_DOWN);
	assert_int_equal(breaker_dev_poll(&b, &slow, false, MBE_CONNECT, t0 + MIN_MS - 20,
					  t0 + MIN_MS - 10), BREAKER_NONE);
	t = t0 + MIN_MS;
	assert_int_equal(breaker_dev_poll(&b, &slow, false, MBE_CONNECT, t - 5, t),
			 BREAKER_STILL_DOWN);
	assert_text(&b, BREAKER_STILL_DOWN, t, "still offline after 1m00s: connection failed");
	assert_int_equal(breaker_dev_poll(&b, &slow, false, MBE_CONNECT, t, t + 30000),
			 BREAKER_NONE);
	/* late: past both 10 min and 1 h; one line, and the next at 1 h + 6 h */
	t = t0 + 2 * HOUR_MS;
	assert_int_equal(breaker_dev_poll(&b, &slow, false, MBE_CONNECT, t, t),
			 BREAKER_STILL_DOWN);
	assert_text(&b, BREAKER_STILL_DOWN, t, "still offline after 2h00m: connection failed");
	assert_int_equal(b.log.next, t0 + 7 * HOUR_MS);
	t = t0 + 7 * HOUR_MS - 1;
	assert_int_equal(breaker_dev_poll(&b, &slow, false, MBE_CONNECT, t, t), BREAKER_NONE);
	t += 1;
	assert_int_equal(breaker_dev_poll(&b, &slow, false, MBE_CONNECT, t, t),
			 BREAKER_STILL_DOWN);
	assert_int_equal(b.log.next, t0 + 13 * HOUR_MS);
	t = t0 + 2 * 86400 * 1000LL + 4 * HOUR_MS;
	assert_text(&b, BREAKER_STILL_DOWN, t, "still offline after 2d04h: connection failed");
}

/* Online: on the interval grid, re-anchored at now when behind; back: from the answer;
 * offline: now + the retry delay +- 10 %, and never the same jitter for every device. */
static void test_next_poll(void **state)
{
	(void)state;
	struct dev_breaker b, c;
	int64_t seen_b[20], seen_c[20];
	bool differ = false;

	breaker_dev_init(&b, 1000, 1, 5);
	assert_int_equal(breaker_dev_next(&b, BREAKER_NONE, 10000, 10002, 10100), 11000);
	/* a poll that outlasted its interval: the next one at once, not a burst of them */
	assert_int_equal(breaker_dev_next(&b, BREAKER_NONE, 10000, 10002, 13500), 13500);
	/* an interval longer than the retry bounds: offline attempts keep the interval */
	breaker_dev_init(&b, 5000, 1, 5);
	poll_at(&b, false, 0);
	assert_int_equal(b.retry_delay, 5000);
	poll_at(&b, false, 5000);
	assert_int_equal(b.retry_delay, 5000);

	breaker_dev_init(&b, 100, 1, 6);
	breaker_dev_init(&c, 100, 1, 7);
	poll_at(&b, false, 0);
	poll_at(&c, false, 0);
	for (int i = 0; i < 20; i++) {
		seen_b[i] = breaker_dev_next(&b, BREAKER_NONE, 0, 0, 1000) - 1000;
		seen_c[i] = breaker_dev_next(&c, BREAKER_NONE, 0, 0, 1000) - 1000;
		assert_in_range(seen_b[i], 180, 220);
		assert_in_range(seen_c[i], 180, 220);
		differ = differ || seen_b[i] != seen_c[i];
	}
	assert_true(differ);
	/* back: the interval counts from the answer's start, not from the last due time */
	assert_int_equal(poll_at(&b, true, 7000), BREAKER_BACK);
	assert_int_equal(breaker_dev_next(&b, BREAKER_BACK, 6990, 7000, 7050), 7100);
}

/* A link: 1 s, doubling to 30 s between attempts; logged once, at the marks, and once
 * when it opens; a failure after it opened starts a new streak. */
static void test_link(void **state)
{
	(void)state;
	struct link_breaker k = { 0 };
	int64_t t = 1000;
	int64_t want[] = { 1000, 2000, 4000, 8000, 16000, 30000 };

	assert_true(breaker_link_may_try(&k, 0));
	assert_int_equal(breaker_link_opened(&k), BREAKER_NONE);
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		assert_int_equal(breaker_link_failed(&k, t), i == 0 ? BREAKER_DOWN : BREAKER_FAILED);
		assert_int_equal(k.backoff, want[i]);
		assert_false(breaker_link_may_try(&k, t + want[i] - 1));
		assert_true(breaker_link_may_try(&k, t + want[i]));
		t += want[i];
	}
	t = 1000 + MIN_MS; /* a minute after the first failure */
	assert_int_equal(breaker_link_failed(&k, t), BREAKER_STILL_DOWN);
	assert_int_equal(k.backoff, 30000);
	assert_int_equal(k.fails, 7);
	assert_int_equal(breaker_link_opened(&k), BREAKER_BACK);
	assert_int_equal(k.fails, 7); /* kept for the line that says so */
	assert_true(breaker_link_may_try(&k, t));
	assert_int_equal(breaker_link_failed(&k, t + 5), BREAKER_DOWN);
	assert_int_equal(k.fails, 1);
	assert_int_equal(k.backoff, 1000);
}

/*
 * The numbers docs/operations.md ("When a device stops answering") and
 * docs/configuration.md (offline_after) give, with the pollers' real pace: change one
 * here and there together.
 */
static void test_documented_numbers(void **state)
{
	(void)state;
	const struct breaker_pace real = { BREAKER_RETRY_MIN_MS, BREAKER_RETRY_MAX_MS };
	/* the table of waits between attempts while offline, per interval */
	static const struct {
		int64_t interval;
		int64_t waits[6];
	} table[] = {
		{ 1000, { 5000, 10000, 20000, 40000, 60000, 60000 } },
		{ 10000, { 10000, 20000, 40000, 60000, 60000, 60000 } },
		{ 120000, { 120000, 120000, 120000, 120000, 120000, 120000 } },
	};
	struct dev_breaker b;
	struct breaker_logpace lp;
	struct link_breaker k = { 0 };
	int64_t t, link_waits[] = { 1000, 2000, 4000, 8000, 16000, 30000, 30000 };
	int64_t marks[] = { MIN_MS, 10 * MIN_MS, HOUR_MS, 7 * HOUR_MS, 13 * HOUR_MS };

	assert_int_equal(BREAKER_RETRY_MIN_MS, 5000);
	assert_int_equal(BREAKER_RETRY_MAX_MS, 60000);
	assert_int_equal(BREAKER_OPEN_MIN_MS, 1000);
	assert_int_equal(BREAKER_OPEN_MAX_MS, 30000);
	breaker_dev_init(&b, 0, 0, 1);
	assert_int_equal(b.offline_after, 3); /* offline_after's default */
	for (size_t r = 0; r < sizeof table / sizeof table[0]; r++) {
		breaker_dev_init(&b, table[r].interval, 3, r);
		t = 0;
		for (int i = 0; i < 3; i++, t += table[r].interval)
			breaker_dev_poll(&b, &real, false, MBE_TIMEOUT, t, t + 10);
		assert_false(b.online);
		for (size_t i = 0; i < 6; i++) {
			int64_t w = table[r].waits[i];
			int64_t next = breaker_dev_next(&b, BREAKER_NONE, t, t, t);

			assert_int_equal(b.retry_delay, w);
			/* jittered by +-10 % */
			assert_in_range(next - t, w - w / 10, w + w / 10);
			t = next;
			breaker_dev_poll(&b, &real, false, MBE_TIMEOUT, t, t + 10);
		}
	}
	/* "still offline" at 1 min, 10 min, 1 h, then every 6 h from the first failure */
	breaker_logpace_start(&lp, 0);
	for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++) {
		assert_false(breaker_logpace_due(&lp, 0, marks[i] - 1));
		assert_true(breaker_logpace_due(&lp, 0, marks[i]));
	}
	/* a link: 1 s, 2, 4, 8, 16, then every 30 s */
	for (size_t i = 0; i < sizeof link_waits / sizeof link_waits[0]; i++) {
		breaker_link_failed(&k, 0);
		assert_int_equal(k.backoff, link_waits[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_offline_after_and_back),
		cmocka_unit_test(test_recovered_short_of_offline),
		cmocka_unit_test(test_still_down_marks),
		cmocka_unit_test(test_next_poll),
		cmocka_unit_test(test_link),
		cmocka_unit_test(test_documented_numbers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
