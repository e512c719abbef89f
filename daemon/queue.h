/*
 * queue: the bounded queue from the poller threads to the core. Many producers, one
 * consumer. A push never blocks a poller: when the queue is full the reading is
 * refused and counted, and the caller frees it. The consumer waits on queue_fd (an
 * eventfd that is readable while items are queued).
 */
#ifndef SLUICE_QUEUE_H
#define SLUICE_QUEUE_H

#include <stddef.h>
#include <stdint.h>

struct queue;

struct queue *queue_new(size_t capacity);
void queue_free(struct queue *q, void (*free_item)(void *));
/* 0, or -1 when full (the item stays the caller's). */
int queue_push(struct queue *q, void *item);
/* Up to max items into out; returns how many. Clears the eventfd when it empties. */
size_t queue_pop(struct queue *q, void **out, size_t max);
int queue_fd(struct queue *q);
uint64_t queue_refused(struct queue *q);

#endif
