/*
 * replay_core: recorded readings from a CSV through the alert engine, with their own
 * timestamps — the engine of `sluicectl replay` (tools/replay.c is its command line),
 * here so the tests can run it. Reads one file; writes only to the FILEs it is given.
 */
#ifndef SLUICE_REPLAY_CORE_H
#define SLUICE_REPLAY_CORE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "alert.h"
#include "config.h"

struct replay_opts {
	const char *csv;           /* path; "-" for stdin */
	const char *const *maps;   /* "COLUMN=device.point", nmaps of them */
	size_t nmaps;
	bool has_from, has_to;
	int64_t from_ms, to_ms;    /* rows outside [from, to) are skipped */
	FILE *out;                 /* JSON lines of transitions; may be NULL */
	FILE *log;                 /* bad rows, notes; may be NULL */
	FILE *explain;             /* how checks decided (alert_set_explain); NULL: not asked */
	unsigned max_bad_logged;   /* bad rows reported one by one (default 20 when 0) */
	/* called for each transition and note, when not NULL */
	void (*on_transition)(void *ctx, const struct alert_transition *t);
	void (*on_note)(void *ctx, const struct alert_note *n);
	void *ctx;
};

struct replay_stats {
	uint64_t rows, bad_rows, skipped_rows, transitions, firing, notes;
	int64_t first_ms, last_ms;
	size_t columns_used, columns_ignored;
	char ignored[256];  /* the ignored columns' names, ", "-separated ("..." for more) */
};

/* 0, or -1 with err (a problem with the file, the header or a --map: nothing replayed). */
int replay_run(const struct config *cfg, const struct replay_opts *o, struct replay_stats *st,
	       char *err, size_t errlen);

/*
 * A timestamp: ISO 8601 date and time with 'T' or a space ("2018-01-01 00:05:00",
 * "2023-10-30T12:00:39.000", seconds optional), local time (the process's TZ) unless it
 * ends in Z or an offset (+08:00, +0800, +08); or epoch seconds (digits, optional
 * fraction). 0 or -1.
 */
int replay_parse_time(const char *s, int64_t *ms);

/* One transition as a JSON object (no newline), appended to b. */
struct jbuf;
void replay_json(struct jbuf *b, const struct alert_transition *t);

#endif
