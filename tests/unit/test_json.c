/*
 * test_json: the JSON writer. Exact texts for every escape, every class of invalid
 * UTF-8 and the number forms; then properties over random input, checked by a
 * validator written here independently of json.c: the output is valid UTF-8, has
 * no raw control characters, and numbers match RFC 8259's grammar and read back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define FFFD "\xEF\xBF\xBD"

/* jb_strn of n bytes must give exactly want (quotes included). */
static void check_strn(const char *in, size_t n, const char *want)
{
	struct jbuf b;

	jb_init(&b);
	jb_strn(&b, in, n);
	assert_false(b.oom);
	assert_string_equal(jb_cstr_get(&b), want);
	assert_int_equal(b.len, strlen(want));
	jb_free(&b);
}

#define CHECK_STR(lit, want) check_strn(lit, sizeof(lit) - 1, want)

static void check_double(double v, const char *want)
{
	struct jbuf b;

	jb_init(&b);
	jb_double(&b, v);
	assert_string_equal(jb_cstr_get(&b), want);
	jb_free(&b);
}

/* RFC 8259: number = [ minus ] int [ frac ] [ exp ] */
static bool json_number_ok(const char *s)
{
	if (*s == '-')
		s++;
	if (*s == '0') {
		s++;
	} else if (*s >= '1' && *s <= '9') {
		while (*s >= '0' && *s <= '9')
			s++;
	} else {
		return false;
	}
	if (*s == '.') {
		s++;
		if (!(*s >= '0' && *s <= '9'))
			return false;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '+' || *s == '-')
			s++;
		if (!(*s >= '0' && *s <= '9'))
			return false;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	return *s == '\0';
}

/* Strict UTF-8 (no overlongs, surrogates or > U+10FFFF), no raw control bytes,
 * and every backslash starts a valid JSON escape. The string is quoted. */
static bool json_string_ok(const unsigned char *s, size_t n)
{
	size_t i = 1;

	if (n < 2 || s[0] != '"' || s[n - 1] != '"')
		return false;
	n--;
	while (i < n) {
		unsigned char c = s[i];
		if (c < 0x20)
			return false;
		if (c == '"')
			return false;
		if (c == '\\') {
			if (i + 1 >= n)
				return false;
			if (strchr("\"\\/bfnrt", s[i + 1]) && s[i + 1]) {
				i += 2;
				continue;
			}
			if (s[i + 1] != 'u' || i + 5 >= n + 0)
				return false;
			for (int k = 2; k < 6; k++)
				if (!strchr("0123456789abcdefABCDEF", s[i + k]) || !s[i + k])
					return false;
			i += 6;
			continue;
		}
		if (c < 0x80) {
			i++;
			continue;
		}
		uint32_t cp;
		int len;
		if (c >= 0xC0 && c < 0xE0) {
			cp = c & 0x1F;
			len = 2;
		} else if (c >= 0xE0 && c < 0xF0) {
			cp = c & 0x0F;
			len = 3;
		} else if (c >= 0xF0 && c < 0xF8) {
			cp = c & 0x07;
			len = 4;
		} else {
			return false;
		}
		if (i + (size_t)len > n)
			return false;
		for (int k = 1; k < len; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3F);
		}
		static const uint32_t min[5] = { 0, 0, 0x80, 0x800, 0x10000 };
		if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += (size_t)len;
	}
	return true;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
	/* xorshift64*: deterministic, so a failure reproduces */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1Dull;
}

/* --- strings --------------------------------------------------------------------- */

static void test_escapes(void **state)
{
	(void)state;
	CHECK_STR("plain", "\"plain\"");
	CHECK_STR("", "\"\"");
	CHECK_STR("a\"b", "\"a\\\"b\"");
	CHECK_STR("a\\b", "\"a\\\\b\"");
	CHECK_STR("\b\f\n\r\t", "\"\\b\\f\\n\\r\\t\"");
	CHECK_STR("\x01", "\"\\u0001\"");
	CHECK_STR("\x1f", "\"\\u001f\"");
	CHECK_STR("\x0b", "\"\\u000b\"");
	CHECK_STR("\x1b[0m", "\"\\u001b[0m\"");
	/* DEL and '/' need no escape in JSON */
	CHECK_STR("\x7f/", "\"\x7f/\"");
	/* an embedded NUL is data when the length is given */
	CHECK_STR("a\0b", "\"a\\u0000b\"");
	/* escapes between clean runs, at both ends */
	CHECK_STR("\"x\"y\"", "\"\\\"x\\\"y\\\"\"");
}

