/*
 * alert_leak_int: what the leakage rule kind (alert_leakage.c) shares with the two parts
 * of its night check: the finder of pump steps in the zone's flow (alert_leak_steps.c)
 * and the change detector on the zone's nightly value (alert_leak_night.c). Private to
 * those files. Like the engine, nothing here does I/O or reads a clock.
 */
#ifndef SLUICE_ALERT_LEAK_INT_H
#define SLUICE_ALERT_LEAK_INT_H

#include "alert_int.h"

#define LEAK_BIN_MS (15 * 60 * 1000LL)
/* Pump switches this long before the night window still tell its state in the window,
 * and steps are searched for from then on. */
#define PUMP_MARGIN_S 3600

/* ---- pump steps (alert_leak_steps.c) ------------------------------------------------ */

#define STEP_RING 6      /* zone samples: three before a jump, the jump and two after */
#define STEP_NOISE 12    /* one-sample changes behind the noise level */
#define STEP_SIZES 32    /* large steps remembered, for their recurring size */
#define STEP_EVENTS 32   /* pump switches remembered (a few nights of them) */

struct pump_event {
	int64_t t;           /* between the two samples of the jump */
	int sign;            /* +1 on, -1 off */
};

/*
 * A booster pump or a valve that switches a fixed flow shows in the zone's flow as a
 * one-sample jump of the same size, up and down, night after night. The finder keeps the
 * zone's last few samples; a jump at least STEP_K times the usual one-sample change that
 * holds for the samples after it is a step; a size that STEP_RECUR steps within 14 days
 * share (within STEP_TOL) is the pump's. Steps of that size are its switches.
 */
enum step_hours {
	STEP_OFF = 0,            /* not searched (the day's demand jumps by itself) */
	STEP_LEARN,              /* the night and the hour before: steps, and their size */
	STEP_MATCH,              /* the hour after: switches of a size known, and falls */
};

struct steps {
	int64_t t[STEP_RING];
	double q[STEP_RING];
	unsigned char hours[STEP_RING]; /* enum step_hours of each sample */
	int n;
	double noise[STEP_NOISE];/* |one-sample change|, newest last */
	int nn;
	int64_t at[STEP_SIZES];  /* large steps seen: when, */
	double size[STEP_SIZES]; /* and |step|, m3/h */
	int ns, sh;              /* count, next slot */
	double S;                /* the pump's step, m3/h; 0 until one recurs */
	struct pump_event ev[STEP_EVENTS];
	int nev, evh;
};

/* One zone sample (net flow, m3/h, pumps named in exclude: already taken out), taken in
 * hours (enum step_hours). Returns 1 when the pump's size became known for the first
 * time with this sample, else 0. */
int steps_sample(struct steps *s, int64_t ts, double q, int hours);
/* The pump switches recorded in [lo, hi), in time order, into ev (at most max). */
int steps_events(const struct steps *s, int64_t lo, int64_t hi, struct pump_event *ev, int max);
void steps_clock_step(struct alert_engine *e, struct steps *s, int64_t delta);
void steps_save(const struct steps *s, const char *rule, struct jbuf *b);
/* One saved line (f[0] is its tag); false when the line is not the finder's. */
bool steps_restore(struct steps *s, char **f, size_t nf);

/* ---- the change detector (alert_leak_night.c) --------------------------------------- */

#define NIGHT_BINS 96    /* quarter hours of one night window, at most a whole day */
#define NIGHT_HIST 56    /* nights kept: eight of each weekday */
#define NIGHT_STACK 8    /* steps latched on top of one another */
#define NIGHT_BOUNDS 16  /* level changes inside the kept nights */

struct night_rec {
	int32_t day;         /* the night's day number (the local date its window began) */
	bool anchored;       /* its pump state was seen (steps), or no pump is known */
	double x;            /* its value, m3/h, pump taken out */
};

struct latched {
	int32_t since;       /* the first night of the step */
	double pre;          /* the weekday-adjusted level before it */
	double peak;         /* the highest level since (the step grows with the leak) */
	double step;         /* the size paged */
};

struct night_det {
	struct night_rec h[NIGHT_HIST]; /* oldest first */
	int nh;
	int32_t seg0;        /* the first night of the present level; INT32_MIN: all */
	double cp, cm;       /* CUSUM up and down, in noise units */
	int32_t run_p, run_m;/* first night of each CUSUM's run; INT32_MIN: none */
	double ref_p;        /* the reference when the upward run began */
	struct latched stk[NIGHT_STACK];
	int nstk;
	int32_t bounds[NIGHT_BOUNDS]; /* nights a level changed: weekday offsets skip them */
	int nb;
};

/* One night as the zone measured it: its quarter hours (net flow and excluded flow,
 * m3/h, NAN without data) and the pump switches around it. */
struct night_obs {
	int32_t day;
	int64_t first;       /* start of bin 0 */
	int nbins;
	const double *net, *exc;
	int64_t end;         /* the end of its last quarter hour: when it is decided */
	double S;            /* the pump's step, 0: none known */
	const struct pump_event *ev;
	int nev;
};

/* Decide one night for check c of rule r: its value into the detector, and any page,
 * repair or resolve out. -1 on allocation failure. */
int night_decide(struct alert_engine *e, struct rstate *r, struct night_det *d,
		 struct check *c, const struct night_obs *ob, struct alert_out *o);
/* The pump was found: nights learnt before may hold its flow. Learn again. */
void night_forget(struct night_det *d);
void night_init(struct night_det *d);
void night_save(const struct night_det *d, const char *rule, struct jbuf *b);
bool night_restore(struct night_det *d, char **f, size_t nf);

#endif
