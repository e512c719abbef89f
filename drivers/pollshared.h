/*
 * pollshared: the logic every poller (tcpoll, serpoll) shares, as pure helpers: which
 * devices a poller takes, where a device's first poll falls, how a read reply becomes a
 * reading's values, which failures count as an answer for the circuit breaker, how a
 * write value is checked and encoded, how often a long outage is logged, and how its
 * length is written. No I/O, no clock, no logging, no locks: the pollers own all of
 * that, and call these with the times and state they hold.
 */
#ifndef SLUICE_POLLSHARED_H
#define SLUICE_POLLSHARED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "site.h"
#include "plan.h"
#include "reading.h"

/* A bus kind as a bit of the mask pollshared_dev_polled takes. */
#define POLLSHARED_BUS(kind) (1u << (unsigned)(kind))

/* 0 when device d of cfg can be polled at all; else -1 with err naming it (a bus index
 * out of range, more points than a reading holds). */
int pollshared_check_device(const struct site *cfg, const struct device_cfg *d, char *err,
			    size_t errlen);
/* True when d is on a bus of one of the kinds in the mask (POLLSHARED_BUS bits) and has
 * points to poll: a sunspec device has them once discovery filled them in. */
bool pollshared_dev_polled(const struct site *cfg, const struct device_cfg *d,
			   unsigned kinds);
/* String room a reading of d needs: every string point at its full length. */
size_t pollshared_strbytes(const struct device_cfg *d);
/* Where device `index`'s first poll falls in its first interval. */
int64_t pollshared_phase(uint32_t index, int64_t interval);

/* Fail the points of d's plan read by requests [from, to) with code. */
void pollshared_fail_reqs(const struct read_plan *plan, struct reading *r, size_t from,
			  size_t to, int code);
/* Decode the reply to request reqi of plan (regs for register tables, bits for bit
 * tables) into the values of the points it reads; string bytes go to r's string area. */
void pollshared_decode_request(const struct device_cfg *d, const struct read_plan *plan,
			       struct reading *r, size_t reqi, const uint16_t *regs,
			       const uint8_t *bits);
/* True when some value of r has none (a failed point). */
bool pollshared_reading_failed(const struct reading *r);
/* True when a request's result rc (0 or an MBE_* code) shows the device is there, for
 * the circuit breaker: a reply, or an exception other than a gateway's 0x0A/0x0B. */
bool pollshared_is_answer(int rc);

/* --- writes ---------------------------------------------------------------------------- */

/* A write as it goes on the wire. */
struct pollshared_wreq {
	uint8_t fc;          /* MB_FC_WRITE_COIL, MB_FC_WRITE_REGISTER or MB_FC_WRITE_REGISTERS */
	bool rmw;            /* a bool on a bit of a holding register: read the register
				first, set the bit in it (codec_set_bit), write it with fc */
	bool on;             /* a bool's new state (the coil, or the bit) */
	uint16_t addr;
	uint16_t n;          /* registers of regs used */
	uint16_t regs[4];    /* the widest writable type, 64 bits */
};

/* The pollers' documented refusals differ in two places and each is held to its own
 * by its tests, so the checks take the poller's rules. */
struct pollshared_wrules {
	int readonly_errno;  /* a writable: point in an input or discrete table */
	bool value_first;    /* a value that is not finite, or a bool not 0 or 1, is ERANGE
				even on a point that cannot be written */
	bool coil_any_type;  /* a coil point not of type bool is written as a coil (0 or 1),
				not refused with EINVAL (config never makes one) */
};

/*
 * Check value against point p and encode it into out. 0, or -1 with errno: EPERM p is
 * not writable; rules->readonly_errno p is in a read-only table; EINVAL p is of a type
 * that cannot be written (string); ERANGE value does not fit p's type (a bool takes 0 or
 * 1).
 */
int pollshared_write_prepare(const struct point_def *p, double value,
			     const struct pollshared_wrules *rules, struct pollshared_wreq *out);

/* --- the journal ------------------------------------------------------------------------- */

/* When a long outage is logged again ("still down"), counted from its start `since`. */
struct pollshared_logsched {
	/* with marks: when each of these has passed since the start, then every `every`; a
	 * mark or step passed between two checks is skipped, not logged late */
	const int64_t *marks;
	size_t nmarks;
	int64_t every;
	/* without marks: `first` after the start, then at gaps from each line logged,
	 * doubling up to `max` */
	int64_t first, max;
};

struct pollshared_logpace {
	int64_t next;        /* when the next line is due */
	int64_t gap;         /* without marks: the gap last used */
	size_t step;         /* with marks: the next mark */
};

/* The outage began at since, and has just been logged. */
void pollshared_logpace_start(struct pollshared_logpace *lp, const struct pollshared_logsched *s,
			      int64_t since);
/* True when a line is due at now; the pace then moves on to the next one. */
bool pollshared_logpace_due(struct pollshared_logpace *lp, const struct pollshared_logsched *s,
			    int64_t since, int64_t now);

/* How a span of time is written in the journal. */
enum pollshared_span {
	POLLSHARED_SPAN_COARSE, /* "75s", "12min", "3h" */
	POLLSHARED_SPAN_FINE,   /* "42s", "5m12s", "3h02m", "2d04h" */
};
void pollshared_fmt_span(char *buf, size_t len, int64_t ms, enum pollshared_span style);

#endif
