/*
 * test_config: the config loader. The example config (config/sluice.example.yaml, the
 * contract for key names) must load as it stands once the files it names exist; every
 * kind of mistake must be reported with its exact FILE:LINE:COL message, all of them,
 * not only the first. Fixtures are in tests/fixtures/config; the tests run from the
 * top of the tree (tests/run-unit does that).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "config.h"
#include "uplink.h"

#define FIX "tests/fixtures/config/"

/* Profiles are looked for beside the config, then here: nowhere, so that the
 * installed profiles of the machine running the tests play no part. */
static const struct config_opts fix_opts = { .profile_path = "tests/fixtures/no-such-dir" };

/* ---- helpers ------------------------------------------------------------------------ */

static void print_diag(const char *what, const struct config_diag *d)
{
	fprintf(stderr, "%s: %zu message(s):\n", what, d->n);
	for (size_t i = 0; i < d->n; i++)
		fprintf(stderr, "  [%s]\n", d->msgs[i]);
}

/* Load path and require exactly the messages want[0..n), in order. */
static struct config *load_expect(const char *path, const struct config_opts *opts,
				  const char *const *want, size_t n, size_t nwarnings)
{
	struct config_diag d;
	struct config *cfg = config_load(path, opts, &d);
	bool same = d.n == n;

	for (size_t i = 0; same && i < n; i++)
		same = strcmp(d.msgs[i], want[i]) == 0;
	if (!same) {
		fprintf(stderr, "expected:\n");
		for (size_t i = 0; i < n; i++)
			fprintf(stderr, "  [%s]\n", want[i]);
		print_diag(path, &d);
	}
	assert_true(same);
	assert_int_equal(d.nwarnings, nwarnings);
	assert_int_equal(d.nerrors, n - nwarnings);
	for (size_t i = 0; i < d.n; i++)
		assert_int_equal(d.is_error[i], strstr(d.msgs[i], ": warning: ") == NULL);
	if (n > nwarnings)
		assert_null(cfg);
	else
		assert_non_null(cfg);
	config_diag_free(&d);
	return cfg;
}

#define EXPECT_ERRORS(file, msgs) \
	load_expect(FIX file, &fix_opts, msgs, sizeof msgs / sizeof msgs[0], 0)

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void spit(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	size_t n = strlen(text);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, n), (ssize_t)n);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

/* Replace every from with to in *s. */
static void replace_all(char **s, const char *from, const char *to)
{
	size_t lf = strlen(from), lt = strlen(to), n = 0;
	char *p, *out, *o;

	for (p = *s; (p = strstr(p, from)); p += lf)
		n++;
	out = malloc(strlen(*s) + n * lt + 1);
	assert_non_null(out);
	o = out;
	for (p = *s;;) {
		char *hit = strstr(p, from);
		if (!hit) {
			strcpy(o, p);
			break;
		}
		memcpy(o, p, (size_t)(hit - p));
		o += hit - p;
		memcpy(o, to, lt);
		o += lt;
		p = hit + lf;
	}
	free(*s);
	*s = out;
}

/* ---- the example, in a temporary directory ---------------------------------------- */

struct scratch {
	char dir[PATH_MAX];
	char config[PATH_MAX + 32];
	char password[PATH_MAX + 32];
	char ca[PATH_MAX + 32];
};

static void site_path(const struct scratch *s, char *buf, size_t len, const char *name)
{
	int n = snprintf(buf, len, "%s/%s", s->dir, name);

	assert_true(n > 0 && (size_t)n < len);
}

/*
 * The example config and the profiles beside it, copied into a temporary directory
 * with its /etc/sluice files and data_dir pointing there, the files created (the
 * password file root:root 0640), and the serial line on /dev/null (a character device
 * that exists everywhere).
 */
