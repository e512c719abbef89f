/*
 * test_config_value: the value syntaxes of daemon/config_value.h on their own, without a
 * config file: the edges of each parser (signs, hex, overflow, units, limits), that a
 * failed parse leaves its output alone, and that the formatters write what the parsers
 * read back. test_config.c covers the common cases of the duration, size, power and
 * time-of-day parsers and the messages the loader builds on them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <sys/socket.h>

#include "config.h"

static void test_parse_int(void **state)
{
	static const struct {
		const char *s;
		int64_t v;
	} good[] = {
		{ "42", 42 }, { "-7", -7 }, { "+7", 7 }, { "0", 0 }, { "007", 7 },
		{ "0x1F", 31 }, { "0XfF", 255 }, { "0x0", 0 },
		/* too big for 64 bits: saturated, for the caller's range check to name */
		{ "99999999999999999999", INT64_MAX }, { "-99999999999999999999", INT64_MIN },
		{ "0x8000000000000000", INT64_MAX }, { "0xFFFFFFFFFFFFFFFFFFFF", INT64_MAX },
	};
	static const char *const bad[] = { "", "0x", "0xg", "0x1g", "-0x10", "1.5", "1e3", " 1",
					   "1 ", "-", "+", "--1", "one", "12abc" };
	int64_t v;

	(void)state;
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		v = 12345;
		assert_int_equal(config_parse_int(good[i].s, &v), 0);
		assert_true(v == good[i].v);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		v = 12345;
		assert_int_equal(config_parse_int(bad[i], &v), -1);
		assert_int_equal(v, 12345);
	}
}

static void test_parse_number(void **state)
{
	static const struct {
		const char *s;
		double v;
	} good[] = {
		{ "1.5", 1.5 }, { "-2", -2 }, { "+3", 3 }, { ".5", 0.5 }, { "-.5", -0.5 },
		{ "5.", 5 }, { "1e3", 1000 }, { "1E-2", 0.01 }, { "2.5e+2", 250 }, { "0", 0 },
	};
	/* strtod alone would take the hex, the infinities and nan */
	static const char *const bad[] = { "", ".", "-", "e5", ".e5", "0x10", "inf", "-inf",
					   "nan", "infinity", "1e999", "-1e999", "1.2.3", "1e",
					   "1 ", " 1", "1,5", "½" };
	double v;

	(void)state;
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		v = 12345;
		assert_int_equal(config_parse_number(good[i].s, &v), 0);
		assert_true(v == good[i].v);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		v = 12345;
		assert_int_equal(config_parse_number(bad[i], &v), -1);
		assert_true(v == 12345);
	}
}

static void test_parse_bool(void **state)
{
	static const char *const yes[] = { "true", "True", "TRUE", "yes", "YES", "on", "On" };
	static const char *const no[] = { "false", "False", "no", "NO", "off", "Off" };
	static const char *const bad[] = { "", "1", "0", "y", "n", "t", "truex", "yess", " on" };
	bool v;

	(void)state;
	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
		v = false;
		assert_int_equal(config_parse_bool(yes[i], &v), 0);
		assert_true(v);
	}
	for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
		v = true;
		assert_int_equal(config_parse_bool(no[i], &v), 0);
		assert_false(v);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		v = true;
		assert_int_equal(config_parse_bool(bad[i], &v), -1);
		assert_true(v);
	}
}

