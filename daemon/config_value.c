/*
 * config_value: the value syntaxes of config_value.h. Owns what a unit means (ms, s, m,
 * h, d; KiB ... TiB and kB ... TB; W, kW, MW) and how a number is written.
 *
 * It must never: include libyaml, allocate, read a file or keep state — sluicectl and
 * sluice-sim call it without a config, and the loader calls it for every value it reads.
 */
#include "config_value.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include "site.h"

#define SECOND_MS 1000LL
#define MINUTE_MS (60 * SECOND_MS)
#define HOUR_MS (60 * MINUTE_MS)
#define DAY_MS (24 * HOUR_MS)
#define KIB 1024ull
#define MIB (1024 * KIB)
#define GIB (1024 * MIB)

/* A plain decimal: digits, optionally '.' and more digits. Advances *sp. */
static int parse_decimal(const char **sp, double *out)
{
	const char *s = *sp;
	double x = 0, f = 0.1;

	if (!isdigit((unsigned char)*s))
		return -1;
	while (isdigit((unsigned char)*s))
		x = x * 10 + (*s++ - '0');
	if (*s == '.') {
		s++;
		if (!isdigit((unsigned char)*s))
			return -1;
		while (isdigit((unsigned char)*s)) {
			x += (*s++ - '0') * f;
			f /= 10;
		}
	}
	*sp = s;
	*out = x;
	return 0;
}

struct unit {
	const char *name;
	double multiplier;
};

/* NUMBER [spaces] UNIT, the unit one of units[] (longest names first). Advances *sp. */
static int parse_with_unit(const char **sp, const struct unit *units, double *out)
{
	const char *s = *sp;
	double number;

	if (parse_decimal(&s, &number) < 0)
		return -1;
	while (*s == ' ')
		s++;
	for (const struct unit *unit = units; unit->name; unit++) {
		size_t n = strlen(unit->name);
		if (strncmp(s, unit->name, n) == 0 && !isalpha((unsigned char)s[n]) && s[n] != '/') {
			*out = number * unit->multiplier;
			*sp = s + n;
			return 0;
		}
	}
	return -1;
}

int config_parse_duration(const char *s, int64_t *ms)
{
	static const struct unit units[] = {
		{ "ms", 1 }, { "min", MINUTE_MS }, { "s", SECOND_MS }, { "m", MINUTE_MS },
		{ "h", HOUR_MS }, { "d", DAY_MS }, { NULL, 0 },
	};
	double total = 0, part;
	int parts = 0;

	if (!s || !*s)
		return -1;
	if (strcmp(s, "0") == 0) {
		*ms = 0;
		return 0;
	}
	/* "1h30m" as well as "90m" */
	while (*s) {
		if (parse_with_unit(&s, units, &part) < 0)
			return -1;
		total += part;
		parts++;
		while (*s == ' ')
			s++;
	}
	if (!parts || total > 1e15)
		return -1;
	*ms = (int64_t)llround(total);
	return 0;
}

int config_parse_size(const char *s, uint64_t *bytes)
{
	static const struct unit units[] = {
		{ "KiB", 1024.0 }, { "MiB", 1048576.0 }, { "GiB", 1073741824.0 },
		{ "TiB", 1099511627776.0 }, { "kB", 1e3 }, { "KB", 1e3 }, { "MB", 1e6 },
		{ "GB", 1e9 }, { "TB", 1e12 }, { "B", 1 }, { NULL, 0 },
	};
	const char *p = s;
	double size;

	if (!s || !*s)
		return -1;
	if (parse_with_unit(&p, units, &size) == 0) {
		if (*p)
			return -1;
	} else {
		/* a bare whole number is bytes */
		p = s;
		if (parse_decimal(&p, &size) < 0 || *p || strchr(s, '.'))
			return -1;
	}
	if (size > 1.8e19)
		return -1;
	*bytes = (uint64_t)floor(size);
	return 0;
}

int config_parse_power(const char *s, double *watts)
{
	static const struct unit units[] = {
		{ "kW", 1e3 }, { "KW", 1e3 }, { "MW", 1e6 }, { "W", 1 }, { NULL, 0 },
	};
	double power;

	if (!s || parse_with_unit(&s, units, &power) < 0 || *s)
		return -1;
	*watts = power;
	return 0;
}

int config_parse_time_of_day(const char *s, int *secs)
{
	int hours = 0, minutes, seconds = 0, digits = 0;

	if (!s)
		return -1;
	while (isdigit((unsigned char)*s) && digits < 2) {
		hours = hours * 10 + (*s++ - '0');
		digits++;
	}
	if (digits == 0 || *s++ != ':')
		return -1;
	if (!isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]))
		return -1;
	minutes = (s[0] - '0') * 10 + (s[1] - '0');
	s += 2;
	if (*s == ':') {
		s++;
		if (!isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]))
			return -1;
		seconds = (s[0] - '0') * 10 + (s[1] - '0');
		s += 2;
	}
	if (*s || minutes > 59 || seconds > 59)
		return -1;
	/* 24:00 is the end of the day, for a window that runs to midnight */
	if (hours > 24 || (hours == 24 && (minutes || seconds)))
		return -1;
	*secs = hours * 3600 + minutes * 60 + seconds;
	return 0;
}

