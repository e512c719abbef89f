/*
 * sim_args: sluice-sim's command line. Reads the options into a struct sim_args,
 * checked as far as they can be without the config and the profiles they name, with a
 * message for each mistake that says what to write instead; and the --help text
 * (man/sluice-sim.1 says the same: change both together).
 *
 * Owns the strings it copies (sim_args_free). Must never load a config or a profile,
 * open a socket or a trace file: sluice-sim does that with what is read here. Looks at
 * the time zone database only, to tell a --tz it does not know.
 */
#ifndef SLUICE_SIM_ARGS_H
#define SLUICE_SIM_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"
#include "sim_faults.h"

#define SIM_EXIT_USAGE 2           /* bad arguments, a config or profile that does not load */

/* How an address is served: Modbus TCP, or RTU frames on a tty or over TCP (sim_rtu). */
enum sim_line { SIM_LINE_TCP = 0, SIM_LINE_RTU_TTY, SIM_LINE_RTU_TCP };

/* --device UNIT:PROFILE[:SCENARIO] */
struct sim_args_device {
	unsigned unit;
	char *profile;
	int scenario;              /* -1: the default */
	char *spec;                /* as written, for messages */
};

/* --listen, --rtu, --rtu-tcp, with the --device options after it */
struct sim_args_line {
	int kind;                  /* enum sim_line */
	char *spec;                /* as written */
	char *host, *port;         /* a tty: its path, and port "" */
	struct sim_args_device *devs;
	size_t ndevs;
};

/* --scenario DEVICE=NAME */
struct sim_args_scenario {
	char *device;
	int scenario;
};

/* --slow, --exception, --bad-crc, --wrong-unit, --garbage, --short, --silent */
struct sim_args_fault {
	struct sim_fault_spec fault;
	const char *opt;           /* "--slow", ..., for messages */
	char *spec;                /* as written */
	char *target;              /* a unit id, or (--config) a device id */
	int unit;                  /* the target as a unit id 0..255, or -1 when it is not */
};

struct sim_args {
	const char *config;
	struct sim_args_line *lines;
	size_t nlines;
	const char *profile_path;
	int scenario;              /* for every device: --scenario NAME (steady) */
	struct sim_args_scenario *scens;
	size_t nscens;
	double scale;              /* --time-scale */
	const char *tz;
	int start_s;               /* --start: seconds after local midnight; -1: now */
	const char *trace;
	uint64_t seed;
	bool have_seed;
	bool verbose;
	unsigned baud;             /* --baud, for --rtu and --rtu-tcp lines; 0: 9600 */
	char parity;               /* --parity 'N', 'E', 'O'; 0: none given */
	bool pace;                 /* --pace */
	struct sim_args_fault *faults;
	size_t nfaults;
};

/* Read argv into a (its strings point into argv or are a's own). -1 to go on; else the
 * exit status: 0 after --help or --version (printed on stdout), SIM_EXIT_USAGE after a
 * message on stderr. Call sim_args_free after either. */
int sim_args_parse(int argc, char **argv, struct sim_args *a);
void sim_args_free(struct sim_args *a);

void sim_args_usage(FILE *f);
/* "sluice-sim: MESSAGE" and where the options are explained, on stderr: SIM_EXIT_USAGE. */
int sim_args_error(const char *fmt, ...) PRINTF(1, 2);

/* Is zone a time zone the C library can use here (UTC, a POSIX TZ string, or a file
 * of the zone database)? */
bool sim_args_zone_known(const char *zone);
/* The option that gives a line of that kind: "--listen", "--rtu", "--rtu-tcp". */
const char *sim_args_line_option(int kind);

#endif