static void test_str_null_and_cstr(void **state)
{
	struct jbuf b;

	(void)state;
	jb_init(&b);
	assert_string_equal(jb_cstr_get(&b), "");
	jb_str(&b, NULL);
	jb_cstr(&b, ",");
	jb_str(&b, "x\ty");
	assert_string_equal(jb_cstr_get(&b), "null,\"x\\ty\"");
	jb_free(&b);
}

static void test_utf8_valid_passes(void **state)
{
	(void)state;
	/* the example config's site name: Chinese stays readable, not \u-escaped */
	CHECK_STR("丰都县城 自来水厂加压站", "\"丰都县城 自来水厂加压站\"");
	CHECK_STR("三号计量分区 进水电磁流量计", "\"三号计量分区 进水电磁流量计\"");
	CHECK_STR("m³/h", "\"m³/h\"");
	CHECK_STR("\xC2\x80", "\"\xC2\x80\"");                 /* U+0080, smallest 2-byte */
	CHECK_STR("\xDF\xBF", "\"\xDF\xBF\"");                 /* U+07FF */
	CHECK_STR("\xE0\xA0\x80", "\"\xE0\xA0\x80\"");         /* U+0800, smallest 3-byte */
	CHECK_STR("\xED\x9F\xBF", "\"\xED\x9F\xBF\"");         /* U+D7FF, below surrogates */
	CHECK_STR("\xEE\x80\x80", "\"\xEE\x80\x80\"");         /* U+E000, above surrogates */
	CHECK_STR(FFFD, "\"" FFFD "\"");                        /* U+FFFD itself */
	CHECK_STR("\xF0\x90\x80\x80", "\"\xF0\x90\x80\x80\""); /* U+10000 */
	CHECK_STR("\xF0\x9F\x98\x80", "\"\xF0\x9F\x98\x80\""); /* U+1F600 emoji */
	CHECK_STR("\xF4\x8F\xBF\xBF", "\"\xF4\x8F\xBF\xBF\""); /* U+10FFFF, the last */
	CHECK_STR("\xE2\x80\xA8", "\"\xE2\x80\xA8\"");         /* U+2028 is valid JSON */
	CHECK_STR("泵\n站", "\"泵\\n站\"");
}

/* jb_utf8: the same replacements as jb_strn, without quotes or escapes. */
static void test_utf8_raw(void **state)
{
	static const struct {
		const char *in;
		size_t n;
		const char *want;
	} cases[] = {
		{ "泵\n站\"\\", 9, "泵\n站\"\\" },
		{ "caf\xE9", 4, "caf" FFFD },
		{ "a\x80\x80z", 4, "a" FFFD FFFD "z" },
		{ "\xF0\x9F\x98", 3, FFFD },            /* a truncated emoji: one replacement */
		{ "x\0y", 3, "x\0y" },                  /* a NUL is kept: the caller has the length */
		{ "", 0, "" },
	};
	struct jbuf b;

	(void)state;
	jb_init(&b);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t wn = i == 4 ? 3 : strlen(cases[i].want);
		jb_reset(&b);
		jb_utf8(&b, cases[i].in, cases[i].n);
		assert_int_equal(b.len, wn);
		if (wn)
			assert_memory_equal(b.p, cases[i].want, wn);
	}
	jb_free(&b);
}

static void test_utf8_stray_continuation(void **state)
{
	(void)state;
	CHECK_STR("\x80", "\"" FFFD "\"");
	CHECK_STR("\xBF", "\"" FFFD "\"");
	CHECK_STR("a\x80\x80z", "\"a" FFFD FFFD "z\"");
	/* a continuation after a complete character */
	CHECK_STR("\xC3\xA9\xA9", "\"\xC3\xA9" FFFD "\"");
}

static void test_utf8_invalid_leads(void **state)
{
	(void)state;
	CHECK_STR("\xFE", "\"" FFFD "\"");
	CHECK_STR("\xFF", "\"" FFFD "\"");
	CHECK_STR("x\xFEy", "\"x" FFFD "y\"");
	/* F5..F7 would start code points past U+10FFFF */
	CHECK_STR("\xF5\x80\x80\x80", "\"" FFFD FFFD FFFD FFFD "\"");
	CHECK_STR("\xF7\xBF\xBF\xBF", "\"" FFFD FFFD FFFD FFFD "\"");
	/* Latin-1 text from a legacy device */
	CHECK_STR("caf\xE9", "\"caf" FFFD "\"");
}

