/*
 * reading: the allocation that carries one poll of one device across the queue.
 * Header, values and string bytes live in one block so that handing a reading over
 * is one pointer and freeing it is one free(); nothing here may point outside it.
 */
#include "reading.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mberr.h"

struct reading *reading_new(uint32_t device, uint16_t n, size_t strbytes)
{
	size_t head = sizeof(struct reading) + (size_t)n * sizeof(struct value);
	struct reading *r;

	if (strbytes > SIZE_MAX - head)
		return NULL;
	r = calloc(1, head + strbytes);
	if (r == NULL)
		return NULL;
	r->device = device;
	r->nvalues = n;
	r->online = true; /* until a poller's circuit breaker says otherwise */
	r->strcap = strbytes;
	r->strused = 0;
	r->strings = (char *)r + head;
	/* a value nobody filled is a point whose poll never completed */
	for (uint16_t i = 0; i < n; i++) {
		r->values[i].kind = VAL_NONE;
		r->values[i].err = MBE_TIMEOUT;
	}
	return r;
}

void reading_free(struct reading *r)
{
	free(r);
}

char *reading_strbuf(struct reading *r, size_t cap)
{
	char *s;

	if (r == NULL || cap == 0 || cap > r->strcap - r->strused)
		return NULL;
	s = r->strings + r->strused;
	r->strused += cap;
	s[0] = '\0';
	return s;
}
