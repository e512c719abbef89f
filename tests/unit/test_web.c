/*
 * test_web: the page's pure parts — what a request carries (web_req: form fields,
 * cookies, device paths, a probe's JSON, Host and Origin), who may log in (web_auth:
 * the password file, crypt's verdict, sessions, the login throttle), and the history a
 * plot is drawn from (web_hist, over a real store in a temporary directory). The HTTP
 * side is tested in a real browser (tests/integration/test_web.py).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <crypt.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "jread.h"
#include "store.h"
#include "web_auth.h"
#include "web_hist.h"
#include "web_req.h"

/* ---- web_req ------------------------------------------------------------------------ */

static int field(const char *body, const char *name, char *out, size_t len)
{
	return web_form_field(body, strlen(body), name, out, len);
}

static void test_form_field(void **state)
{
	char v[16];

	(void)state;
	assert_int_equal(field("user=tech&password=p%40ss+word", "user", v, sizeof v), 1);
	assert_string_equal(v, "tech");
	assert_int_equal(field("user=tech&password=p%40ss+word", "password", v, sizeof v), 1);
	assert_string_equal(v, "p@ss word");
	/* a name that only ends like the one asked for is another field */
	assert_int_equal(field("xuser=a&user=b", "user", v, sizeof v), 1);
	assert_string_equal(v, "b");
	assert_int_equal(field("user=&x=1", "user", v, sizeof v), 1);
	assert_string_equal(v, "");
	assert_int_equal(field("x=1&y=2", "user", v, sizeof v), 0);
	assert_int_equal(field("user", "user", v, sizeof v), 0);
	/* malformed: a bad escape, one cut short, a NUL, a value that does not fit */
	assert_int_equal(field("user=%zz", "user", v, sizeof v), -1);
	assert_int_equal(field("user=a%4", "user", v, sizeof v), -1);
	assert_int_equal(field("user=a%", "user", v, sizeof v), -1);
	assert_int_equal(field("user=a%00b", "user", v, sizeof v), -1);
	assert_int_equal(field("user=0123456789abcdef", "user", v, sizeof v), -1);
	assert_int_equal(field("user=0123456789abcde", "user", v, sizeof v), 1);
	/* the length is the body's, not a NUL's */
	assert_int_equal(web_form_field("user=ab&pw=x", 7, "user", v, sizeof v), 1);
	assert_string_equal(v, "ab");
	assert_int_equal(web_form_field("user=ab&pw=x", 7, "pw", v, sizeof v), 0);
}

static void test_cookie(void **state)
{
	char v[8];

	(void)state;
	assert_int_equal(web_cookie("a=1; sluice_session=abc; b=2", "sluice_session", v, sizeof v), 1);
	assert_string_equal(v, "abc");
	assert_int_equal(web_cookie("sluice_session=x", "sluice_session", v, sizeof v), 1);
	assert_string_equal(v, "x");
	assert_int_equal(web_cookie("xsluice_session=1;sluice_session=2", "sluice_session", v,
				    sizeof v), 1);
	assert_string_equal(v, "2");
	/* the first of two */
	assert_int_equal(web_cookie("s=1; s=2", "s", v, sizeof v), 1);
	assert_string_equal(v, "1");
	assert_int_equal(web_cookie("a=1; b=2", "s", v, sizeof v), 0);
	assert_int_equal(web_cookie("", "s", v, sizeof v), 0);
	assert_int_equal(web_cookie("s", "s", v, sizeof v), 0);
	assert_int_equal(web_cookie("s=12345678", "s", v, sizeof v), -1);
}

static void test_path_device(void **state)
{
	char id[ID_MAX], longid[80];

	(void)state;
	assert_int_equal(web_path_device("/api/devices/inlet", id), 0);
	assert_string_equal(id, "inlet");
	assert_int_equal(web_path_device("/api/devices/dead-meter_2", id), 0);
	assert_int_equal(web_path_device("/api/devices/", id), -1);
	assert_int_equal(web_path_device("/api/devices/../etc", id), -1);
	assert_int_equal(web_path_device("/api/devices/a/b", id), -1);
	assert_int_equal(web_path_device("/api/devices/进水", id), -1);
	assert_int_equal(web_path_device("/api/device/inlet", id), -1);
	memset(longid, 'a', 64);
	longid[64] = '\0';
	char path[120];
	snprintf(path, sizeof path, "/api/devices/%s", longid);
	assert_int_equal(web_path_device(path, id), -1);
	path[strlen(path) - 1] = '\0';
	assert_int_equal(web_path_device(path, id), 0);
}

