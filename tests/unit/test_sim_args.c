/* sim_args: sluice-sim's command line read into struct sim_args; every mistake exits 2
 * with a message that names the option and what to write; whatever the outcome,
 * sim_args_free leaves nothing behind (the sanitizer and valgrind runs check); --help
 * and the manual page name every option the parser takes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim_args.h"
#include "sim_model.h"

/* Parse "sluice-sim ARGS..." into a; what it printed is in out and err. */
#define PARSE(a, ...) parse(a, (char *[]){ "sluice-sim", __VA_ARGS__, NULL })
#define PARSE_NONE(a) parse(a, (char *[]){ "sluice-sim", NULL })

static char out[16384], err[4096];

/* fd's output while fn runs, into buf */
static void capture_start(int fd, FILE **tmp, int *saved)
{
	fflush(NULL);
	*tmp = tmpfile();
	assert_non_null(*tmp);
	*saved = dup(fd);
	assert_true(*saved >= 0);
	assert_true(dup2(fileno(*tmp), fd) >= 0);
}

static void capture_end(int fd, FILE *tmp, int saved, char *buf, size_t cap)
{
	fflush(NULL);
	assert_true(dup2(saved, fd) >= 0);
	close(saved);
	rewind(tmp);
	size_t n = fread(buf, 1, cap - 1, tmp);
	buf[n] = '\0';
	fclose(tmp);
}

static int parse(struct sim_args *a, char **argv)
{
	FILE *to, *te;
	int so, se, argc = 0;

	while (argv[argc])
		argc++;
	capture_start(1, &to, &so);
	capture_start(2, &te, &se);
	int rc = sim_args_parse(argc, argv, a);
	capture_end(2, te, se, err, sizeof err);
	capture_end(1, to, so, out, sizeof out);
	return rc;
}

/* A usage error: status 2, one message naming what is wrong, and the pointer to --help. */
static void check_refused(struct sim_args *a, int rc, const char *words)
{
	if (rc != SIM_EXIT_USAGE || !strstr(err, words) || strncmp(err, "sluice-sim: ", 12) != 0 ||
	    !strstr(err, "(sluice-sim --help explains the options)\n"))
		fail_msg("status %d, stderr:\n%s\n(wanted status 2 and '%s')", rc, err, words);
	sim_args_free(a);
}

static void test_lines_and_devices(void **state)
{
	(void)state;
	struct sim_args a;
	int rc = PARSE(&a, "-l", "127.0.0.1:1502", "-d", "1:flowmeter-generic",
		       "--device", "2:level-radar:rain",
		       "--rtu", "/dev/ttyUSB0", "-d", "3:flowmeter-generic",
		       "--rtu-tcp", "[::1]:1503", "-d", "5:sunspec",
		       "--baud", "19200", "--parity", "even", "--pace", "-p", "config/devices",
		       "-s", "leak", "-t", "144", "--seed", "0x10", "--start", "06:30",
		       "--tz", "UTC", "--trace", "/tmp/trace.jsonl", "-v");
	assert_int_equal(rc, -1);
	assert_string_equal(err, "");
	assert_null(a.config);
	assert_int_equal(a.nlines, 3);

	assert_int_equal(a.lines[0].kind, SIM_LINE_TCP);
	assert_string_equal(a.lines[0].spec, "127.0.0.1:1502");
	assert_string_equal(a.lines[0].host, "127.0.0.1");
	assert_string_equal(a.lines[0].port, "1502");
	assert_int_equal(a.lines[0].ndevs, 2);
	assert_int_equal(a.lines[0].devs[0].unit, 1);
	assert_string_equal(a.lines[0].devs[0].profile, "flowmeter-generic");
	assert_int_equal(a.lines[0].devs[0].scenario, -1);
	assert_string_equal(a.lines[0].devs[1].profile, "level-radar");
	assert_int_equal(a.lines[0].devs[1].scenario, SIM_RAIN);
	assert_string_equal(a.lines[0].devs[1].spec, "2:level-radar:rain");

	assert_int_equal(a.lines[1].kind, SIM_LINE_RTU_TTY);
	assert_string_equal(a.lines[1].host, "/dev/ttyUSB0");
	assert_string_equal(a.lines[1].port, "");
	assert_int_equal(a.lines[1].ndevs, 1);
	assert_int_equal(a.lines[1].devs[0].unit, 3);

	assert_int_equal(a.lines[2].kind, SIM_LINE_RTU_TCP);
	assert_string_equal(a.lines[2].host, "::1");
	assert_string_equal(a.lines[2].port, "1503");
	assert_string_equal(a.lines[2].devs[0].profile, "sunspec");

	assert_int_equal(a.baud, 19200);
	assert_int_equal(a.parity, 'E');
	assert_true(a.pace);
	assert_string_equal(a.profile_path, "config/devices");
	assert_int_equal(a.scenario, SIM_LEAK);
	assert_true(a.scale == 144.0);
	assert_true(a.have_seed);
	assert_int_equal(a.seed, 16);
	assert_int_equal(a.start_s, 6 * 3600 + 30 * 60);
	assert_string_equal(a.tz, "UTC");
	assert_string_equal(a.trace, "/tmp/trace.jsonl");
	assert_true(a.verbose);
	assert_int_equal(a.nfaults, 0);
	sim_args_free(&a);

	assert_string_equal(sim_args_line_option(SIM_LINE_TCP), "--listen");
	assert_string_equal(sim_args_line_option(SIM_LINE_RTU_TTY), "--rtu");
	assert_string_equal(sim_args_line_option(SIM_LINE_RTU_TCP), "--rtu-tcp");
}

