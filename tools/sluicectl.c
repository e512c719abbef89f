/*
 * sluicectl: the operator's command line. Reads the daemon's database read-only
 * (through store, the one module that speaks SQL) while sluiced runs; never writes it.
 *
 *   sluicectl [-c FILE | -D DIR] [--json] status
 *   sluicectl [-c FILE | -D DIR] [--json] backlog
 *   sluicectl [-c FILE | -D DIR] [--json] [-n N] tail DEVICE
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "config.h"
#include "json.h"
#include "probe.h"
#include "replay.h"
#include "store.h"

#define DEFAULT_CONFIG "/etc/sluice/sluice.yaml"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: sluicectl [-c FILE | -D DIR] [--json] COMMAND\n"
		"\n"
		"commands:\n"
		"  status          sequence, backlog, drops and database size\n"
		"  backlog         rows waiting for the broker, and the age of the oldest\n"
		"  tail DEVICE     the device's most recent readings (-n N, default 10)\n"
		"  probe ...       read a device once, now (sluicectl probe --help)\n"
		"  replay ...      run recorded readings through the alert rules\n"
		"                  (sluicectl replay --help)\n"
		"\n"
		"options:\n"
		"  -c, --config FILE    the daemon's configuration (default " DEFAULT_CONFIG ");\n"
		"                       its gateway.data_dir holds the database\n"
		"  -D, --data-dir DIR   the data directory, instead of reading a config\n"
		"  -n N                 how many readings tail shows\n"
		"  -j, --json           machine-readable output\n");
}

static void fmt_time(int64_t ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms <= 0) {
		snprintf(buf, len, "-");
		return;
	}
	localtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

static void fmt_age(int64_t secs, char *buf, size_t len)
{
	if (secs < 120)
		snprintf(buf, len, "%llds", (long long)secs);
	else if (secs < 7200)
		snprintf(buf, len, "%lldm", (long long)(secs / 60));
	else if (secs < 2 * 86400)
		snprintf(buf, len, "%lldh%02lldm", (long long)(secs / 3600),
			 (long long)(secs % 3600 / 60));
	else
		snprintf(buf, len, "%lldd%02lldh", (long long)(secs / 86400),
			 (long long)(secs % 86400 / 3600));
}

static int cmd_status(struct store *st, int json, int backlog_only)
{
	struct store_stats s;
	struct jbuf b;
	char when[32], age[32];
	int64_t age_s;
	bool first = true;

	if (store_stats(st, &s) != 0) {
		fprintf(stderr, "sluicectl: cannot read the database\n");
		return 1;
	}
	age_s = s.oldest_unsent_ms ? (clock_real_ms() - s.oldest_unsent_ms) / 1000 : 0;
	if (json) {
		jb_init(&b);
		jb_cstr(&b, "{");
		jb_key(&b, "backlog_rows", &first);
		jb_u64(&b, s.unsent);
		jb_key(&b, "backlog_age_s", &first);
		jb_i64(&b, age_s);
		jb_key(&b, "oldest_unsent_ts", &first);
		jb_i64(&b, s.oldest_unsent_ms);
		if (!backlog_only) {
			jb_key(&b, "last_seq", &first);
			jb_u64(&b, s.last_seq);
			jb_key(&b, "rows", &first);
			jb_u64(&b, s.rows);
			jb_key(&b, "dropped", &first);
			jb_u64(&b, s.dropped);
			jb_key(&b, "db_bytes", &first);
			jb_u64(&b, s.db_bytes);
		}
		jb_cstr(&b, "}\n");
		fputs(jb_cstr_get(&b), stdout);
		jb_free(&b);
		return 0;
	}
	fmt_time(s.oldest_unsent_ms, when, sizeof when);
	fmt_age(age_s, age, sizeof age);
	printf("backlog      %" PRIu64 " rows", s.unsent);
	if (s.unsent)
		printf(", oldest %s (%s ago)", when, age);
	printf("\n");
	if (backlog_only)
		return 0;
	printf("last seq     %" PRIu64 "\n", s.last_seq);
	printf("rows kept    %" PRIu64 "\n", s.rows);
	printf("dropped      %" PRIu64 "\n", s.dropped);
	if (s.db_bytes < 10 * 1024 * 1024)
		printf("database     %.0f KiB\n", (double)s.db_bytes / 1024.0);
	else
		printf("database     %.1f MiB\n", (double)s.db_bytes / (1024.0 * 1024.0));
	return 0;
}

static int cmd_tail(struct store *st, const char *device, long n, int json)
{
	char topic[ID_MAX + 16];
	struct store_row *rows;
	long got;

	if (!config_id_valid(device)) {
		fprintf(stderr, "sluicectl: '%s' is not a device id\n", device);
		return 2;
	}
	snprintf(topic, sizeof topic, "telemetry/%s", device);
	rows = calloc((size_t)n, sizeof *rows);
	if (!rows)
		return 1;
	got = store_recent(st, topic, (size_t)n, rows);
	if (got < 0) {
		fprintf(stderr, "sluicectl: cannot read the database\n");
		free(rows);
		return 1;
	}
	if (got == 0 && !json)
		printf("no readings of %s stored\n", device);
	/* oldest first, like tail(1) */
	for (long i = got - 1; i >= 0; i--) {
		if (json) {
			printf("{\"seq\":%" PRIu64 ",%s}\n", rows[i].seq, rows[i].body);
		} else {
			char when[32];
			fmt_time(rows[i].ts_ms, when, sizeof when);
			printf("%s  seq %-8" PRIu64 " %s\n", when, rows[i].seq, rows[i].body);
		}
		store_row_clear(&rows[i]);
	}
	free(rows);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "data-dir", required_argument, NULL, 'D' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cfgpath = DEFAULT_CONFIG, *datadir = NULL, *cmd;
	struct config *cfg = NULL;
	struct store *st;
	char err[512];
	long n = 10;
	int json = 0, ch, rc;

	/* commands with their own options */
	if (argc > 1 && strcmp(argv[1], "replay") == 0)
		return replay_main(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "probe") == 0)
		return probe_main(argc - 1, argv + 1);

	while ((ch = getopt_long(argc, argv, "c:D:jn:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			cfgpath = optarg;
			break;
		case 'D':
			datadir = optarg;
			break;
		case 'j':
			json = 1;
			break;
		case 'n':
			n = strtol(optarg, NULL, 10);
			if (n < 1 || n > 100000) {
				fprintf(stderr, "sluicectl: -n takes 1 to 100000\n");
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind];
	if (!datadir) {
		struct config_diag diag = { 0 };
		struct config_opts copts = { .skip_secret_files = true };

		cfg = config_load(cfgpath, &copts, &diag);
		if (!cfg) {
			for (size_t i = 0; i < diag.n; i++)
				fprintf(stderr, "%s\n", diag.msgs[i]);
			fprintf(stderr, "sluicectl: cannot use %s (give the data directory with -D)\n",
				cfgpath);
			config_diag_free(&diag);
			return 1;
		}
		config_diag_free(&diag);
		datadir = cfg->gateway.data_dir;
	}
	st = store_open_ro(datadir, err, sizeof err);
	if (!st) {
		fprintf(stderr, "sluicectl: %s\n", err);
		config_free(cfg);
		return 1;
	}
	if (strcmp(cmd, "status") == 0 && optind + 1 == argc)
		rc = cmd_status(st, json, 0);
	else if (strcmp(cmd, "backlog") == 0 && optind + 1 == argc)
		rc = cmd_status(st, json, 1);
	else if (strcmp(cmd, "tail") == 0 && optind + 2 == argc)
		rc = cmd_tail(st, argv[optind + 1], n, json);
	else {
		usage(stderr);
		rc = 2;
	}
	store_close(st);
	config_free(cfg);
	return rc;
}
