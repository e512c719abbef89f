/*
 * replay: the command line of `sluicectl replay` — options, config, TZ — around
 * replay_core, which does the work. Transitions go to stdout as JSON lines; bad rows,
 * notes and a summary go to stderr.
 *
 *   sluicectl replay --config FILE --csv DATA.csv [--map COLUMN=device.point]...
 *                    [--from T] [--to T] [--quiet] [--explain]
 */
#include "replay.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "replay_core.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: sluicectl replay --config FILE --csv DATA.csv [--map COLUMN=device.point]...\n"
		"                        [--from TIME] [--to TIME] [--quiet] [--explain]\n"
		"\n"
		"Runs recorded readings through the config's alert rules with their own\n"
		"timestamps; prints each transition as a JSON line on stdout, a summary on stderr.\n"
		"The CSV's header names the timestamp column (timestamp, time, or the first) and\n"
		"device.point columns; --map names the device.point of any other column.\n"
		"Timestamps: ISO 8601 ('T' or a space; local to gateway.timezone unless they carry\n"
		"Z or an offset) or epoch seconds; --from and --to also take a date alone (its\n"
		"midnight). A column that names no point is said on stderr, with the name that\n"
		"was probably meant. --quiet: no notes on stderr. --explain: how each check\n"
		"decided, on stderr (a leakage zone's night values and its detector's\n"
		"statistics, night by night), and the writes the rules would have made\n"
		"(on_fire, on_resolve), with or without --quiet.\n");
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* --from and --to: a time as in the CSV, or a date alone for its local midnight */
static int bound_time(const char *s, int64_t *ms)
{
	char buf[32];

	if (replay_parse_time(s, ms) == 0)
		return 0;
	if (strlen(s) != 10)
		return -1;
	snprintf(buf, sizeof buf, "%s 00:00", s);
	return replay_parse_time(buf, ms);
}

int replay_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "csv", required_argument, NULL, 'f' },
		{ "map", required_argument, NULL, 'm' },
		{ "from", required_argument, NULL, 'F' },
		{ "to", required_argument, NULL, 'T' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "explain", no_argument, NULL, 'x' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cfgpath = NULL, *from = NULL, *to = NULL;
	struct replay_opts ro = { .out = stdout, .log = stderr };
	const char **maps = NULL;
	struct config_opts copts = { .skip_secret_files = true };
	struct config_diag diag = { 0 };
	struct replay_stats st;
	struct config *cfg;
	char err[1024];
	double t0;
	int ch, rc = 1;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "c:f:m:F:T:qxh", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			cfgpath = optarg;
			break;
		case 'f':
			ro.csv = optarg;
			break;
		case 'm': {
			const char **nm = realloc(maps, (ro.nmaps + 1) * sizeof *nm);
			if (!nm) {
				free(maps);
				fprintf(stderr, "sluicectl replay: out of memory\n");
				return 1;
			}
			maps = nm;
			maps[ro.nmaps++] = optarg;
			break;
		}
		case 'F':
			from = optarg;
			break;
		case 'T':
			to = optarg;
			break;
		case 'q':
			ro.log = NULL;
			break;
		case 'x':
			ro.explain = stderr;
			break;
		case 'h':
			usage(stdout);
			free(maps);
			return 0;
		default:
			usage(stderr);
			free(maps);
			return 2;
		}
	}
	ro.maps = maps;
	if (!cfgpath || !ro.csv || optind != argc) {
		usage(stderr);
		free(maps);
		return 2;
	}
	if (!(cfg = config_load(cfgpath, &copts, &diag))) {
		for (size_t i = 0; i < diag.n; i++)
			fprintf(stderr, "%s\n", diag.msgs[i]);
		config_diag_free(&diag);
		free(maps);
		return 1;
	}
	config_diag_free(&diag);
	/* local days, nights and timestamps without an offset are the gateway's */
	setenv("TZ", cfg->gateway.timezone ? cfg->gateway.timezone : "UTC", 1);
	tzset();
	if (from && bound_time(from, &ro.from_ms) < 0) {
		fprintf(stderr, "sluicectl replay: --from '%s' is not a time\n", from);
		goto out;
	}
	if (to && bound_time(to, &ro.to_ms) < 0) {
		fprintf(stderr, "sluicectl replay: --to '%s' is not a time\n", to);
		goto out;
	}
	ro.has_from = from != NULL;
	ro.has_to = to != NULL;
	t0 = now_s();
	if (replay_run(cfg, &ro, &st, err, sizeof err) < 0) {
		fprintf(stderr, "sluicectl replay: %s\n", err);
		goto out;
	}
	fflush(stdout);
	fprintf(stderr, "replayed %" PRIu64 " rows (%" PRIu64 " bad and skipped, %" PRIu64
		" outside --from/--to) of %zu column%s (%zu ignored%s%s) in %.2f s: %" PRIu64
		" transitions, %" PRIu64 " firing, %" PRIu64 " notes\n",
		st.rows, st.bad_rows, st.skipped_rows, st.columns_used,
		st.columns_used == 1 ? "" : "s", st.columns_ignored, st.columns_ignored ? ": " : "",
		st.ignored, now_s() - t0, st.transitions, st.firing, st.notes);
	rc = 0;
out:
	config_free(cfg);
	free(maps);
	return rc;
}
