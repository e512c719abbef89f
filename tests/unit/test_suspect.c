/*
 * test_suspect: the window and the strikes, on their own (suspect.h): a row that ends
 * every session is found in a few drops, a broker restart sets nothing aside, and the
 * window opens again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "suspect.h"

static bool telling; /* suspect_dropped's, unchecked but where a test says */

/* A session that goes as far as row bad (never answered): the rows before it are
 * answered one window at a time from first, then the broker drops the session with
 * what is in flight. Returns what suspect_dropped says; *next is the first row the
 * next session sends. */
static uint64_t session(struct suspect *s, uint64_t first, uint64_t bad, uint64_t *next)
{
	uint64_t seq = first, fl[64];
	size_t n;

	for (;;) {
		unsigned w = suspect_window(s);

		n = 0;
		while (n < w && n < 64)
			fl[n++] = seq++;
		for (size_t i = 0; i < n; i++)
			if (fl[i] == bad)
				goto drop;
		for (size_t i = 0; i < n; i++)
			suspect_answered(s, fl[i]);
	}
drop:
	/* the rows before bad in this window were answered before the drop */
	for (size_t i = 0; i < n && fl[i] < bad; i++)
		suspect_answered(s, fl[i]);
	*next = bad;
	while (n > 0 && fl[0] < bad) {
		for (size_t i = 1; i < n; i++)
			fl[i - 1] = fl[i];
		n--;
	}
	return suspect_dropped(s, fl, n, 5, true, &telling);
}

static void test_finds_the_row(void **state)
{
	struct suspect s;
	uint64_t next = 1, out = 0;
	int drops = 0;

	(void)state;
	suspect_init(&s, 32);
	assert_int_equal(suspect_window(&s), 32);
	assert_false(suspect_searching(&s));
	assert_int_equal(suspect_hold_ms(&s), 0);
	/* row 20 ends every session it is in */
	while (out == 0 && drops < 10) {
		out = session(&s, next, 20, &next);
		assert_true(telling);
		/* the next session holds its rows back a moment */
		assert_int_equal(suspect_hold_ms(&s), SUSPECT_HOLD_MS);
		drops++;
	}
	assert_int_equal(out, 20);
	/* the first drop narrows, then three with it alone */
	assert_int_equal(drops, 1 + SUSPECT_STRIKES);
	/* the rows behind it go, and the window opens again */
	assert_int_equal(suspect_window(&s), 1);
	for (uint64_t q = 21; q < 40; q++)
		suspect_answered(&s, q);
	assert_int_equal(suspect_window(&s), 32);
	assert_false(suspect_searching(&s));
	assert_int_equal(suspect_hold_ms(&s), 0);
}

/* A broker that restarts while rows are in flight: the window narrows for a moment,
 * and a row alone at a drop is answered at its next sending: nothing is set aside. */
static void test_restarts_set_nothing_aside(void **state)
{
	struct suspect s;
	uint64_t fl[8] = { 5, 6, 7, 8, 9, 10, 11, 12 };

	(void)state;
	suspect_init(&s, 8);
	for (int round = 0; round < 20; round++) {
		assert_int_equal(suspect_dropped(&s, fl, 8, 10, true, &telling), 0);
		assert_int_equal(suspect_window(&s), 1);
		/* the next session: the first row alone, and the broker restarts again */
		assert_int_equal(suspect_dropped(&s, fl, 1, 10, true, &telling), 0);
		/* the one after: it is answered */
		suspect_answered(&s, fl[0]);
	}
	/* two strikes, then an answer, then two more: never three in a row */
	assert_int_equal(suspect_dropped(&s, fl, 1, 10, true, &telling), 0);
	assert_int_equal(suspect_dropped(&s, fl, 1, 10, true, &telling), 0);
	suspect_answered(&s, fl[0]);
	assert_int_equal(suspect_dropped(&s, fl, 1, 10, true, &telling), 0);
	assert_int_equal(suspect_dropped(&s, fl, 1, 10, true, &telling), 0);
	/* a drop with another row alone clears them too */
	assert_int_equal(suspect_dropped(&s, &fl[1], 1, 10, true, &telling), 0);
	assert_int_equal(suspect_dropped(&s, fl, 1, 10, true, &telling), 0);
	assert_int_equal(suspect_dropped(&s, fl, 1, 10, true, &telling), 0);
	assert_int_equal(suspect_dropped(&s, fl, 1, 10, true, &telling), fl[0]);
}