static void test_utf8_overlong(void **state)
{
	(void)state;
	CHECK_STR("\xC0\x80", "\"" FFFD FFFD "\"");            /* NUL, overlong */
	CHECK_STR("\xC0\xAF", "\"" FFFD FFFD "\"");            /* '/', overlong */
	CHECK_STR("\xC1\xBF", "\"" FFFD FFFD "\"");
	CHECK_STR("\xE0\x80\xAF", "\"" FFFD FFFD FFFD "\"");   /* '/', 3 bytes */
	CHECK_STR("\xE0\x9F\xBF", "\"" FFFD FFFD FFFD "\"");   /* U+07FF, 3 bytes */
	CHECK_STR("\xF0\x80\x80\xAF", "\"" FFFD FFFD FFFD FFFD "\"");
	CHECK_STR("\xF0\x8F\xBF\xBF", "\"" FFFD FFFD FFFD FFFD "\""); /* U+FFFF, 4 bytes */
}

static void test_utf8_surrogates(void **state)
{
	(void)state;
	CHECK_STR("\xED\xA0\x80", "\"" FFFD FFFD FFFD "\"");   /* U+D800 */
	CHECK_STR("\xED\xAF\xBF", "\"" FFFD FFFD FFFD "\"");   /* U+DBFF */
	CHECK_STR("\xED\xB0\x80", "\"" FFFD FFFD FFFD "\"");   /* U+DC00 */
	CHECK_STR("\xED\xBF\xBF", "\"" FFFD FFFD FFFD "\"");   /* U+DFFF */
	/* CESU-8 pair for U+1F600 */
	CHECK_STR("\xED\xA0\xBD\xED\xB8\x80", "\"" FFFD FFFD FFFD FFFD FFFD FFFD "\"");
}

static void test_utf8_above_max(void **state)
{
	(void)state;
	CHECK_STR("\xF4\x90\x80\x80", "\"" FFFD FFFD FFFD FFFD "\""); /* U+110000 */
	CHECK_STR("\xF4\xBF\xBF\xBF", "\"" FFFD FFFD FFFD FFFD "\"");
}

static void test_utf8_truncated(void **state)
{
	(void)state;
	/* a truncated sequence is one replacement, whatever its length so far */
	CHECK_STR("\xC3", "\"" FFFD "\"");
	CHECK_STR("\xE4\xB8", "\"" FFFD "\"");                 /* 丰 without its last byte */
	CHECK_STR("\xF0\x9F\x98", "\"" FFFD "\"");
	CHECK_STR("ab\xE4", "\"ab" FFFD "\"");
	/* interrupted by ASCII or by a new lead byte */
	CHECK_STR("\xE4\xB8" "A", "\"" FFFD "A\"");
	CHECK_STR("\xF0\x9F\x98\"", "\"" FFFD "\\\"\"");
	CHECK_STR("\xE4\xB8\xE4\xB8\xB0", "\"" FFFD "\xE4\xB8\xB0\"");
	CHECK_STR("\xC3\n", "\"" FFFD "\\n\"");
	/* a string cut by a length mid-character (a fixed-size register string) */
	check_strn("丰都", 5, "\"丰" FFFD "\"");
}

static void test_utf8_random_is_valid(void **state)
{
	unsigned char in[64];
	struct jbuf b;

	(void)state;
	jb_init(&b);
	for (int iter = 0; iter < 20000; iter++) {
		size_t n = rng() % sizeof in;
		for (size_t i = 0; i < n; i++) {
			uint64_t r = rng();
			/* bias toward bytes that make interesting sequences */
			in[i] = (r & 3) == 0 ? (unsigned char)(0x80 | (r >> 8 & 0x3F))
					     : (unsigned char)(r >> 16);
		}
		jb_reset(&b);
		jb_strn(&b, (const char *)in, n);
		assert_false(b.oom);
		if (!json_string_ok((const unsigned char *)b.p, b.len)) {
			fprintf(stderr, "invalid output for input of %zu bytes:", n);
			for (size_t i = 0; i < n; i++)
				fprintf(stderr, " %02x", in[i]);
			fprintf(stderr, "\n");
			fail();
		}
	}
	jb_free(&b);
}