static int site_setup(void **state)
{
	struct scratch *s = calloc(1, sizeof *s);
	char tmpl[] = "/tmp/sluice-test-config-XXXXXX", path[PATH_MAX + 64], etc[PATH_MAX + 8];
	char data[PATH_MAX + 8];
	char *text;
	DIR *dp;
	struct dirent *e;

	if (!s || !mkdtemp(tmpl))
		return -1;
	if (!realpath(tmpl, s->dir))
		return -1;
	site_path(s, s->config, sizeof s->config, "sluice.yaml");
	site_path(s, s->password, sizeof s->password, "mqtt.password");
	site_path(s, s->ca, sizeof s->ca, "ca.pem");
	snprintf(etc, sizeof etc, "%s/", s->dir);
	snprintf(data, sizeof data, "%s/data", s->dir);

	text = slurp("config/sluice.example.yaml");
	replace_all(&text, "/etc/sluice/", etc);
	replace_all(&text, "/var/lib/sluice", data);
	replace_all(&text, "/dev/ttyS1", "/dev/null");
	spit(s->config, text, 0644);
	free(text);

	spit(s->password, "secret\n", 0640);
	spit(s->ca, "-----BEGIN CERTIFICATE-----\n", 0644);
	site_path(s, path, sizeof path, "client.pem");
	spit(path, "-----BEGIN CERTIFICATE-----\n", 0644);
	site_path(s, path, sizeof path, "client.key");
	spit(path, "-----BEGIN PRIVATE KEY-----\n", 0600);
	assert_int_equal(mkdir(data, 0750), 0);

	site_path(s, path, sizeof path, "devices");
	assert_int_equal(mkdir(path, 0755), 0);
	dp = opendir("config/devices");
	assert_non_null(dp);
	while ((e = readdir(dp))) {
		char src[PATH_MAX], dst[PATH_MAX + 300];
		size_t n = strlen(e->d_name);
		if (n < 5 || strcmp(e->d_name + n - 5, ".yaml") != 0)
			continue;
		snprintf(src, sizeof src, "config/devices/%s", e->d_name);
		snprintf(dst, sizeof dst, "%s/devices/%s", s->dir, e->d_name);
		text = slurp(src);
		spit(dst, text, 0644);
		free(text);
	}
	closedir(dp);
	*state = s;
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int site_teardown(void **state)
{
	struct scratch *s = *state;

	nftw(s->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(s);
	return 0;
}

/* Rewrite the site's config: every from becomes to. */
static void site_edit(struct scratch *s, const char *from, const char *to)
{
	char *text = slurp(s->config);

	assert_non_null(strstr(text, from));
	replace_all(&text, from, to);
	spit(s->config, text, 0644);
	free(text);
}

static const struct point_def *point_of(const struct config *cfg, const char *dev,
					const char *name)
{
	long d = config_find_device(cfg, dev), p;

	assert_true(d >= 0);
	p = config_find_point(&cfg->devices[d], name);
	assert_true(p >= 0);
	return &cfg->devices[d].points[p];
}

static const struct rule_cfg *rule_of(const struct config *cfg, const char *id)
{
	for (size_t i = 0; i < cfg->nrules; i++)
		if (strcmp(cfg->rules[i].id, id) == 0)
			return &cfg->rules[i];
	fail_msg("no rule %s", id);
	return NULL;
}

static void test_example_loads(void **state)
{
	struct scratch *s = *state;
	struct config_diag d;
	struct config *cfg = config_load(s->config, &fix_opts, &d);
	char buf[PATH_MAX + 64], sum[160];
	const struct device_cfg *dev;
	const struct point_def *p;
	const struct rule_cfg *r;
	size_t npoints = 0;

	if (d.n)
		print_diag(s->config, &d);
	assert_int_equal(d.n, 0);
	assert_non_null(cfg);
	config_diag_free(&d);

	assert_int_equal(cfg->nbuses, 4);
	assert_int_equal(cfg->ndevices, 6);
	for (size_t i = 0; i < cfg->ndevices; i++)
		npoints += cfg->devices[i].npoints;
	assert_int_equal(npoints, 16); /* 5 + 3 + 3 + 3 (level-radar) + 2; school-pv: SunSpec */
	assert_int_equal(cfg->nrules, 4);
	config_summary(cfg, sum, sizeof sum);
	assert_string_equal(sum, "4 buses, 6 devices (1 SunSpec), 16 points, 4 rules");
	assert_int_equal(cfg->nfiles, 3); /* the config and the two profiles it names */
	assert_string_equal(cfg->path, s->config);

	/* gateway, uplink, buffer */
	assert_string_equal(cfg->gateway.id, "fengdu-gw-01");
	assert_string_equal(cfg->gateway.name, "丰都县城 自来水厂加压站");
	assert_string_equal(cfg->gateway.timezone, "Asia/Shanghai");
	site_path(s, buf, sizeof buf, "data");
	assert_string_equal(cfg->gateway.data_dir, buf);
	assert_int_equal(cfg->gateway.log_level, LOG_LVL_INFO);
	assert_string_equal(cfg->uplink.host, "iot.city.example");
	assert_int_equal(cfg->uplink.port, 8883);
	assert_int_equal(cfg->uplink.protocol, MQTT_5);
	assert_string_equal(cfg->uplink.client_id, "fengdu-gw-01");
	assert_string_equal(cfg->uplink.username, "fengdu-gw-01");
	assert_string_equal(cfg->uplink.password_file, s->password);
	assert_true(cfg->uplink.tls);
	assert_string_equal(cfg->uplink.ca_file, s->ca);
	site_path(s, buf, sizeof buf, "client.key");
	assert_string_equal(cfg->uplink.key_file, buf);
	assert_string_equal(cfg->uplink.topic_prefix, "cq/iot");
	assert_int_equal(cfg->uplink.qos, 1);
	assert_int_equal(cfg->uplink.keepalive_ms, 30000);
	assert_int_equal(cfg->uplink.inflight, 64);
	assert_int_equal(cfg->uplink.health_interval_ms, 60000);
	assert_int_equal(cfg->uplink.loc.line, 20); /* its first key */
	assert_int_equal(cfg->buffer.max_size, 512ull << 20);
	assert_int_equal(cfg->buffer.durability, DURABILITY_NORMAL);
	assert_int_equal(cfg->buffer.keep_sent_ms, 7ll * 86400 * 1000);

	/* buses */
	assert_string_equal(cfg->buses[0].id, "rs485-1");
	assert_int_equal(cfg->buses[0].kind, BUS_RTU);
	assert_string_equal(cfg->buses[0].device, "/dev/null");
	assert_int_equal(cfg->buses[0].baud, 9600);
	assert_int_equal(cfg->buses[0].parity, 'N');
	assert_int_equal(cfg->buses[0].data_bits, 8);
	assert_int_equal(cfg->buses[0].stop_bits, 1);
	assert_false(cfg->buses[0].rs485);
	assert_int_equal(cfg->buses[0].timeout_ms, 300);
	assert_int_equal(cfg->buses[0].guard_ms, 5);
	assert_int_equal(cfg->buses[1].kind, BUS_TCP);
	assert_string_equal(cfg->buses[1].host, "192.0.2.20");
	assert_int_equal(cfg->buses[1].port, 502);
	assert_int_equal(cfg->buses[1].timeout_ms, 500);
	assert_int_equal(cfg->buses[1].guard_ms, 0);
	assert_string_equal(cfg->buses[2].host, "2001:db8:10::20");
	assert_int_equal(cfg->buses[2].timeout_ms, 1000);
	assert_int_equal(cfg->buses[3].kind, BUS_RTU_OVER_TCP);
	assert_string_equal(cfg->buses[3].host, "198.51.100.14");
	assert_int_equal(cfg->buses[3].port, 8899);
	assert_int_equal(cfg->buses[3].timeout_ms, 2000);
	assert_int_equal(cfg->buses[3].guard_ms, 20);

	/* devices and points */
	dev = &cfg->devices[0];
	assert_string_equal(dev->id, "dma3-inlet");
	assert_string_equal(dev->name, "三号计量分区 进水电磁流量计");
	assert_string_equal(dev->profile, "flowmeter-generic");
	assert_int_equal(dev->bus, 0);
	assert_int_equal(dev->unit_id, 1);
	assert_int_equal(dev->npoints, 5);
	assert_int_equal(dev->interval_ms, 10000);
	assert_int_equal(dev->offline_after, 3);
	assert_int_equal(dev->max_registers, 125);
	assert_int_equal(dev->max_gap, 8);
	/* a profile's point is located in the profile file */
	site_path(s, buf, sizeof buf, "devices/flowmeter-generic.yaml");
	assert_string_equal(dev->point_locs[0].file, buf);
	assert_int_equal(dev->point_locs[0].line, 10);
	assert_int_equal(dev->point_locs[0].col, 13);
	p = point_of(cfg, "dma3-inlet", "total");
	assert_int_equal(p->type, PT_FLOAT64);
	assert_int_equal(p->address, 4);
	assert_string_equal(p->unit, "m3");

	p = point_of(cfg, "dma3-out-a", "flow");
	assert_int_equal(p->table, MB_INPUT);
	assert_int_equal(p->type, PT_FLOAT32);
	assert_int_equal(p->word_order, ORDER_LITTLE);
	assert_int_equal(p->byte_order, ORDER_BIG);
	assert_string_equal(p->unit, "m3/h");
	p = point_of(cfg, "dma3-out-a", "total");
	assert_true(p->scale == 0.01);
	assert_true(p->offset == 0);
	assert_int_equal(p->bit, -1);
	assert_false(p->writable);
	assert_int_equal(cfg->devices[1].unit_id, 2);
	assert_string_equal(cfg->devices[1].point_locs[0].file, cfg->files[0]);

	p = point_of(cfg, "booster-pump", "fault");
	assert_int_equal(p->type, PT_BOOL);
	assert_int_equal(p->table, MB_HOLDING);
	assert_int_equal(p->address, 110);
	assert_int_equal(p->bit, 3);
	assert_int_equal(point_of(cfg, "booster-pump", "running")->bit, 0);
	assert_int_equal(cfg->devices[2].interval_ms, 5000);

	dev = &cfg->devices[config_find_device(cfg, "xinhua-underpass")];
	assert_int_equal(dev->bus, 3);
	assert_int_equal(dev->unit_id, 5);
	assert_int_equal(dev->npoints, 3);
	assert_true(point_of(cfg, "xinhua-underpass", "level")->scale == 0.001);

	p = point_of(cfg, "warn-sign", "red_lamp");
	assert_int_equal(p->table, MB_COIL);
	assert_true(p->writable);
	p = point_of(cfg, "warn-sign", "message");
	assert_int_equal(p->type, PT_STRING);
	assert_int_equal(p->length, 8);

	dev = &cfg->devices[5];
	assert_string_equal(dev->id, "school-pv");
	assert_string_equal(dev->name, "实验小学 屋顶光伏");
	assert_true(dev->sunspec);
	assert_int_equal(dev->npoints, 0);
	assert_int_equal(dev->interval_ms, 30000);
	assert_int_equal(config_find_device(cfg, "nonesuch"), -1);
	assert_int_equal(config_find_point(&cfg->devices[0], "nonesuch"), -1);

	/* rules */
	r = rule_of(cfg, "dma3-leakage");
	assert_int_equal(r->kind, RULE_LEAKAGE);
	assert_string_equal(r->name, "三号分区漏损");
	assert_int_equal(r->severity, SEV_ORANGE);
	assert_int_equal(r->ninflow, 1);
	assert_int_equal(r->inflow[0].device, 0);
	assert_int_equal(r->inflow[0].point, 2);
	assert_string_equal(r->inflow[0].name, "total");
	assert_int_equal(r->noutflow, 1);
	assert_int_equal(r->outflow[0].device, 1);
	assert_int_equal(r->outflow[0].point, 1);
	assert_int_equal(r->window_ms, 86400000);
	assert_true(r->has_max_loss_ratio);
	assert_true(r->max_loss_ratio == 0.085);
	assert_true(r->has_night);
	assert_int_equal(r->night_from_s, 7200);
	assert_int_equal(r->night_to_s, 4 * 3600);
	assert_false(r->night_legacy);  /* the change detector, at its defaults */
	assert_false(r->has_night_max_flow);
	assert_true(r->night_allowance == 2 && r->night_decision == 5 && r->night_learn == 14);
	assert_true(r->night_pump_steps);

	r = rule_of(cfg, "xinhua-waterlogging");
	assert_int_equal(r->kind, RULE_WATERLOGGING);
	assert_true(r->has_point);
	assert_int_equal(r->point.device, 3);
	assert_int_equal(r->point.point, 0);
	assert_true(isnan(r->levels[SEV_NONE]));
	assert_true(r->levels[SEV_BLUE] == 0.10);
	assert_true(r->levels[SEV_YELLOW] == 0.15);
	assert_true(r->levels[SEV_ORANGE] == 0.27);
	assert_true(r->levels[SEV_RED] == 0.40);
	assert_true(r->hysteresis == 0.02);
	assert_true(r->has_rise);
	assert_true(r->rise_by == 0.05);
	assert_int_equal(r->rise_within_ms, 600000);
	assert_int_equal(r->non_fire, 1);
	assert_int_equal(r->on_fire[0].severity, SEV_RED);
	assert_int_equal(r->on_fire[0].target.device, 4);
	assert_int_equal(r->on_fire[0].target.point, 0);
	assert_true(r->on_fire[0].value == 1);
	assert_int_equal(r->non_resolve, 1);
	assert_int_equal(r->on_resolve[0].severity, SEV_NONE);
	assert_true(r->on_resolve[0].value == 0);

	r = rule_of(cfg, "school-pv-output");
	assert_int_equal(r->kind, RULE_PV);
	assert_true(r->has_inverter);
	assert_int_equal(r->inverter, 5);
	assert_true(r->rated_power_w == 30000);
	assert_true(r->has_daylight);
	assert_int_equal(r->daylight_from_s, 9 * 3600);
	assert_int_equal(r->daylight_to_s, 16 * 3600);
	assert_true(r->min_output_ratio == 0.05);
	assert_int_equal(r->for_ms, 30 * 60000);
	assert_int_equal(r->severity, SEV_YELLOW);

	r = rule_of(cfg, "booster-pressure-low");
	assert_int_equal(r->kind, RULE_THRESHOLD);
	assert_int_equal(r->point.device, 2);
	assert_int_equal(r->point.point, 0);
	assert_false(r->has_above);
	assert_true(r->has_below);
	assert_true(r->below == 0.15);
	assert_true(r->hysteresis == 0.01);
	assert_int_equal(r->for_ms, 120000);
	assert_string_equal(r->point.loc.file, cfg->files[0]);
	assert_true(r->point.loc.line > 0);

	config_free(cfg);
}

static char *xfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xfmt(const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	assert_true(vasprintf(&p, fmt, ap) >= 0);
	va_end(ap);
	return p;
}

static void expect_one(const struct scratch *s, char *msg)
{
	const char *want[] = { msg };

	load_expect(s->config, &fix_opts, want, 1, 0);
	free(msg);
}

/* Every file the example names is needed: each missing one is its own error. */
static void test_example_missing_files(void **state)
{
	struct scratch *s = *state;
	char key[PATH_MAX + 64];
	char *want[3];

	site_path(s, key, sizeof key, "client.key");
	assert_int_equal(unlink(s->password), 0);
	assert_int_equal(unlink(s->ca), 0);
	assert_int_equal(unlink(key), 0);
	want[0] = xfmt("%s:25:18: uplink: password_file '%s' does not exist", s->config,
		       s->password);
	want[1] = xfmt("%s:27:14: uplink: tls.ca_file '%s' does not exist", s->config, s->ca);
	want[2] = xfmt("%s:29:15: uplink: tls.key_file '%s' does not exist", s->config, key);
	load_expect(s->config, &fix_opts, (const char *const *)want, 3, 0);
	for (int i = 0; i < 3; i++)
		free(want[i]);
}

static void test_password_readable_by_others(void **state)
{
	struct scratch *s = *state;

	assert_int_equal(chmod(s->password, 0644), 0);
	expect_one(s, xfmt("%s:25:18: uplink: password_file '%s' can be read by every user "
			   "(mode 0644): it holds a secret; make it owner root, group sluice, "
			   "mode 0640", s->config, s->password));
}

static void test_password_writable_by_group(void **state)
{
	struct scratch *s = *state;

	assert_int_equal(chmod(s->password, 0660), 0);
	expect_one(s, xfmt("%s:25:18: uplink: password_file '%s' can be written by users other "
			   "than its owner (mode 0660); make it owner root, group sluice, mode 0640",
			   s->config, s->password));
}

/* The TLS client key is a secret like the password. */
static void test_key_readable_by_others(void **state)
{
	struct scratch *s = *state;
	char key[PATH_MAX + 64];

	site_path(s, key, sizeof key, "client.key");
	assert_int_equal(chmod(key, 0644), 0);
	expect_one(s, xfmt("%s:29:15: uplink: tls.key_file '%s' can be read by every user "
			   "(mode 0644): it holds a secret; make it owner root, group sluice, "
			   "mode 0640", s->config, key));
}

/* MQTT carries a password only with a user name: without one it would be ignored. */
static void test_password_without_username(void **state)
{
	struct scratch *s = *state;

	site_edit(s, "  username: fengdu-gw-01\n", "");
	expect_one(s, xfmt("%s:24:18: uplink: password_file needs a username (MQTT sends a "
			   "password only with a user name)", s->config));
}

/* As root, modes do not stop reads: a directory is a "file" that cannot be read. */
static void test_password_is_a_directory(void **state)
{
	struct scratch *s = *state;

	assert_int_equal(unlink(s->password), 0);
	assert_int_equal(mkdir(s->password, 0750), 0);
	expect_one(s, xfmt("%s:25:18: uplink: password_file '%s' is a directory, not a file",
			   s->config, s->password));
}

/* Relative paths are relative to the config file, not to the current directory. */
static void test_relative_paths(void **state)
{
	struct scratch *s = *state;
	char from[PATH_MAX + 64], data[PATH_MAX + 64];
	struct config *cfg;

	site_edit(s, s->password, "mqtt.password");
	site_path(s, from, sizeof from, "data");
	site_edit(s, from, "./state");
	cfg = load_expect(s->config, &fix_opts, NULL, 0, 0);
	assert_string_equal(cfg->uplink.password_file, s->password);
	site_path(s, data, sizeof data, "state");
	assert_string_equal(cfg->gateway.data_dir, data);
	config_free(cfg);
}

/* uplink.ack_timeout and uplink.max_packet_size: read, and bounded. */
static void test_uplink_limits(void **state)
{
	static const char good[] =
		"gateway: { id: gw }\n"
		"uplink: { host: h, ack_timeout: 90s, max_packet_size: 128KiB }\n"
		"buses: [ { id: b, rtu: { device: /dev/null } } ]\n"
		"devices: [ { id: d, bus: b, profile: level-radar } ]\n";
	static const char bad[] =
		"gateway: { id: gw }\n"
		"uplink: { host: h, ack_timeout: 500ms, max_packet_size: 100B }\n"
		"buses: [ { id: b, rtu: { device: /dev/null } } ]\n"
		"devices: [ { id: d, bus: b, profile: level-radar } ]\n";
	struct scratch *s = *state;
	struct config *cfg;
	char *want[2];

	spit(s->config, good, 0644);
	cfg = load_expect(s->config, &fix_opts, NULL, 0, 0);
	assert_int_equal(cfg->uplink.ack_timeout_ms, 90000);
	assert_int_equal(cfg->uplink.max_packet_size, 128 * 1024);
	config_free(cfg);

	spit(s->config, bad, 0644);
	want[0] = xfmt("%s:2:33: uplink: ack_timeout 500ms is out of range (expected 1s..1d)",
		       s->config);
	want[1] = xfmt("%s:2:57: uplink: max_packet_size 100B is too small (expected at least "
		       "512B)", s->config);
	load_expect(s->config, &fix_opts, (const char *const *)want, 2, 0);
	free(want[0]);
	free(want[1]);
}

/* A key the example lacks may be added; the defaults fill the rest. */
static void test_defaults(void **state)
{
	static const char text[] =
		"gateway: { id: gw }\n"
		"uplink: { host: \"::1\" }\n"
		"buses: [ { id: b, rtu: { device: /dev/null } } ]\n"
		"devices: [ { id: d, bus: b, profile: level-radar } ]\n";
	struct scratch *s = *state;
	struct config *cfg;

	spit(s->config, text, 0644);
	cfg = load_expect(s->config, &fix_opts, NULL, 0, 0);
	assert_string_equal(cfg->gateway.timezone, "UTC");
	assert_string_equal(cfg->gateway.data_dir, "/var/lib/sluice");
	assert_null(cfg->gateway.name);
	assert_int_equal(cfg->gateway.log_level, LOG_LVL_INFO);
	assert_int_equal(cfg->uplink.port, 1883);
	assert_int_equal(cfg->uplink.protocol, MQTT_311);
	assert_string_equal(cfg->uplink.client_id, "gw");
	assert_string_equal(cfg->uplink.topic_prefix, "sluice");
	assert_false(cfg->uplink.tls);
	assert_null(cfg->uplink.password_file);
	assert_int_equal(cfg->uplink.qos, 1);
	assert_int_equal(cfg->uplink.keepalive_ms, 30000);
	assert_int_equal(cfg->uplink.inflight, 64);
	assert_int_equal(cfg->uplink.ack_timeout_ms, 0);     /* the uplink's: 2 × keepalive */
	assert_int_equal(cfg->uplink.max_packet_size, 0);    /* none: the broker's, if it says */
	assert_int_equal(cfg->buffer.max_size, 256ull << 20);
	assert_int_equal(cfg->buffer.keep_sent_ms, 7ll * 86400000);
	assert_int_equal(cfg->buses[0].baud, 9600);
	assert_int_equal(cfg->buses[0].parity, 'N');
	assert_int_equal(cfg->buses[0].timeout_ms, 1000);
	assert_int_equal(cfg->buses[0].guard_ms, 5);
	assert_int_equal(cfg->devices[0].unit_id, 1);
	assert_int_equal(cfg->devices[0].interval_ms, 10000);
	assert_int_equal(cfg->devices[0].offline_after, 3);
	assert_int_equal(cfg->devices[0].max_registers, 125);
	assert_int_equal(cfg->devices[0].npoints, 3);
	config_free(cfg);
}

/* ---- one fixture per kind of mistake ----------------------------------------------- */

static const char *const msgs_syntax[] = {
	FIX "syntax.yaml:6:8: YAML syntax error: mapping values are not allowed in this context",
};
static const char *const msgs_tabs[] = {
	FIX "tabs.yaml:2:1: YAML syntax error: found character that cannot start any token (while scanning for the next token at line 2 column 1); YAML does not allow tabs for indentation: use spaces",
};
static const char *const msgs_duplicate_keys[] = {
	FIX "duplicate-keys.yaml:6:3: uplink: duplicate key 'port' (first at line 5)",
	FIX "duplicate-keys.yaml:9:41: buses[0] (line1): duplicate key 'tcp.host' (first at line 9)",
	FIX "duplicate-keys.yaml:15:7: devices[0] (meter): duplicate point 'flow' (first at line 14)",
	FIX "duplicate-keys.yaml:16:1: duplicate key 'gateway' (first at line 1)",
};
static const char *const msgs_unknown_keys[] = {
	FIX "unknown-keys.yaml:3:3: gateway: unknown key 'timezon' (did you mean 'timezone'?)",
	FIX "unknown-keys.yaml:7:5: uplink: unknown key 'tls.ca_fil' (did you mean 'tls.ca_file'?)",
	FIX "unknown-keys.yaml:14:5: devices[0] (meter): unknown key 'intervall' (did you mean 'interval'?)",
	FIX "unknown-keys.yaml:16:58: point 'flow' of device meter: unknown key 'scael' (did you mean 'scale'?)",
	FIX "unknown-keys.yaml:22:5: alerts[0] (high-flow): key 'levels' is not for threshold rules (it belongs to waterlogging rules)",
	FIX "unknown-keys.yaml:23:1: unknown key 'colour'",
};
static const char *const msgs_wrong_types[] = {
	FIX "wrong-types.yaml:3:9: gateway: name must be a single value, not a list",
	FIX "wrong-types.yaml:5:9: uplink: host must be a single value, not a mapping (key: value lines)",
	FIX "wrong-types.yaml:6:9: uplink: port 'eighty' is not a whole number",
	FIX "wrong-types.yaml:7:14: uplink: keepalive '30' is not a duration (expected a number and a unit: 500ms, 10s, 5m, 2h, 1d)",
	FIX "wrong-types.yaml:9:3: buses must be a list (lines starting with '- '), not a mapping (key: value lines)",
	FIX "wrong-types.yaml:12:10: devices[0] (meter): bus 'line1' does not exist",
	FIX "wrong-types.yaml:13:15: devices[0] (meter): interval 'fast' is not a duration (expected a number and a unit: 500ms, 10s, 5m, 2h, 1d)",
	FIX "wrong-types.yaml:15:68: point 'flow' of device meter: scale 'lots' is not a number",
	FIX "wrong-types.yaml:16:14: devices[0] (meter): point 'total' must be a mapping (table, address, type, ...), not the value 'holding'",
	FIX "wrong-types.yaml:17:9: alerts must be a list (lines starting with '- '), not the value 'nothing'",
};
static const char *const msgs_ranges[] = {
	FIX "ranges.yaml:3:14: gateway: log_level 'verbose' is not one of error, warning, info, debug",
	FIX "ranges.yaml:6:9: uplink: port 70000 is out of range (expected 1..65535)",
	FIX "ranges.yaml:7:13: uplink: protocol 'mqtt3' is not one of mqtt311, mqtt5 (did you mean 'mqtt5'?)",
	FIX "ranges.yaml:8:8: uplink: qos 0 is not allowed: the outbox deletes a reading only when the broker acknowledges it, and QoS 0 has no acknowledgement (use 1 or 2)",
	FIX "ranges.yaml:9:14: uplink: keepalive 2s is out of range (expected 5s..65535s)",
	FIX "ranges.yaml:10:13: uplink: inflight 0 is out of range (expected 1..65535)",
	FIX "ranges.yaml:12:13: buffer: max_size 512KiB is too small (expected at least 1MiB)",
	FIX "ranges.yaml:13:15: buffer: durability 'safe' is not one of normal, full",
	FIX "ranges.yaml:16:37: buses[0] (line1): rtu.baud 9601 is not a standard rate (expected 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800 or 921600)",
	FIX "ranges.yaml:16:51: buses[0] (line1): rtu.parity 'space' is not one of none, even, odd",
	FIX "ranges.yaml:16:69: buses[0] (line1): rtu.data_bits 9 is out of range (expected 7..8)",
	FIX "ranges.yaml:16:83: buses[0] (line1): rtu.stop_bits 3 is out of range (expected 1..2)",
	FIX "ranges.yaml:17:14: buses[0] (line1): timeout 5ms is out of range (expected 10ms..60s)",
	FIX "ranges.yaml:19:35: buses[1] (line2): tcp.port 0 is out of range (expected 1..65535)",
	FIX "ranges.yaml:20:14: buses[1] (line2): timeout 2m is out of range (expected 10ms..60s)",
	FIX "ranges.yaml:24:14: devices[0] (meter): unit_id 0 is out of range for serial bus line1 (expected 1..247)",
	FIX "ranges.yaml:25:15: devices[0] (meter): interval 50ms is out of range (expected 100ms..1d)",
	FIX "ranges.yaml:26:20: devices[0] (meter): offline_after 0 is out of range (expected 1..1000)",
	FIX "ranges.yaml:27:20: devices[0] (meter): max_registers 126 is out of range (expected 1..125)",
	FIX "ranges.yaml:28:14: devices[0] (meter): max_gap 200 is out of range (expected 0..125)",
	FIX "ranges.yaml:30:40: point 'flow' of device meter: address 65536 is out of range (expected 0..65535)",
	FIX "ranges.yaml:33:14: devices[1] (plc): unit_id 256 is out of range (expected 0..255)",
};
static const char *const msgs_duplicate_ids[] = {
	FIX "duplicate-ids.yaml:8:9: buses[1] (line1): duplicate bus id 'line1' (first at line 6)",
	FIX "duplicate-ids.yaml:15:9: devices[1] (meter): duplicate device id 'meter' (first at line 11)",
	FIX "duplicate-ids.yaml:20:7: devices[1] (meter): point 'flow' is already defined by profile flowmeter-test (" FIX "devices/flowmeter-test.yaml:4)",
	FIX "duplicate-ids.yaml:26:9: alerts[1] (high): duplicate rule id 'high' (first at line 22)",
};
static const char *const msgs_bad_ids[] = {
	FIX "bad-ids.yaml:2:7: gateway: id 'gw test' is not a valid id: use only letters, digits, '-' and '_' (at most 63 bytes)",
	FIX "bad-ids.yaml:6:9: buses[0] (line/1): id 'line/1' is not a valid id: use only letters, digits, '-' and '_' (at most 63 bytes)",
	FIX "bad-ids.yaml:9:9: devices[0] (水表): id '水表' is not a valid id: use only letters, digits, '-' and '_' (at most 63 bytes)",
	FIX "bad-ids.yaml:12:7: devices[0] (水表): point name 'flow.rate' is not valid: use only letters, digits, '-' and '_' (at most 63 bytes)",
	FIX "bad-ids.yaml:13:9: devices[1] (a-very-long-device-name-that-goes-on-and-on-past-sixty-three-bytes): id 'a-very-long-device-name-that-goes-on-and-on-past-sixty-three-bytes' is not a valid id: use only letters, digits, '-' and '_' (at most 63 bytes)",
	FIX "bad-ids.yaml:18:9: alerts[0] (high flow): id 'high flow' is not a valid id: use only letters, digits, '-' and '_' (at most 63 bytes)",
	FIX "bad-ids.yaml:20:12: alerts[0] (high flow): point 'meter.flow': there is no device 'meter'",
};
static const char *const msgs_ime_slips[] = {
	FIX "ime-slips.yaml:3:5: full-width colon '：' after 'id': YAML needs an ASCII ':' and a space (id: ...); switch the input method to English punctuation",
	FIX "ime-slips.yaml:6:8: full-width space (U+3000) after 'host:': YAML needs an ASCII space after the colon",
	FIX "ime-slips.yaml:10:28: full-width comma '，' between the items of { }: YAML needs an ASCII ','",
	FIX "ime-slips.yaml:13:1: full-width space (U+3000) in the indentation: indent with ASCII spaces",
	FIX "ime-slips.yaml:16:20: full-width colon '：' after 'table': YAML needs an ASCII ':' and a space (table: ...); switch the input method to English punctuation",
};
static const char *const msgs_colon_in_name[] = {
	FIX "colon-in-name.yaml:4:18: a ': ' inside the value of 'name' reads as the start of another key: quote the value (name: \"丰都县城 自来水厂: 加压站\")",
};
static const char *const msgs_tabs_chinese[] = {
	FIX "tabs-chinese.yaml:5:1: YAML syntax error: found a tab character that violates indentation (while scanning a plain scalar at line 4 column 9); YAML does not allow tabs for indentation: use spaces",
};

static const char *const msgs_orders[] = {
	FIX "orders.yaml:13:67: point 'a' of device dev1: word_order 'CDAB' is not one of big, little (did you mean 'order: CDAB'?)",
	FIX "orders.yaml:14:66: point 'b' of device dev1: byte_order 'badc' is not one of big, little (did you mean 'order: BADC'?)",
	FIX "orders.yaml:15:61: point 'c' of device dev1: give order or byte_order/word_order, not both (order sets both)",
	FIX "orders.yaml:16:60: point 'd' of device dev1: order ABCD is the order of a 32-bit value; type int16 is 16 bits (expected AB or BA)",
	FIX "orders.yaml:17:61: point 'e' of device dev1: order 'ABDC' is not one of ABCD, CDAB, BADC or DCBA (the orders of a 32-bit value that byte and word swapping give)",
	FIX "orders.yaml:18:63: point 'f' of device dev1: order 'CDABGHEF' is not one of ABCDEFGH, GHEFCDAB, BADCFEHG or HGFEDCBA (the orders of a 64-bit value that byte and word swapping give)",
	FIX "orders.yaml:19:56: point 'g' of device dev1: order is for registers: a coil is a single bit",
	FIX "orders.yaml:20:73: point 'h' of device dev1: order 'DCBA' does not fit type string: its bytes are swapped in each register or not (expected AB or BA)",
	FIX "orders.yaml:21:62: point 'i' of device dev1: order CDAB is the order of a 32-bit value; type uint64 is 64 bits (expected ABCDEFGH, GHEFCDAB, BADCFEHG or HGFEDCBA)",
	FIX "orders.yaml:22:66: point 'j' of device dev1: byte_order 'lttle' is not one of big, little (did you mean 'little'?)",
};

static const char *const msgs_points[] = {
	FIX "points.yaml:12:46: point 'a' of device dev1: type 'float33' is not one of bool, int16, uint16, int32, uint32, int64, uint64, float32, float64, string (did you mean 'float32'?)",
	FIX "points.yaml:13:43: point 'b' of device dev1: type uint16 cannot be read from a coil: coils hold single bits (use type bool)",
	FIX "points.yaml:14:57: point 'c' of device dev1: bit is only for type bool (a bool inside a register)",
	FIX "points.yaml:15:54: point 'd' of device dev1: bit is only for input and holding registers: a coil is a single bit already",
	FIX "points.yaml:16:47: point 'e' of device dev1: a string point needs length: (its size in registers, 1..64)",
	FIX "points.yaml:17:63: point 'f' of device dev1: length is only for type string",
	FIX "points.yaml:18:61: point 'g' of device dev1: scale must not be 0",
	FIX "points.yaml:19:62: point 'h' of device dev1: writable: input registers are read-only (only coil and holding points can be written)",
	FIX "points.yaml:20:37: point 'i' of device dev1: the point runs past the last address: holding registers 65534-65537 (addresses end at 65535)",
	FIX "points.yaml:21:58: point 'j' of device dev1: bit 16 is out of range (expected 0..15)",
	FIX "points.yaml:22:63: point 'k' of device dev1: length 65 is out of range (expected 1..64)",
	FIX "points.yaml:23:66: point 'l' of device dev1: word_order 'middle' is not one of big, little",
	FIX "points.yaml:24:19: point 'm' of device dev1: table 'registers' is not one of coil, discrete, input, holding",
	FIX "points.yaml:25:10: point 'n' of device dev1: missing required key 'address'",
	FIX "points.yaml:26:37: point 'o' of device dev1: address -1 is out of range (expected 0..65535)",
	FIX "points.yaml:27:68: point 'p' of device dev1: scale applies to numbers, not to type bool",
	FIX "points.yaml:28:61: point 'q' of device dev1: unit 'a-unit-name-that-is-far-too-long' is too long (at most 23 bytes)",
};
static const char *const msgs_overlap[] = {
	FIX "overlap.yaml:13:17: devices[0] (pump): point 'speed' overlaps point 'pressure' (holding registers 101 and 100-101)",
	FIX "overlap.yaml:16:17: devices[0] (pump): point 'alarm' overlaps point 'fault' (both are bit 3 of holding register 110)",
	FIX "overlap.yaml:17:17: devices[0] (pump): point 'status' overlaps point 'running' (both use holding register 110)",
	FIX "overlap.yaml:20:17: devices[0] (pump): point 'horn' overlaps point 'lamp' (both use coil 5)",
	FIX "overlap.yaml:25:14: devices[1] (meter): point 'extra' overlaps point 'velocity' of profile overlap-profile (holding registers 3 and 2-3)",
	FIX "devices/overlap-profile.yaml:7:13: point 'total' overlaps point 'velocity' (holding registers 3-6 and 2-3)",
};
static const char *const msgs_references[] = {
	FIX "references.yaml:10:10: devices[0] (booster-pump): bus 'line2' does not exist (did you mean 'line1'?)",
	FIX "references.yaml:18:14: devices[1] (meter): profile 'flowmeter-generik' not found: no file flowmeter-generik.yaml in " FIX "devices (beside the config), tests/fixtures/no-such-dir; put flowmeter-generik.yaml in " FIX "devices, or name its directory in SLUICE_PROFILE_PATH (colon-separated)",
	FIX "references.yaml:25:12: alerts[0] (low-pressure): point 'booster-pump.presure': device booster-pump has no point 'presure' (did you mean 'pressure'?)",
	FIX "references.yaml:28:18: alerts[0] (low-pressure): on_fire[0].write 'booster-pmp.lamp': there is no device 'booster-pmp' (did you mean 'booster-pump'?)",
	FIX "references.yaml:29:18: alerts[0] (low-pressure): on_fire[1].write 'booster-pump.pressure': point pressure of device booster-pump is not writable (it needs writable: true, on a coil or holding register)",
	FIX "references.yaml:30:44: alerts[0] (low-pressure): on_fire[2].value 2 cannot be written to bool point lamp (expected 0 or 1, or false or true)",
	FIX "references.yaml:31:48: alerts[0] (low-pressure): on_fire[3].value 70000 does not fit point setpoint (uint16: expected 0..65535)",
	FIX "references.yaml:32:45: alerts[0] (low-pressure): on_fire[4].value: point label is a string; an action writes numbers",
	FIX "references.yaml:33:18: alerts[0] (low-pressure): on_fire[5].write 'booster-pump' is not a point reference (expected device.point, e.g. booster-pump.pressure)",
	FIX "references.yaml:36:51: alerts[0] (low-pressure): unknown key 'on_resolve[0].severity'",
	FIX "references.yaml:39:15: alerts[1] (pv): inverter 'inverterr': there is no device 'inverterr' (did you mean 'inverter'?)",
};
static const char *const msgs_missing[] = {
	FIX "missing.yaml:2:3: gateway: missing required key 'id'",
	FIX "missing.yaml:4:3: uplink: missing required key 'host'",
	FIX "missing.yaml:6:5: buses[0] (line1): missing the transport: give one of tcp:, rtu: or rtu_over_tcp:",
	FIX "missing.yaml:7:5: buses[1]: missing required key 'id'",
	FIX "missing.yaml:8:10: buses[1]: missing required key 'tcp.host'",
	FIX "missing.yaml:10:10: buses[2] (line3): missing required key 'rtu.device'",
	FIX "missing.yaml:12:5: devices[0] (meter): missing required key 'bus'",
	FIX "missing.yaml:12:5: devices[0] (meter): give profile: or points: (what to read from the device)",
	FIX "missing.yaml:14:5: devices[1]: missing required key 'id'",
	FIX "missing.yaml:16:13: point 'flow' of devices[1]: missing required key 'address'",
	FIX "missing.yaml:16:13: point 'flow' of devices[1]: missing required key 'type'",
	FIX "missing.yaml:18:5: alerts[0] (a1): missing required key 'kind'",
	FIX "missing.yaml:19:5: alerts[1]: missing required key 'id'",
	FIX "missing.yaml:19:5: alerts[1]: a threshold rule needs above:, below: or both",
	FIX "missing.yaml:21:5: alerts[2] (a3): missing required key 'inflow'",
	FIX "missing.yaml:23:5: alerts[3] (a4): missing required key 'inverter'",
	FIX "missing.yaml:25:5: alerts[4] (a5): a waterlogging rule needs levels: (or rise:)",
	FIX "missing.yaml:31:11: alerts[5] (a6): missing required key 'rise.within'",
	FIX "missing.yaml:35:12: alerts[6] (a7): missing required key 'night.to'",
	FIX "missing.yaml:36:5: alerts[7] (a8): inverter meter is not a SunSpec device: give power: (its AC power point)",
	FIX "missing.yaml:39:15: alerts[7] (a8): missing required key 'daylight.from'",
	FIX "missing.yaml:41:9: alerts[7] (a8): missing required key 'on_fire[0].write'",
	FIX "missing.yaml:41:9: alerts[7] (a8): missing required key 'on_fire[0].value'",
};
static const char *const msgs_alerts[] = {
	FIX "alerts.yaml:27:12: alerts[0] (t1): above (0.1) must be more than below (0.5), or the rule would always fire",
	FIX "alerts.yaml:29:15: alerts[0] (t1): severity 'purple' is not one of blue, yellow, orange, red",
	FIX "alerts.yaml:30:10: alerts[0] (t1): for 8d is out of range (expected 0..7d)",
	FIX "alerts.yaml:31:17: alerts[0] (t1): hysteresis -1 is out of range (expected at least 0)",
	FIX "alerts.yaml:34:12: alerts[1] (w1): point 'gauge.speed' has unit 'm/s'; a waterlogging rule needs a water level in m, cm or mm",
	FIX "alerts.yaml:35:49: alerts[1] (w1): levels.orange 0.27 must be higher than levels.yellow 0.3 (the grades rise: blue, yellow, orange, red)",
	FIX "alerts.yaml:36:17: alerts[1] (w1): rise.by 0 is out of range (expected more than 0)",
	FIX "alerts.yaml:39:14: alerts[2] (l1): inflow 'meter.pressure' has unit 'MPa'; a leakage rule needs a volume (m3, m³, L) or a flow (m3/h, m³/h, L/s, L/min)",
	FIX "alerts.yaml:39:30: alerts[2] (l1): inflow 'meter.alarm' has no unit; a leakage rule needs a volume (m3, m³, L) or a flow (m3/h, m³/h, L/s, L/min)",
	FIX "alerts.yaml:40:13: alerts[2] (l1): window 30m is out of range (expected 1h..31d)",
	FIX "alerts.yaml:41:21: alerts[2] (l1): max_loss_ratio 1.2 is out of range (expected more than 0 and less than 1)",
	FIX "alerts.yaml:41:21: alerts[2] (l1): max_loss_ratio compares inflow with outflow: give outflow: too",
	FIX "alerts.yaml:42:33: alerts[2] (l1): night.to is the same time as night.from: the window is empty",
	FIX "alerts.yaml:42:51: alerts[2] (l1): night.max_flow -1 is out of range (expected at least 0)",
	FIX "alerts.yaml:46:18: alerts[3] (p1): rated_power '30kw' is not a power (expected a number and a unit: 800W, 30kW, 1.2MW)",
	FIX "alerts.yaml:47:36: alerts[3] (p1): daylight.to must be later than daylight.from",
	FIX "alerts.yaml:48:23: alerts[3] (p1): min_output_ratio 1.5 is out of range (expected 0..1)",
	FIX "alerts.yaml:52:18: alerts[4] (p2): rated_power '-5kW' is not a power (expected a number and a unit: 800W, 30kW, 1.2MW)",
	FIX "alerts.yaml:53:23: alerts[4] (p2): daylight.from '25:00' is not a time of day (expected hours:minutes, e.g. \"02:00\")",
	FIX "alerts.yaml:53:36: alerts[4] (p2): daylight.to '9h' is not a time of day (expected hours:minutes, e.g. \"02:00\")",
	FIX "alerts.yaml:55:11: alerts[5] (k1): kind 'leak' is not one of threshold, waterlogging, leakage, pv",
	FIX "alerts.yaml:61:5: alerts[6] (k2): key 'window' is not for threshold rules (it belongs to leakage rules)",
};
static const char *const msgs_alerts_more[] = {
	FIX "alerts-more.yaml:28:12: alerts[0] (w2): spike -0.5 is out of range (expected at least 0)",
	FIX "alerts-more.yaml:29:19: alerts[0] (w2): stuck.for 10s is out of range (expected 60s..31d)",
	FIX "alerts-more.yaml:29:35: alerts[0] (w2): stuck.tolerance -1 is out of range (expected at least 0)",
	FIX "alerts-more.yaml:33:15: alerts[1] (l2): rollover 0 is out of range (expected more than 0)",
	FIX "alerts-more.yaml:34:12: alerts[1] (l2): night needs max_flow:, a baseline: of at least 1 night, or both",
	FIX "alerts-more.yaml:35:21: alerts[1] (l2): burst.ratio -1 is out of range (expected at least 0)",
	FIX "alerts-more.yaml:35:30: alerts[1] (l2): burst.for 2d is out of range (expected 0..1d)",
	FIX "alerts-more.yaml:35:40: alerts[1] (l2): burst.days 0 is out of range (expected 1..28)",
	FIX "alerts-more.yaml:39:12: alerts[2] (p3): power 'inv.temp' has unit 'C'; a pv rule needs a power in W or kW",
	FIX "alerts-more.yaml:40:12: alerts[2] (p3): fault 'gauge.level' is not a point of the inverter inv",
	FIX "alerts-more.yaml:41:17: alerts[2] (p3): peer_ratio 0 is out of range (expected more than 0 and at most 1)",
	FIX "alerts-more.yaml:42:5: alerts[3] (p4): inverter inv is not a SunSpec device: give power: (its AC power point)",
	FIX "alerts-more.yaml:48:61: alerts[4] (l3): night.learn belongs to the change detector, and this night check names ratio, which asks for a verdict each night instead: drop one or the other",
	FIX "alerts-more.yaml:48:74: alerts[4] (l3): night.exclude belongs to the change detector, and this night check names ratio, which asks for a verdict each night instead: drop one or the other",
	FIX "alerts-more.yaml:55:17: alerts[5] (l4): night.decision 0 is out of range (expected more than 0 and at most 100)",
	FIX "alerts-more.yaml:56:14: alerts[5] (l4): night.learn 3 is out of range (expected 7..56)",
	FIX "alerts-more.yaml:57:18: alerts[5] (l4): missing required key 'night.exclude[0].run'",
	FIX "alerts-more.yaml:57:26: alerts[5] (l4): night.exclude[0].flow 0 is out of range (expected more than 0)",
	FIX "alerts-more.yaml:57:38: alerts[5] (l4): night.exclude[1].run 'meter.nope': device meter has no point 'nope'",
	FIX "alerts-more.yaml:57:62: alerts[5] (l4): night.exclude[2] must be a mapping (key: value lines), not the value '7'",
};
static const char *const msgs_uplink[] = {
	FIX "uplink.yaml:4:9: uplink: host '[2001:db8::1]': write an IPv6 address without brackets, in quotes (\"2001:db8::1\")",
	FIX "uplink.yaml:5:17: uplink: topic_prefix '/cq/iot' must not begin or end with '/'",
	FIX "uplink.yaml:7:5: uplink: tls.cert_file and tls.key_file go together (a client certificate needs its key)",
	FIX "uplink.yaml:7:16: uplink: tls.cert_file '/dev/null' is not a regular file",
	FIX "uplink.yaml:10:18: buses[0] (line1): tcp.host '192.0.2.1:502' includes a port: give the port in port:",
};
static const char *const msgs_topic_prefix[] = {
	FIX "topic-prefix.yaml:5:17: uplink: topic_prefix 'cq/+/iot' must not contain the MQTT wildcards + or #",
};
static const char *const msgs_timezone[] = {
	FIX "timezone.yaml:3:13: gateway: timezone 'Asia/Shangai' is not a known time zone (did you mean 'Asia/Shanghai'?)",
};
static const char *const msgs_profile_errors[] = {
	FIX "profile-errors.yaml:17:14: devices[2] (m3): profile 'flowmeter-tset' not found: no file flowmeter-tset.yaml in " FIX "devices (beside the config), tests/fixtures/no-such-dir (did you mean 'flowmeter-test'?); put flowmeter-tset.yaml in " FIX "devices, or name its directory in SLUICE_PROFILE_PATH (colon-separated)",
	FIX "devices/misnamed.yaml:1:10: profile 'flowmeter' does not match the file's name: a profile is found by its file name, so this file must say profile: misnamed",
	FIX "devices/misnamed.yaml:3:16: max_registers 200 is out of range (expected 1..125)",
	FIX "devices/misnamed.yaml:6:45: point 'tota': type 'flaot64' is not one of bool, int16, uint16, int32, uint32, int64, uint64, float32, float64, string (did you mean 'float64'?)",
	FIX "devices/misnamed.yaml:7:1: unknown key 'pionts' (did you mean 'points'?)",
	FIX "devices/broken.yaml:4:1: YAML syntax error: did not find expected ',' or '}' (while parsing a flow mapping at line 3 column 9)",
};
static const char *const msgs_empty[] = {
	FIX "empty.yaml: the file is empty",
};
static const char *const msgs_two_documents[] = {
	FIX "two-documents.yaml:5:1: a second YAML document starts here: the file must hold one document",
};
/* the loader composes libyaml's events itself: libyaml's composer errors, in its words */
static const char *const msgs_alias_undefined[] = {
	FIX "alias-undefined.yaml:4:10: YAML syntax error: found undefined alias",
};
static const char *const msgs_anchor_twice[] = {
	FIX "anchor-twice.yaml:6:5: YAML syntax error: second occurrence (found duplicate anchor; "
	    "first occurrence at line 5 column 5)",
};
static const char *const msgs_not_a_mapping[] = {
	FIX "not-a-mapping.yaml:1:1: the configuration must be a mapping (key: value lines), not a list",
};

static const char *const msgs_shapes[] = {
	FIX "shapes.yaml:4:5: gateway: a key must be a single word, not a list",
	FIX "shapes.yaml:8:9: uplink: port 99999999999999999999999 is out of range (expected 1..65535)",
	FIX "shapes.yaml:9:3: uplink: YAML merge keys (<<) are not supported: write the keys out",
	FIX "shapes.yaml:11:5: buses[0] must be a mapping (key: value lines), not the value 'line1'",
	FIX "shapes.yaml:15:5: devices[0] must be a mapping (key: value lines), not a list",
	/* an alias is the node it names: the repeat is located at the anchor */
	FIX "shapes.yaml:17:9: devices[2] (meter): duplicate device id 'meter' (first at line 17)",
	FIX "shapes.yaml:22:5: alerts[0] must be a mapping (key: value lines), not the value '5'",
	FIX "shapes.yaml:23:20: alerts[1] (a): kind must be a single value, not a list",
	FIX "shapes.yaml:24:4: alerts[2] has no value (expected a mapping (key: value lines))",
};

static void test_syntax_error(void **state)
{
	(void)state;
	EXPECT_ERRORS("syntax.yaml", msgs_syntax);
	EXPECT_ERRORS("tabs.yaml", msgs_tabs);
}

/*
 * The slips of a Chinese input method: a full-width colon, space or comma where YAML
 * needs its own punctuation, each named at the line and column where it is; a ': '
 * inside an unquoted name; a tab after Chinese text (libyaml's mark counts characters:
 * the hint once looked at the wrong byte). Full-width punctuation inside names, quotes,
 * comments and block text is text, and loads.
 */
static void test_input_method_slips(void **state)
{
	static const char *const none[] = { NULL };
	struct config *cfg;

	(void)state;
	EXPECT_ERRORS("ime-slips.yaml", msgs_ime_slips);
	EXPECT_ERRORS("colon-in-name.yaml", msgs_colon_in_name);
	EXPECT_ERRORS("tabs-chinese.yaml", msgs_tabs_chinese);
	cfg = load_expect(FIX "ime-ok.yaml", &fix_opts, none, 0, 0);
	assert_string_equal(cfg->gateway.name, "丰都县城：自来水厂　加压站");
	assert_string_equal(cfg->devices[0].name, "三号计量分区：进水流量计　（东）");
	config_free(cfg);
}

static void test_odd_shapes(void **state)
{
	(void)state;
	EXPECT_ERRORS("shapes.yaml", msgs_shapes);
}

static void test_duplicate_keys(void **state)
{
	(void)state;
	EXPECT_ERRORS("duplicate-keys.yaml", msgs_duplicate_keys);
}

static void test_unknown_keys(void **state)
{
	(void)state;
	EXPECT_ERRORS("unknown-keys.yaml", msgs_unknown_keys);
}

static void test_wrong_types(void **state)
{
	(void)state;
	EXPECT_ERRORS("wrong-types.yaml", msgs_wrong_types);
}

static void test_out_of_range(void **state)
{
	(void)state;
	EXPECT_ERRORS("ranges.yaml", msgs_ranges);
}

static void test_duplicate_ids(void **state)
{
	(void)state;
	EXPECT_ERRORS("duplicate-ids.yaml", msgs_duplicate_ids);
}

/* Load text as the file FIX name and require exactly the errors want[0..n), in order. */
static void text_expect(const char *name, const char *text, const char *const *want, size_t n)
{
	char *path = xfmt(FIX "%s", name);
	struct config_diag d;
	bool same;

	assert_null(config_load_buffer(path, text, strlen(text), &fix_opts, &d));
	same = d.n == n;
	for (size_t i = 0; same && i < n; i++)
		same = strcmp(d.msgs[i], want[i]) == 0;
	if (!same) {
		fprintf(stderr, "expected:\n");
		for (size_t i = 0; i < n; i++)
			fprintf(stderr, "  [%s]\n", want[i]);
		print_diag(path, &d);
	}
	assert_true(same);
	assert_int_equal(d.nerrors, n);
	config_diag_free(&d);
	free(path);
}

/* An item that is not a mapping makes no bus: the repeat still names the first id's line. */
static void test_duplicate_id_after_a_bad_item(void **state)
{
	static const char text[] = "gateway: { id: gw }\n"
				   "uplink: { host: broker.example }\n"
				   "buses:\n"
				   "  - junk\n"
				   "  - id: a\n"
				   "    tcp: { host: 127.0.0.1 }\n"
				   "  - id: a\n"
				   "    tcp: { host: 127.0.0.2 }\n";
	static const char *const want[] = {
		FIX "dup.yaml:4:5: buses[0] must be a mapping (key: value lines), not the value 'junk'",
		FIX "dup.yaml:7:9: buses[2] (a): duplicate bus id 'a' (first at line 5)",
	};

	(void)state;
	text_expect("dup.yaml", text, want, 2);
}

/*
 * A value shown in a message is cut after 120 bytes, visibly ("..."), never inside a
 * character, with control characters escaped; a key's path is never cut before that.
 */
static void test_long_text_shown_cut(void **state)
{
	char key[201], accents[202], text[1024], *want[3];

	(void)state;
	memset(key, 'k', 200);
	key[200] = '\0';
	accents[0] = 'a';
	for (int i = 0; i < 100; i++)
		memcpy(accents + 1 + 2 * i, "\xc3\xa9", 2); /* é */
	accents[201] = '\0';
	snprintf(text, sizeof text, "gateway: { id: gw }\n"
				    "uplink:\n"
				    "  host: broker.example\n"
				    "  tls:\n"
				    "    %s: 1\n"
				    "    \"%s\": 2\n"
				    "    \"a\\x01b\": 3\n", key, accents);
	/* 120 bytes: "tls." and 116 k's; "tls.", 'a' and 57 é (the 58th would be cut in two) */
	want[0] = xfmt(FIX "cut.yaml:5:5: uplink: unknown key 'tls.%.116s...'", key);
	want[1] = xfmt(FIX "cut.yaml:6:5: uplink: unknown key 'tls.%.115s...'", accents);
	want[2] = xfmt(FIX "cut.yaml:7:5: uplink: unknown key 'tls.a\\x01b'");
	text_expect("cut.yaml", text, (const char *const *)want, 3);
	for (int i = 0; i < 3; i++)
		free(want[i]);
}

/* Every directory searched is named, however long the list, and suggested from. */
static void test_profile_not_found_names_every_directory(void **state)
{
	char path[2048] = "", dirs[2048] = "", *want;
	struct config_opts opts = { 0 };
	struct config_diag d;
	struct point_def *points;
	size_t npoints;
	char *display;

	(void)state;
	for (int i = 0; i < 12; i++) {
		char dir[100];
		snprintf(dir, sizeof dir, "tests/fixtures/no-such-dir/%02d/%s", i,
			 "a-directory-with-a-long-name-to-make-the-list-long");
		snprintf(path + strlen(path), sizeof path - strlen(path), "%s:", dir);
		snprintf(dirs + strlen(dirs), sizeof dirs - strlen(dirs), "%s, ", dir);
	}
	/* the one that has a close name comes last, past the first 600 bytes */
	strcat(path, FIX "devices");
	strcat(dirs, FIX "devices");
	opts.profile_path = path;
	assert_true(strlen(dirs) > 900);
	assert_int_equal(config_load_profile("flowmeter-tset", NULL, &opts, &points, &npoints,
					     &display, &d), -1);
	want = xfmt("profile 'flowmeter-tset' not found: no file flowmeter-tset.yaml in %s (did "
		    "you mean 'flowmeter-test'?); put flowmeter-tset.yaml in a directory named in "
		    "SLUICE_PROFILE_PATH (colon-separated)", dirs);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.msgs[0], want);
	free(want);
	config_diag_free(&d);
}

/*
 * With no profile path given, a program that runs from its build tree (this test binary,
 * build/tests/test_config, like build/sluiced) finds the tree's shipped profiles in
 * config/devices, and a profile found nowhere names the build tree's directory and the
 * installed one, each with what it is.
 */
static void test_profiles_found_from_the_build_tree(void **state)
{
	char tmpl[] = "/tmp/sluice-test-buildtree-XXXXXX", cfgpath[PATH_MAX], top[PATH_MAX];
	char *want, *saved = getenv("SLUICE_PROFILE_PATH");
	struct config_diag d;
	struct config *cfg;

	(void)state;
	saved = saved ? strdup(saved) : NULL;
	unsetenv("SLUICE_PROFILE_PATH");
	assert_non_null(getcwd(top, sizeof top));
	assert_non_null(mkdtemp(tmpl));
	snprintf(cfgpath, sizeof cfgpath, "%s/sluice.yaml", tmpl);
	/* no devices/ beside it */
	spit(cfgpath,
	     "gateway: { id: gw }\n"
	     "uplink: { host: 127.0.0.1 }\n"
	     "buses:\n"
	     "  - { id: b, tcp: { host: 127.0.0.1 } }\n"
	     "devices:\n"
	     "  - { id: m, bus: b, profile: flowmeter-generic }\n", 0644);
	cfg = config_load(cfgpath, NULL, &d);
	if (!cfg)
		print_diag(cfgpath, &d);
	assert_non_null(cfg);
	assert_int_equal(cfg->devices[0].npoints, 5);
	config_free(cfg);
	config_diag_free(&d);

	spit(cfgpath,
	     "gateway: { id: gw }\n"
	     "uplink: { host: 127.0.0.1 }\n"
	     "buses:\n"
	     "  - { id: b, tcp: { host: 127.0.0.1 } }\n"
	     "devices:\n"
	     "  - { id: m, bus: b, profile: flowmeter-generik }\n", 0644);
	assert_null(cfg = config_load(cfgpath, NULL, &d));
	want = xfmt("%s:6:31: devices[0] (m): profile 'flowmeter-generik' not found: no file "
		    "flowmeter-generik.yaml in %s/devices (beside the config), %s/config/devices "
		    "(this build's), " SLUICE_DATADIR "/devices (installed) (did you mean "
		    "'flowmeter-generic'?); put flowmeter-generik.yaml in %s/devices, or name its "
		    "directory in SLUICE_PROFILE_PATH (colon-separated)", cfgpath, tmpl, top, tmpl);
	if (d.n != 1 || strcmp(d.msgs[0], want) != 0)
		print_diag(want, &d);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.msgs[0], want);
	free(want);
	config_diag_free(&d);

	/* the same for config_load_profile (sluice-sim, sluicectl) */
	{
		struct point_def *pts;
		size_t n;
		char *name;
		assert_int_equal(config_load_profile("tuf2000m", NULL, NULL, &pts, &n, &name, NULL),
				 0);
		assert_true(n > 0);
		free(pts);
		free(name);
	}
	unlink(cfgpath);
	rmdir(tmpl);
	if (saved) {
		setenv("SLUICE_PROFILE_PATH", saved, 1);
		free(saved);
	}
}