/* The edges the common cases in test_config.c leave out. */
static void test_parse_duration_edges(void **state)
{
	int64_t ms;

	(void)state;
	assert_int_equal(config_parse_duration("1h 30m", &ms), 0);
	assert_int_equal(ms, 5400000);
	assert_int_equal(config_parse_duration("1d2h3m4s5ms", &ms), 0);
	assert_int_equal(ms, 93784005);
	assert_int_equal(config_parse_duration("0.5ms", &ms), 0);
	assert_int_equal(ms, 1); /* rounded to the nearest ms */
	/* the largest a config may say: 10^15 ms, some 31,700 years */
	assert_int_equal(config_parse_duration("11574074d", &ms), 0);
	assert_true(ms == 11574074ll * 86400000);
	ms = 7;
	assert_int_equal(config_parse_duration("11574075d", &ms), -1);
	assert_int_equal(config_parse_duration("1d2", &ms), -1);
	assert_int_equal(config_parse_duration("1m/s", &ms), -1);
	assert_int_equal(config_parse_duration("00", &ms), -1);
	assert_int_equal(config_parse_duration(NULL, &ms), -1);
	assert_int_equal(ms, 7);
}

static void test_parse_size_edges(void **state)
{
	uint64_t bytes;

	(void)state;
	assert_int_equal(config_parse_size("16000000TB", &bytes), 0);
	assert_true(bytes == 16000000ull * 1000000000000ull);
	assert_int_equal(config_parse_size("0", &bytes), 0);
	assert_true(bytes == 0);
	assert_int_equal(config_parse_size("1kB", &bytes), 0);
	assert_true(bytes == 1000);
	bytes = 7;
	/* 2^64 bytes do not fit */
	assert_int_equal(config_parse_size("16777216TiB", &bytes), -1);
	assert_int_equal(config_parse_size("18446744073709551616", &bytes), -1);
	assert_int_equal(config_parse_size("1kib", &bytes), -1);
	assert_int_equal(config_parse_size("1MiB ", &bytes), -1);
	assert_int_equal(config_parse_size(NULL, &bytes), -1);
	assert_true(bytes == 7);
}

static void test_parse_power_edges(void **state)
{
	double watts = 7;

	(void)state;
	/* 0 W parses; the loader refuses it where a power must be more than 0 */
	assert_int_equal(config_parse_power("0W", &watts), 0);
	assert_true(watts == 0);
	assert_int_equal(config_parse_power("1 kW", &watts), 0);
	assert_true(watts == 1000);
	assert_int_equal(config_parse_power("2KW", &watts), 0);
	assert_true(watts == 2000);
	watts = 7;
	assert_int_equal(config_parse_power("-1W", &watts), -1);
	assert_int_equal(config_parse_power("1W ", &watts), -1);
	assert_int_equal(config_parse_power("1mW", &watts), -1);
	assert_int_equal(config_parse_power(NULL, &watts), -1);
	assert_true(watts == 7);
}

static void test_parse_time_of_day_edges(void **state)
{
	static const char *const bad[] = { "", ":00", "12:", "12:00:", "12:00:5", "-1:00",
					   "ab:cd", "12:0a", "12h00", "12:00 ", "25:00", NULL };
	int secs;

	(void)state;
	assert_int_equal(config_parse_time_of_day("00:00", &secs), 0);
	assert_int_equal(secs, 0);
	assert_int_equal(config_parse_time_of_day("7:05:09", &secs), 0);
	assert_int_equal(secs, 7 * 3600 + 5 * 60 + 9);
	assert_int_equal(config_parse_time_of_day("24:00:00", &secs), 0);
	assert_int_equal(secs, 86400);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		secs = 7;
		assert_int_equal(config_parse_time_of_day(bad[i], &secs), -1);
		assert_int_equal(secs, 7);
	}
}