static void test_utf8_valid_random_roundtrip(void **state)
{
	/* random well-formed UTF-8 without specials passes through byte for byte */
	char in[256];
	struct jbuf b;

	(void)state;
	jb_init(&b);
	for (int iter = 0; iter < 5000; iter++) {
		size_t n = 0;
		while (n < sizeof in - 4) {
			uint32_t cp = (uint32_t)(rng() % 0x110000);
			if (cp < 0x20 || cp == '"' || cp == '\\' || (cp >= 0xD800 && cp <= 0xDFFF))
				continue;
			if (rng() % 4 == 0)
				break;
			if (cp < 0x80) {
				in[n++] = (char)cp;
			} else if (cp < 0x800) {
				in[n++] = (char)(0xC0 | cp >> 6);
				in[n++] = (char)(0x80 | (cp & 0x3F));
			} else if (cp < 0x10000) {
				in[n++] = (char)(0xE0 | cp >> 12);
				in[n++] = (char)(0x80 | (cp >> 6 & 0x3F));
				in[n++] = (char)(0x80 | (cp & 0x3F));
			} else {
				in[n++] = (char)(0xF0 | cp >> 18);
				in[n++] = (char)(0x80 | (cp >> 12 & 0x3F));
				in[n++] = (char)(0x80 | (cp >> 6 & 0x3F));
				in[n++] = (char)(0x80 | (cp & 0x3F));
			}
		}
		jb_reset(&b);
		jb_strn(&b, in, n);
		assert_int_equal(b.len, n + 2);
		assert_memory_equal(b.p + 1, in, n);
	}
	jb_free(&b);
}

/* --- numbers --------------------------------------------------------------------- */

static void test_double_forms(void **state)
{
	(void)state;
	check_double(0.1, "0.1");
	check_double(1e300, "1e+300");
	check_double(5e-324, "5e-324");            /* smallest subnormal, shortest form */
	check_double(123456.789, "123456.789");
	check_double(0.0, "0");
	check_double(-0.0, "-0");
	check_double(1.0, "1");
	check_double(-2.5, "-2.5");
	check_double(1e20, "1e+20");
	check_double(1e-7, "1e-07");
	check_double(0.1 + 0.2, "0.30000000000000004");    /* needs all 17 digits */
	check_double(1.0 / 3.0, "0.3333333333333333");      /* 16 digits */
	check_double(DBL_MAX, "1.7976931348623157e+308");
	check_double(DBL_MIN, "2.2250738585072014e-308");
	check_double(2.2250738585072009e-308, "2.225073858507201e-308"); /* largest subnormal */
	check_double(9007199254740993.0, "9007199254740992");
	check_double(-1234.5678e-10, "-1.2345678e-07");
}

static void test_double_non_finite(void **state)
{
	(void)state;
	check_double(NAN, "null");
	check_double(-NAN, "null");
	check_double(INFINITY, "null");
	check_double(-INFINITY, "null");
}

static void test_double_roundtrip_random(void **state)
{
	struct jbuf b;

	(void)state;
	jb_init(&b);
	for (int iter = 0; iter < 200000; iter++) {
		uint64_t bits = rng();
		double v;
		memcpy(&v, &bits, sizeof v);
		if (iter % 3 == 0)
			v = (double)(int64_t)(bits >> 40) / 1000.0;   /* meter-like values */
		jb_reset(&b);
		jb_double(&b, v);
		const char *t = jb_cstr_get(&b);
		if (!isfinite(v)) {
			assert_string_equal(t, "null");
			continue;
		}
		if (!json_number_ok(t) || strtod(t, NULL) != v) {
			fprintf(stderr, "bits %016llx gave '%s'\n", (unsigned long long)bits, t);
			fail();
		}
		/* nothing shorter than 15 significant digits is missed for normal values */
		assert_true(strlen(t) <= 24);
	}
	jb_free(&b);
}

/*
 * printf and strtod follow LC_NUMERIC; a daemon that calls setlocale(LC_ALL, "") under
 * de_DE would write 123456,789. This machine may have no such locale installed, so
 * one is compiled into a temporary directory and found through LOCPATH.
 */
