/*
 * alert_int: what the alert engine (alert.c) shares with its rule kinds
 * (alert_threshold.c, alert_waterlogging.c, alert_leakage.c, alert_pv.c, alert_comms.c).
 * Private to those files. Like the engine, nothing here does I/O or reads a clock.
 */
#ifndef SLUICE_ALERT_INT_H
#define SLUICE_ALERT_INT_H

#include "alert.h"
#include "json.h"

/* One alert: a check of a rule, with its state machine. */
struct check {
	char rule[ID_MAX];
	char name[ALERT_CHECK_MAX];
	const struct rule_cfg *rc; /* NULL for comms */
	int64_t for_ms;            /* how long the condition holds before firing */
	bool actions;              /* this check runs the rule's on_fire / on_resolve */
	int state;                 /* ALERT_OK, ALERT_PENDING or ALERT_FIRING */
	int sev;                   /* firing: the severity published */
	int pend_sev;              /* pending: the severity it would fire at */
	int64_t since_ms;          /* pending: since when the condition holds */
	int64_t fired_ms;          /* firing: when it last fired or changed severity */
	double value, threshold;
	bool value_f32, threshold_f32; /* set by the rule kind (struct alert_transition) */
	char unit[POINT_UNIT_MAX];
	char msg[ALERT_MSG_MAX];
};

struct rstate;

struct rule_ops {
	/* Create the rule's checks (engine_check) and private state. 0 or -1 with err. */
	int (*init)(struct alert_engine *e, struct rstate *r, char *err, size_t errlen);
	void (*free)(struct rstate *r);
	int (*feed)(struct alert_engine *e, struct rstate *r, size_t dev, int64_t ts,
		    const struct value *v, size_t n, struct alert_out *o);
	int (*tick)(struct alert_engine *e, struct rstate *r, int64_t now, struct alert_out *o);
	/* Private state as lines "s\t<rule>\t<fields...>\n" (see alert.c) */
	void (*save)(const struct rstate *r, struct jbuf *b);
	/* One saved line's fields after the rule id; unknown lines are ignored. */
	void (*restore)(struct rstate *r, char **f, size_t nf);
	/* The wall clock stepped by delta (alert_clock_step): move the times this rule
	 * learnt live (engine_live) by delta. Called before the engine's own times move. */
	void (*clock_step)(struct alert_engine *e, struct rstate *r, int64_t delta);
};

struct rstate {
	const struct rule_cfg *rc;  /* NULL for a comms pseudo-rule */
	const struct rule_ops *ops;
	char id[ID_MAX];
	size_t device;              /* comms: the device */
	struct check *c[4];         /* its checks, in the order init made them */
	size_t nc;
	void *priv;
};

struct alert_engine {
	const struct config *cfg;
	struct rstate *rules;       /* cfg->nrules rules, then one comms rule per device */
	size_t nrules;
	struct check **checks;      /* every check, for tick, save and alert_active */
	size_t nchecks;
	/* The rules that read each device, in rule order: rule indexes
	 * feed_rules[feed_first[d]] .. feed_rules[feed_first[d + 1] - 1] (alert_feed visits
	 * only these; a kind's feed ignores a reading of a device its config does not name) */
	size_t *feed_first;         /* cfg->ndevices + 1 */
	size_t *feed_rules;
	int64_t last_ms;            /* the latest time seen, from readings or ticks */
	int64_t first_ms;           /* the earliest, INT64_MAX before any: older times were
				     * restored, from another run and perhaps another clock */
	/* After a clock step: readings stamped by the old clock around the step
	 * ([guard_lo, guard_hi]) may still be on their way; until last_ms reaches
	 * guard_until they are moved by guard_delta. */
	bool guard;
	unsigned guard_n;           /* readings moved so far (the first gets a note) */
	int64_t guard_lo, guard_hi, guard_until, guard_delta;
	bool late_noted;            /* one note per run of late readings */
	bool explain;               /* kinds add notes that show their working (replay) */
};

