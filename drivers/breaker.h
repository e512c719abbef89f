/*
 * breaker: the circuit breakers of both pollers (tcpoll, serpoll), so that a Modbus TCP
 * device and a serial one go offline, are retried, are logged and come back by the same
 * rules and in the same words.
 *
 * A device's breaker (struct dev_breaker) counts its polls in a row that got no answer.
 * After offline_after of them the device is offline: its readings say so (online false,
 * last_err) and it is tried every max(interval, retry_min), doubling to max(interval,
 * retry_max), jittered by +-10 % so that devices that went down together (a gateway's
 * power) do not come back in step. Each attempt costs its line or connection one timeout
 * at most. The journal hears of it when it goes offline, again after 1 min, 10 min and
 * 1 h down, then every 6 h, and once when it answers again; every failure is in the
 * readings for the platform. While online, a device is polled on its interval grid: due
 * + interval, re-anchored at now when that is past (never a catch-up burst).
 *
 * A link's breaker (struct link_breaker: a TCP connection, a tty, a DTU's socket) spaces
 * the attempts to open it (1 s, doubling to 30 s) and logs its failures the same way:
 * once, then at the same widening marks, and once when it opens again.
 *
 * The state changes are pure: times are passed in, nothing here reads a clock, locks or
 * does I/O. They return what happened (enum breaker_event); breaker_dev_log and
 * breaker_link_log write the line an event calls for, and only they log.
 */
#ifndef SLUICE_BREAKER_H
#define SLUICE_BREAKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "site.h"

#define BREAKER_RETRY_MIN_MS 5000   /* an offline device: max(interval, 5 s), */
#define BREAKER_RETRY_MAX_MS 60000  /* doubling to max(interval, 60 s) */
#define BREAKER_OPEN_MIN_MS 1000    /* a link that will not open: 1 s, */
#define BREAKER_OPEN_MAX_MS 30000   /* doubling to 30 s */

enum breaker_event {
	BREAKER_NONE,       /* nothing to say */
	BREAKER_FAILED,     /* a failure short of offline, or a link failing again (debug) */
	BREAKER_RECOVERED,  /* an answer after failures short of offline (debug) */
	BREAKER_DOWN,       /* just went offline; a link's first failure */
	BREAKER_STILL_DOWN, /* still down, and a line is due */
	BREAKER_BACK,       /* answers (opens) again after being down */
};

/* When a long outage is logged again: 1 min, 10 min and 1 h after its start, then every
 * 6 h. A mark passed between two checks is skipped, not logged late. */
struct breaker_logpace {
	int64_t next;        /* when the next line is due */
	size_t step;         /* the next mark */
};

struct dev_breaker {
	int64_t interval;
	unsigned offline_after;
	unsigned fails;      /* polls in a row without an answer */
	unsigned recovered_after; /* the failed polls an answer has just ended */
	bool online;
	int last_err;        /* MBE_* of the last failed poll; 0 before any, kept after recovery */
	int64_t retry_delay; /* while offline: before the next attempt, unjittered */
	int64_t down_since;  /* start of the first failed poll of the streak */
	struct breaker_logpace log;
	uint64_t rng;        /* xorshift state for the jitter */
};

/* The pace of a poller's offline retries (tests shorten it). */
struct breaker_pace {
	int64_t retry_min, retry_max;
};

/* Online, with the device's interval and offline_after (0: the defaults, 10 s and 3).
 * seed decorrelates the jitter of devices (the device's index will do). */
void breaker_dev_init(struct dev_breaker *b, int64_t interval, unsigned offline_after,
		      uint64_t seed);

/*
 * Account for one finished poll that began at start: answered (some request got a
 * reply, an exception included) or not, err its MBE_* code when not (0 is taken as a
 * timeout). Returns what happened.
 */
enum breaker_event breaker_dev_poll(struct dev_breaker *b, const struct breaker_pace *pace,
				    bool answered, int err, int64_t start, int64_t now);

/*
 * When the next poll is due, after the poll that was due at `due` began at start and
 * ended at now with event ev (from breaker_dev_poll, or BREAKER_NONE for a poll
 * skipped): offline, now + the retry delay, jittered; back online, the interval counts
 * from start; else due + interval. Never before now.
 */
int64_t breaker_dev_next(struct dev_breaker *b, enum breaker_event ev, int64_t due,
			 int64_t start, int64_t now);

/* Write the line ev calls for (without a "who:" prefix) into buf; "" for BREAKER_NONE. */
void breaker_dev_text(const struct dev_breaker *b, enum breaker_event ev, int64_t now,
		      char *buf, size_t len);
/* Log it, at warning (down, still down), info (back) or debug, as "device D (bus B,
 * unit U): ...". */
void breaker_dev_log(const struct dev_breaker *b, enum breaker_event ev,
		     const struct device_cfg *d, const char *bus, int64_t now);

struct link_breaker {
	bool down;           /* the last attempt failed */
	int64_t backoff;     /* 0 while opens succeed */
	int64_t retry_at;    /* no attempt before this */
	unsigned fails;      /* attempts that failed in the last streak (kept once open) */
	int64_t down_since;
	struct breaker_logpace log;
};

/* True when an attempt to open may be made at now. */
bool breaker_link_may_try(const struct link_breaker *k, int64_t now);
/* An attempt failed at now: back off. BREAKER_DOWN, BREAKER_STILL_DOWN or BREAKER_FAILED. */
enum breaker_event breaker_link_failed(struct link_breaker *k, int64_t now);
/* It opened: BREAKER_BACK after failures, else BREAKER_NONE. */
enum breaker_event breaker_link_opened(struct link_breaker *k);
/* Log what ev calls for: "bus B: " + why (the failure) or, for BREAKER_BACK, what opened
 * again (a tty's path, "HOST port PORT"). The counts are read before the next event. */
void breaker_link_log(const struct link_breaker *k, enum breaker_event ev, const char *bus,
		      const char *what, const char *why);

/* The outage began at since and has just been logged. */
void breaker_logpace_start(struct breaker_logpace *lp, int64_t since);
/* True when a line is due at now; the pace then moves on to the next one. */
bool breaker_logpace_due(struct breaker_logpace *lp, int64_t since, int64_t now);

/* A span of time as the journal writes it: "42s", "5m12s", "3h02m", "2d04h". */
void breaker_fmt_span(char *buf, size_t len, int64_t ms);

#endif