static void test_config_defaults_and_scenarios(void **state)
{
	(void)state;
	struct sim_args a;
	int rc = PARSE(&a, "--config", "site.yaml", "-s", "dma3-inlet=leak",
		       "--scenario", "sign=dead", "--parity", "odd");
	assert_int_equal(rc, -1);
	assert_string_equal(a.config, "site.yaml");
	assert_int_equal(a.nlines, 0);
	assert_int_equal(a.nscens, 2);
	assert_string_equal(a.scens[0].device, "dma3-inlet");
	assert_int_equal(a.scens[0].scenario, SIM_LEAK);
	assert_string_equal(a.scens[1].device, "sign");
	assert_int_equal(a.scens[1].scenario, SIM_DEAD);
	assert_int_equal(a.parity, 'O');
	/* what is not given */
	assert_int_equal(a.scenario, SIM_STEADY);
	assert_true(a.scale == 1.0);
	assert_int_equal(a.start_s, -1);
	assert_false(a.have_seed);
	assert_int_equal(a.baud, 0);
	assert_false(a.pace || a.verbose);
	assert_null(a.tz);
	assert_null(a.trace);
	assert_null(a.profile_path);
	sim_args_free(&a);

	/* read a second time, from the start: getopt's state does not carry over */
	rc = PARSE(&a, "-c", "other.yaml", "--parity", "none");
	assert_int_equal(rc, -1);
	assert_string_equal(a.config, "other.yaml");
	assert_int_equal(a.parity, 'N');
	assert_int_equal(a.nscens, 0);
	sim_args_free(&a);
}

