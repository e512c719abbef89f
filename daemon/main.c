/*
 * sluiced: the gateway daemon's command line. Runs in the foreground (no fork, no
 * PID file: systemd supervises it), logs to stderr with priority prefixes.
 *
 *   sluiced [-c FILE]           run with FILE (default /etc/sluice/sluice.yaml)
 *   sluiced --check-config FILE validate FILE like the daemon would, print every
 *                               mistake as FILE:LINE:COL: message
 *
 * Exit status: 0 clean stop or a good config, 78 (EX_CONFIG) a bad config, so the
 * unit's RestartPreventExitStatus=78 does not loop on it; 1 any other failure.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "core.h"
#include "log.h"
#include "web.h"

#define EXIT_CONFIG 78
#define DEFAULT_CONFIG "/etc/sluice/sluice.yaml"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: sluiced [-c FILE] [-d]\n"
		"       sluiced --check-config FILE\n"
		"\n"
		"  -c, --config FILE        the configuration (default " DEFAULT_CONFIG ")\n"
		"  -t, --check-config FILE  check FILE and exit: every error as FILE:LINE:COL,\n"
		"                           status 0 when it is good, 78 when it is not\n"
		"  -d, --debug              log at debug level, whatever the config says\n"
		"  -V, --version            print the version\n"
		"  -h, --help               this text\n");
}

static void print_diag(const struct config_diag *d)
{
	for (size_t i = 0; i < d->n; i++)
		fprintf(stderr, "%s\n", d->msgs[i]);
}

static int check_config(const char *path)
{
	struct config_diag diag = { 0 };
	struct config *cfg = config_load(path, NULL, &diag);
	char sum[160], err[512];

	print_diag(&diag);
	/* what the page's files hold: the loader only proves they can be opened */
	if (cfg && web_check(&cfg->web, err, sizeof err) != 0) {
		fprintf(stderr, "%s: %s\n", path, err);
		diag.nerrors++;
		config_free(cfg);
		cfg = NULL;
	}
	if (!cfg) {
		fprintf(stderr, "%s: %zu error%s, %zu warning%s: not valid\n", path, diag.nerrors,
			diag.nerrors == 1 ? "" : "s", diag.nwarnings, diag.nwarnings == 1 ? "" : "s");
		config_diag_free(&diag);
		return EXIT_CONFIG;
	}
	config_summary(cfg, sum, sizeof sum);
	printf("%s: OK: %s", path, sum);
	if (diag.nwarnings)
		printf(" (%zu warning%s)", diag.nwarnings, diag.nwarnings == 1 ? "" : "s");
	printf("\n");
	config_diag_free(&diag);
	config_free(cfg);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", required_argument, NULL, 't' },
		{ "debug", no_argument, NULL, 'd' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = DEFAULT_CONFIG, *check = NULL;
	struct config_diag diag = { 0 };
	struct config *cfg;
	char err[512];
	int debug = 0, ch;

	while ((ch = getopt_long(argc, argv, "c:t:dVh", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 't':
			check = optarg;
			break;
		case 'd':
			debug = 1;
			break;
		case 'V':
			printf("sluiced %s\n", SLUICE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (check)
		return check_config(check);

	log_init(LOG_LVL_INFO, "sluiced");
	cfg = config_load(path, NULL, &diag);
	if (!cfg) {
		/* the same lines --check-config prints, as errors in the journal */
		for (size_t i = 0; i < diag.n; i++)
			if (diag.is_error[i])
				log_errx("%s", diag.msgs[i]);
			else
				log_warnx("%s", diag.msgs[i]);
		log_errx("%s: configuration not valid, not starting", path);
		config_diag_free(&diag);
		return EXIT_CONFIG;
	}
	for (size_t i = 0; i < diag.n; i++)
		log_warnx("%s", diag.msgs[i]);
	config_diag_free(&diag);
	if (web_check(&cfg->web, err, sizeof err) != 0) {
		log_errx("%s: %s", path, err);
		log_errx("%s: configuration not valid, not starting", path);
		config_free(cfg);
		return EXIT_CONFIG;
	}
	log_set_level(debug ? LOG_LVL_DEBUG : cfg->gateway.log_level);
	/* the alert engine's local time (night windows, calendar days) is the gateway's */
	setenv("TZ", cfg->gateway.timezone, 1);
	tzset();
	return core_run(cfg);
}