static void test_double_under_comma_locale(void **state)
{
	char dir[] = "/tmp/test_json.XXXXXX";
	char cmd[256], t[32];
	bool made = false;

	(void)state;
	if (!setlocale(LC_NUMERIC, "de_DE.UTF-8")) {
		if (!mkdtemp(dir)) {
			skip();
			return;
		}
		made = true;
		snprintf(cmd, sizeof cmd,
			 "localedef -i de_DE -f UTF-8 %s/de_DE.UTF-8 >/dev/null 2>&1", dir);
		if (system(cmd) == 0) {
			setenv("LOCPATH", dir, 1);
			setlocale(LC_NUMERIC, "de_DE.UTF-8");
		}
	}
	/* format under the locale, clean up, then check: a failure leaves nothing behind */
	static const double vals[] = { 123456.789, 0.5, -1.25e-10, 0.1 + 0.2, 5e-324 };
	static const char *const want[] = { "123456.789", "0.5", "-1.25e-10",
					    "0.30000000000000004", "5e-324" };
	char got[5][32];
	bool comma;
	struct jbuf b;

	snprintf(t, sizeof t, "%g", 1.5);
	comma = strcmp(t, "1,5") == 0;
	jb_init(&b);
	for (size_t i = 0; i < 5; i++) {
		jb_reset(&b);
		jb_double(&b, vals[i]);
		snprintf(got[i], sizeof got[i], "%s", jb_cstr_get(&b));
	}
	jb_free(&b);
	setlocale(LC_NUMERIC, "C");
	unsetenv("LOCPATH");
	if (made) {
		snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
		assert_int_equal(system(cmd), 0);
	}
	if (!comma) {
		skip();   /* no comma-decimal locale could be had here */
		return;
	}
	for (size_t i = 0; i < 5; i++)
		assert_string_equal(got[i], want[i]);
}

static void test_integers(void **state)
{
	struct jbuf b;

	(void)state;
	jb_init(&b);
	jb_i64(&b, INT64_MIN);
	jb_cstr(&b, " ");
	jb_i64(&b, INT64_MAX);
	jb_cstr(&b, " ");
	jb_i64(&b, 0);
	jb_cstr(&b, " ");
	jb_i64(&b, -1);
	jb_cstr(&b, " ");
	jb_u64(&b, UINT64_MAX);
	jb_cstr(&b, " ");
	jb_u64(&b, 0);
	jb_cstr(&b, " ");
	/* 2^53 + 1 is not a double: integers must not pass through one */
	jb_u64(&b, 9007199254740993ull);
	assert_string_equal(jb_cstr_get(&b),
			    "-9223372036854775808 9223372036854775807 0 -1 "
			    "18446744073709551615 0 9007199254740993");
	jb_free(&b);
}

static void test_bool(void **state)
{
	struct jbuf b;

	(void)state;
	jb_init(&b);
	jb_bool(&b, true);
	jb_raw(&b, ",", 1);
	jb_bool(&b, false);
	assert_string_equal(jb_cstr_get(&b), "true,false");
	jb_free(&b);
}

/* --- documents ------------------------------------------------------------------- */

static void test_keys_and_object(void **state)
{
	struct jbuf b;
	bool first = true;

	(void)state;
	jb_init(&b);
	jb_raw(&b, "{", 1);
	jb_key(&b, "a,b", &first);
	assert_false(first);
	jb_i64(&b, 1);
	jb_key(&b, "c\"d:", &first);
	jb_double(&b, NAN);
	jb_key(&b, "流量", &first);
	jb_double(&b, 12.5);
	jb_key(&b, "}", &first);
	jb_str(&b, "\x80");
	jb_raw(&b, "}", 1);
	assert_string_equal(jb_cstr_get(&b),
			    "{\"a,b\":1,\"c\\\"d:\":null,\"流量\":12.5,\"}\":\"" FFFD "\"}");
	jb_free(&b);
}

static void test_growth_and_reset(void **state)
{
	struct jbuf b;
	char big[10000];

	(void)state;
	memset(big, 'x', sizeof big);
	jb_init(&b);
	for (int i = 0; i < 50; i++)
		jb_strn(&b, big, sizeof big);
	assert_false(b.oom);
	assert_int_equal(b.len, 50 * (sizeof big + 2));
	assert_true(b.cap > b.len);
	assert_int_equal(strlen(jb_cstr_get(&b)), b.len);

	char *before = b.p;
	size_t cap = b.cap;
	jb_reset(&b);
	assert_int_equal(b.len, 0);
	assert_string_equal(jb_cstr_get(&b), "");
	jb_cstr(&b, "again");
	/* reset keeps the allocation for the next message */
	assert_ptr_equal(b.p, before);
	assert_int_equal(b.cap, cap);
	assert_string_equal(jb_cstr_get(&b), "again");
	jb_free(&b);
	assert_null(b.p);
	assert_int_equal(b.len, 0);
	jb_free(&b);   /* twice is harmless */
}