/*
 * order: names the bytes of the value, A the most significant, in the order they travel.
 * Each form is decoded by the codec from bytes laid out as the letters say: the
 * shorthand and the codec's two flags must agree, for every form of every width.
 */
static void test_point_orders(void **state)
{
	static const struct {
		const char *order, *type;
		unsigned bytes;
	} forms[] = {
		{ "AB", "uint16", 2 }, { "BA", "uint16", 2 },
		{ "ABCD", "uint32", 4 }, { "CDAB", "uint32", 4 }, { "BADC", "uint32", 4 },
		{ "DCBA", "uint32", 4 }, { "ABCDEFGH", "uint64", 8 }, { "GHEFCDAB", "uint64", 8 },
		{ "BADCFEHG", "uint64", 8 }, { "HGFEDCBA", "uint64", 8 },
	};
	const size_t nforms = sizeof forms / sizeof forms[0];
	char text[4096];
	size_t n;
	struct config_diag d;
	struct config *cfg;

	(void)state;
	n = (size_t)snprintf(text, sizeof text,
			     "gateway: { id: gw }\n"
			     "uplink: { host: 127.0.0.1 }\n"
			     "buses:\n"
			     "  - { id: b, tcp: { host: 127.0.0.1 } }\n"
			     "devices:\n"
			     "  - id: m\n"
			     "    bus: b\n"
			     "    points:\n");
	for (size_t i = 0; i < nforms; i++)
		n += (size_t)snprintf(text + n, sizeof text - n,
				      "      p%zu: { table: holding, address: %zu, type: %s, "
				      "order: %s }\n", i, 10 * i, forms[i].type, forms[i].order);
	/* as a manual may write it: lower case, and a float */
	n += (size_t)snprintf(text + n, sizeof text - n,
			      "      fl: { table: input, address: 0, type: float32, order: cdab }\n");
	assert_true(n < sizeof text);
	cfg = config_load_buffer("orders.yaml", text, n, &fix_opts, &d);
	if (!cfg)
		print_diag("orders", &d);
	assert_non_null(cfg);
	config_diag_free(&d);
	for (size_t i = 0; i < nforms; i++) {
		const struct point_def *p = &cfg->devices[0].points[i];
		uint64_t want = forms[i].bytes == 2 ? 0x1122 : forms[i].bytes == 4
								 ? 0x11223344
								 : UINT64_C(0x1122334455667788);
		uint8_t wire[8];
		uint16_t regs[4];
		struct value v;

		/* the byte each letter names, in the order the letters give */
		for (unsigned k = 0; k < forms[i].bytes; k++) {
			unsigned letter = (unsigned)(forms[i].order[k] - 'A');
			wire[k] = (uint8_t)(want >> (8 * (forms[i].bytes - 1 - letter)));
		}
		for (unsigned r = 0; r < forms[i].bytes / 2; r++)
			regs[r] = (uint16_t)(wire[2 * r] << 8 | wire[2 * r + 1]);
		assert_int_equal(codec_decode_regs(p, regs, &v, NULL, 0), 0);
		if (v.kind != VAL_UINT || v.v.u != want)
			fprintf(stderr, "order %s: decoded %" PRIx64 ", want %" PRIx64 "\n",
				forms[i].order, v.v.u, want);
		assert_int_equal(v.kind, VAL_UINT);
		assert_true(v.v.u == want);
	}
	{
		/* 26.5f is 0x41D40000: low word first on the wire */
		const uint16_t regs[2] = { 0x0000, 0x41D4 };
		struct value v;
		assert_int_equal(codec_decode_regs(&cfg->devices[0].points[nforms], regs, &v, NULL, 0),
				 0);
		assert_true(v.kind == VAL_DOUBLE && v.v.d == 26.5);
	}
	config_free(cfg);

	EXPECT_ERRORS("orders.yaml", msgs_orders);
}

