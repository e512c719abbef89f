/*
 * breaker: the circuit breakers every poller shares (drivers/breaker.h). Owns no state of
 * its own: each function works on the breaker its caller passes, with the times it
 * passes. It must never read a clock, lock, allocate or do I/O; breaker_dev_log and
 * breaker_link_log are the only functions that write to the journal.
 */
#include "breaker.h"

#include <stdio.h>

#include "log.h"
#include "mberr.h"

/* The outage marks: a minute says it is not a blip, ten minutes that someone should go,
 * an hour that it is a site visit; after that, four lines a day keep it in the journal
 * without burying the rest. */
static const int64_t bk_log_marks[] = { 60 * 1000, 10 * 60 * 1000, 60 * 60 * 1000 };
#define BK_NMARKS (sizeof bk_log_marks / sizeof bk_log_marks[0])
#define BK_LOG_EVERY_MS (6 * 60 * 60 * 1000)

static int64_t max64(int64_t a, int64_t b)
{
	return a > b ? a : b;
}

void breaker_logpace_start(struct breaker_logpace *lp, int64_t since)
{
	lp->step = 1;
	lp->next = since + bk_log_marks[0];
}

bool breaker_logpace_due(struct breaker_logpace *lp, int64_t since, int64_t now)
{
	if (now < lp->next)
		return false;
	/* an outage may outlast several marks between two checks: skip those */
	while (lp->next <= now)
		lp->next = lp->step < BK_NMARKS ? since + bk_log_marks[lp->step++] :
						  lp->next + BK_LOG_EVERY_MS;
	return true;
}

void breaker_fmt_span(char *buf, size_t len, int64_t ms)
{
	long long s = (long long)(ms / 1000);

	if (s < 60)
		snprintf(buf, len, "%llds", s);
	else if (s < 3600)
		snprintf(buf, len, "%lldm%02llds", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, len, "%lldh%02lldm", s / 3600, s % 3600 / 60);
	else
		snprintf(buf, len, "%lldd%02lldh", s / 86400, s % 86400 / 3600);
}

/* --- a device ---------------------------------------------------------------------- */

void breaker_dev_init(struct dev_breaker *b, int64_t interval, unsigned offline_after,
		      uint64_t seed)
{
	*b = (struct dev_breaker){ 0 };
	b->interval = interval > 0 ? interval : 10000;
	b->offline_after = offline_after > 0 ? offline_after : 3;
	b->online = true;
	/* any non-zero state; the jitter need not be unpredictable, only uncorrelated */
	b->rng = (seed + 1) * UINT64_C(0x9E3779B97F4A7C15) | 1;
}

enum breaker_event breaker_dev_poll(struct dev_breaker *b, const struct breaker_pace *pace,
				    bool answered, int err, int64_t start, int64_t now)
{
	(void)now;
	if (answered) {
		enum breaker_event ev = !b->online ? BREAKER_BACK :
					b->fails > 0 ? BREAKER_RECOVERED : BREAKER_NONE;
		b->recovered_after = b->fails;
		b->online = true;
		b->fails = 0;
		return ev;
	}
	b->last_err = err != 0 ? err : MBE_TIMEOUT;
	if (b->fails++ == 0)
		b->down_since = start;
	if (b->online) {
		if (b->fails < b->offline_after)
			return BREAKER_FAILED;
		b->online = false;
		b->retry_delay = max64(b->interval, pace->retry_min);
		breaker_logpace_start(&b->log, b->down_since);
		return BREAKER_DOWN;
	}
	int64_t cap = max64(b->interval, pace->retry_max);
	b->retry_delay = b->retry_delay > cap / 2 ? cap : 2 * b->retry_delay;
	return breaker_logpace_due(&b->log, b->down_since, now) ? BREAKER_STILL_DOWN :
								  BREAKER_NONE;
}

/* delay +- 10 % */
static int64_t bk_jitter(struct dev_breaker *b, int64_t delay)
{
	int64_t j = delay / 10;
	uint64_t x = b->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	b->rng = x;
	return j > 0 ? delay - j + (int64_t)(x % (uint64_t)(2 * j + 1)) : delay;
}

