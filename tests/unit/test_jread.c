/* jread: reads back JSON as sluiced writes it (numbers keep their digits), and refuses
 * damaged text with the byte offset instead of crashing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "jread.h"
#include "json.h"

static struct jval *parse(const char *s)
{
	char err[128];
	struct jval *v = jread_parse(s, strlen(s), err, sizeof err);
	if (!v)
		fail_msg("%s: %s", s, err);
	return v;
}

static void test_snapshot(void **state)
{
	const char *text = "{\"pid\":42,\"gateway\":\"gw1\",\"running\":true,\"started\":1795708955800,"
			   "\"uplink\":{\"host\":\"::1\",\"connected\":false,\"error\":\"refused\"},"
			   "\"devices\":[{\"id\":\"inlet\",\"name\":\"三号分区 进水流量计\"},{\"id\":\"x\"}],"
			   "\"n\":null,\"big\":18446744073709551615,\"f\":-1.5e3}";
	struct jval *v;
	const struct jval *d;

	(void)state;
	v = parse(text);
	assert_int_equal(v->type, J_OBJ);
	assert_int_equal(jread_i64(v, "pid", 0), 42);
	assert_int_equal(jread_i64(v, "started", 0), 1795708955800LL);
	assert_string_equal(jread_str(v, "gateway"), "gw1");
	assert_true(jread_bool(v, "running", false));
	assert_false(jread_bool(jread_get(v, "uplink"), "connected", true));
	assert_string_equal(jread_str(jread_get(v, "uplink"), "error"), "refused");
	d = jread_get(v, "devices");
	assert_int_equal(d->type, J_ARR);
	assert_int_equal(d->n, 2);
	assert_string_equal(jread_str(d->items[0], "name"), "三号分区 进水流量计");
	assert_null(jread_str(d->items[1], "name"));
	assert_int_equal(jread_get(v, "n")->type, J_NULL);
	/* absent, or of another type: the default */
	assert_int_equal(jread_i64(v, "nope", -7), -7);
	assert_int_equal(jread_i64(v, "gateway", -7), -7);
	assert_null(jread_str(v, "pid"));
	assert_int_equal(jread_i64(v, "f", 0), -1500);
	/* digits kept past 2^53 */
	assert_string_equal(jread_get(v, "big")->str, "18446744073709551615");
	jread_free(v);
}

static void test_round_trip(void **state)
{
	const char *text = "{\"seq\":7,\"ts\":1795708961839,\"values\":{\"flow\":14.376696,"
			   "\"u64\":12345678901234567890,\"ok\":false,\"label\":\"a\\\"b\\\\c\\u0001\"},"
			   "\"errors\":{\"total\":\"timeout\"},\"list\":[],\"o\":{}}";
	struct jval *v;
	struct jbuf b;

	(void)state;
	v = parse(text);
	jb_init(&b);
	jread_emit(&b, v);
	assert_string_equal(jb_cstr_get(&b), text);
	jb_free(&b);
	jread_free(v);
}

static void test_escapes(void **state)
{
	struct jval *v;

	(void)state;
	v = parse("\"\\u4e09\\n\\ud83d\\ude00\\/\"");
	assert_int_equal(v->type, J_STR);
	assert_string_equal(v->str, "三\n😀/");
	jread_free(v);
	/* a lone surrogate becomes U+FFFD, the text stays valid UTF-8 */
	v = parse("\"a\\ud800b\"");
	assert_string_equal(v->str, "a\xef\xbf\xbd" "b");
	jread_free(v);
	v = parse("\"\\u0000x\"");
	assert_int_equal(v->len, 2);
	jread_free(v);
	/* repeated key: the last wins */
	v = parse(" {\"a\":1,\"a\":2} \n");
	assert_int_equal(jread_i64(v, "a", 0), 2);
	jread_free(v);
}

static void test_damaged(void **state)
{
	static const char *const bad[] = {
		"", "{", "{\"a\":}", "{\"a\" 1}", "{a:1}", "[1,]", "[1 2]", "01", "1.", "-",
		"1e", "+1", "NaN", "tru", "\"abc", "\"\\x\"", "\"\\u12\"", "\"a\nb\"", "{} x",
		"{\"a\":1,}", "[\"\\ud800\\u", "nul",
	};
	char err[128], deep[200];

	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = '\0';
		if (jread_parse(bad[i], strlen(bad[i]), err, sizeof err) != NULL)
			fail_msg("accepted %s", bad[i]);
		assert_non_null(strstr(err, "at byte"));
	}
	/* nesting is bounded */
	memset(deep, '[', sizeof deep);
	assert_null(jread_parse(deep, sizeof deep, err, sizeof err));
	assert_non_null(strstr(err, "nested too deeply"));
	/* the length bounds the parse, not a NUL */
	assert_null(jread_parse("{\"a\":1}", 5, err, sizeof err));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_snapshot),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_damaged),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