/* A config whose topic_prefix is prefix, with one device and one pv rule. */
static char *topic_config(const char *prefix, const char *device)
{
	return xfmt("gateway: { id: gw }\n"
		    "uplink:\n"
		    "  host: 127.0.0.1\n"
		    "  topic_prefix: %s\n"
		    "buses:\n"
		    "  - { id: b, tcp: { host: 127.0.0.1 } }\n"
		    "devices:\n"
		    "  - id: %s\n"
		    "    bus: b\n"
		    "    points: { p: { table: holding, address: 0, type: uint16, unit: kW } }\n"
		    "alerts:\n"
		    "  - { id: roof-array, kind: pv, inverter: %s, power: %s.p, rated_power: 10kW }\n",
		    prefix, device, device, device);
}

static int topic_load(const char *prefix, const char *device, struct config_diag *d)
{
	char *text = topic_config(prefix, device);
	struct config *cfg = config_load_buffer("topics.yaml", text, strlen(text), &fix_opts, d);

	free(text);
	config_free(cfg);
	return cfg ? 0 : -1;
}

/*
 * The full topic, <prefix>/<gateway>/alert/<rule>/<check> and the rest, fits the uplink's
 * own limit (UPLINK_TOPIC_MAX with its NUL), and has no more '/' than mosquitto takes
 * (200): at the limit loads, one past it is an error at topic_prefix.
 */
