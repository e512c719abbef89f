/*
 * prefill: fill a sluiced outbox with a past hour (or any span) of readings without
 * waiting for it, for the `drain` workload of bench/bench.py.
 *
 *   prefill DATA_DIR DEVICES POINTS SECONDS [MAX_SIZE]
 *
 * Writes DEVICES x SECONDS readings of devices devNNNN (profile benchPOINTS: POINTS
 * float32 points flow0.., m3/h, as bench.py's profile says), timestamps one second apart
 * ending now, each with POINTS float32 values: the same rows the daemon would have
 * stored had it polled for that long with the uplink down. One transaction per second
 * of readings. Prints one JSON line: rows, last_seq, seconds taken, db_bytes.
 *
 * Only store speaks SQL: this goes through store_open/store_append like the daemon.
 * Never touches a running sluiced's data_dir (store_open's lock refuses).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "reading.h"
#include "store.h"

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

/* xorshift64*: reproducible noise, no libc state */
static double rnd01(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return (double)((rng * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

int main(int argc, char **argv)
{
	struct buffer_cfg buf = { .max_size = (uint64_t)4 << 30, .durability = DURABILITY_NORMAL,
				  .keep_sent_ms = (int64_t)7 * 86400 * 1000 };
	struct store_stats s;
	struct store_row *rows;
	struct device_cfg *devs;
	struct point_def *pts;
	struct reading *rd;
	uint32_t *ids;
	struct store *st;
	char err[512], profile[32];
	long ndev, npts, nsec;
	int64_t now, t0, start;
	uint64_t total = 0;

	if (argc < 5 || argc > 6) {
		fprintf(stderr, "usage: prefill DATA_DIR DEVICES POINTS SECONDS [MAX_SIZE]\n");
		return 2;
	}
	ndev = strtol(argv[2], NULL, 10);
	npts = strtol(argv[3], NULL, 10);
	nsec = strtol(argv[4], NULL, 10);
	if (argc == 6)
		buf.max_size = strtoull(argv[5], NULL, 10);
	if (ndev < 1 || ndev > 9999 || npts < 1 || npts > 1000 || nsec < 1) {
		fprintf(stderr, "prefill: DEVICES 1..9999, POINTS 1..1000, SECONDS >= 1\n");
		return 2;
	}
	st = store_open(argv[1], &buf, err, sizeof err);
	if (!st) {
		fprintf(stderr, "prefill: %s\n", err);
		return 1;
	}
	rows = calloc((size_t)ndev, sizeof *rows);
	devs = calloc((size_t)ndev, sizeof *devs);
	ids = calloc((size_t)ndev, sizeof *ids);
	pts = calloc((size_t)npts, sizeof *pts);
	rd = reading_new(0, (uint16_t)npts, 0);
	if (!rows || !devs || !ids || !pts || !rd) {
		fprintf(stderr, "prefill: out of memory\n");
		return 1;
	}
	snprintf(profile, sizeof profile, "bench%ld", npts);
	for (long p = 0; p < npts; p++) {
		pts[p] = (struct point_def){ .table = MB_HOLDING, .address = (uint16_t)(2 * p),
					     .type = PT_FLOAT32, .bit = -1, .scale = 1.0 };
		snprintf(pts[p].name, sizeof pts[p].name, "flow%ld", p);
		snprintf(pts[p].unit, sizeof pts[p].unit, "m3/h");
	}
	for (long d = 0; d < ndev; d++) {
		devs[d] = (struct device_cfg){ .profile = profile, .points = pts,
					       .npoints = (size_t)npts };
		snprintf(devs[d].id, sizeof devs[d].id, "dev%04ld", d);
	}
	if (store_devices(st, devs, (size_t)ndev, ids) != 0) {
		fprintf(stderr, "prefill: %s\n", store_error(st));
		return 1;
	}
	start = clock_mono_ms();
	now = clock_real_ms();
	t0 = now - nsec * 1000;
	for (long sec = 0; sec < nsec; sec++) {
		for (long d = 0; d < ndev; d++) {
			/* polls of one second spread over it, as a staggered schedule does */
			int64_t ts = t0 + sec * 1000 + d * 1000 / ndev;

			for (long p = 0; p < npts; p++)
				/* a demand-curve-like flow in m3/h, float32 like the registers */
				rd->values[p] = (struct value){ .kind = VAL_DOUBLE,
								.v.d = (double)(float)(12.0 + 28.0 * rnd01()) };
			rows[d] = (struct store_row){ .kind = ROW_TELEMETRY, .ts_ms = ts, .dev = ids[d],
						      .vals = rows[d].vals, .nvals = rows[d].nvals };
			if (store_row_set_reading(&rows[d], rd) != 0) {
				fprintf(stderr, "prefill: out of memory\n");
				return 1;
			}
		}
		if (store_append(st, rows, (size_t)ndev, err, sizeof err) != 0) {
			fprintf(stderr, "prefill: %s\n", err);
			return 1;
		}
		total += (uint64_t)ndev;
	}
	if (store_stats(st, &s) != 0) {
		fprintf(stderr, "prefill: %s\n", store_error(st));
		return 1;
	}
	printf("{\"rows\":%" PRIu64 ",\"last_seq\":%" PRIu64 ",\"unsent\":%" PRIu64
	       ",\"seconds\":%.3f,\"db_bytes\":%" PRIu64 "}\n",
	       total, s.last_seq, s.unsent, (clock_mono_ms() - start) / 1000.0, s.db_bytes);
	for (long d = 0; d < ndev; d++)
		store_row_clear(&rows[d]);
	free(rows);
	free(ids);
	store_close(st);
	free(devs);
	free(pts);
	reading_free(rd);
	return 0;
}