static void test_bad_lines_and_devices(void **state)
{
	(void)state;
	struct sim_args a;

	check_refused(&a, PARSE(&a, "-l", "127.0.0.1", "-d", "1:x"),
		      "--listen 127.0.0.1: write HOST:PORT, e.g. 127.0.0.1:1502 or [::1]:1502");
	check_refused(&a, PARSE(&a, "-l", "::1:1502", "-d", "1:x"),
		      "(an IPv6 address goes in brackets: [::1]:1502)");
	check_refused(&a, PARSE(&a, "--rtu-tcp", "127.0.0.1:70000", "-d", "1:x"),
		      "--rtu-tcp 127.0.0.1:70000: write HOST:PORT");
	check_refused(&a, PARSE(&a, "-l", "[::1]1502", "-d", "1:x"), "write HOST:PORT");
	check_refused(&a, PARSE(&a, "-l", ":1502", "-d", "1:x"), "write HOST:PORT");
	check_refused(&a, PARSE(&a, "-d", "1:flowmeter-generic"),
		      "--device 1:flowmeter-generic: put a --listen HOST:PORT");
	check_refused(&a, PARSE(&a, "-l", "h:1", "-d", "1:x", "-d", "1:y"),
		      "--device 1:y: unit 1 is already served on h:1");
	check_refused(&a, PARSE(&a, "-l", "h:1", "-d", "256:x"), "a number 0..255");
	check_refused(&a, PARSE(&a, "-l", "h:1", "-d", "x"), "write UNIT:PROFILE[:SCENARIO]");
	check_refused(&a, PARSE(&a, "-l", "h:1", "-d", "1:"), "no profile name after the unit id");
	check_refused(&a, PARSE(&a, "-l", "h:1", "-d", "1:x:flood"),
		      "unknown scenario 'flood' (known: steady, leak, burst, rain, fault, dead)");
	check_refused(&a, PARSE(&a, "-l", "h:1"), "--listen h:1 has no --device after it");
	check_refused(&a, PARSE(&a, "-l", "h:1", "-d", "1:x", "--rtu", "/dev/x"),
		      "--rtu /dev/x has no --device after it");
	check_refused(&a, PARSE(&a, "-c", "a.yaml", "-l", "h:1", "-d", "1:x"),
		      "--config and --listen do not mix");
	check_refused(&a, PARSE_NONE(&a), "nothing to serve: give --config SITE.yaml");
	check_refused(&a, PARSE(&a, "-l", "h:1", "-d", "1:x", "-s", "a=leak"),
		      "--scenario DEVICE=NAME names a device of a --config");
}

static void test_bad_settings(void **state)
{
	(void)state;
	struct sim_args a;

	check_refused(&a, PARSE(&a, "-c", "a.yaml", "-s", "bogus"), "--scenario bogus: unknown");
	check_refused(&a, PARSE(&a, "-c", "a.yaml", "-s", "dev=bogus"), "--scenario dev=bogus");
	check_refused(&a, PARSE(&a, "-c", "a.yaml", "--baud", "299"), "--baud 299: a line speed");
	check_refused(&a, PARSE(&a, "-c", "a.yaml", "--baud", "921601"), "a line speed");
	check_refused(&a, PARSE(&a, "-c", "a.yaml", "--baud", "96k"), "a line speed");
	check_refused(&a, PARSE(&a, "-c", "a.yaml", "--parity", "mark"), "none, even or odd");
	check_refused(&a, PARSE(&a, "-c", "a.yaml", "-t", "0"), "a number above 0");
	check_refused(&a, PARSE(&a, "-c", "a.yaml", "-t", "1000001"), "at most 1000000");
	check_refused(&a, PARSE(&a, "-c", "a.yaml", "-t", "fast"), "--time-scale fast");
	check_refused(&a, PARSE(&a, "-c", "a.yaml", "--seed", "-1"), "a non-negative whole number");
	check_refused(&a, PARSE(&a, "-c", "a.yaml", "--seed", "7x"), "--seed 7x");
	check_refused(&a, PARSE(&a, "-c", "a.yaml", "--start", "25:00"), "HH:MM or HH:MM:SS");
	check_refused(&a, PARSE(&a, "-c", "a.yaml", "--tz", "Nowhere/Atlantis"),
		      "--tz Nowhere/Atlantis: unknown time zone");
	check_refused(&a, PARSE(&a, "-c", "a.yaml", "--tz", "../etc/passwd"), "unknown time zone");
	check_refused(&a, PARSE(&a, "-c", "a.yaml", "--bogus"), "unknown option --bogus");
	check_refused(&a, PARSE(&a, "-c"), "-c needs a value");
	check_refused(&a, PARSE(&a, "-c", "a.yaml", "--slow"), "--slow needs a value");
	check_refused(&a, PARSE(&a, "-c", "a.yaml", "extra"), "unexpected argument 'extra'");

	/* what the zone check takes: the database's names, UTC, POSIX strings */
	assert_true(sim_args_zone_known("UTC"));
	assert_true(sim_args_zone_known(":UTC"));
	assert_true(sim_args_zone_known("CST-8"));
	assert_true(sim_args_zone_known("Asia/Shanghai"));
	assert_false(sim_args_zone_known(""));
	assert_false(sim_args_zone_known("Asia/Atlantis"));
	assert_false(sim_args_zone_known("Asia"));   /* a directory of the database */
}