static void test_topic_limits(void **state)
{
	/* 63 bytes: the longest id; its comms alert is alert/comms-<57 of them>/offline */
	const char *dev = "d23456789012345678901234567890123456789012345678901234567890123";
	/* the longest topic: telemetry/<dev> is 73 bytes, alert/comms-...: 6 + 63 + 8 = 77 */
	size_t rest = strlen("/gw/") + 77, fits = UPLINK_TOPIC_MAX - 1 - rest;
	char prefix[UPLINK_TOPIC_MAX + 8], *want;
	struct config_diag d;

	(void)state;
	memset(prefix, 'p', fits);
	prefix[fits] = '\0';
	if (topic_load(prefix, dev, &d) != 0)
		print_diag("fits", &d);
	assert_int_equal(d.n, 0);
	config_diag_free(&d);

	strcat(prefix, "p");
	assert_int_equal(topic_load(prefix, dev, &d), -1);
	want = xfmt("topics.yaml:4:17: uplink: topic_prefix is too long: the topic %.120s.../gw/"
		    "alert/comms-%.57s/offline would be 1024 bytes, and sluiced publishes topics "
		    "of at most 1023 bytes (shorten topic_prefix by 1 bytes)", prefix, dev);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.msgs[0], want);
	free(want);
	config_diag_free(&d);

	/* the rule's own: pv's longest check, low_output, under a short device id */
	memset(prefix, 'p', UPLINK_TOPIC_MAX - 1 - strlen("/gw/alert/roof-array/low_output") + 1);
	prefix[UPLINK_TOPIC_MAX - 1 - strlen("/gw/alert/roof-array/low_output") + 1] = '\0';
	assert_int_equal(topic_load(prefix, "m", &d), -1);
	assert_non_null(strstr(d.msgs[0], "/gw/alert/roof-array/low_output would be 1024 bytes"));
	config_diag_free(&d);

	/* levels: 197 in the prefix make alert topics of 200 '/' */
	prefix[0] = '\0';
	for (int i = 0; i < 197; i++)
		strcat(prefix, i ? "/a" : "a");
	assert_int_equal(topic_load(prefix, "m", &d), 0);
	config_diag_free(&d);
	strcat(prefix, "/a");
	assert_int_equal(topic_load(prefix, "m", &d), -1);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.msgs[0], "topics.yaml:4:17: uplink: topic_prefix has 198 levels: "
			    "with it the alert topics have 201 '/' and brokers refuse more than 200 "
			    "(mosquitto's limit): use at most 197 levels");
	config_diag_free(&d);
}

/* A growing text: append like printf. */
struct text {
	char *s;
	size_t n, cap;
};

static void add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->s ? t->s + t->n : NULL, t->s ? t->cap - t->n : 0, fmt, ap);
		va_end(ap);
		assert_true(n >= 0);
		if (t->s && t->n + (size_t)n < t->cap)
			break;
		t->cap = (t->cap + (size_t)n + 1) * 2;
		assert_non_null(t->s = realloc(t->s, t->cap));
	}
	t->n += (size_t)n;
}

/* The messages of loading text (as name, beside FIX's devices/ unless dir says). */
static struct config *text_load(const char *name, const struct text *t, struct config_diag *d)
{
	return config_load_buffer(name, t->s, t->n, &fix_opts, d);
}

#define TOP_TEXT "gateway: { id: gw }\nuplink: { host: 127.0.0.1 }\n"

/*
 * web: the page. A password is required on any address but loopback; only numeric
 * addresses; cert_file and key_file go together; the password file and the key are
 * secrets (mode checked as the MQTT password file's); a port below 1024 is warned of.
 */
