/*
 * sim_args: sluice-sim's command line and its --help (sim_args.h says what it owns).
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "sim_args.h"
#include "sim_model.h"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "dev"
#endif

bool sim_args_zone_known(const char *z)
{
	char path[4096];
	struct stat st;
	const char *dir = getenv("TZDIR");

	if (!*z)
		return false;
	if (*z == ':')
		z++;
	if (strcmp(z, "UTC") == 0 || strcmp(z, "GMT") == 0)
		return true;
	if (strchr(z, '<') || strpbrk(z, "0123456789"))
		return true; /* a POSIX TZ string such as CST-8: glibc parses it */
	if (strstr(z, ".."))
		return false;
	snprintf(path, sizeof path, "%s/%s", z[0] == '/' ? "" : dir ? dir : "/usr/share/zoneinfo", z);
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

const char *sim_args_line_option(int kind)
{
	return kind == SIM_LINE_TCP ? "--listen" : kind == SIM_LINE_RTU_TTY ? "--rtu" : "--rtu-tcp";
}

void sim_args_usage(FILE *f)
{
	fprintf(f,
"usage: sluice-sim --config SITE.yaml [options]\n"
"       sluice-sim --listen HOST:PORT --device UNIT:PROFILE[:SCENARIO] ... [options]\n"
"       sluice-sim --rtu TTY | --rtu-tcp HOST:PORT --device UNIT:PROFILE ... [options]\n"
"\n"
"Simulates Modbus TCP and RTU devices (flow meters, level gauges, inverters) so a config\n"
"can be tried before going to site. Values follow simulated time: water demand over the\n"
"day, totalizers that count it, road-surface water levels, PV output between 06:00 and\n"
"18:00.\n"
"Prints 'sluice-sim: ready' once every address is listening; logs go to stderr.\n"
"Stop it with Ctrl-C (or SIGTERM).\n"
"\n"
"What to serve:\n"
"  -c, --config FILE        every device on every bus of a sluiced config, each bus at its\n"
"                           own host:port (rtu: its device path; with a pty pair, give\n"
"                           the sim a copy naming the other end), with the device's\n"
"                           unit_id and points (profile or inline). Use a copy with\n"
"                           127.0.0.1 addresses and free ports: a site's real addresses\n"
"                           are not on your laptop.\n"
"  -l, --listen HOST:PORT   listen here (127.0.0.1:1502, [::1]:1502); repeatable\n"
"      --rtu TTY            serve Modbus RTU on a serial device (a USB adapter, or for\n"
"                           tests one end of a socat pty pair); repeatable. Units not\n"
"                           served stay silent, as on a real line. With --config, every\n"
"                           'rtu' bus is served at its device path.\n"
"      --rtu-tcp HOST:PORT  serve RTU frames over TCP, as a DTU or serial server carries\n"
"                           them; with --config, every 'rtu_over_tcp' bus at its address\n"
"      --baud N             the line speed of --rtu/--rtu-tcp lines (default 9600; with\n"
"                           --config, each bus's own); --parity none|even|odd\n"
"      --pace               hold each RTU reply for its transfer time at the line speed\n"
"  -d, --device UNIT:PROFILE[:SCENARIO]\n"
"                           serve unit id UNIT with the points of PROFILE on the --listen\n"
"                           (--rtu, --rtu-tcp) before it; repeatable. PROFILE 'sunspec'\n"
"                           is a built-in three-phase PV inverter (SunSpec models 1,\n"
"                           103, 120 at 40000).\n"
"  -p, --profile-path DIR[:DIR]\n"
"                           where profiles (PROFILE.yaml) are found, after devices/ beside\n"
"                           the --config file (or ./devices/ with --listen); default\n"
"                           $SLUICE_PROFILE_PATH, else this tree's config/devices when\n"
"                           run uninstalled, then " SLUICE_DATADIR "/devices\n"
"\n"
"How it behaves:\n"
"  -s, --scenario NAME      for every device (default: steady)\n"
"  -s, --scenario DEVICE=NAME\n"
"                           for one device of the --config; repeatable\n"
"      scenarios: steady  the usual day\n"
"                 leak    flows read 25 %% high from the start; totals count it\n"
"                 burst   after 1 simulated hour, flows read 150 %% high\n"
"                 rain    2 min in, water rises over 15 min to 0.45 m, holds 20 min,\n"
"                         drains over 30 min; again every 6 simulated hours\n"
"                 fault   fault/alarm bits set, status words 1, inverter output 0\n"
"                 dead    never answers (the connection stays open)\n"
"\n"
"Faults, to try a poller's error handling; each repeatable. UNIT is a unit id (on every\n"
"address serving it) or, with --config, a device id:\n"
"      --slow UNIT:MS       hold each reply of UNIT for MS milliseconds; other units and\n"
"                           connections are not held up by it\n"
"      --exception UNIT:TABLE:ADDR[-ADDR][:PERCENT]\n"
"                           answer exception 0x02 (illegal data address) to any read or\n"
"                           write of UNIT touching ADDR..ADDR (0-based, as on the wire)\n"
"                           of TABLE: holding, input, coil or discrete; with PERCENT, to\n"
"                           that share of them (the others are answered)\n"
"      --bad-crc UNIT:PERCENT\n"
"                           send that share of UNIT's replies with a corrupt CRC (RTU\n"
"                           and RTU over TCP only: Modbus TCP has no CRC)\n"
"      --wrong-unit UNIT:PERCENT\n"
"                           send that share of UNIT's replies with another unit id\n"
"                           (UNIT+1; 1 after 247)\n"
"      --garbage UNIT:PERCENT\n"
"                           send random bytes instead of that share of UNIT's replies,\n"
"                           half to one and a half times the reply's length. Modbus TCP:\n"
"                           after a valid header with the request's transaction id, a\n"
"                           PDU of noise, or of the request's function code and noise;\n"
"                           or a header of noise too. RTU: noise on the line, half the\n"
"                           time after the right unit id and function code. Never, by\n"
"                           chance, a reply that checks out.\n"
"      --short UNIT:PERCENT\n"
"                           cut that share of UNIT's replies short. Modbus TCP: a header\n"
"                           whose length promises more than is sent, or an honest length\n"
"                           around a PDU too short for its byte count. RTU: the frame\n"
"                           stops before its end (before or inside the CRC).\n"
"      --silent UNIT:PERCENT\n"
"                           never answer that share of UNIT's requests: each is read and\n"
"                           dropped, and a write among them is not done (100: a unit\n"
"                           that is there but never answers, like the 'dead' scenario)\n"
"                           Which requests a share hits, and the noise, follow --seed.\n"
"  -t, --time-scale X       simulated time runs X times faster than real time (the demo\n"
"                           uses 144: a day in 10 minutes); default 1\n"
"      --start HH:MM        simulated time starts today at this local time (06:00 to\n"
"                           watch the sun rise on the inverters); default now\n"
"      --tz ZONE            local time of the daily patterns (Asia/Shanghai); default the\n"
"                           config's gateway.timezone, else $TZ, else UTC\n"
"      --seed N             reproducible noise, and which replies a fault share hits\n"
"                           (and the bytes of --garbage and --short)\n"
"      --trace FILE         append one JSON line per answered read:\n"
"                           {\"t\":MS,\"listen\":\"127.0.0.1:1502\",\"unit\":1,\"values\":{...}}\n"
"                           with the values of the points the request covered, decoded\n"
"                           from the registers served (\"device\" too, with --config;\n"
"                           \"fault\": garbage, short, bad-crc or wrong-unit when one hit\n"
"                           the reply: a master must not take those values)\n"
"  -v, --verbose            log every connection and request\n"
"  -h, --help               this text\n"
"  -V, --version\n"
"\n"
"Points get a behaviour from their unit and name: flow (m3/h, L/s, L/min) a daily demand\n"
"curve (lowest near 03:00, peaks near 07:30 and 19:30); volume (m3, L) named like a\n"
"totalizer counts that flow; level (m, cm, mm) a road-surface gauge, dry unless it rains\n"
"(names like 'air' or 'distance': the gauge's air gap, 3 m when dry); power (W, kW) 30 kW\n"
"rated x a clear-sky curve (or the pv rule's rated_power); energy (Wh, kWh) counts it;\n"
"pressure (MPa, kPa, bar) ~0.30 MPa; velocity (m/s) the flow in a DN200 pipe; bools\n"
"named running/run/on are true, fault/alarm/trip false; integer status/alarm words 0;\n"
"strings the device's name; anything else a constant from its name. Writes (function\n"
"codes 5, 6, 15, 16) stick: a written point keeps its value. An unknown unit id gets\n"
"exception 0x0B (gateway target failed to respond); addresses outside a device's points\n"
"get exception 0x02.\n"
"\n"
"Examples:\n"
"  sluice-sim -l 127.0.0.1:1502 -d 1:flowmeter-generic -d 2:level-radar:rain -p config/devices\n"
"  sluice-sim --config /tmp/site-test.yaml --time-scale 144 --scenario dma3-inlet=leak\n"
"  sluice-sim --rtu-tcp 127.0.0.1:1503 -d 1:flowmeter-generic --bad-crc 1:20 --slow 1:800\n"
"  sluice-sim --config /tmp/site-test.yaml --garbage dma3-inlet:30 --silent 2:100\n"
"\n"
"Exit status: 0 after Ctrl-C/SIGTERM, 1 when an address cannot be listened on, 2 for\n"
"bad arguments, a config or a profile that does not load.\n");
}