/* Not suspicious: ended by us (an overdue acknowledgement, the keepalive), long after
 * the last publish, or with nothing in flight. The window stays. */
static void test_drops_that_say_nothing(void **state)
{
	struct suspect s;
	uint64_t fl[2] = { 7, 8 };

	(void)state;
	suspect_init(&s, 16);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(suspect_dropped(&s, fl, 1, 10, false, &telling), 0);
		assert_false(telling);
		assert_int_equal(suspect_dropped(&s, fl, 1, SUSPECT_MOMENT_MS + 1, true, &telling), 0);
		assert_false(telling);
		assert_int_equal(suspect_dropped(&s, fl, 0, 10, true, &telling), 0);
		assert_false(telling);
	}
	assert_int_equal(suspect_window(&s), 16);
	assert_false(suspect_searching(&s));
	/* and they do not count between strikes either: still three needed */
	assert_int_equal(suspect_dropped(&s, fl, 1, 10, true, &telling), 0);
	assert_int_equal(suspect_dropped(&s, fl, 1, 10, false, &telling), 0);
	assert_int_equal(suspect_dropped(&s, fl, 1, 10, true, &telling), 0);
	assert_int_equal(suspect_dropped(&s, fl, 2, 10, true, &telling), 0); /* with another: no strike */
	assert_int_equal(suspect_dropped(&s, fl, 1, 10, true, &telling), 7);
}

/* The window widens by doubling, up to the configured one, never past it. */
static void test_window_widens(void **state)
{
	struct suspect s;
	uint64_t one = 3;

	(void)state;
	suspect_init(&s, 5);
	assert_int_equal(suspect_dropped(&s, &one, 1, 0, true, &telling), 0);
	assert_int_equal(suspect_window(&s), 1);
	suspect_answered(&s, 3);   /* the one that was in flight */
	assert_int_equal(suspect_window(&s), 1);
	suspect_answered(&s, 4);
	assert_int_equal(suspect_window(&s), 2);
	suspect_answered(&s, 5);
	assert_int_equal(suspect_window(&s), 4);
	suspect_answered(&s, 6);
	assert_int_equal(suspect_window(&s), 5);
	suspect_answered(&s, 7);
	assert_int_equal(suspect_window(&s), 5);
	suspect_init(&s, 0);
	assert_int_equal(suspect_window(&s), 1);
}

/* What a set-aside row teaches about its topic: as large or larger goes too; a
 * delivery at that size unlearns it. */
static void test_learns_the_topic(void **state)
{
	struct suspect s;
	size_t b = 0;

	(void)state;
	suspect_init(&s, 8);
	assert_int_equal(suspect_refuses(&s, "telemetry/big", 5000, &b), 0);
	assert_int_equal(suspect_learn(&s, "telemetry/big", 1500, 40), 0);
	assert_int_equal(suspect_learn(&s, "alert/r/c", 300, 41), 0);
	assert_int_equal(suspect_refuses(&s, "telemetry/big", 1500, &b), 40);
	assert_int_equal(b, 1500);
	assert_int_equal(suspect_refuses(&s, "telemetry/big", 1499, &b), 0);
	assert_int_equal(suspect_refuses(&s, "telemetry/small", 5000, &b), 0);
	/* a smaller one set aside too: the bound comes down */
	assert_int_equal(suspect_learn(&s, "telemetry/big", 1490, 52), 0);
	assert_int_equal(suspect_refuses(&s, "telemetry/big", 1495, &b), 52);
	assert_int_equal(suspect_learn(&s, "telemetry/big", 1600, 60), 0);
	assert_int_equal(suspect_refuses(&s, "telemetry/big", 1495, &b), 52);
	/* smaller deliveries say nothing; one as large unlearns the topic */
	suspect_delivered(&s, "telemetry/big", 1200);
	assert_int_equal(suspect_refuses(&s, "telemetry/big", 1495, &b), 52);
	suspect_delivered(&s, "telemetry/big", 1490);
	assert_int_equal(suspect_refuses(&s, "telemetry/big", 5000, &b), 0);
	assert_int_equal(suspect_refuses(&s, "alert/r/c", 300, &b), 41);
	suspect_free(&s);
	assert_int_equal(s.nlearnt, 0);
	suspect_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_finds_the_row),
		cmocka_unit_test(test_restarts_set_nothing_aside),
		cmocka_unit_test(test_drops_that_say_nothing),
		cmocka_unit_test(test_window_widens),
		cmocka_unit_test(test_learns_the_topic),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