static void test_web(void **state)
{
	char pw[] = "/tmp/sluice-test-webpw-XXXXXX";
	int fd = mkstemp(pw);
	struct config_diag d;
	struct config *cfg;
	struct text t = { 0 };

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(chmod(pw, 0640), 0);

	add(&t, TOP_TEXT "web:\n  listen: 0.0.0.0:8080\n  password_file: %s\n", pw);
	cfg = text_load("web.yaml", &t, &d);
	if (!cfg)
		print_diag("web", &d);
	assert_non_null(cfg);
	assert_string_equal(cfg->web.listen, "0.0.0.0:8080");
	assert_string_equal(cfg->web.password_file, pw);
	assert_null(cfg->web.cert_file);
	config_free(cfg);
	config_diag_free(&d);

	/* no web: no page */
	t.n = 0;
	add(&t, TOP_TEXT);
	cfg = text_load("web.yaml", &t, &d);
	assert_non_null(cfg);
	assert_null(cfg->web.listen);
	config_free(cfg);
	config_diag_free(&d);

	static const struct {
		const char *web, *want;
	} bad[] = {
		{ "  listen: 0.0.0.0:8080\n",
		  "web.yaml:4:11: web: listen '0.0.0.0:8080' is not a loopback address: "
		  "password_file is required (lines user:HASH, as `openssl passwd -6` makes them), "
		  "or anyone who reaches the box reads every device and probes its buses" },
		{ "  listen: \"[::]:8080\"\n",
		  "web.yaml:4:11: web: listen '[::]:8080' is not a loopback address: password_file is "
		  "required (lines user:HASH, as `openssl passwd -6` makes them), or anyone who "
		  "reaches the box reads every device and probes its buses" },
		{ "  listen: gateway.local:8080\n",
		  "web.yaml:4:11: web: listen 'gateway.local:8080' is not an address and port: "
		  "expected a numeric IPv4 address and port (\"0.0.0.0:8080\") or an IPv6 address in "
		  "brackets (\"[::]:8080\"); names are not looked up" },
		{ "  listen: 127.0.0.1:8080\n  cert_file: /nonexistent.crt\n",
		  "web.yaml:5:14: web: cert_file '/nonexistent.crt' does not exist" },
		{ "  password_file: /nonexistent\n",
		  "web.yaml:4:18: web: password_file '/nonexistent' does not exist" },
		{ "  password_file: /nonexistent\n", "web.yaml:4:3: web: missing required key 'listen'" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		t.n = 0;
		add(&t, TOP_TEXT "web:\n%s", bad[i].web);
		assert_null(cfg = text_load("web.yaml", &t, &d));
		bool found = false;
		for (size_t k = 0; k < d.n; k++)
			found |= strcmp(d.msgs[k], bad[i].want) == 0;
		if (!found) {
			fprintf(stderr, "expected [%s]\n", bad[i].want);
			print_diag(bad[i].web, &d);
		}
		assert_true(found);
		config_diag_free(&d);
	}

	/* the certificate without its key */
	t.n = 0;
	add(&t, TOP_TEXT "web:\n  listen: 127.0.0.1:8443\n  cert_file: %s\n", pw);
	assert_null(text_load("web.yaml", &t, &d));
	assert_int_equal(d.n, 1);
	assert_string_equal(d.msgs[0], "web.yaml:4:3: web: cert_file and key_file go together "
				       "(HTTPS needs the certificate and its key)");
	config_diag_free(&d);

	/* the password file readable by all */
	assert_int_equal(chmod(pw, 0644), 0);
	t.n = 0;
	add(&t, TOP_TEXT "web:\n  listen: 127.0.0.1:8080\n  password_file: %s\n", pw);
	assert_null(text_load("web.yaml", &t, &d));
	assert_int_equal(d.n, 1);
	assert_non_null(strstr(d.msgs[0], "web: password_file"));
	assert_non_null(strstr(d.msgs[0], "can be read by every user (mode 0644)"));
	config_diag_free(&d);
	assert_int_equal(chmod(pw, 0640), 0);

	/* loopback without a password; a privileged port: a warning */
	t.n = 0;
	add(&t, TOP_TEXT "web:\n  listen: \"[::1]:80\"\n");
	cfg = text_load("web.yaml", &t, &d);
	assert_non_null(cfg);
	/* and "no devices are configured" */
	assert_int_equal(d.n, 2);
	assert_string_equal(d.msgs[1], "web.yaml:4:11: warning: web: listen port 80 is below 1024: "
				       "sluiced's unit does not grant the capability to bind it "
				       "(CAP_NET_BIND_SERVICE); use 8080");
	config_free(cfg);
	config_diag_free(&d);
	free(t.s);
	unlink(pw);
}

/*
 * Lists and mappings nested more than 32 deep are refused before libyaml composes the
 * document, at the level too deep: 400 KB of '[' took minutes to compose. 32 levels are
 * not refused for their depth.
 */
static void test_nesting_depth(void **state)
{
	struct text t = { 0 };
	struct config_diag d;

	(void)state;
	/* the root mapping and 31 lists: 32 levels; x is only an unknown key */
	add(&t, TOP_TEXT "x: ");
	for (int i = 0; i < 31; i++)
		add(&t, "[");
	for (int i = 0; i < 31; i++)
		add(&t, "]");
	add(&t, "\n");
	assert_null(text_load("deep.yaml", &t, &d));
	assert_int_equal(d.n, 1);
	assert_string_equal(d.msgs[0], "deep.yaml:3:1: unknown key 'x'");
	config_diag_free(&d);

	/* one more: the 32nd '[' is the 33rd level */
	t.n = 0;
	add(&t, TOP_TEXT "x: ");
	for (int i = 0; i < 200000; i++)
		add(&t, "[");
	for (int i = 0; i < 200000; i++)
		add(&t, "]");
	assert_null(text_load("deep.yaml", &t, &d));
	assert_int_equal(d.n, 1);
	assert_string_equal(d.msgs[0], "deep.yaml:3:35: lists and mappings are nested more than "
			    "32 deep here: a configuration needs fewer than ten levels (look for an "
			    "unclosed '[' or '{')");
	config_diag_free(&d);

	/* and by indentation: key k32 is the 33rd level */
	t.n = 0;
	add(&t, TOP_TEXT);
	for (int i = 0; i < 40; i++)
		add(&t, "%*sk%d:\n", 2 * i, "", i);
	assert_null(text_load("deep.yaml", &t, &d));
	assert_int_equal(d.n, 1);
	assert_string_equal(d.msgs[0], "deep.yaml:35:65: lists and mappings are nested more "
			    "than 32 deep here: a configuration needs fewer than ten levels (look for "
			    "an unclosed '[' or '{')");
	config_diag_free(&d);
	free(t.s);
}

/* got must be want (made by xfmt, freed here). */
static void expect_msg(const char *got, char *want)
{
	bool same = strcmp(got, want) == 0;

	if (!same)
		fprintf(stderr, "got  [%s]\nwant [%s]\n", got, want);
	free(want);
	assert_true(same);
}

static void add_points(struct text *t, const char *indent, int from, int n)
{
	for (int i = from; i < from + n; i++)
		add(t, "%sp%d: { table: holding, address: %d, type: uint16 }\n", indent, i, i);
}

/*
 * At most 5000 points a device (its profile's and its own) and a profile, 500,000 in a
 * config (a profile's once for each device naming it): each an error at the place that
 * goes past it. 5000 of its own and a profile of 5000 loaded by 100 devices are fine.
 */
static void test_points_limits(void **state)
{
	char tmpl[] = "/tmp/sluice-test-points-XXXXXX", path[PATH_MAX], name[PATH_MAX + 16];
	char duo[PATH_MAX + 16];
	struct text t = { 0 }, p = { 0 };
	struct config_diag d;
	struct config *cfg;

	(void)state;
	assert_non_null(mkdtemp(tmpl));
	snprintf(path, sizeof path, "%s/devices", tmpl);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(name, sizeof name, "%s/sluice.yaml", tmpl);

	/* a profile of 5000 */
	add(&p, "profile: big\npoints:\n");
	add_points(&p, "  ", 0, 5000);
	snprintf(path, sizeof path, "%s/devices/big.yaml", tmpl);
	spit(path, p.s, 0644);

	add(&t, TOP_TEXT "buses:\n  - { id: b, tcp: { host: 127.0.0.1 } }\ndevices:\n"
		"  - id: own\n    bus: b\n    points:\n");
	add_points(&t, "      ", 0, 5000);
	for (int i = 0; i < 99; i++)
		add(&t, "  - { id: d%d, bus: b, profile: big }\n", i);
	cfg = text_load(name, &t, &d);
	if (!cfg)
		print_diag(name, &d);
	assert_non_null(cfg);
	assert_int_equal(cfg->ndevices, 100);
	assert_int_equal(cfg->devices[99].npoints, 5000);
	/* the 99 devices of the profile hold one table between them; the device with
	 * points of its own has its own */
	assert_int_equal(cfg->nshared, 1);
	assert_false(cfg->devices[0].points_shared);
	for (int i = 1; i < 100; i++) {
		assert_true(cfg->devices[i].points_shared);
		assert_ptr_equal(cfg->devices[i].points, cfg->shared_points[0]);
		assert_ptr_equal(cfg->devices[i].point_locs, cfg->shared_locs[0]);
	}
	assert_string_equal(cfg->devices[99].points[4999].name, cfg->devices[0].points[4999].name);
	config_free(cfg);
	config_diag_free(&d);

	/* a device that adds points of its own has the profile's first, in a table of its
	 * own; the devices on either side of it still share the profile's */
	snprintf(duo, sizeof duo, "%s/devices/duo.yaml", tmpl);
	spit(duo, "profile: duo\npoints:\n  p0: { table: holding, address: 0, type: uint16 }\n"
	     "  p1: { table: holding, address: 1, type: uint16 }\n", 0644);
	t.n = 0;
	add(&t, TOP_TEXT "buses:\n  - { id: b, tcp: { host: 127.0.0.1 } }\ndevices:\n"
		"  - { id: x1, bus: b, profile: duo }\n"
		"  - id: x2\n    bus: b\n    profile: duo\n    points:\n");
	add_points(&t, "      ", 6000, 1);
	add(&t, "  - { id: x3, bus: b, profile: duo }\n");
	cfg = text_load(name, &t, &d);
	if (!cfg)
		print_diag(name, &d);
	assert_non_null(cfg);
	assert_int_equal(cfg->nshared, 1);
	assert_true(cfg->devices[0].points_shared && cfg->devices[2].points_shared);
	assert_ptr_equal(cfg->devices[0].points, cfg->devices[2].points);
	assert_int_equal(cfg->devices[0].npoints, 2);
	assert_false(cfg->devices[1].points_shared);
	assert_int_equal(cfg->devices[1].npoints, 3);
	assert_ptr_not_equal(cfg->devices[1].points, cfg->devices[0].points);
	assert_string_equal(cfg->devices[1].points[1].name, "p1");
	assert_string_equal(cfg->devices[1].points[2].name, "p6000");
	assert_int_equal(cfg->devices[1].point_locs[1].line, cfg->devices[0].point_locs[1].line);
	config_free(cfg);
	config_diag_free(&d);
	unlink(duo);

	/* 5001 of its own; 5000 of the profile and 1 of its own; the 101st device */
	t.n = 0;
	add(&t, TOP_TEXT "buses:\n  - { id: b, tcp: { host: 127.0.0.1 } }\ndevices:\n"
		"  - id: own\n    bus: b\n    points:\n");
	add_points(&t, "      ", 0, 5001);
	add(&t, "  - id: both\n    bus: b\n    profile: big\n    points:\n");
	add_points(&t, "      ", 6000, 1);
	for (int i = 0; i < 101; i++)
		add(&t, "  - { id: d%d, bus: b, profile: big }\n", i);
	assert_null(text_load(name, &t, &d));
	if (d.n != 3)
		print_diag(name, &d);
	assert_int_equal(d.n, 3);
	expect_msg(d.msgs[0], xfmt("%s:9:7: devices[0] (own): a device has at most 5000 "
					    "points; this one has 5001", name));
	expect_msg(d.msgs[1], xfmt("%s:5014:7: devices[1] (both): a device has at most "
					    "5000 points; this one has 5001 (5000 from profile big, "
					    "1 of its own)", name));
	expect_msg(d.msgs[2], xfmt("%s:5114:5: devices[101] (d99): with this device's "
					    "5000 points the configuration has more than 500000 (a "
					    "profile's points count once for each device that names "
					    "it)", name));
	config_diag_free(&d);

	/* a profile of 5001 */
	add_points(&p, "  ", 5000, 1);
	spit(path, p.s, 0644);
	t.n = 0;
	add(&t, TOP_TEXT "buses:\n  - { id: b, tcp: { host: 127.0.0.1 } }\ndevices:\n"
		"  - { id: d, bus: b, profile: big }\n");
	assert_null(text_load(name, &t, &d));
	assert_int_equal(d.n, 1);
	expect_msg(d.msgs[0], xfmt("%s:3:3: a profile has at most 5000 points; this one "
					    "has 5001", path));
	config_diag_free(&d);

	unlink(path);
	snprintf(path, sizeof path, "%s/devices", tmpl);
	rmdir(path);
	rmdir(tmpl);
	free(t.s);
	free(p.s);
}

/*
 * Many items: 5,000 TCP devices on their own buses with a rule each load (ids and keys
 * are found by hash and by sorting, not by comparing each with every other), and a
 * repeated id or key among them is still found and named with its first line.
 */
static void many_items(struct text *t, bool repeats)
{
	t->n = 0;
	add(t, TOP_TEXT "buses:\n");
	for (int i = 0; i < 5000; i++)
		add(t, "  - { id: b%d, tcp: { host: 10.0.%d.%d } }\n", i, i / 250, i % 250 + 1);
	if (repeats)
		add(t, "  - { id: b4321, tcp: { host: 10.0.0.1 } }\n");
	add(t, "devices:\n");
	for (int i = 0; i < 5000; i++)
		add(t, "  - { id: dev%d, bus: b%d, points: { flow: { table: holding, address: 0, "
		       "type: float32, unit: m3/h } } }\n", i, 4999 - i);
	if (repeats) {
		/* a long mapping: its keys are found repeated by sorting, not pair by pair */
		add(t, "  - id: dev17\n    bus: b0\n    points:\n");
		for (int i = 0; i < 40; i++)
			add(t, "      p%d: { table: holding, address: %d, type: uint16 }\n", i % 30, i);
	}
	add(t, "alerts:\n");
	for (int i = 0; i < 5000; i++)
		add(t, "  - { id: r%d, kind: threshold, point: dev%d.flow, above: 10 }\n", i, i);
	if (repeats)
		add(t, "  - { id: r17, kind: threshold, point: nosuch.flow, above: 10 }\n");
}

/*
 * Many items: 5,000 TCP devices on their own buses with a rule each load (ids and keys
 * are found by hash and by sorting, not by comparing each with every other), and a
 * repeated id or key among them is still found and named with its first line.
 */
static void test_many_items(void **state)
{
	struct text t = { 0 };
	struct config_diag d;
	struct config *cfg;

	(void)state;
	many_items(&t, false);
	cfg = text_load("many.yaml", &t, &d);
	if (!cfg)
		print_diag("many", &d);
	assert_non_null(cfg);
	assert_int_equal(cfg->ndevices, 5000);
	assert_int_equal(cfg->devices[4999].bus, 0);
	assert_int_equal(cfg->rules[4321].point.device, 4321);
	config_free(cfg);
	config_diag_free(&d);

	many_items(&t, true);
	assert_null(text_load("many.yaml", &t, &d));
	if (d.n != 14)
		print_diag("many", &d);
	assert_int_equal(d.n, 14);
	assert_string_equal(d.msgs[0], "many.yaml:5004:11: buses[5000] (b4321): duplicate bus id "
			    "'b4321' (first at line 4325)");
	assert_string_equal(d.msgs[1], "many.yaml:10006:9: devices[5000] (dev17): duplicate "
			    "device id 'dev17' (first at line 5023)");
	for (int i = 0; i < 10; i++) {
		char *want = xfmt("many.yaml:%d:7: devices[5000] (dev17): duplicate point 'p%d' "
				  "(first at line %d)", 10039 + i, i, 10009 + i);
		assert_string_equal(d.msgs[2 + i], want);
		free(want);
	}
	assert_string_equal(d.msgs[12], "many.yaml:15050:11: alerts[5000] (r17): duplicate rule "
			    "id 'r17' (first at line 10067)");
	assert_string_equal(d.msgs[13], "many.yaml:15050:40: alerts[5000] (r17): point "
			    "'nosuch.flow': there is no device 'nosuch'");
	config_diag_free(&d);
	free(t.s);
}

static void test_bad_ids(void **state)
{
	(void)state;
	EXPECT_ERRORS("bad-ids.yaml", msgs_bad_ids);
}

static void test_points(void **state)
{
	(void)state;
	EXPECT_ERRORS("points.yaml", msgs_points);
}

static void test_overlaps(void **state)
{
	(void)state;
	EXPECT_ERRORS("overlap.yaml", msgs_overlap);
}

static void test_references(void **state)
{
	(void)state;
	EXPECT_ERRORS("references.yaml", msgs_references);
}

static void test_missing_required(void **state)
{
	(void)state;
	EXPECT_ERRORS("missing.yaml", msgs_missing);
}

static void test_alerts(void **state)
{
	(void)state;
	EXPECT_ERRORS("alerts.yaml", msgs_alerts);
	EXPECT_ERRORS("alerts-more.yaml", msgs_alerts_more);
}

static void test_uplink(void **state)
{
	(void)state;
	EXPECT_ERRORS("uplink.yaml", msgs_uplink);
	EXPECT_ERRORS("topic-prefix.yaml", msgs_topic_prefix);
}

static void test_timezone(void **state)
{
	struct stat st;

	(void)state;
	if (stat("/usr/share/zoneinfo/Asia/Shanghai", &st) < 0)
		skip(); /* no zone database: timezones are not checked */
	EXPECT_ERRORS("timezone.yaml", msgs_timezone);
}

/* Errors in a profile are located in the profile, and reported once however many
 * devices use it; references into a broken device do not pile up more errors. */
static void test_profile_errors(void **state)
{
	(void)state;
	EXPECT_ERRORS("profile-errors.yaml", msgs_profile_errors);
}

static void test_whole_file_problems(void **state)
{
	static const char *const missing[] = {
		FIX "no-such.yaml: cannot be opened for reading: No such file or directory",
	};
	static const char *const dir[] = {
		FIX "devices: is not a regular file",
	};

	(void)state;
	EXPECT_ERRORS("empty.yaml", msgs_empty);
	EXPECT_ERRORS("two-documents.yaml", msgs_two_documents);
	EXPECT_ERRORS("alias-undefined.yaml", msgs_alias_undefined);
	EXPECT_ERRORS("anchor-twice.yaml", msgs_anchor_twice);
	EXPECT_ERRORS("not-a-mapping.yaml", msgs_not_a_mapping);
	EXPECT_ERRORS("no-such.yaml", missing);
	EXPECT_ERRORS("devices", dir);
}

/* A serial device that is not there yet is a warning: the config still loads. */
static void test_serial_device_missing_is_a_warning(void **state)
{
	static const char *const want[] = {
		FIX "serial-missing.yaml:9:20: warning: buses[0] (usb0): rtu.device "
		    "'/dev/ttyUSB-sluice-test-absent' does not exist (yet); sluiced will keep "
		    "trying to open it",
	};
	struct config *cfg;
	char dir[PATH_MAX], data[PATH_MAX + 8], sum[120];

	(void)state;
	cfg = load_expect(FIX "serial-missing.yaml", &fix_opts, want, 1, 1);
	assert_int_equal(cfg->buses[0].baud, 19200);
	assert_int_equal(cfg->buses[0].parity, 'E');
	assert_int_equal(cfg->devices[0].unit_id, 7);
	assert_int_equal(cfg->devices[0].npoints, 2);
	/* data_dir: data, beside the config file */
	assert_non_null(realpath(FIX, dir));
	snprintf(data, sizeof data, "%s/data", dir);
	assert_string_equal(cfg->gateway.data_dir, data);
	config_summary(cfg, sum, sizeof sum);
	assert_string_equal(sum, "1 bus, 1 device, 2 points, 0 rules");
	config_free(cfg);
}

/* Every mistake in a file is reported, in file order, not only the first. */
static void test_many_errors_all_reported(void **state)
{
	struct config_diag d;
	struct config *cfg;
	int last = 0;

	(void)state;
	cfg = config_load(FIX "ranges.yaml", &fix_opts, &d);
	assert_null(cfg);
	assert_int_equal(d.nerrors, 22);
	assert_int_equal(d.n, 22);
	for (size_t i = 0; i < d.n; i++) {
		int line = atoi(d.msgs[i] + strlen(FIX "ranges.yaml:"));
		assert_true(line >= last);
		last = line;
	}
	/* the first and the last mistakes of the file are both there */
	assert_non_null(strstr(d.msgs[0], ":3:14: gateway: log_level 'verbose'"));
	assert_non_null(strstr(d.msgs[21], ":33:14: devices[1] (plc): unit_id 256"));
	config_diag_free(&d);

	/* a NULL diag is allowed */
	assert_null(config_load(FIX "ranges.yaml", &fix_opts, NULL));
}

/* ---- config_load_profile ----------------------------------------------------------- */

static void test_load_profile(void **state)
{
	struct point_def *pts;
	size_t n;
	char *name;
	struct config_diag d;

	(void)state;
	assert_int_equal(config_load_profile("flowmeter-generic", "config", &fix_opts, &pts, &n,
					     &name, &d), 0);
	assert_int_equal(d.n, 0);
	assert_int_equal(n, 5);
	assert_string_equal(pts[0].name, "flow");
	assert_string_equal(pts[2].name, "total");
	assert_int_equal(pts[2].type, PT_FLOAT64);
	assert_int_equal(pts[2].address, 4);
	assert_string_equal(name, "Electromagnetic flow meter, float registers, high word first");
	free(pts);
	free(name);
	config_diag_free(&d);

	/* sunspec: built in, nothing to read */
	assert_int_equal(config_load_profile("sunspec", NULL, &fix_opts, &pts, &n, &name, NULL), 0);
	assert_int_equal(n, 0);
	assert_null(pts);
	free(name);

	/* found through the search path when there is no config directory */
	{
		const struct config_opts o = { .profile_path = "/nonexistent:" FIX "devices" };
		assert_int_equal(config_load_profile("flowmeter-test", NULL, &o, &pts, &n, &name,
						     NULL), 0);
		assert_int_equal(n, 2);
		free(pts);
		free(name);
	}
	/* and through $SLUICE_PROFILE_PATH when opts say nothing */
	setenv("SLUICE_PROFILE_PATH", FIX "devices", 1);
	assert_int_equal(config_load_profile("flowmeter-test", NULL, NULL, &pts, &n, &name, NULL),
			 0);
	assert_int_equal(n, 2);
	free(pts);
	free(name);
	unsetenv("SLUICE_PROFILE_PATH");
}

static void test_load_profile_errors(void **state)
{
	static const char *const not_found[] = {
		"profile 'flowmeter-generik' not found: no file flowmeter-generik.yaml in "
		"config/devices (beside the config), tests/fixtures/no-such-dir (did you mean "
		"'flowmeter-generic'?); put flowmeter-generik.yaml in config/devices, or name its "
		"directory in SLUICE_PROFILE_PATH (colon-separated)",
	};
	static const char *const misnamed[] = {
		FIX "devices/misnamed.yaml:1:10: profile 'flowmeter' does not match the file's "
		    "name: a profile is found by its file name, so this file must say profile: "
		    "misnamed",
		FIX "devices/misnamed.yaml:3:16: max_registers 200 is out of range (expected 1..125)",
		FIX "devices/misnamed.yaml:6:45: point 'tota': type 'flaot64' is not one of bool, "
		    "int16, uint16, int32, uint32, int64, uint64, float32, float64, string (did you "
		    "mean 'float64'?)",
		FIX "devices/misnamed.yaml:7:1: unknown key 'pionts' (did you mean 'points'?)",
	};
	struct point_def *pts = (void *)1;
	char *name = (void *)1;
	size_t n = 99;
	struct config_diag d;

	(void)state;
	assert_int_equal(config_load_profile("flowmeter-generik", "config", &fix_opts, &pts, &n,
					     &name, &d), -1);
	assert_null(pts);
	assert_null(name);
	assert_int_equal(n, 0);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.msgs[0], not_found[0]);
	config_diag_free(&d);

	assert_int_equal(config_load_profile("misnamed", "tests/fixtures/config", &fix_opts, &pts,
					     &n, &name, &d), -1);
	assert_null(pts);
	assert_int_equal(d.n, 4);
	for (size_t i = 0; i < 4; i++)
		assert_string_equal(d.msgs[i], misnamed[i]);
	assert_int_equal(d.nerrors, 4);
	config_diag_free(&d);

	assert_int_equal(config_load_profile("../etc/passwd", "config", &fix_opts, &pts, &n, &name,
					     &d), -1);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.msgs[0], "'../etc/passwd' is not a valid profile name (letters, "
			    "digits, '-' and '_')");
	config_diag_free(&d);
}