int config_id_valid(const char *s)
{
	size_t n = 0;

	if (!s)
		return 0;
	for (; s[n]; n++) {
		unsigned char ch = (unsigned char)s[n];
		if (!isalnum(ch) || ch > 0x7f)
			if (ch != '_' && ch != '-')
				return 0;
	}
	return n > 0 && n < ID_MAX;
}

int config_parse_int(const char *s, int64_t *out)
{
	char *end;
	long long v;
	unsigned long long u;

	errno = 0;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		if (!isxdigit((unsigned char)s[2]))
			return -1;
		u = strtoull(s + 2, &end, 16);
		if (*end || (errno && errno != ERANGE))
			return -1;
		*out = u > INT64_MAX ? INT64_MAX : (int64_t)u;
		return 0;
	}
	if (!isdigit((unsigned char)s[s[0] == '-' || s[0] == '+']))
		return -1;
	v = strtoll(s, &end, 10);
	if (*end || (errno && errno != ERANGE))
		return -1;
	*out = v; /* LLONG_MAX or LLONG_MIN on overflow */
	return 0;
}

int config_parse_number(const char *s, double *out)
{
	char *end;
	double v;
	const char *p = s;

	if (*p == '+' || *p == '-')
		p++;
	if (!isdigit((unsigned char)*p) && !(*p == '.' && isdigit((unsigned char)p[1])))
		return -1;
	/* strtod alone would take hex, inf and nan */
	for (const char *t = p; *t; t++)
		if (!isdigit((unsigned char)*t) && !strchr(".eE+-", *t))
			return -1;
	errno = 0;
	v = strtod(s, &end);
	if (*end || !isfinite(v))
		return -1;
	*out = v;
	return 0;
}

int config_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", NULL };
	static const char *const no[] = { "false", "no", "off", NULL };

	for (int i = 0; yes[i]; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

const char *config_format_duration(int64_t ms, char *buf, size_t len)
{
	if (ms == 0)
		snprintf(buf, len, "0");
	else if (ms % DAY_MS == 0)
		snprintf(buf, len, "%lldd", (long long)(ms / DAY_MS));
	else if (ms % HOUR_MS == 0)
		snprintf(buf, len, "%lldh", (long long)(ms / HOUR_MS));
	else if (ms > MINUTE_MS && ms % MINUTE_MS == 0)
		snprintf(buf, len, "%lldm", (long long)(ms / MINUTE_MS));
	else if (ms % SECOND_MS == 0)
		snprintf(buf, len, "%llds", (long long)(ms / SECOND_MS));
	else
		snprintf(buf, len, "%lldms", (long long)ms);
	return buf;
}

const char *config_format_size(uint64_t bytes, char *buf, size_t len)
{
	if (bytes && bytes % GIB == 0)
		snprintf(buf, len, "%lluGiB", (unsigned long long)(bytes / GIB));
	else if (bytes && bytes % MIB == 0)
		snprintf(buf, len, "%lluMiB", (unsigned long long)(bytes / MIB));
	else if (bytes && bytes % KIB == 0)
		snprintf(buf, len, "%lluKiB", (unsigned long long)(bytes / KIB));
	else
		snprintf(buf, len, "%lluB", (unsigned long long)bytes);
	return buf;
}

int config_parse_listen(const char *s, struct config_listen *out)
{
	struct config_listen l = { 0 };
	char host[INET6_ADDRSTRLEN + 1];
	const char *colon, *end;
	size_t n;
	unsigned long port;
	char *stop;

	if (!s)
		return -1;
	if (s[0] == '[') {
		end = strchr(s, ']');
		if (!end || end[1] != ':')
			return -1;
		n = (size_t)(end - s - 1);
		colon = end + 1;
		s++;
		l.family = AF_INET6;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -1;
		n = (size_t)(colon - s);
		l.family = AF_INET;
	}
	if (n == 0 || n >= sizeof host)
		return -1;
	memcpy(host, s, n);
	host[n] = '\0';
	if (inet_pton(l.family, host, l.addr) != 1)
		return -1;
	if (!isdigit((unsigned char)colon[1]))
		return -1;
	errno = 0;
	port = strtoul(colon + 1, &stop, 10);
	if (errno || *stop || port < 1 || port > 65535)
		return -1;
	l.port = (uint16_t)port;
	if (l.family == AF_INET) {
		static const unsigned char zero4[4];
		l.loopback = l.addr[0] == 127;
		l.any = memcmp(l.addr, zero4, 4) == 0;
	} else {
		static const unsigned char lo6[16] = { [15] = 1 }, zero6[16];
		static const unsigned char v4mapped[12] = { [10] = 0xff, [11] = 0xff };
		l.loopback = memcmp(l.addr, lo6, 16) == 0 ||
			     (memcmp(l.addr, v4mapped, 12) == 0 && l.addr[12] == 127);
		l.any = memcmp(l.addr, zero6, 16) == 0;
	}
	*out = l;
	return 0;
}