int sim_args_error(const char *fmt, ...)
{
	va_list ap;
	fputs("sluice-sim: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n(sluice-sim --help explains the options)\n", stderr);
	return SIM_EXIT_USAGE;
}

static const char *scenario_list(void)
{
	return "steady, leak, burst, rain, fault, dead";
}

/* HOST:PORT, [V6]:PORT. Writes malloc'd host and port. */
static int parse_hostport(const char *s, char **host, char **port)
{
	const char *colon;
	size_t hl;

	*host = *port = NULL;
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':')
			return -1;
		hl = (size_t)(rb - s - 1);
		s++;
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || memchr(s, ':', (size_t)(colon - s)))
			return -1; /* no port, or a bare IPv6 address */
		hl = (size_t)(colon - s);
	}
	char *end;
	unsigned long p = strtoul(colon + 1, &end, 10);
	if (hl == 0 || colon[1] == '\0' || *end || p > 65535)
		return -1;
	*host = strndup(s, hl);
	*port = strdup(colon + 1);
	if (!*host || !*port) {
		free(*host);
		free(*port);
		*host = *port = NULL;
		return -1;
	}
	return 0;
}

static int parse_device(const char *s, struct sim_args_device *d)
{
	char *end;
	const char *c1 = strchr(s, ':');

	memset(d, 0, sizeof *d);
	d->scenario = -1;
	if (!c1 || c1 == s)
		return sim_args_error("--device %s: write UNIT:PROFILE[:SCENARIO], e.g. 1:flowmeter-generic", s);
	errno = 0;
	unsigned long u = strtoul(s, &end, 10);
	if (end != c1 || errno || u > 255)
		return sim_args_error("--device %s: the unit id must be a number 0..255", s);
	const char *prof = c1 + 1;
	const char *c2 = strchr(prof, ':');
	size_t pl = c2 ? (size_t)(c2 - prof) : strlen(prof);
	if (pl == 0)
		return sim_args_error("--device %s: no profile name after the unit id", s);
	if (c2) {
		d->scenario = sim_scenario_from_name(c2 + 1);
		if (d->scenario < 0)
			return sim_args_error("--device %s: unknown scenario '%s' (known: %s)", s,
					      c2 + 1, scenario_list());
	}
	d->unit = (unsigned)u;
	d->profile = strndup(prof, pl);
	d->spec = strdup(s);
	if (!d->profile || !d->spec)
		return sim_args_error("out of memory");
	return 0;
}