/*
 * Every shipped profile in config/devices loads without an error or a warning, has points,
 * and says where its register map came from and how to confirm it: a profile nobody can
 * trace back to a manual is a guess.
 */
static void test_shipped_profiles(void **state)
{
	DIR *dir;
	struct dirent *e;
	size_t nfiles = 0;

	(void)state;
	assert_non_null(dir = opendir("config/devices"));
	while ((e = readdir(dir))) {
		char name[NAME_MAX + 1], path[PATH_MAX], text[16384];
		size_t len = strlen(e->d_name), got, n = 0;
		struct point_def *pts = NULL;
		char *display = NULL;
		struct config_diag d;
		FILE *f;
		int rc;

		if (len <= 5 || strcmp(e->d_name + len - 5, ".yaml") != 0)
			continue;
		snprintf(name, sizeof name, "%.*s", (int)(len - 5), e->d_name);
		rc = config_load_profile(name, "config", &fix_opts, &pts, &n, &display, &d);
		if (rc != 0 || d.n != 0)
			print_diag(name, &d);
		assert_int_equal(rc, 0);
		assert_int_equal(d.n, 0);
		assert_true(n > 0);
		assert_non_null(display);
		free(pts);
		free(display);
		config_diag_free(&d);

		snprintf(path, sizeof path, "config/devices/%s", e->d_name);
		assert_non_null(f = fopen(path, "r"));
		got = fread(text, 1, sizeof text - 1, f);
		fclose(f);
		text[got] = '\0';
		if (!strstr(text, "# Source:") || !strstr(text, "sluicectl probe"))
			fprintf(stderr, "%s: no '# Source:' comment or no 'sluicectl probe' hint\n",
				path);
		assert_non_null(strstr(text, "# Source:"));
		assert_non_null(strstr(text, "sluicectl probe"));
		nfiles++;
	}
	closedir(dir);
	/* issue 3 asks for at least eight register maps */
	assert_true(nfiles >= 8);
}

/* ---- value syntaxes ---------------------------------------------------------------- */

static void test_parse_duration(void **state)
{
	static const struct {
		const char *s;
		int64_t ms;
	} good[] = {
		{ "500ms", 500 }, { "10s", 10000 }, { "5m", 300000 }, { "2h", 7200000 },
		{ "1d", 86400000 }, { "1h30m", 5400000 }, { "1.5s", 1500 }, { "0", 0 },
		{ "0s", 0 }, { "5min", 300000 }, { "10 s", 10000 },
	};
	static const char *const bad[] = { "", "10", "s", "-1s", "1x", "1.s", "10sec", "1e3s",
					   "5M", " 5s", "5s!" };
	int64_t ms;

	(void)state;
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		ms = -1;
		assert_int_equal(config_parse_duration(good[i].s, &ms), 0);
		assert_int_equal(ms, good[i].ms);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(config_parse_duration(bad[i], &ms), -1);
}

static void test_parse_size(void **state)
{
	uint64_t b;

	(void)state;
	assert_int_equal(config_parse_size("64KiB", &b), 0);
	assert_int_equal(b, 65536);
	assert_int_equal(config_parse_size("512MiB", &b), 0);
	assert_int_equal(b, 512ull << 20);
	assert_int_equal(config_parse_size("2GiB", &b), 0);
	assert_int_equal(b, 2ull << 30);
	assert_int_equal(config_parse_size("1MB", &b), 0);
	assert_int_equal(b, 1000000);
	assert_int_equal(config_parse_size("3 KB", &b), 0);
	assert_int_equal(b, 3000);
	assert_int_equal(config_parse_size("100B", &b), 0);
	assert_int_equal(b, 100);
	assert_int_equal(config_parse_size("4096", &b), 0);
	assert_int_equal(b, 4096);
	assert_int_equal(config_parse_size("1.5GiB", &b), 0);
	assert_int_equal(b, 3ull << 29);
	assert_int_equal(config_parse_size("1.5", &b), -1);
	assert_int_equal(config_parse_size("MiB", &b), -1);
	assert_int_equal(config_parse_size("12XB", &b), -1);
	assert_int_equal(config_parse_size("-1MiB", &b), -1);
	assert_int_equal(config_parse_size("", &b), -1);
}

static void test_parse_power(void **state)
{
	double w;

	(void)state;
	assert_int_equal(config_parse_power("800W", &w), 0);
	assert_true(w == 800);
	assert_int_equal(config_parse_power("30kW", &w), 0);
	assert_true(w == 30000);
	assert_int_equal(config_parse_power("1.2MW", &w), 0);
	assert_true(w == 1200000);
	assert_int_equal(config_parse_power("30", &w), -1);
	assert_int_equal(config_parse_power("30kw", &w), -1);
	assert_int_equal(config_parse_power("kW", &w), -1);
	assert_int_equal(config_parse_power("30kWh", &w), -1);
}

static void test_parse_time_of_day(void **state)
{
	int s;

	(void)state;
	assert_int_equal(config_parse_time_of_day("02:00", &s), 0);
	assert_int_equal(s, 7200);
	assert_int_equal(config_parse_time_of_day("2:00", &s), 0);
	assert_int_equal(s, 7200);
	assert_int_equal(config_parse_time_of_day("23:59:59", &s), 0);
	assert_int_equal(s, 86399);
	assert_int_equal(config_parse_time_of_day("24:00", &s), 0);
	assert_int_equal(s, 86400);
	assert_int_equal(config_parse_time_of_day("24:01", &s), -1);
	assert_int_equal(config_parse_time_of_day("12:60", &s), -1);
	assert_int_equal(config_parse_time_of_day("12", &s), -1);
	assert_int_equal(config_parse_time_of_day("12:5", &s), -1);
	assert_int_equal(config_parse_time_of_day("123:00", &s), -1);
	assert_int_equal(config_parse_time_of_day("12:00:60", &s), -1);
}

static void test_id_valid(void **state)
{
	char id[80];

	(void)state;
	assert_true(config_id_valid("dma3-out_A"));
	assert_false(config_id_valid(""));
	assert_false(config_id_valid("a b"));
	assert_false(config_id_valid("a.b"));
	assert_false(config_id_valid("a/b"));
	assert_false(config_id_valid("a+b"));
	assert_false(config_id_valid("水表"));
	memset(id, 'x', sizeof id);
	id[ID_MAX - 1] = '\0';
	assert_true(config_id_valid(id));
	id[ID_MAX - 1] = 'x';
	id[ID_MAX] = '\0';
	assert_false(config_id_valid(id));
}

/* Load text and require exactly the messages want[0..n) in order; the config or NULL. */
static struct config *formats_expect(const char *text, const char *const *want, size_t n)
{
	struct text t = { 0 };
	struct config_diag d;
	struct config *cfg;
	bool same;

	add(&t, "%s", text);
	cfg = text_load("formats.yaml", &t, &d);
	free(t.s);
	same = d.n == n;
	for (size_t i = 0; same && i < n; i++)
		same = strcmp(d.msgs[i], want[i]) == 0;
	if (!same) {
		fprintf(stderr, "expected:\n");
		for (size_t i = 0; i < n; i++)
			fprintf(stderr, "  [%s]\n", want[i]);
		print_diag("formats.yaml", &d);
	}
	assert_true(same);
	if (d.nerrors)
		assert_null(cfg);
	else
		assert_non_null(cfg);
	config_diag_free(&d);
	return cfg;
}

#define DEVICES_TEXT \
	"buses: [ { id: b, tcp: { host: 127.0.0.1 } } ]\n" \
	"devices:\n" \
	"  - id: pump\n" \
	"    bus: b\n" \
	"    points:\n" \
	"      speed: { table: holding, address: 0, type: uint16, writable: true, min: 0, max: 1450 }\n" \
	"      run: { table: coil, address: 0, type: bool, writable: true }\n"