static void test_faults(void **state)
{
	(void)state;
	struct sim_args a;
	int rc = PARSE(&a, "-l", "127.0.0.1:0", "-d", "1:x", "--slow", "4:1500",
		       "--exception", "1:holding:8-9", "--exception", "dev:coil:5:40",
		       "--bad-crc", "2:100", "--wrong-unit", "3:0", "--garbage", "300:30",
		       "--short", "0:100", "--silent", "3:50", "--exception", "7:input:0-65535:0");
	assert_int_equal(rc, -1);
	assert_int_equal(a.nfaults, 9);
	const struct sim_args_fault *f = a.faults;

	assert_int_equal(f[0].fault.kind, SIM_FAULT_SLOW);
	assert_int_equal(f[0].fault.value, 1500);
	assert_string_equal(f[0].opt, "--slow");
	assert_string_equal(f[0].spec, "4:1500");
	assert_string_equal(f[0].target, "4");
	assert_int_equal(f[0].unit, 4);

	assert_int_equal(f[1].fault.kind, SIM_FAULT_EXCEPTION);
	assert_int_equal(f[1].fault.range.table, MB_HOLDING);
	assert_int_equal(f[1].fault.range.lo, 8);
	assert_int_equal(f[1].fault.range.hi, 9);
	assert_int_equal(f[1].fault.range.pct, 100);

	/* a device id (with --config, the sim finds it), one address, a share */
	assert_string_equal(f[2].target, "dev");
	assert_int_equal(f[2].unit, -1);
	assert_int_equal(f[2].fault.range.table, MB_COIL);
	assert_int_equal(f[2].fault.range.lo, 5);
	assert_int_equal(f[2].fault.range.hi, 5);
	assert_int_equal(f[2].fault.range.pct, 40);

	assert_int_equal(f[3].fault.kind, SIM_FAULT_BAD_CRC);
	assert_int_equal(f[3].fault.value, 100);
	assert_string_equal(f[3].opt, "--bad-crc");
	assert_int_equal(f[4].fault.kind, SIM_FAULT_WRONG_UNIT);
	assert_int_equal(f[4].fault.value, 0);
	assert_int_equal(f[5].fault.kind, SIM_FAULT_GARBAGE);
	assert_int_equal(f[5].unit, -1); /* 300 is no unit id: a device's name, or nothing */
	assert_string_equal(f[5].target, "300");
	assert_int_equal(f[6].fault.kind, SIM_FAULT_SHORT);
	assert_int_equal(f[6].unit, 0);
	assert_int_equal(f[7].fault.kind, SIM_FAULT_SILENT);
	assert_int_equal(f[7].fault.value, 50);
	assert_int_equal(f[8].fault.range.table, MB_INPUT);
	assert_int_equal(f[8].fault.range.hi, 65535);
	assert_int_equal(f[8].fault.range.pct, 0);
	sim_args_free(&a);
}

