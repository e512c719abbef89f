/* queue: bounded, FIFO, refuses when full, eventfd readable exactly while non-empty,
 * and safe with several producer threads. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "queue.h"

static int readable(struct queue *q)
{
	struct pollfd p = { .fd = queue_fd(q), .events = POLLIN };
	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static void test_fifo_and_bound(void **state)
{
	(void)state;
	struct queue *q = queue_new(3);
	int a = 1, b = 2, c = 3, d = 4;
	void *out[8];

	assert_non_null(q);
	assert_false(readable(q));
	assert_int_equal(queue_push(q, &a), 0);
	assert_true(readable(q));
	assert_int_equal(queue_push(q, &b), 0);
	assert_int_equal(queue_push(q, &c), 0);
	assert_int_equal(queue_push(q, &d), -1);
	assert_int_equal(queue_refused(q), 1);
	assert_int_equal(queue_pop(q, out, 2), 2);
	assert_ptr_equal(out[0], &a);
	assert_ptr_equal(out[1], &b);
	assert_true(readable(q));
	assert_int_equal(queue_push(q, &d), 0); /* wraps around */
	assert_int_equal(queue_pop(q, out, 8), 2);
	assert_ptr_equal(out[0], &c);
	assert_ptr_equal(out[1], &d);
	assert_false(readable(q));
	assert_int_equal(queue_pop(q, out, 8), 0);
	queue_free(q, NULL);
}

#define PRODUCERS 4
#define PER 2000

static void *producer(void *arg)
{
	struct queue *q = arg;
	for (int i = 0; i < PER; i++) {
		int *v = malloc(sizeof *v);
		*v = i;
		while (queue_push(q, v) != 0)
			sched_yield(); /* full: let the consumer drain (valgrind runs one thread at a time) */
	}
	return NULL;
}

static void test_threads(void **state)
{
	(void)state;
	struct queue *q = queue_new(64);
	pthread_t th[PRODUCERS];
	long got = 0, sum = 0;
	void *out[32];

	for (int i = 0; i < PRODUCERS; i++)
		pthread_create(&th[i], NULL, producer, q);
	while (got < PRODUCERS * PER) {
		struct pollfd p = { .fd = queue_fd(q), .events = POLLIN };
		assert_true(poll(&p, 1, 5000) == 1);
		size_t n = queue_pop(q, out, 32);
		for (size_t i = 0; i < n; i++) {
			sum += *(int *)out[i];
			free(out[i]);
		}
		got += (long)n;
	}
	for (int i = 0; i < PRODUCERS; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(got, PRODUCERS * PER);
	assert_int_equal(sum, (long)PRODUCERS * PER * (PER - 1) / 2);
	queue_free(q, free);
}

static void test_free_items(void **state)
{
	(void)state;
	struct queue *q = queue_new(4);
	for (int i = 0; i < 3; i++)
		queue_push(q, malloc(16));
	queue_free(q, free); /* valgrind/ASan: no leak */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fifo_and_bound),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_free_items),
	};
	return cmocka_run_group_tests_name("queue", tests, NULL, NULL);
}