/* uplink.format and what goes with it: sparkplug, commands, fallback brokers. */
static void test_formats(void **state)
{
	static const char good[] =
		"gateway: { id: gw }\n"
		"uplink:\n"
		"  host: broker.example\n"
		"  username: u\n"
		"  client_id: cid\n"
		"  tls: true\n"
		"  format: sparkplug\n"
		"  sparkplug: { group: cq-water, primary_host: scada-1, qos: 0 }\n"
		"  commands: true\n"
		"  command_max_age: 30s\n"
		"  fallback_check: 1m\n"
		"  fallback:\n"
		"    - { host: 192.0.2.31 }\n"
		"    - { host: \"2001:db8::2\", port: 1884, tls: false, username: v, client_id: c2 }\n"
		DEVICES_TEXT;
	static const char defaults[] =
		"gateway: { id: gw }\n"
		"uplink: { host: h }\n" DEVICES_TEXT;
	struct config *cfg;

	(void)state;
	cfg = formats_expect(good, NULL, 0);
	assert_int_equal(cfg->uplink.format, FORMAT_SPARKPLUG);
	assert_string_equal(uplink_format_name(cfg->uplink.format), "sparkplug");
	assert_string_equal(cfg->uplink.sparkplug_group, "cq-water");
	assert_string_equal(cfg->uplink.sparkplug_primary_host, "scada-1");
	assert_int_equal(cfg->uplink.sparkplug_qos, 0);
	assert_true(cfg->uplink.commands);
	assert_int_equal(cfg->uplink.command_max_age_ms, 30000);
	assert_int_equal(cfg->uplink.fallback_check_ms, 60000);
	assert_int_equal(cfg->uplink.nfallback, 2);
	/* the first shares the first broker's TLS, credentials and client id */
	assert_string_equal(cfg->uplink.fallback[0].host, "192.0.2.31");
	assert_true(cfg->uplink.fallback[0].tls);
	assert_int_equal(cfg->uplink.fallback[0].port, 8883);
	assert_string_equal(cfg->uplink.fallback[0].username, "u");
	assert_string_equal(cfg->uplink.fallback[0].client_id, "cid");
	assert_int_equal(cfg->uplink.fallback[0].loc.line, 13);
	/* the second gives its own */
	assert_string_equal(cfg->uplink.fallback[1].host, "2001:db8::2");
	assert_false(cfg->uplink.fallback[1].tls);
	assert_int_equal(cfg->uplink.fallback[1].port, 1884);
	assert_string_equal(cfg->uplink.fallback[1].username, "v");
	assert_null(cfg->uplink.fallback[1].password_file);
	assert_string_equal(cfg->uplink.fallback[1].client_id, "c2");
	/* the points' range for writes */
	assert_true(cfg->devices[0].points[0].has_min && cfg->devices[0].points[0].has_max);
	assert_true(cfg->devices[0].points[0].min == 0 && cfg->devices[0].points[0].max == 1450);
	assert_false(cfg->devices[0].points[1].has_min || cfg->devices[0].points[1].has_max);
	config_free(cfg);

	cfg = formats_expect(defaults, NULL, 0);
	assert_int_equal(cfg->uplink.format, FORMAT_SLUICE);
	assert_string_equal(uplink_format_name(cfg->uplink.format), "sluice");
	assert_null(cfg->uplink.sparkplug_group);
	assert_int_equal(cfg->uplink.sparkplug_qos, 1);
	assert_false(cfg->uplink.commands);
	assert_int_equal(cfg->uplink.command_max_age_ms, 60000);
	assert_int_equal(cfg->uplink.fallback_check_ms, 180000);
	assert_int_equal(cfg->uplink.nfallback, 0);
	assert_null(cfg->uplink.fallback);
	config_free(cfg);

	cfg = formats_expect("gateway: { id: gw }\nuplink: { host: h, format: thingsboard }\n"
			  DEVICES_TEXT, NULL, 0);
	assert_int_equal(cfg->uplink.format, FORMAT_THINGSBOARD);
	config_free(cfg);
}

static void test_formats_errors(void **state)
{
	static const char *const no_group[] = {
		"formats.yaml:2:28: uplink: format sparkplug needs sparkplug.group (the Sparkplug "
		"group id of the gateway's edge node): add sparkplug: { group: NAME }",
	};
	static const char *const bad[] = {
		"formats.yaml:4:11: uplink: format 'mqtt' is not one of sluice, sparkplug, thingsboard",
		"formats.yaml:5:23: uplink: sparkplug.group 'cq/water' must not contain '/', '+' or '#' "
		"(it is one level of Sparkplug's topics)",
		"formats.yaml:5:47: uplink: sparkplug.primary_host 'scada+1' must not contain '/', '+' "
		"or '#' (it is one level of Sparkplug's topics)",
		"formats.yaml:5:61: uplink: sparkplug.qos 2 is out of range (expected 0..1)",
		"formats.yaml:6:20: uplink: command_max_age 0s is out of range (expected 1s..1d)",
		"formats.yaml:7:19: uplink: fallback_check 5s is out of range (expected 10s..1d)",
		"formats.yaml:9:7: uplink.fallback[0]: missing required key 'host'",
		"formats.yaml:10:7: uplink: fallback[1] must be a mapping (key: value lines), not the "
		"value 'h2'",
		"formats.yaml:11:15: uplink.fallback[2]: host 'h3:1883' includes a port: give the port "
		"in port:",
		"formats.yaml:11:26: uplink.fallback[2]: unknown key 'prot' (did you mean 'port'?)",
		"formats.yaml:12:34: uplink.fallback[3]: password_file '/dev/null' is not a regular "
		"file",
		"formats.yaml:12:34: uplink.fallback[3]: password_file needs a username (MQTT sends a "
		"password only with a user name)",
	};
	static const char *const sparkplug_empty[] = {
		"formats.yaml:2:50: uplink: format sparkplug needs sparkplug.group (the Sparkplug "
		"group id of the gateway's edge node)",
	};
	static const char *const too_many[] = {
		"formats.yaml:2:30: uplink: fallback has 9 brokers; at most 8 are tried",
	};
	static const char *const warnings[] = {
		"formats.yaml:2:53: warning: uplink: topic_prefix applies to the sluice format only: "
		"the sparkplug format's topics are fixed by its standard",
		"formats.yaml:2:61: warning: uplink: qos applies to the sluice and thingsboard formats; "
		"Sparkplug's is sparkplug.qos (0 or 1, default 1)",
		"formats.yaml:2:105: warning: uplink: fallback_check applies only with fallback: "
		"brokers",
		"formats.yaml:2:126: warning: uplink: command_max_age applies only with commands: true",
	};
	static const char *const warnings2[] = {
		"formats.yaml:2:31: warning: uplink: sparkplug: applies to format sparkplug only; the "
		"format is thingsboard",
		"formats.yaml:2:71: warning: uplink: qos 2: ThingsBoard's MQTT transport takes QoS 0 "
		"and 1 (use 1)",
		"formats.yaml:2:86: warning: uplink.fallback[0]: this is the first broker again (h, "
		"port 1883): a fallback that is the same broker does not help when it is down",
	};
	struct text t = { 0 };

	(void)state;
	formats_expect("gateway: { id: gw }\nuplink: { host: h, format: sparkplug }\n" DEVICES_TEXT,
		    no_group, 1);
	formats_expect("gateway: { id: gw }\n"
		    "uplink:\n"
		    "  host: h\n"
		    "  format: mqtt\n"
		    "  sparkplug: { group: cq/water, primary_host: scada+1, qos: 2 }\n"
		    "  command_max_age: 0s\n"
		    "  fallback_check: 5s\n"
		    "  fallback:\n"
		    "    - { port: 1 }\n"
		    "    - h2\n"
		    "    - { host: \"h3:1883\", prot: 1 }\n"
		    "    - { host: h4, password_file: /dev/null }\n"
		    "  commands: true\n" DEVICES_TEXT,
		    bad, sizeof bad / sizeof bad[0]);
	formats_expect("gateway: { id: gw }\nuplink: { host: h, format: sparkplug, sparkplug: {} }\n"
		    DEVICES_TEXT, sparkplug_empty, 1);
	add(&t, "gateway: { id: gw }\nuplink: { host: h, fallback: [");
	for (int i = 0; i < 9; i++)
		add(&t, "%s{ host: f%d }", i ? ", " : "", i);
	add(&t, "] }\n" DEVICES_TEXT);
	formats_expect(t.s, too_many, 1);
	free(t.s);
	config_free(formats_expect("gateway: { id: gw }\n"
				"uplink: { host: h, format: sparkplug, topic_prefix: x, qos: 1, "
				"sparkplug: { group: g }, fallback_check: 1m, command_max_age: 1m }\n"
				DEVICES_TEXT, warnings, sizeof warnings / sizeof warnings[0]));
	config_free(formats_expect("gateway: { id: gw }\n"
				"uplink: { host: h, sparkplug: { group: g }, format: thingsboard, "
				"qos: 2, fallback: [ { host: h } ] }\n"
				DEVICES_TEXT, warnings2, sizeof warnings2 / sizeof warnings2[0]));
}

/* min: and max: bound what the platform may write: numbers only, in order. */
static void test_point_min_max(void **state)
{
	static const char *const want[] = {
		"formats.yaml:8:70: point 'a' of device d: min and max apply to numbers, not to type "
		"bool",
		"formats.yaml:9:82: point 'b' of device d: max 1 is below min 5",
		"formats.yaml:10:70: point 'c' of device d: min and max apply to numbers, not to type "
		"string",
		"formats.yaml:11:74: point 'e' of device d: min 'low' is not a number",
		"formats.yaml:12:58: warning: point 'f' of device d: min and max bound what the "
		"platform may write (uplink.commands), and this point is not writable",
	};

	(void)state;
	formats_expect("gateway: { id: gw }\n"
		    "uplink: { host: h }\n"
		    "buses: [ { id: b, tcp: { host: 127.0.0.1 } } ]\n"
		    "devices:\n"
		    "  - id: d\n"
		    "    bus: b\n"
		    "    points: {\n"
		    "      a: { table: coil, address: 0, type: bool, writable: true, min: 0 },\n"
		    "      b: { table: holding, address: 0, type: int16, writable: true, min: 5, max: 1 },\n"
		    "      c: { table: holding, address: 1, type: string, length: 2, max: 1 },\n"
		    "      e: { table: holding, address: 3, type: int16, writable: true, min: low },\n"
		    "      f: { table: holding, address: 4, type: int16, min: -5, max: 5 } }\n",
		    want, sizeof want / sizeof want[0]);
}

/* Sparkplug's topics: spBv1.0/<group>/DBIRTH/<gateway>/<device> within the limit. */
static void test_sparkplug_topic_limit(void **state)
{
	char group[UPLINK_TOPIC_MAX];
	struct text t = { 0 };
	struct config_diag d;
	struct config *cfg;
	size_t fits = UPLINK_TOPIC_MAX - 1 - strlen("spBv1.0//DBIRTH/gw/pump");

	(void)state;
	memset(group, 'g', fits);
	group[fits] = '\0';
	add(&t, "gateway: { id: gw }\nuplink: { host: h, format: sparkplug, sparkplug: { group: %s "
		"} }\n" DEVICES_TEXT, group);
	cfg = text_load("formats.yaml", &t, &d);
	if (d.n)
		print_diag("fits", &d);
	assert_non_null(cfg);
	config_free(cfg);
	config_diag_free(&d);
	t.n = 0;
	add(&t, "gateway: { id: gw }\nuplink: { host: h, format: sparkplug, sparkplug: { group: %sg "
		"} }\n" DEVICES_TEXT, group);
	assert_null(text_load("formats.yaml", &t, &d));
	if (d.n != 1)
		print_diag("too long", &d);
	assert_int_equal(d.n, 1);
	assert_non_null(strstr(d.msgs[0], "formats.yaml:2:59: uplink: sparkplug.group is too long: "
				   "the topic spBv1.0/"));
	assert_non_null(strstr(d.msgs[0], "/DBIRTH/gw/pump would be 1024 bytes"));
	config_diag_free(&d);
	free(t.s);
}

static void test_names(void **state)
{
	(void)state;
	assert_null(severity_name(SEV_NONE));
	assert_string_equal(severity_name(SEV_BLUE), "blue");
	assert_string_equal(severity_name(SEV_RED), "red");
	assert_int_equal(severity_from_name("orange"), SEV_ORANGE);
	assert_int_equal(severity_from_name("purple"), -1);
	assert_string_equal(rule_kind_name(RULE_WATERLOGGING), "waterlogging");
	assert_string_equal(rule_kind_name(RULE_PV), "pv");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_example_loads, site_setup, site_teardown),
		cmocka_unit_test_setup_teardown(test_example_missing_files, site_setup,
						site_teardown),
		cmocka_unit_test_setup_teardown(test_password_readable_by_others, site_setup,
						site_teardown),
		cmocka_unit_test_setup_teardown(test_password_writable_by_group, site_setup,
						site_teardown),
		cmocka_unit_test_setup_teardown(test_key_readable_by_others, site_setup,
						site_teardown),
		cmocka_unit_test_setup_teardown(test_password_without_username, site_setup,
						site_teardown),
		cmocka_unit_test_setup_teardown(test_password_is_a_directory, site_setup,
						site_teardown),
		cmocka_unit_test_setup_teardown(test_relative_paths, site_setup, site_teardown),
		cmocka_unit_test_setup_teardown(test_defaults, site_setup, site_teardown),
		cmocka_unit_test_setup_teardown(test_uplink_limits, site_setup, site_teardown),
		cmocka_unit_test(test_syntax_error),
		cmocka_unit_test(test_input_method_slips),
		cmocka_unit_test(test_odd_shapes),
		cmocka_unit_test(test_duplicate_keys),
		cmocka_unit_test(test_unknown_keys),
		cmocka_unit_test(test_wrong_types),
		cmocka_unit_test(test_out_of_range),
		cmocka_unit_test(test_duplicate_ids),
		cmocka_unit_test(test_duplicate_id_after_a_bad_item),
		cmocka_unit_test(test_long_text_shown_cut),
		cmocka_unit_test(test_profile_not_found_names_every_directory),
		cmocka_unit_test(test_profiles_found_from_the_build_tree),
		cmocka_unit_test(test_point_orders),
		cmocka_unit_test(test_topic_limits),
		cmocka_unit_test(test_nesting_depth),
		cmocka_unit_test(test_web),
		cmocka_unit_test(test_points_limits),
		cmocka_unit_test(test_many_items),
		cmocka_unit_test(test_bad_ids),
		cmocka_unit_test(test_points),
		cmocka_unit_test(test_overlaps),
		cmocka_unit_test(test_references),
		cmocka_unit_test(test_missing_required),
		cmocka_unit_test(test_alerts),
		cmocka_unit_test(test_uplink),
		cmocka_unit_test(test_timezone),
		cmocka_unit_test(test_profile_errors),
		cmocka_unit_test(test_whole_file_problems),
		cmocka_unit_test(test_serial_device_missing_is_a_warning),
		cmocka_unit_test(test_many_errors_all_reported),
		cmocka_unit_test(test_load_profile),
		cmocka_unit_test(test_load_profile_errors),
		cmocka_unit_test(test_shipped_profiles),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_power),
		cmocka_unit_test(test_parse_time_of_day),
		cmocka_unit_test(test_id_valid),
		cmocka_unit_test(test_formats),
		cmocka_unit_test(test_formats_errors),
		cmocka_unit_test(test_point_min_max),
		cmocka_unit_test(test_sparkplug_topic_limit),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
