/*
 * config_value: the syntaxes of single values in the config files — durations, sizes,
 * power, times of day, ids, whole and decimal numbers, booleans — as text in, value out,
 * and durations and sizes written back the way messages show them. The loader
 * (config*.c) reads every value through these; sluicectl's command line and sluice-sim
 * use them through config.h, which includes this header.
 *
 * Pure functions of their arguments: nothing here reads YAML or a file, allocates, or
 * keeps state. A parser returns 0, or -1 and leaves *out as it was.
 */
#ifndef SLUICE_CONFIG_VALUE_H
#define SLUICE_CONFIG_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int config_parse_duration(const char *s, int64_t *ms);   /* 500ms 10s 5m 2h 1d, 1h30m, "0" */
int config_parse_size(const char *s, uint64_t *bytes);   /* 64KiB 512MiB 2GiB, also B KB MB GB */
int config_parse_power(const char *s, double *watts);    /* 800W 30kW 1.2MW */
int config_parse_time_of_day(const char *s, int *secs);  /* "02:00", "23:59:59", "24:00" */
int config_id_valid(const char *s);                      /* [A-Za-z0-9_-]+, at most ID_MAX-1 */

/* Decimal with an optional sign, or 0x hex. A number too big for 64 bits saturates to
 * INT64_MAX (INT64_MIN), so that the caller's range check names it as out of range
 * rather than as not a number. */
int config_parse_int(const char *s, int64_t *out);
/* A finite decimal number: [+-]digits[.digits][e[+-]digits], or .5; no hex, inf, nan. */
int config_parse_number(const char *s, double *out);
/* true, yes, on / false, no, off, in any case (YAML 1.1's words, which people write). */
int config_parse_bool(const char *s, bool *out);

/*
 * A listening address, numeric only (a daemon must not wait on a resolver to open its
 * page): "A.B.C.D:PORT" or "[IPV6]:PORT", the port 1..65535. family is AF_INET or
 * AF_INET6, addr its 4 or 16 bytes; loopback: 127.0.0.0/8, ::1 or ::ffff:127.x.y.z.
 */
struct config_listen {
	int family;
	unsigned char addr[16];
	uint16_t port;
	bool loopback;
	bool any;              /* 0.0.0.0 or :: */
};
int config_parse_listen(const char *s, struct config_listen *out);

/* Room for any text the formatters below write: an int64 in digits and a unit. */
#define CONFIG_VALUE_TEXT_MAX 32

/* For messages: the largest unit that is exact (1d, 2h, 5m, 90s, 500ms), except that a
 * single minute reads 60s, as it does in a range such as "60s..1d". Returns buf. */
const char *config_format_duration(int64_t ms, char *buf, size_t len);
/* The same for sizes: 2GiB, 512MiB, 64KiB, 100B. Returns buf. */
const char *config_format_size(uint64_t bytes, char *buf, size_t len);

#endif
