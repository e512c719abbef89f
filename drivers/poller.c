/*
 * poller: the few steps of a probe (drivers/poller.h) that every poller takes alike.
 * Owns nothing: a probe belongs to its asker or to the poller holding it.
 */
#include "poller.h"

#include "mberr.h"

bool poller_silent(int rc)
{
	return rc == MBE_TIMEOUT || rc == MBE_CONNECT || rc == MBE_CLOSED || rc == MBE_IO;
}

void poller_probe_fail(struct poller_probe *p, size_t from, int code)
{
	for (size_t i = from; i < p->nreads; i++)
		p->reads[i].err = code;
}

void poller_probe_finish(struct poller_probe *p, int status)
{
	p->status = status;
	p->next = NULL;
	if (status == PROBE_LATE)
		poller_probe_fail(p, 0, MBE_TIMEOUT);
	p->done(p);
}