static int parse_table(const char *s, size_t len, enum mb_table *t)
{
	static const struct { const char *name; enum mb_table t; } tabs[] = {
		{ "holding", MB_HOLDING }, { "input", MB_INPUT },
		{ "coil", MB_COIL }, { "discrete", MB_DISCRETE },
	};
	for (size_t i = 0; i < sizeof tabs / sizeof tabs[0]; i++)
		if (strlen(tabs[i].name) == len && strncmp(s, tabs[i].name, len) == 0) {
			*t = tabs[i].t;
			return 0;
		}
	return -1;
}

/* A number lo..hi ending at *end_at (or the string's end). */
static int parse_uint(const char *s, const char *end_at, unsigned long lo, unsigned long hi,
		      unsigned long *out)
{
	char *end;
	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	*out = strtoul(s, &end, 10);
	if (errno || end == s || (end_at ? end != end_at : *end != '\0') || *out < lo || *out > hi)
		return -1;
	return 0;
}

/* --slow UNIT:MS, --exception UNIT:TABLE:ADDR[-ADDR][:PERCENT], and UNIT:PERCENT for
 * --bad-crc, --wrong-unit, --garbage, --short, --silent */
static int parse_fault(int kind, const char *opt, const char *s, struct sim_args_fault *f)
{
	const char *c1 = strchr(s, ':');
	unsigned long v, lo, hi, pct = 100, id;
	struct sim_fault_spec *fs = &f->fault;

	memset(f, 0, sizeof *f);
	fs->kind = kind;
	f->opt = opt;
	if (kind == SIM_FAULT_EXCEPTION) {
		const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		const char *c3 = c2 ? strchr(c2 + 1, ':') : NULL;
		const char *dash = c2 ? strchr(c2 + 1, '-') : NULL;
		if (dash && c3 && dash > c3)
			dash = NULL; /* a '-' in the share is a bad share, said below */
		if (!c1 || c1 == s || !c2)
			return sim_args_error("%s %s: write UNIT:TABLE:ADDR[-ADDR][:PERCENT], e.g. "
					      "1:holding:10-11 or 1:holding:10-11:40", opt, s);
		if (parse_table(c1 + 1, (size_t)(c2 - c1 - 1), &fs->range.table) < 0)
			return sim_args_error("%s %s: the table is holding, input, coil or discrete",
					      opt, s);
		if (parse_uint(c2 + 1, dash ? dash : c3, 0, 65535, &lo) < 0 ||
		    (dash && parse_uint(dash + 1, c3, lo, 65535, &hi) < 0))
			return sim_args_error("%s %s: the addresses are 0..65535 (0-based, as on "
					      "the wire), the first not above the last", opt, s);
		if (c3 && parse_uint(c3 + 1, NULL, 0, 100, &pct) < 0)
			return sim_args_error("%s %s: after the addresses, a percentage 0..100", opt,
					      s);
		fs->range.lo = (uint16_t)lo;
		fs->range.hi = (uint16_t)(dash ? hi : lo);
		fs->range.pct = (unsigned)pct;
	} else {
		bool ms = kind == SIM_FAULT_SLOW;
		if (!c1 || c1 == s)
			return sim_args_error("%s %s: write UNIT:%s", opt, s,
					      ms ? "MS, e.g. 1:800" : "PERCENT, e.g. 1:50");
		if (parse_uint(c1 + 1, NULL, ms ? 1 : 0, ms ? 600000 : 100, &v) < 0)
			return sim_args_error("%s %s: %s", opt, s, ms ? "a delay of 1..600000 ms"
					      : "a percentage 0..100");
		fs->value = (unsigned)v;
	}
	if (!(f->target = strndup(s, (size_t)(c1 - s))) || !(f->spec = strdup(s)))
		return sim_args_error("out of memory");
	/* a name, with --config, names a device; which, sluice-sim finds out */
	f->unit = parse_uint(f->target, NULL, 0, 255, &id) == 0 ? (int)id : -1;
	return 0;
}