static int probe(const char *text, struct web_probe *p, char *msg)
{
	return web_probe_parse(text, strlen(text), p, msg, 200);
}

static void test_probe_parse(void **state)
{
	struct web_probe p;
	char msg[200];

	(void)state;
	assert_int_equal(probe("{\"device\":\"inlet\"}", &p, msg), 0);
	assert_string_equal(p.device, "inlet");
	assert_int_equal(p.nreads, 0);
	assert_int_equal(probe("{\"bus\":\"line\",\"unit\":3,\"timeout_ms\":500,\"reads\":[{\"table\":"
			       "\"input\",\"address\":65534,\"count\":2},{\"table\":\"coil\","
			       "\"address\":0,\"count\":125}]}", &p, msg), 0);
	assert_string_equal(p.bus, "line");
	assert_int_equal(p.unit, 3);
	assert_int_equal(p.timeout_ms, 500);
	assert_int_equal(p.nreads, 2);
	assert_int_equal(p.reads[0].table, MB_INPUT);
	assert_int_equal(p.reads[0].address, 65534);
	assert_int_equal(p.reads[1].count, 125);

	static const struct {
		const char *text, *says;
	} bad[] = {
		{ "", "not JSON" },
		{ "[1]", "JSON object" },
		{ "{\"device\":\"inlet\",\"unit\":1}", "unknown member \"unit\"" },
		{ "{\"device\":\"../x\"}", "device: expected a device id" },
		{ "{\"device\":7}", "device: expected a device id" },
		{ "{\"unit\":1,\"reads\":[]}", "bus: expected a bus id" },
		{ "{\"bus\":\"b\",\"reads\":[]}", "unit: expected an integer 0..255" },
		{ "{\"bus\":\"b\",\"unit\":256,\"reads\":[]}", "unit: expected" },
		{ "{\"bus\":\"b\",\"unit\":1.5,\"reads\":[]}", "unit: expected" },
		{ "{\"bus\":\"b\",\"unit\":1,\"timeout_ms\":10001,\"reads\":[]}", "timeout_ms" },
		{ "{\"bus\":\"b\",\"unit\":1,\"reads\":[]}", "reads: expected an array of 1..8" },
		{ "{\"bus\":\"b\",\"unit\":1,\"reads\":{}}", "reads: expected an array" },
		{ "{\"bus\":\"b\",\"unit\":1,\"reads\":[1]}", "reads[0]: expected an object" },
		{ "{\"bus\":\"b\",\"unit\":1,\"reads\":[{\"table\":\"x\",\"address\":0,\"count\":1}]}",
		  "reads[0].table" },
		{ "{\"bus\":\"b\",\"unit\":1,\"reads\":[{\"table\":\"coil\",\"address\":-1,\"count\":1}]}",
		  "reads[0].address" },
		{ "{\"bus\":\"b\",\"unit\":1,\"reads\":[{\"table\":\"coil\",\"address\":0,\"count\":126}]}",
		  "reads[0].count: expected an integer 1..125" },
		{ "{\"bus\":\"b\",\"unit\":1,\"reads\":[{\"table\":\"coil\",\"address\":65535,\"count\":2}]}",
		  "run past 65535" },
		{ "{\"bus\":\"b\",\"unit\":1,\"reads\":[{\"table\":\"coil\",\"address\":0,\"count\":1,"
		  "\"x\":1}]}", "reads[0]: unknown member \"x\"" },
		{ "{\"bus\":\"b\",\"unit\":1,\"reads\":[{},{},{},{},{},{},{},{},{}]}", "1..8" },
		{ "{\"bus\":\"b\",\"unit\":1,\"op\":\"write\",\"reads\":[]}", "unknown member \"op\"" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int rc = probe(bad[i].text, &p, msg);
		if (rc != -1 || !strstr(msg, bad[i].says))
			fail_msg("%s: %d, [%s], not [%s]", bad[i].text, rc, msg, bad[i].says);
	}
}

static void test_host_origin(void **state)
{
	(void)state;
	assert_true(web_host_loopback("127.0.0.1:8080"));
	assert_true(web_host_loopback("127.9.8.7"));
	assert_true(web_host_loopback("localhost:8080"));
	assert_true(web_host_loopback("LocalHost"));
	assert_true(web_host_loopback("[::1]:8080"));
	assert_true(web_host_loopback("[::ffff:127.0.0.1]:80"));
	assert_false(web_host_loopback("10.0.0.1:8080"));
	assert_false(web_host_loopback("evil.example:8080"));
	assert_false(web_host_loopback("localhost.evil.example"));
	assert_false(web_host_loopback("[::2]:80"));
	assert_false(web_host_loopback("[::1"));
	assert_false(web_host_loopback(""));
	assert_false(web_host_loopback(NULL));

	assert_true(web_origin_ok("http://192.168.1.20:8080", "192.168.1.20:8080", false));
	assert_true(web_origin_ok("https://gw.local:8443", "GW.local:8443", true));
	assert_false(web_origin_ok("http://gw.local:8443", "gw.local:8443", true));
	assert_false(web_origin_ok("http://evil.example", "192.168.1.20:8080", false));
	assert_false(web_origin_ok("null", "192.168.1.20:8080", false));
	assert_false(web_origin_ok("http://192.168.1.20:8080", NULL, false));
}

/* ---- web_auth ------------------------------------------------------------------------ */

/* SHA-512 crypt of password with a fixed salt, as `openssl passwd -6 -salt` makes it. */
static char *hash_of(const char *password)
{
	struct crypt_data *cd = calloc(1, sizeof *cd);
	char *h;

	assert_non_null(cd);
	h = strdup(crypt_r(password, "$6$testsalt0123$", cd));
	free(cd);
	assert_true(strncmp(h, "$6$testsalt0123$", 16) == 0);
	return h;
}

static void test_users(void **state)
{
	char *h = hash_of("secret"), text[1024], err[200];
	struct web_users u;
	void *cd = calloc(1, sizeof(struct crypt_data));

	(void)state;
	snprintf(text, sizeof text, "# users\n\ntech:%s\r\nlead:%s\n", h, h);
	assert_int_equal(web_users_parse(text, strlen(text), &u, err, sizeof err), 0);
	assert_int_equal(u.n, 2);
	assert_string_equal(u.u[0].name, "tech");
	assert_string_equal(u.u[1].hash, h);
	assert_true(web_users_verify(&u, "tech", "secret", cd));
	assert_true(web_users_verify(&u, "lead", "secret", cd));
	assert_false(web_users_verify(&u, "tech", "Secret", cd));
	assert_false(web_users_verify(&u, "tech", "", cd));
	assert_false(web_users_verify(&u, "nobody", "secret", cd));
	web_users_free(&u);

	static const struct {
		const char *text, *says;
	} bad[] = {
		{ "", "no user in it" },
		{ "# only a comment\n", "no user in it" },
		{ "tech\n", "line 1: expected user:HASH" },
		{ "\n:HASH\n", "line 2: a user name of 1..64 bytes" },
		{ "te ch:$6$a$b\n", "line 1: the user name has a space" },
		{ "tech:$1$abc$def\n", "line 1: user tech: the hash is not a SHA-512 crypt hash" },
		{ "tech:$6$salt$short\n", "not a SHA-512 crypt hash" },
		{ "tech:secret\n", "not a SHA-512 crypt hash" },
		{ "tech:\n", "line 1: expected a SHA-512 crypt hash" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int rc = web_users_parse(bad[i].text, strlen(bad[i].text), &u, err, sizeof err);
		if (rc != -1 || !strstr(err, bad[i].says))
			fail_msg("%s: %d, [%s], not [%s]", bad[i].text, rc, err, bad[i].says);
	}
	snprintf(text, sizeof text, "a:%s\na:%s\n", h, h);
	assert_int_equal(web_users_parse(text, strlen(text), &u, err, sizeof err), -1);
	assert_non_null(strstr(err, "line 2: user a is there twice"));
	/* rounds= as crypt(3) writes it, and the 16-character salt it allows */
	snprintf(text, sizeof text, "r:$6$rounds=10000$0123456789abcdef$%s\n", h + 16);
	assert_int_equal(web_users_parse(text, strlen(text), &u, err, sizeof err), 0);
	web_users_free(&u);
	snprintf(text, sizeof text, "r:$6$rounds=0100$salt$%s\n", h + 16);
	assert_int_equal(web_users_parse(text, strlen(text), &u, err, sizeof err), -1);
	assert_int_equal(web_users_parse("a:b\0c\n", 6, &u, err, sizeof err), -1);
	assert_non_null(strstr(err, "NUL"));
	free(cd);
	free(h);
}

static void test_sessions(void **state)
{
	struct web_sessions *s = calloc(1, sizeof *s);
	const struct web_session *a, *b, *x;
	char token[WEB_TOKEN_HEX + 1], first[WEB_TOKEN_HEX + 1];

	(void)state;
	assert_non_null(s);
	a = web_session_new(s, "tech", 1000);
	assert_non_null(a);
	assert_int_equal(strlen(a->token), WEB_TOKEN_HEX);
	assert_int_equal(strlen(a->csrf), WEB_TOKEN_HEX);
	assert_string_not_equal(a->token, a->csrf);
	snprintf(token, sizeof token, "%s", a->token);
	snprintf(first, sizeof first, "%s", a->token);
	assert_ptr_equal(web_session_find(s, token, 2000), a);
	token[5] ^= 1;
	assert_null(web_session_find(s, token, 2000));
	assert_null(web_session_find(s, "abc", 2000));
	/* expired */
	assert_null(web_session_find(s, first, 1000 + WEB_SESSION_MS));
	b = web_session_new(s, "lead", 5000);
	snprintf(token, sizeof token, "%s", b->token);
	web_session_end(s, token);
	assert_null(web_session_find(s, token, 6000));
	/* full: the oldest goes */
	for (int i = 0; i < WEB_SESSIONS_MAX; i++)
		assert_non_null(web_session_new(s, "u", 10000 + i));
	snprintf(first, sizeof first, "%s", s->s[0].token);
	for (size_t i = 0; i < WEB_SESSIONS_MAX; i++)
		if (s->s[i].started == 10000)
			snprintf(first, sizeof first, "%s", s->s[i].token);
	x = web_session_new(s, "late", 20000);
	assert_non_null(x);
	assert_null(web_session_find(s, first, 20001));
	assert_ptr_equal(web_session_find(s, x->token, 20001), x);
	free(s);
}

static void v4key(const char *addr, unsigned char key[16])
{
	struct sockaddr_in in = { .sin_family = AF_INET };

	assert_int_equal(inet_pton(AF_INET, addr, &in.sin_addr), 1);
	web_throttle_key(&in, key);
}

static void v6key(const char *addr, unsigned char key[16])
{
	struct sockaddr_in6 in = { .sin6_family = AF_INET6 };

	assert_int_equal(inet_pton(AF_INET6, addr, &in.sin6_addr), 1);
	web_throttle_key(&in, key);
}

static void test_throttle(void **state)
{
	struct web_throttle *t = calloc(1, sizeof *t);
	unsigned char a[16], b[16], c[16], m[16];
	int64_t now = 1000000;

	(void)state;
	v4key("192.168.1.5", a);
	v4key("192.168.1.6", b);
	v6key("::ffff:192.168.1.5", m);
	assert_memory_equal(a, m, 16); /* a v4-mapped address is the v4 client */
	v6key("2001:db8:1:2::1", c);
	v6key("2001:db8:1:2:ffff::9", m);
	assert_memory_equal(c, m, 16); /* one /64 */
	v6key("2001:db8:1:3::1", m);
	assert_memory_not_equal(c, m, 16);

	assert_int_equal(web_throttle_wait(t, a, now), 0);
	web_throttle_failed(t, a, now);
	assert_int_equal(web_throttle_wait(t, a, now + 1), 999);
	assert_int_equal(web_throttle_wait(t, b, now + 1), 0); /* another client: not held up */
	now += 1000;
	assert_int_equal(web_throttle_wait(t, a, now), 0);
	web_throttle_failed(t, a, now);
	assert_int_equal(web_throttle_wait(t, a, now), 2000);
	now += 2000;
	web_throttle_failed(t, a, now);
	assert_int_equal(web_throttle_wait(t, a, now), 4000);
	for (int i = 0; i < 20; i++)
		web_throttle_failed(t, a, now);
	assert_int_equal(web_throttle_wait(t, a, now), WEB_THROTTLE_MAX_MS);
	web_throttle_passed(t, a);
	assert_int_equal(web_throttle_wait(t, a, now + 5), 0);
	/* forgotten an hour after the last failure */
	web_throttle_failed(t, b, now);
	now += WEB_THROTTLE_FORGET_MS + 1;
	assert_int_equal(web_throttle_wait(t, b, now), 0);
	web_throttle_failed(t, b, now);
	assert_int_equal(web_throttle_wait(t, b, now), 1000); /* the count started again */

	/* everyone together: WEB_LOGINS_PER_S password checks a second */
	memset(t, 0, sizeof *t);
	now = 5000000;
	for (int i = 0; i < WEB_LOGINS_PER_S; i++) {
		unsigned char k[16];
		char addr[32];
		snprintf(addr, sizeof addr, "10.0.0.%d", i + 1);
		v4key(addr, k);
		assert_int_equal(web_throttle_wait(t, k, now + i), 0);
	}
	assert_int_equal(web_throttle_wait(t, c, now + 100), 900);
	assert_int_equal(web_throttle_wait(t, c, now + 1000), 0);
	/* more clients than the table holds: the one failed longest ago goes, not a crash */
	memset(t, 0, sizeof *t);
	for (int i = 0; i < WEB_THROTTLE_CLIENTS + 10; i++) {
		unsigned char k[16];
		char addr[32];
		snprintf(addr, sizeof addr, "10.%d.%d.1", i / 256, i % 256);
		v4key(addr, k);
		web_throttle_failed(t, k, 9000000 + i);
	}
	v4key("10.1.9.1", a); /* the last one: still held */
	assert_true(web_throttle_wait(t, a, 9000000 + WEB_THROTTLE_CLIENTS + 10) > 0);
	free(t);
}

/* ---- web_hist ----------------------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* A store with n readings of device "m" a second apart ending at end_ms: flow 10.5, but
 * 99 at spike (an index), a boolean, and a string point the plot leaves out. The first
 * nlegacy are text rows, as a release before schema 3 stored them (a migrated backlog);
 * the rest are stored as values, under the device as described by its points. */
static char *history_store(size_t n, int64_t end_ms, size_t spike, size_t nlegacy)
{
	static struct point_def pts[3] = {
		{ .name = "flow", .type = PT_FLOAT32, .bit = -1, .scale = 1 },
		{ .name = "on", .type = PT_BOOL, .bit = -1, .scale = 1 },
		{ .name = "name", .type = PT_STRING, .length = 4, .bit = -1, .scale = 1 },
	};
	struct device_cfg dev = { .id = "m", .points = pts, .npoints = 3 };
	char tmpl[] = "/tmp/sluice-test-web-XXXXXX", err[300], *dir;
	struct store_row *rows = calloc(n, sizeof *rows);
	struct store *st;
	uint32_t id;

	dir = strdup(mkdtemp(tmpl));
	assert_non_null(rows);
	st = store_open(dir, NULL, err, sizeof err);
	if (!st)
		fail_msg("%s", err);
	assert_int_equal(store_devices(st, &dev, 1, &id), 0);
	for (size_t i = 0; i < n; i++) {
		int64_t ts = end_ms - (int64_t)(n - 1 - i) * 1000;
		char body[200];
		struct reading *r;

		if (i < nlegacy) {
			snprintf(body, sizeof body,
				 "\"ts\":%lld,\"values\":{\"flow\":%s,\"on\":%s,\"name\":\"x\"}",
				 (long long)ts, i == spike ? "99" : "10.5", i % 2 ? "true" : "false");
			rows[i] = (struct store_row){ .kind = ROW_TELEMETRY, .ts_ms = ts,
						      .topic = strdup("telemetry/m"),
						      .body = strdup(body) };
			continue;
		}
		r = reading_new(0, 3, 8);
		assert_non_null(r);
		r->ts_ms = ts;
		r->values[0] = (struct value){ .kind = VAL_DOUBLE, .v.d = i == spike ? 99 : 10.5 };
		r->values[1] = (struct value){ .kind = VAL_BOOL, .v.b = i % 2 };
		r->values[2] = (struct value){ .kind = VAL_STRING, .s = "x" };
		rows[i] = (struct store_row){ .kind = ROW_TELEMETRY, .ts_ms = ts, .dev = id };
		assert_int_equal(store_row_set_reading(&rows[i], r), 0);
		reading_free(r);
	}
	assert_int_equal(store_append(st, rows, n, err, sizeof err), 0);
	for (size_t i = 0; i < n; i++)
		store_row_clear(&rows[i]);
	free(rows);
	store_close(st);
	return dir;
}

static const struct jval *series_named(const struct jval *h, const char *point)
{
	const struct jval *s = jread_get(h, "series");

	for (size_t i = 0; s && i < s->n; i++)
		if (strcmp(jread_str(s->items[i], "point"), point) == 0)
			return s->items[i];
	return NULL;
}

static void test_history(void **state)
{
	int64_t end = 1700000000000;
	char *dir = history_store(3 * 3600 + 600, end, 3 * 3600 + 600 - 1000, 0), err[300];
	const struct jval *flow, *t, *v, *on;
	struct jval *h;
	struct jbuf b;
	double maxv = 0;

	(void)state;
	jb_init(&b);
	assert_int_equal(web_hist_device(dir, "m", end, &b, err, sizeof err), 0);
	h = jread_parse(b.p, b.len, err, sizeof err);
	assert_non_null(h);
	/* the last 3 hours of readings, but at most WEB_HISTORY_ROWS: the window is shorter */
	assert_int_equal(jread_i64(h, "readings", 0), WEB_HISTORY_ROWS);
	assert_int_equal(jread_i64(h, "from", 0), end - (WEB_HISTORY_ROWS - 1) * 1000);
	assert_int_equal(jread_i64(h, "to", 0), end);
	flow = series_named(h, "flow");
	on = series_named(h, "on");
	assert_non_null(flow);
	assert_non_null(on);
	assert_null(series_named(h, "name"));
	t = jread_get(flow, "t");
	v = jread_get(flow, "v");
	assert_int_equal(t->n, v->n);
	assert_true(t->n <= 2 * WEB_HISTORY_BUCKETS);
	assert_true(t->n >= WEB_HISTORY_BUCKETS);
	for (size_t i = 0; i < v->n; i++) {
		if (v->items[i]->num > maxv)
			maxv = v->items[i]->num;
		if (i)
			assert_true(t->items[i]->num > t->items[i - 1]->num);
	}
	/* the one spike among thousands is kept */
	assert_true(maxv == 99);
	jread_free(h);
	jb_free(&b);

	/* a device with nothing stored: no series; a data dir with no store: an error */
	jb_init(&b);
	assert_int_equal(web_hist_device(dir, "none", end, &b, err, sizeof err), 0);
	h = jread_parse(b.p, b.len, err, sizeof err);
	assert_int_equal(jread_i64(h, "readings", -1), 0);
	assert_int_equal(jread_get(h, "series")->n, 0);
	jread_free(h);
	jb_reset(&b);
	assert_int_equal(web_hist_device("/nonexistent/dir", "m", end, &b, err, sizeof err), -1);
	assert_int_equal(b.len, 0);
	assert_int_equal(web_hist_alerts(dir, 10, &b, err, sizeof err), 0);
	assert_string_equal(jb_cstr_get(&b), "[]");
	jb_free(&b);
	nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	free(dir);

	/* a migrated backlog's text rows, then readings stored as values: one series each,
	 * in time order across both (the spike among the text rows, the booleans as 0/1) */
	dir = history_store(100, end, 3, 40);
	jb_init(&b);
	assert_int_equal(web_hist_device(dir, "m", end, &b, err, sizeof err), 0);
	h = jread_parse(b.p, b.len, err, sizeof err);
	assert_non_null(h);
	assert_int_equal(jread_i64(h, "readings", 0), 100);
	assert_int_equal(jread_get(h, "series")->n, 2);
	flow = series_named(h, "flow");
	on = series_named(h, "on");
	assert_non_null(flow);
	assert_non_null(on);
	t = jread_get(flow, "t");
	v = jread_get(flow, "v");
	assert_int_equal(t->n, 100);
	assert_int_equal(v->n, 100);
	for (size_t i = 0; i < 100; i++) {
		assert_int_equal((int64_t)t->items[i]->num, end - (int64_t)(99 - i) * 1000);
		assert_true(v->items[i]->num == (i == 3 ? 99 : 10.5));
		assert_true(jread_get(on, "v")->items[i]->num == (double)(i % 2));
	}
	jread_free(h);
	jb_free(&b);
	nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_form_field),
		cmocka_unit_test(test_cookie),
		cmocka_unit_test(test_path_device),
		cmocka_unit_test(test_probe_parse),
		cmocka_unit_test(test_host_origin),
		cmocka_unit_test(test_users),
		cmocka_unit_test(test_sessions),
		cmocka_unit_test(test_throttle),
		cmocka_unit_test(test_history),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