/* Was t learnt by this engine since it started (not restored), so that a clock step
 * re-bases it? */
bool engine_live(const struct alert_engine *e, int64_t t);

extern const struct rule_ops alert_threshold_ops, alert_waterlogging_ops, alert_leakage_ops,
	alert_pv_ops, alert_comms_ops;

/* A new check of r (at most 4 per rule). NULL on allocation failure. */
struct check *engine_check(struct alert_engine *e, struct rstate *r, const char *name,
			   int64_t for_ms, bool actions);

/*
 * The state machine. want is the severity the condition asks for now (SEV_NONE: the
 * condition does not hold); hysteresis is the rule kind's business, since only it
 * knows what "clear" means. value, threshold, unit and msg describe the present and
 * are kept for the transition. -1 on allocation failure.
 */
int check_eval(struct alert_engine *e, struct check *c, int64_t ts, int want, double value,
	       double threshold, const char *unit, const char *msg, struct alert_out *o);
/* A pending check whose 'for' ran out by now fires. */
int check_tick(struct alert_engine *e, struct check *c, int64_t now, struct alert_out *o);
/*
 * A firing check pages again at the severity it has: a new cause on top of the one it
 * fires for (a second leak on a latched night check). The rule's on_fire actions do not
 * run again: the first firing ran them. A check that is not firing fires as check_eval
 * would. -1 on allocation failure.
 */
int check_refire(struct alert_engine *e, struct check *c, int64_t ts, double value,
		 double threshold, const char *unit, const char *msg, struct alert_out *o);
/* What an active check says about itself changes, without a transition (one of several
 * latched causes went away). Seen by alert_active and saved. */
void check_update(struct check *c, double value, double threshold, const char *unit,
		  const char *msg);

int out_note(struct alert_out *o, const char *rule, const char *check, int64_t ts,
	     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* A note that shows how a check decided; only when the engine explains (e->explain). */
int out_explain(struct alert_engine *e, struct alert_out *o, const char *rule,
		const char *check, int64_t ts, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

/* A point's value as a number; NAN for a failed or string point. */
double alert_num(const struct value *v);
/* The device's name for people (its name:, else its id). */
const char *alert_devname(const struct config *cfg, size_t dev);
/* value, when the point ref is a static point of dev and present in v; else NAN */
double alert_ref_value(const struct point_ref *p, size_t dev, const struct value *v, size_t n);
const struct point_def *alert_ref_def(const struct config *cfg, const struct point_ref *p);
/* Is the point ref a float32 point (its values hold a float32's precision)? */
bool alert_ref_f32(const struct config *cfg, const struct point_ref *p);

/*
 * Local time. The engine uses the process's TZ (sluiced, replay and the tests set TZ
 * to gateway.timezone before the engine runs), so localtime_r/mktime give local
 * calendar days with their real lengths across DST changes. They read no clock.
 */
int64_t alert_local_midnight(int64_t ts_ms);   /* the start of ts's local day */
int64_t alert_local_next_midnight(int64_t day_ms);
int alert_local_tod(int64_t ts_ms);            /* seconds after local midnight */
/* Is tod inside [from, to), a window that may run through midnight? */
bool alert_in_window(int tod, int from, int to);
/* "2018-03-05" of ts in local time */
void alert_local_date(int64_t ts_ms, char *buf, size_t len);
/* The local calendar date of ts as a day number (days since 1970-01-01), and back to
 * "2018-03-05". Day numbers count nights and weekdays without a clock: (day + 3) % 7 is
 * the weekday, Monday 0. */
int32_t alert_local_dayno(int64_t ts_ms);
void alert_dayno_date(int32_t day, char *buf, size_t len);

/* Small helpers for saving: "%.17g" fields. */
void save_line(struct jbuf *b, const char *rule, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
double field_num(const char *s);
int64_t field_i64(const char *s);

#endif