static void test_oom_is_sticky(void **state)
{
	struct jbuf b;

	(void)state;
	jb_init(&b);
	jb_cstr(&b, "{\"a\":");
	/* a length no allocator can satisfy: it must fail before touching the bytes */
	jb_raw(&b, "", SIZE_MAX - 8);
	assert_true(b.oom);
	assert_string_equal(jb_cstr_get(&b), "");
	size_t len = b.len;
	jb_str(&b, "more");
	jb_double(&b, 1.5);
	jb_i64(&b, 7);
	assert_int_equal(b.len, len);
	assert_true(b.oom);
	assert_string_equal(jb_cstr_get(&b), "");

	jb_raw(&b, "", SIZE_MAX / 2);
	assert_true(b.oom);

	jb_reset(&b);
	assert_false(b.oom);
	jb_cstr(&b, "ok");
	assert_string_equal(jb_cstr_get(&b), "ok");
	jb_free(&b);
}

static void test_float32_shortest(void **state)
{
	(void)state;
	struct jbuf b;
	static const struct {
		float f;
		const char *want;
	} cases[] = {
		{ 16.958353f, "16.958353" },
		{ 0.1f, "0.1" },
		{ 1.0f, "1" },
		{ -2.5f, "-2.5" },
		{ 3.4028235e38f, "3.4028235e+38" },
		{ 1e-45f, "1e-45" },
		{ 123456.79f, "123456.79" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		jb_init(&b);
		jb_float32(&b, (double)cases[i].f);
		assert_string_equal(jb_cstr_get(&b), cases[i].want);
		/* and it reads back to the same float */
		assert_true(strtof(jb_cstr_get(&b), NULL) == cases[i].f);
		jb_free(&b);
	}
	jb_init(&b);
	jb_float32(&b, NAN);
	jb_cstr(&b, ",");
	jb_float32(&b, 1e300); /* scaled past float's range: written as the double */
	assert_string_equal(jb_cstr_get(&b), "null,1e+300");
	jb_free(&b);
}

static void test_point_value(void **state)
{
	(void)state;
	struct jbuf b;
	struct point_def f32 = { .type = PT_FLOAT32, .scale = 1 };
	struct point_def f64 = { .type = PT_FLOAT64, .scale = 1 };
	struct value v = { .kind = VAL_DOUBLE, .v.d = (double)16.958353f };

	jb_init(&b);
	jb_point_value(&b, &f32, &v);
	jb_cstr(&b, " ");
	jb_point_value(&b, &f64, &v);
	jb_cstr(&b, " ");
	v = (struct value){ .kind = VAL_UINT, .v.u = UINT64_MAX };
	jb_point_value(&b, &f64, &v);
	jb_cstr(&b, " ");
	v = (struct value){ .kind = VAL_NONE };
	jb_point_value(&b, &f64, &v);
	assert_string_equal(jb_cstr_get(&b), "16.958353 16.95835304260254 18446744073709551615 null");
	jb_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_float32_shortest),
		cmocka_unit_test(test_point_value),
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_str_null_and_cstr),
		cmocka_unit_test(test_utf8_valid_passes),
		cmocka_unit_test(test_utf8_raw),
		cmocka_unit_test(test_utf8_stray_continuation),
		cmocka_unit_test(test_utf8_invalid_leads),
		cmocka_unit_test(test_utf8_overlong),
		cmocka_unit_test(test_utf8_surrogates),
		cmocka_unit_test(test_utf8_above_max),
		cmocka_unit_test(test_utf8_truncated),
		cmocka_unit_test(test_utf8_random_is_valid),
		cmocka_unit_test(test_utf8_valid_random_roundtrip),
		cmocka_unit_test(test_double_forms),
		cmocka_unit_test(test_double_non_finite),
		cmocka_unit_test(test_double_roundtrip_random),
		cmocka_unit_test(test_double_under_comma_locale),
		cmocka_unit_test(test_integers),
		cmocka_unit_test(test_bool),
		cmocka_unit_test(test_keys_and_object),
		cmocka_unit_test(test_growth_and_reset),
		cmocka_unit_test(test_oom_is_sticky),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
