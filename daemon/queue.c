/*
 * queue: a bounded ring under one mutex, with an eventfd the core polls. Producers
 * are the poller threads; they must never wait on the core, so a full queue refuses
 * the push (counted) rather than blocking a thread that serves a thousand devices.
 * The eventfd is written only on the empty -> non-empty edge and drained by the
 * consumer when it takes the last item, so a burst of pushes costs one syscall.
 */
#include "queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct queue {
	pthread_mutex_t mu;
	void **ring;
	size_t cap, head, count;
	int efd;
	uint64_t refused;
};

struct queue *queue_new(size_t capacity)
{
	struct queue *q;

	if (capacity == 0)
		capacity = 1;
	q = calloc(1, sizeof *q);
	if (!q)
		return NULL;
	q->ring = calloc(capacity, sizeof *q->ring);
	q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!q->ring || q->efd < 0 || pthread_mutex_init(&q->mu, NULL) != 0) {
		if (q->efd >= 0)
			close(q->efd);
		free(q->ring);
		free(q);
		return NULL;
	}
	q->cap = capacity;
	return q;
}

void queue_free(struct queue *q, void (*free_item)(void *))
{
	if (!q)
		return;
	if (free_item)
		while (q->count > 0) {
			free_item(q->ring[q->head]);
			q->head = (q->head + 1) % q->cap;
			q->count--;
		}
	close(q->efd);
	pthread_mutex_destroy(&q->mu);
	free(q->ring);
	free(q);
}

int queue_push(struct queue *q, void *item)
{
	int wake;

	pthread_mutex_lock(&q->mu);
	if (q->count == q->cap) {
		q->refused++;
		pthread_mutex_unlock(&q->mu);
		return -1;
	}
	q->ring[(q->head + q->count) % q->cap] = item;
	wake = q->count++ == 0;
	pthread_mutex_unlock(&q->mu);
	if (wake) {
		uint64_t one = 1;
		ssize_t w = write(q->efd, &one, sizeof one);
		(void)w; /* EAGAIN only when the counter is saturated: still readable */
	}
	return 0;
}

size_t queue_pop(struct queue *q, void **out, size_t max)
{
	size_t n = 0;

	pthread_mutex_lock(&q->mu);
	while (n < max && q->count > 0) {
		out[n++] = q->ring[q->head];
		q->head = (q->head + 1) % q->cap;
		q->count--;
	}
	if (q->count == 0) {
		/* drain under the lock: a push after this sees count 0 and writes again */
		uint64_t v;
		ssize_t r = read(q->efd, &v, sizeof v);
		(void)r;
	}
	pthread_mutex_unlock(&q->mu);
	return n;
}

int queue_fd(struct queue *q)
{
	return q->efd;
}

uint64_t queue_refused(struct queue *q)
{
	uint64_t r;

	pthread_mutex_lock(&q->mu);
	r = q->refused;
	pthread_mutex_unlock(&q->mu);
	return r;
}