int64_t breaker_dev_next(struct dev_breaker *b, enum breaker_event ev, int64_t due,
			 int64_t start, int64_t now)
{
	int64_t next;

	if (!b->online)
		return now + bk_jitter(b, b->retry_delay);
	/* back: the interval resumes from this answer, with no burst to make up for the
	 * polls the outage cost */
	next = (ev == BREAKER_BACK ? start : due) + b->interval;
	/* behind (the poll took longer than an interval): re-anchor at now rather than
	 * skip to the next slot, so a device whose polls outlast its interval is polled
	 * back to back; never a catch-up burst */
	return next < now ? now : next;
}

void breaker_dev_text(const struct dev_breaker *b, enum breaker_event ev, int64_t now,
		      char *buf, size_t len)
{
	char span[32];

	breaker_fmt_span(span, sizeof span, now - b->down_since);
	switch (ev) {
	case BREAKER_FAILED:
		snprintf(buf, len, "poll failed (%u of %u before offline): %s", b->fails,
			 b->offline_after, mb_strerror(b->last_err));
		break;
	case BREAKER_RECOVERED:
		snprintf(buf, len, "answers again, after %u failed poll%s", b->recovered_after,
			 b->recovered_after == 1 ? "" : "s");
		break;
	case BREAKER_DOWN:
		snprintf(buf, len, "offline after %u failed polls in a row: %s", b->fails,
			 mb_strerror(b->last_err));
		break;
	case BREAKER_STILL_DOWN:
		snprintf(buf, len, "still offline after %s: %s", span, mb_strerror(b->last_err));
		break;
	case BREAKER_BACK:
		snprintf(buf, len, "answers again, after %s offline", span);
		break;
	default:
		snprintf(buf, len, "%s", "");
		break;
	}
}

void breaker_dev_log(const struct dev_breaker *b, enum breaker_event ev,
		     const struct device_cfg *d, const char *bus, int64_t now)
{
	char text[160];

	if (ev == BREAKER_NONE)
		return;
	breaker_dev_text(b, ev, now, text, sizeof text);
	if (ev == BREAKER_DOWN || ev == BREAKER_STILL_DOWN)
		log_warnx("device %s (bus %s, unit %u): %s", d->id, bus, d->unit_id, text);
	else if (ev == BREAKER_BACK)
		log_info("device %s (bus %s, unit %u): %s", d->id, bus, d->unit_id, text);
	else
		log_debug("device %s (bus %s, unit %u): %s", d->id, bus, d->unit_id, text);
}

/* --- a link ------------------------------------------------------------------------ */

bool breaker_link_may_try(const struct link_breaker *k, int64_t now)
{
	return now >= k->retry_at;
}

enum breaker_event breaker_link_failed(struct link_breaker *k, int64_t now)
{
	if (!k->down) {
		k->down = true;
		k->fails = 0;
		k->down_since = now;
	}
	k->fails++;
	k->backoff = k->backoff == 0 ? BREAKER_OPEN_MIN_MS :
		     2 * k->backoff < BREAKER_OPEN_MAX_MS ? 2 * k->backoff : BREAKER_OPEN_MAX_MS;
	k->retry_at = now + k->backoff;
	if (k->fails == 1) {
		breaker_logpace_start(&k->log, now);
		return BREAKER_DOWN;
	}
	return breaker_logpace_due(&k->log, k->down_since, now) ? BREAKER_STILL_DOWN :
								  BREAKER_FAILED;
}

enum breaker_event breaker_link_opened(struct link_breaker *k)
{
	enum breaker_event ev = k->down ? BREAKER_BACK : BREAKER_NONE;

	k->down = false;
	k->backoff = 0;
	k->retry_at = 0; /* a link that closes later is opened again at once */
	return ev;
}

void breaker_link_log(const struct link_breaker *k, enum breaker_event ev, const char *bus,
		      const char *what, const char *why)
{
	switch (ev) {
	case BREAKER_DOWN:
		/* once per streak: the readings carry every failure to the platform */
		log_warnx("bus %s: %s; retrying, its devices fail with \"%s\" meanwhile", bus, why,
			  mb_strerror(MBE_CONNECT));
		break;
	case BREAKER_STILL_DOWN:
		log_warnx("bus %s: still failing after %u attempts: %s", bus, k->fails, why);
		break;
	case BREAKER_FAILED:
		log_debug("bus %s: %s", bus, why);
		break;
	case BREAKER_BACK:
		log_info("bus %s: %s is open again, after %u failed attempt%s", bus, what,
			 k->fails, k->fails == 1 ? "" : "s");
		break;
	default:
		break;
	}
}