void sim_args_free(struct sim_args *a)
{
	for (size_t i = 0; i < a->nfaults; i++) {
		free(a->faults[i].target);
		free(a->faults[i].spec);
	}
	free(a->faults);
	for (size_t i = 0; i < a->nlines; i++) {
		struct sim_args_line *l = &a->lines[i];
		for (size_t k = 0; k < l->ndevs; k++) {
			free(l->devs[k].profile);
			free(l->devs[k].spec);
		}
		free(l->devs);
		free(l->spec);
		free(l->host);
		free(l->port);
	}
	free(a->lines);
	for (size_t i = 0; i < a->nscens; i++)
		free(a->scens[i].device);
	free(a->scens);
	memset(a, 0, sizeof *a);
}

/* A new line of that kind at the end of a's, zeroed and counted (so freed with the rest
 * whatever happens next); NULL out of memory. */
static struct sim_args_line *line_add(struct sim_args *a, int kind)
{
	struct sim_args_line *nl = realloc(a->lines, (a->nlines + 1) * sizeof *nl);
	if (!nl)
		return NULL;
	a->lines = nl;
	memset(&nl[a->nlines], 0, sizeof nl[0]);
	nl[a->nlines].kind = kind;
	return &nl[a->nlines++];
}

/* --device: served on the line before it */
static int device_add(struct sim_args *a, const char *arg)
{
	if (a->nlines == 0)
		return sim_args_error("--device %s: put a --listen HOST:PORT (or --rtu TTY, "
				      "--rtu-tcp HOST:PORT) before it (each --device belongs to "
				      "the one before it)", arg);
	struct sim_args_line *l = &a->lines[a->nlines - 1];
	struct sim_args_device *nd = realloc(l->devs, (l->ndevs + 1) * sizeof *nd);
	if (!nd)
		return sim_args_error("out of memory");
	l->devs = nd;
	int rc = parse_device(arg, &nd[l->ndevs]);
	for (size_t k = 0; rc == 0 && k < l->ndevs; k++)
		if (nd[k].unit == nd[l->ndevs].unit)
			rc = sim_args_error("--device %s: unit %u is already served on %s", arg,
					    nd[k].unit, l->spec);
	if (rc != 0) {
		free(nd[l->ndevs].profile);
		free(nd[l->ndevs].spec);
		return rc;
	}
	l->ndevs++;
	return 0;
}