static void test_bad_faults(void **state)
{
	(void)state;
	struct sim_args a;
#define BAD_FAULT(opt, arg, words) \
	check_refused(&a, PARSE(&a, "-c", "a.yaml", opt, arg), opt " " arg ": " words)

	BAD_FAULT("--slow", "1", "write UNIT:MS, e.g. 1:800");
	BAD_FAULT("--slow", ":800", "write UNIT:MS");
	BAD_FAULT("--slow", "1:0", "a delay of 1..600000 ms");
	BAD_FAULT("--slow", "1:600001", "a delay of 1..600000 ms");
	BAD_FAULT("--slow", "1:+5", "a delay of 1..600000 ms");
	BAD_FAULT("--wrong-unit", "1:150", "a percentage 0..100");
	BAD_FAULT("--garbage", "1:101", "a percentage 0..100");
	BAD_FAULT("--bad-crc", "1:5%", "a percentage 0..100");
	BAD_FAULT("--short", "1", "write UNIT:PERCENT, e.g. 1:50");
	BAD_FAULT("--silent", "1:", "a percentage 0..100");
	BAD_FAULT("--exception", "1:holding", "write UNIT:TABLE:ADDR[-ADDR][:PERCENT]");
	BAD_FAULT("--exception", "1:register:4", "the table is holding, input, coil or discrete");
	BAD_FAULT("--exception", "1:holding:9-4",
		  "the addresses are 0..65535 (0-based, as on the wire), the first not above the last");
	BAD_FAULT("--exception", "1:holding:70000", "the addresses are 0..65535");
	BAD_FAULT("--exception", "1:holding:4-9:150", "after the addresses, a percentage 0..100");
	BAD_FAULT("--exception", "1:holding:4:-5", "after the addresses, a percentage 0..100");
#undef BAD_FAULT
	/* a fault after good ones: those are freed too */
	check_refused(&a, PARSE(&a, "-c", "a.yaml", "--slow", "1:5", "--exception", "1:coil:1",
				"--short", "2:x"), "--short 2:x");
}

static const char *const options[] = {
	"config", "listen", "device", "profile-path", "scenario", "time-scale", "tz", "seed",
	"trace", "start", "rtu", "rtu-tcp", "baud", "parity", "pace", "slow", "exception",
	"bad-crc", "wrong-unit", "garbage", "short", "silent", "verbose", "help", "version",
};

static void test_help_and_manual_name_every_option(void **state)
{
	(void)state;
	struct sim_args a;
	static char help[sizeof out], man[65536];
	char want[64], esc[128];

	assert_int_equal(PARSE(&a, "-c", "a.yaml", "--help", "--bogus"), 0);
	sim_args_free(&a);
	assert_string_equal(err, "");
	assert_true(strncmp(out, "usage: sluice-sim --config SITE.yaml", 36) == 0);
	memcpy(help, out, sizeof help);
	assert_int_equal(PARSE(&a, "-V"), 0);
	sim_args_free(&a);
	assert_true(strncmp(out, "sluice-sim ", 11) == 0);

	FILE *f = fopen("man/sluice-sim.1", "r");
	assert_non_null(f);
	size_t n = fread(man, 1, sizeof man - 1, f);
	man[n] = '\0';
	fclose(f);
	for (size_t i = 0; i < sizeof options / sizeof options[0]; i++) {
		snprintf(want, sizeof want, "--%s", options[i]);
		/* an option the parser takes, with a value where it needs one */
		bool flag = !strcmp(options[i], "pace") || !strcmp(options[i], "verbose") ||
			    !strcmp(options[i], "help") || !strcmp(options[i], "version");
		int rc = PARSE(&a, "-c", "a.yaml", want);
		sim_args_free(&a);
		if (flag ? rc > 0 || err[0] : rc != SIM_EXIT_USAGE || !strstr(err, "needs a value"))
			fail_msg("%s: status %d: %s", want, rc, err);
		if (!strstr(help, want))
			fail_msg("--help does not name %s", want);
		/* the manual escapes its hyphens: \-\-rtu\-tcp */
		size_t k = 0;
		for (const char *p = want; *p && k < sizeof esc - 3; p++) {
			if (*p == '-')
				esc[k++] = '\\';
			esc[k++] = *p;
		}
		esc[k] = '\0';
		if (!strstr(man, esc))
			fail_msg("man/sluice-sim.1 does not name %s", want);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines_and_devices),
		cmocka_unit_test(test_config_defaults_and_scenarios),
		cmocka_unit_test(test_bad_lines_and_devices),
		cmocka_unit_test(test_bad_settings),
		cmocka_unit_test(test_faults),
		cmocka_unit_test(test_bad_faults),
		cmocka_unit_test(test_help_and_manual_name_every_option),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
