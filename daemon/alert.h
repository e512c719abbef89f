/*
 * alert: the alert engine. A pure library: no I/O, no clock of its own, no SQL, no
 * MQTT. Readings go in with their own timestamps, alert transitions and actions come
 * out, so the same code runs in sluiced, in the unit tests and in `sluicectl replay`.
 *
 * Each rule of the config holds one or more checks; each check is its own alert,
 * named <rule>/<check>, a state machine ok -> pending -> firing(severity) -> resolved
 * (docs/design.md, "The alert engine"; docs/alerts.md). Only firing (again on every
 * change of severity) and resolved are transitions that leave the engine; pending stays
 * inside. Every device also gets a comms alert, comms-<device>/offline.
 */
#ifndef SLUICE_ALERT_H
#define SLUICE_ALERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "point.h"
#include "config.h"

#define ALERT_CHECK_MAX 32
#define ALERT_MSG_MAX 256

enum alert_state { ALERT_OK = 0, ALERT_PENDING, ALERT_FIRING, ALERT_RESOLVED };

struct alert_transition {
	char rule[ID_MAX];
	char check[ALERT_CHECK_MAX];
	int state;        /* ALERT_FIRING or ALERT_RESOLVED */
	int severity;     /* SEV_*; with resolved, the last severity it fired at */
	int64_t ts_ms;    /* the time of the reading (or tick) that decided it */
	double value;     /* what was measured (NAN when not applicable) */
	double threshold; /* what it was compared with (NAN when not applicable) */
	char unit[POINT_UNIT_MAX]; /* of value and threshold, may be empty */
	char message[ALERT_MSG_MAX]; /* one line for people, UTF-8 */
	/* value (threshold) was read from float32 points, or computed from nothing but
	 * float32 readings and exact constants: it holds no more than a float32's precision,
	 * so it is written as telemetry writes those points (jb_float32: 85.3, not the
	 * widened double's 85.30000305175781). False for a count, a time, a threshold from
	 * the config, or anything an integer point or a double went into. */
	bool value_f32, threshold_f32;
};

/* A register or coil write that a rule asks for (on_fire / on_resolve). */
struct alert_action {
	size_t device;
	size_t point;
	double value;
	char rule[ID_MAX];
	char check[ALERT_CHECK_MAX];
};

/* Something worth a log line that is not a transition: a day with too little data for
 * a verdict, a meter replaced, a spike rejected. */
struct alert_note {
	char rule[ID_MAX];
	char check[ALERT_CHECK_MAX];
	int64_t ts_ms;
	char message[ALERT_MSG_MAX];
	bool explain;  /* how a check decided (alert_set_explain), not a note for the log */
};

struct alert_out {
	struct alert_transition *t;
	size_t nt, capt;
	struct alert_action *a;
	size_t na, capa;
	struct alert_note *n;  /* added: for the log (sluiced) and stderr (replay) */
	size_t nn, capn;
};

void alert_out_reset(struct alert_out *o);  /* empty, keep the memory */
void alert_out_free(struct alert_out *o);

struct alert_engine;

/* The rules of cfg (which must outlive the engine). NULL with err on failure. */
struct alert_engine *alert_new(const struct config *cfg, char *err, size_t errlen);
void alert_free(struct alert_engine *e);

/*
 * One reading of a device: values[i] is point i of cfg->devices[device] (VAL_NONE for
 * a point that failed this poll; a reading where every point failed is a failed poll
 * for the comms check). Appends any transitions and actions to out. A reading stamped
 * more than ALERT_LATE_MS before the latest time the engine has seen is not evaluated
 * (a note says so): it can only come from a clock that was stepped. Returns 0, or -1
 * on allocation failure.
 */
#define ALERT_LATE_MS (5 * 60 * 1000LL)

int alert_feed(struct alert_engine *e, size_t device, int64_t ts_ms, const struct value *values,
	       size_t n, struct alert_out *out);

/* Time passes (a calendar day completes, a 'for' runs out with no new reading). Call
 * at least once a second with the real time. */
int alert_tick(struct alert_engine *e, int64_t now_ms, struct alert_out *out);

/*
 * The wall clock was stepped by delta_ms (NTP after a boot without RTC): it was wrong by
 * delta_ms before, so everything this engine learnt since it started is re-based onto
 * the corrected clock: durations in progress ('for', firing times, each series' last
 * sample, rise windows, stuck timers, pv freshness, meter marks) move by delta_ms, and so
 * do the leakage zones' 15-minute bins (by whole bins). Calendar days of 'balance' stay
 * where they are; a day or night already decided is never decided again. State restored
 * from before the engine started is left as it is: its times came from another run.
 * Readings stamped by the old clock that arrive just after the step are corrected by
 * delta_ms (with a note). Call it before feeding the first reading stamped after the
 * step. It decides nothing: the next reading or tick does.
 */
void alert_clock_step(struct alert_engine *e, int64_t delta_ms);

/*
 * Persistence: the whole state (active alerts, windows, baselines, totalizer marks) as
 * one text blob, and back. Restoring a state saved by an engine built from another
 * config keeps what still matches by rule id and check. A restored firing alert does
 * not fire again.
 */
char *alert_save(const struct alert_engine *e);
int alert_restore(struct alert_engine *e, const char *blob, char *err, size_t errlen);

/* With on, rule kinds add notes that show how they decided (the leakage night check: each
 * night's value and the detector's statistics), for `sluicectl replay --explain`. Off by
 * default: sluiced never sets it. */
void alert_set_explain(struct alert_engine *e, bool on);

/* Every check of the engine (out[0..max) of them; returns how many there are): its rule
 * and name, its state (ALERT_OK, ALERT_PENDING, ALERT_FIRING) and, firing, what it fired
 * with — for a format that declares every alert before it is used (Sparkplug's NBIRTH). */
size_t alert_checks(const struct alert_engine *e, struct alert_transition *out, size_t max);

/* Active alerts (pending and firing), for sluicectl and health. */
size_t alert_active(const struct alert_engine *e, struct alert_transition *out, size_t max);

#endif