/* --scenario NAME or DEVICE=NAME */
static int scenario_add(struct sim_args *a, const char *arg)
{
	const char *eq = strchr(arg, '=');
	int sc = sim_scenario_from_name(eq ? eq + 1 : arg);
	if (sc < 0)
		return sim_args_error("--scenario %s: unknown scenario (known: %s)", arg,
				      scenario_list());
	if (!eq) {
		a->scenario = sc;
		return 0;
	}
	struct sim_args_scenario *ns = realloc(a->scens, (a->nscens + 1) * sizeof *ns);
	if (!ns)
		return sim_args_error("out of memory");
	a->scens = ns;
	ns[a->nscens].scenario = sc;
	if (!(ns[a->nscens].device = strndup(arg, (size_t)(eq - arg))))
		return sim_args_error("out of memory");
	a->nscens++;
	return 0;
}

/* What cannot be told one option at a time. -1 when the whole holds together. */
static int check_whole(const struct sim_args *a)
{
	if (!a->config && a->nlines == 0)
		return sim_args_error("nothing to serve: give --config SITE.yaml, or --listen "
				      "HOST:PORT (--rtu TTY, --rtu-tcp HOST:PORT) with --device "
				      "UNIT:PROFILE");
	if (a->config && a->nlines)
		return sim_args_error("--config and --listen do not mix: serve a config, or "
				      "devices given on the command line");
	for (size_t i = 0; i < a->nlines; i++)
		if (a->lines[i].ndevs == 0)
			return sim_args_error("%s %s has no --device after it",
					      sim_args_line_option(a->lines[i].kind),
					      a->lines[i].spec);
	if (a->nscens && !a->config)
		return sim_args_error("--scenario DEVICE=NAME names a device of a --config; with "
				      "--listen, write --device UNIT:PROFILE:SCENARIO");
	return -1;
}