/* web.listen: numeric only, the port 1..65535, loopback and "any" told apart. */
static void test_parse_listen(void **state)
{
	struct config_listen l;

	(void)state;
	assert_int_equal(config_parse_listen("0.0.0.0:8080", &l), 0);
	assert_int_equal(l.family, AF_INET);
	assert_int_equal(l.port, 8080);
	assert_true(l.any);
	assert_false(l.loopback);
	assert_int_equal(config_parse_listen("127.0.0.2:1", &l), 0);
	assert_true(l.loopback);
	assert_false(l.any);
	assert_int_equal(config_parse_listen("192.168.1.20:65535", &l), 0);
	assert_false(l.loopback);
	assert_int_equal(l.addr[0], 192);
	assert_int_equal(l.addr[3], 20);
	assert_int_equal(config_parse_listen("[::]:8080", &l), 0);
	assert_int_equal(l.family, AF_INET6);
	assert_true(l.any);
	assert_int_equal(config_parse_listen("[::1]:8080", &l), 0);
	assert_true(l.loopback);
	assert_int_equal(config_parse_listen("[::ffff:127.0.0.1]:8080", &l), 0);
	assert_true(l.loopback);
	assert_int_equal(config_parse_listen("[fe80::1]:80", &l), 0);
	assert_false(l.loopback);
	l.port = 7;
	static const char *const bad[] = { "", "8080", ":8080", "0.0.0.0", "0.0.0.0:", "0.0.0.0:0",
					   "0.0.0.0:65536", "0.0.0.0:80x", "0.0.0.0:+80",
					   "localhost:8080", "::1:8080", "[::1]8080", "[::1]:",
					   "[127.0.0.1]:80", "1.2.3:80", "0.0.0.0:-1", NULL };
	for (size_t i = 0; bad[i]; i++)
		if (config_parse_listen(bad[i], &l) != -1)
			fail_msg("'%s' was taken", bad[i]);
	assert_int_equal(l.port, 7); /* left as it was */
	assert_int_equal(config_parse_listen(NULL, &l), -1);
}

static void test_format_duration(void **state)
{
	static const struct {
		int64_t ms;
		const char *text;
	} cases[] = {
		{ 0, "0" }, { 500, "500ms" }, { 1500, "1500ms" }, { 1000, "1s" },
		/* one minute reads 60s, as in "expected 60s..1d"; two are 2m */
		{ 60000, "60s" }, { 90000, "90s" }, { 120000, "2m" }, { 5400000, "90m" },
		{ 3600000, "1h" }, { 90000000, "25h" }, { 86400000, "1d" }, { -1000, "-1s" },
		{ INT64_MAX, "9223372036854775807ms" }, { INT64_MIN, "-9223372036854775808ms" },
	};
	char buf[CONFIG_VALUE_TEXT_MAX];
	int64_t back;

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		assert_ptr_equal(config_format_duration(cases[i].ms, buf, sizeof buf), buf);
		assert_string_equal(buf, cases[i].text);
		/* what a message says can be written in the config again */
		if (cases[i].ms >= 0 && cases[i].ms < INT64_MAX) {
			assert_int_equal(config_parse_duration(buf, &back), 0);
			assert_true(back == cases[i].ms);
		}
	}
}

static void test_format_size(void **state)
{
	static const struct {
		uint64_t bytes;
		const char *text;
	} cases[] = {
		{ 0, "0B" }, { 100, "100B" }, { 1024, "1KiB" }, { 1536, "1536B" },
		{ 1048576, "1MiB" }, { 3ull << 29, "1536MiB" }, { 2ull << 30, "2GiB" },
		{ UINT64_MAX, "18446744073709551615B" },
	};
	char buf[CONFIG_VALUE_TEXT_MAX];
	uint64_t back;

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		assert_ptr_equal(config_format_size(cases[i].bytes, buf, sizeof buf), buf);
		assert_string_equal(buf, cases[i].text);
		if (cases[i].bytes < UINT64_MAX) {
			assert_int_equal(config_parse_size(buf, &back), 0);
			assert_true(back == cases[i].bytes);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_int),
		cmocka_unit_test(test_parse_number),
		cmocka_unit_test(test_parse_bool),
		cmocka_unit_test(test_parse_duration_edges),
		cmocka_unit_test(test_parse_size_edges),
		cmocka_unit_test(test_parse_power_edges),
		cmocka_unit_test(test_parse_time_of_day_edges),
		cmocka_unit_test(test_parse_listen),
		cmocka_unit_test(test_format_duration),
		cmocka_unit_test(test_format_size),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