int sim_args_parse(int argc, char **argv, struct sim_args *a)
{
	enum { OPT_TZ = 256, OPT_SEED, OPT_TRACE, OPT_START, OPT_RTU, OPT_RTU_TCP, OPT_BAUD,
	       OPT_PARITY, OPT_PACE, OPT_SLOW, OPT_EXCEPTION, OPT_BAD_CRC, OPT_WRONG_UNIT,
	       OPT_GARBAGE, OPT_SHORT, OPT_SILENT };
	/* the fault options, in the order of enum sim_fault_kind */
	static const struct { int opt; const char *name; } fault_opts[] = {
		{ OPT_SLOW, "--slow" }, { OPT_EXCEPTION, "--exception" },
		{ OPT_BAD_CRC, "--bad-crc" }, { OPT_WRONG_UNIT, "--wrong-unit" },
		{ OPT_GARBAGE, "--garbage" }, { OPT_SHORT, "--short" },
		{ OPT_SILENT, "--silent" },
	};
	_Static_assert(sizeof fault_opts / sizeof fault_opts[0] == SIM_FAULT_KINDS,
		       "one fault option per enum sim_fault_kind");
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "listen", required_argument, NULL, 'l' },
		{ "device", required_argument, NULL, 'd' },
		{ "profile-path", required_argument, NULL, 'p' },
		{ "scenario", required_argument, NULL, 's' },
		{ "time-scale", required_argument, NULL, 't' },
		{ "tz", required_argument, NULL, OPT_TZ },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "trace", required_argument, NULL, OPT_TRACE },
		{ "start", required_argument, NULL, OPT_START },
		{ "rtu", required_argument, NULL, OPT_RTU },
		{ "rtu-tcp", required_argument, NULL, OPT_RTU_TCP },
		{ "baud", required_argument, NULL, OPT_BAUD },
		{ "parity", required_argument, NULL, OPT_PARITY },
		{ "pace", no_argument, NULL, OPT_PACE },
		{ "slow", required_argument, NULL, OPT_SLOW },
		{ "exception", required_argument, NULL, OPT_EXCEPTION },
		{ "bad-crc", required_argument, NULL, OPT_BAD_CRC },
		{ "wrong-unit", required_argument, NULL, OPT_WRONG_UNIT },
		{ "garbage", required_argument, NULL, OPT_GARBAGE },
		{ "short", required_argument, NULL, OPT_SHORT },
		{ "silent", required_argument, NULL, OPT_SILENT },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct sim_args_line *l;
	int c, rc;
	char *end;

	memset(a, 0, sizeof *a);
	a->scale = 1.0;
	a->start_s = -1;
	opterr = 0;
	optind = 0; /* glibc: start afresh, should argv be read a second time */
	while ((c = getopt_long(argc, argv, "+:c:l:d:p:s:t:vhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			a->config = optarg;
			break;
		case OPT_RTU:
			if (!(l = line_add(a, SIM_LINE_RTU_TTY)) || !(l->spec = strdup(optarg)) ||
			    !(l->host = strdup(optarg)) || !(l->port = strdup("")))
				return sim_args_error("out of memory");
			break;
		case OPT_RTU_TCP:
		case 'l':
			if (!(l = line_add(a, c == 'l' ? SIM_LINE_TCP : SIM_LINE_RTU_TCP)))
				return sim_args_error("out of memory");
			if (parse_hostport(optarg, &l->host, &l->port) < 0)
				return sim_args_error("%s %s: write HOST:PORT, e.g. 127.0.0.1:1502%s",
						      sim_args_line_option(l->kind), optarg,
						      optarg[0] != '[' && strchr(optarg, ':') !=
						      strrchr(optarg, ':') ? " (an IPv6 address goes "
						      "in brackets: [::1]:1502)" : " or [::1]:1502");
			if (!(l->spec = strdup(optarg)))
				return sim_args_error("out of memory");
			break;
		case OPT_BAUD:
			errno = 0;
			a->baud = (unsigned)strtoul(optarg, &end, 10);
			if (end == optarg || *end || errno || a->baud < 300 || a->baud > 921600)
				return sim_args_error("--baud %s: a line speed such as 9600", optarg);
			break;
		case OPT_PARITY:
			if (strcmp(optarg, "none") == 0)
				a->parity = 'N';
			else if (strcmp(optarg, "even") == 0)
				a->parity = 'E';
			else if (strcmp(optarg, "odd") == 0)
				a->parity = 'O';
			else
				return sim_args_error("--parity %s: none, even or odd", optarg);
			break;
		case OPT_PACE:
			a->pace = true;
			break;
		case OPT_SLOW:
		case OPT_EXCEPTION:
		case OPT_BAD_CRC:
		case OPT_WRONG_UNIT:
		case OPT_GARBAGE:
		case OPT_SHORT:
		case OPT_SILENT: {
			struct sim_args_fault *nf = realloc(a->faults, (a->nfaults + 1) * sizeof *nf);
			if (!nf)
				return sim_args_error("out of memory");
			a->faults = nf;
			int kind = 0;
			while (fault_opts[kind].opt != c)
				kind++;
			rc = parse_fault(kind, fault_opts[kind].name, optarg, &nf[a->nfaults]);
			a->nfaults++; /* freed by sim_args_free, whole or not */
			if (rc != 0)
				return rc;
			break;
		}
		case 'd':
			if ((rc = device_add(a, optarg)) != 0)
				return rc;
			break;
		case 'p':
			a->profile_path = optarg;
			break;
		case 's':
			if ((rc = scenario_add(a, optarg)) != 0)
				return rc;
			break;
		case 't':
			errno = 0;
			a->scale = strtod(optarg, &end);
			if (end == optarg || *end || errno || !(a->scale > 0) || a->scale > 1e6)
				return sim_args_error("--time-scale %s: a number above 0 and at most "
						      "1000000 (144: a day in 10 minutes)", optarg);
			break;
		case OPT_TZ:
			if (!sim_args_zone_known(optarg))
				return sim_args_error("--tz %s: unknown time zone (an IANA name such "
						      "as Asia/Shanghai, or UTC)", optarg);
			a->tz = optarg;
			break;
		case OPT_SEED:
			errno = 0;
			a->seed = strtoull(optarg, &end, 0);
			if (end == optarg || *end || errno || optarg[0] == '-')
				return sim_args_error("--seed %s: a non-negative whole number", optarg);
			a->have_seed = true;
			break;
		case OPT_TRACE:
			a->trace = optarg;
			break;
		case OPT_START:
			if (config_parse_time_of_day(optarg, &a->start_s) < 0)
				return sim_args_error("--start %s: a local time of day, HH:MM or "
						      "HH:MM:SS", optarg);
			break;
		case 'v':
			a->verbose = true;
			break;
		case 'h':
			sim_args_usage(stdout);
			return 0;
		case 'V':
			printf("sluice-sim %s\n", SLUICE_VERSION);
			return 0;
		case ':':
			return sim_args_error("%s needs a value", argv[optind - 1]);
		default:
			return sim_args_error("unknown option %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return sim_args_error("unexpected argument '%s'", argv[optind]);
	return check_whole(a);
}
