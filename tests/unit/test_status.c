/*
 * test_status: the daemon's counters of itself and the texts made of them. The poll lag
 * buckets and quantiles; a reading's counters; when a device's state is worth
 * publishing; the uplink's since; a reload carrying counters by id; the snapshot that
 * `sluicectl status` reads, byte for byte, and read back from a real store; systemd's
 * STATUS= line; a health message's numbers from a real store (in a mkdtemp directory).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mberr.h"
#include "status.h"
#include "store.h"

static struct lag_hist lag_of(const int64_t *ms, size_t n)
{
	struct lag_hist h = { 0 };

	for (size_t i = 0; i < n; i++)
		status_lag_add(&h, ms[i]);
	return h;
}

/* Below 64 ms to the millisecond; above, the upper bound of a doubling bucket. */
static void test_lag(void **state)
{
	static const int64_t fast[] = { 1, 1, 1, 300 };
	static const int64_t edges[] = { 63 };
	static const int64_t at64[] = { 64 };
	static const int64_t at127[] = { 127 };
	static const int64_t at128[] = { 128 };
	static const int64_t neg[] = { -5 };
	static const int64_t huge[] = { INT64_MAX / 4 };
	struct lag_hist h = { 0 };

	(void)state;
	assert_int_equal(status_lag_quantile(&h, 0.5), 0);
	h = lag_of(fast, 4);
	assert_int_equal(h.total, 4);
	assert_int_equal(status_lag_quantile(&h, 0.50), 1);
	assert_int_equal(status_lag_quantile(&h, 0.99), 512);   /* 300 is in [256, 512) */
	h = lag_of(edges, 1);
	assert_int_equal(status_lag_quantile(&h, 0.99), 63);
	h = lag_of(at64, 1);
	assert_int_equal(status_lag_quantile(&h, 0.5), 128);
	h = lag_of(at127, 1);
	assert_int_equal(status_lag_quantile(&h, 0.5), 128);
	h = lag_of(at128, 1);
	assert_int_equal(status_lag_quantile(&h, 0.5), 256);
	h = lag_of(neg, 1);   /* a poll that started early is not late */
	assert_int_equal(status_lag_quantile(&h, 0.5), 0);
	h = lag_of(huge, 1);  /* the last bucket holds everything beyond */
	assert_int_equal(status_lag_quantile(&h, 0.5), (int64_t)STATUS_LAG_LINEAR << 16);
}

static struct reading *reading_of(uint32_t device, int64_t ts, const int *errs, uint16_t n)
{
	struct reading *r = reading_new(device, n, 0);

	assert_non_null(r);
	r->ts_ms = ts;
	r->sched_mono_ms = 1000;
	r->start_mono_ms = 1003;
	for (uint16_t i = 0; i < n; i++)
		r->values[i] = errs[i] ? (struct value){ .kind = VAL_NONE, .err = errs[i] }
				       : (struct value){ .kind = VAL_INT, .v.i = i };
	return r;
}

static void test_reading_counters(void **state)
{
	static const int ok[] = { 0, 0 };
	static const int bad[] = { MBE_TIMEOUT, MBE_EXC_BASE + 2 };
	struct status s;
	struct reading *r;

	(void)state;
	assert_int_equal(status_init(&s, 2, 500, 0), 0);
	assert_int_equal(s.dev[0].published, -1);
	assert_int_equal(s.dev[1].published, -1);
	r = reading_of(1, 1000, ok, 2);
	status_reading(&s, r);
	reading_free(r);
	r = reading_of(1, 2000, bad, 2);
	status_reading(&s, r);
	reading_free(r);
	assert_int_equal(s.polls_ok, 1);
	assert_int_equal(s.polls_failed, 1);
	assert_int_equal(s.dev[1].ok, 1);
	assert_int_equal(s.dev[1].failed, 1);
	assert_int_equal(s.dev[1].last_poll_ms, 2000);
	assert_int_equal(s.dev[1].last_ok_ms, 1000);
	assert_int_equal(s.dev[1].last_err, MBE_EXC_BASE + 2); /* the last failed point's */
	assert_int_equal(s.dev[0].last_poll_ms, 0);
	assert_int_equal(s.lag.total, 2);
	assert_int_equal(status_lag_quantile(&s.lag, 0.5), 3);
	status_free(&s);
}

/* A device's first state waits for an answer or for its breaker; then every change. */
static void test_device_turned(void **state)
{
	static const int silent[] = { MBE_TIMEOUT, MBE_CONNECT };
	static const int refused[] = { MBE_TIMEOUT, MBE_EXC_BASE + 2 };
	static const int ok[] = { 0, MBE_TIMEOUT };
	struct dev_status ds = { .published = -1 };
	struct reading *r;

	(void)state;
	/* online only because the breaker has not tripped yet: nothing said */
	r = reading_of(0, 1, silent, 2);
	assert_false(status_device_turned(&ds, r));
	assert_int_equal(ds.published, -1);
	/* the breaker trips: offline */
	r->online = false;
	assert_true(status_device_turned(&ds, r));
	assert_int_equal(ds.published, 0);
	assert_false(status_device_turned(&ds, r));
	reading_free(r);
	/* an answer brings it back */
	r = reading_of(0, 2, ok, 2);
	assert_true(status_device_turned(&ds, r));
	assert_int_equal(ds.published, 1);
	assert_false(status_device_turned(&ds, r));
	reading_free(r);

	/* offline, then a reload gives it a fresh breaker: its first failed poll under it
	 * says online only because the breaker has not counted yet; it stays offline */
	ds.published = 0;
	r = reading_of(0, 5, silent, 2);
	assert_true(r->online);
	assert_false(status_device_turned(&ds, r));
	assert_int_equal(ds.published, 0);
	reading_free(r);

	/* nor does a gateway's "the unit behind me did not answer" (exception 0x0B) */
	static const int gateway[] = { MBE_EXC_BASE + 0x0B, MBE_EXC_BASE + 0x0B };
	r = reading_of(0, 6, gateway, 2);
	assert_false(status_device_turned(&ds, r));
	assert_int_equal(ds.published, 0);
	reading_free(r);

	/* a Modbus exception is an answer: the device is there */
	ds.published = -1;
	r = reading_of(0, 3, refused, 2);
	assert_true(status_device_turned(&ds, r));
	assert_int_equal(ds.published, 1);
	reading_free(r);
	/* a device with no points is online when its breaker says so */
	ds.published = -1;
	r = reading_of(0, 4, NULL, 0);
	assert_true(status_device_turned(&ds, r));
	reading_free(r);
}

/* since: when it came up, or when it was first found down, not at every failed retry */
static void test_uplink(void **state)
{
	struct status s;

	(void)state;
	assert_int_equal(status_init(&s, 0, 0, 0), 0);
	status_uplink(&s, false, "connection refused", 100);
	assert_false(s.uplink_up);
	assert_int_equal(s.uplink_since_ms, 100);
	assert_string_equal(s.uplink_why, "connection refused");
	status_uplink(&s, false, "timed out", 200);
	assert_int_equal(s.uplink_since_ms, 100);
	assert_string_equal(s.uplink_why, "timed out");
	status_uplink(&s, true, "ignored", 300);
	assert_true(s.uplink_up);
	assert_int_equal(s.uplink_since_ms, 300);
	assert_string_equal(s.uplink_why, "");
	status_uplink(&s, false, NULL, 400);
	assert_int_equal(s.uplink_since_ms, 400);
	assert_string_equal(s.uplink_why, "");
	status_free(&s);
}

/* A small site by hand: two buses (TCP over IPv6, RTU), three devices. */
struct site_fx {
	struct config cfg;
	struct bus_cfg buses[2];
	struct device_cfg devices[3];
};

static void site_fx(struct site_fx *f)
{
	memset(f, 0, sizeof *f);
	snprintf(f->cfg.gateway.id, ID_MAX, "gw1");
	f->cfg.uplink.host = "broker.example";
	f->cfg.uplink.port = 8883;
	snprintf(f->buses[0].id, ID_MAX, "plant");
	f->buses[0].kind = BUS_TCP;
	f->buses[0].host = "fd00::7";
	f->buses[0].port = 502;
	snprintf(f->buses[1].id, ID_MAX, "rs485");
	f->buses[1].kind = BUS_RTU;
	f->buses[1].device = "/dev/ttyS1";
	snprintf(f->devices[0].id, ID_MAX, "dma3-inlet");
	f->devices[0].name = "三号分区 进水流量计";
	snprintf(f->devices[1].id, ID_MAX, "old-meter");
	f->devices[1].bus = 1;
	snprintf(f->devices[2].id, ID_MAX, "spare");
	f->devices[2].bus = 1;
	f->cfg.buses = f->buses;
	f->cfg.nbuses = 2;
	f->cfg.devices = f->devices;
	f->cfg.ndevices = 3;
}

static void test_snapshot_and_notify(void **state)
{
	struct site_fx f;
	struct status s;
	struct jbuf b;
	char want[2048], line[200];

	(void)state;
	site_fx(&f);
	assert_int_equal(status_init(&s, 3, 1700000000000, 0), 0);
	s.dev[0] = (struct dev_status){ .ok = 10, .published = 1, .last_poll_ms = 1700000009000,
					.last_ok_ms = 1700000009000 };
	s.dev[1] = (struct dev_status){ .failed = 3, .published = 0, .last_err = MBE_TIMEOUT,
					.last_poll_ms = 1700000008000 };
	status_uplink(&s, false, "connection refused", 1700000001000);
	jb_init(&b);
	status_snapshot_json(&b, &s, &f.cfg, 1700000010000, false);
	snprintf(want, sizeof want,
		 "{\"pid\":%d,\"version\":\"%s\",\"gateway\":\"gw1\",\"started\":1700000000000,"
		 "\"updated\":1700000010000,\"running\":true,\"uplink\":{\"host\":\"broker.example\","
		 "\"port\":8883,\"connected\":false,\"since\":1700000001000,"
		 "\"error\":\"connection refused\"},\"buses\":["
		 "{\"id\":\"plant\",\"kind\":\"tcp\",\"address\":\"[fd00::7]:502\"},"
		 "{\"id\":\"rs485\",\"kind\":\"rtu\",\"address\":\"/dev/ttyS1\"}],\"devices\":["
		 "{\"id\":\"dma3-inlet\",\"name\":\"三号分区 进水流量计\",\"bus\":\"plant\","
		 "\"state\":\"online\",\"last_poll\":1700000009000,\"last_ok\":1700000009000,"
		 "\"polls_ok\":10,\"polls_failed\":0},"
		 "{\"id\":\"old-meter\",\"bus\":\"rs485\",\"state\":\"offline\","
		 "\"last_poll\":1700000008000,\"last_ok\":0,\"polls_ok\":0,\"polls_failed\":3,"
		 "\"last_error\":\"timeout\"},"
		 "{\"id\":\"spare\",\"bus\":\"rs485\",\"state\":\"not polled\",\"last_poll\":0,"
		 "\"last_ok\":0,\"polls_ok\":0,\"polls_failed\":0}]}",
		 (int)getpid(), SLUICE_VERSION);
	assert_string_equal(jb_cstr_get(&b), want);

	/* stopping; connected (no error said); a device polled without a state yet */
	status_uplink(&s, true, NULL, 1700000011000);
	s.dev[2].last_poll_ms = 1700000011500;
	f.buses[0].host = "10.1.2.3";
	jb_reset(&b);
	status_snapshot_json(&b, &s, &f.cfg, 1700000012000, true);
	assert_non_null(strstr(jb_cstr_get(&b), "\"running\":false,\"uplink\":{\"host\":"
				"\"broker.example\",\"port\":8883,\"connected\":true,"
				"\"since\":1700000011000},"));
	assert_non_null(strstr(jb_cstr_get(&b), "\"address\":\"10.1.2.3:502\""));
	assert_non_null(strstr(jb_cstr_get(&b), "{\"id\":\"spare\",\"bus\":\"rs485\","
				"\"state\":\"unknown\",\"last_poll\":1700000011500,"));
	jb_free(&b);

	status_notify_line(&s, 3, 42, line, sizeof line);
	assert_string_equal(line, "STATUS=1 of 3 devices online, backlog 42 rows, uplink connected");
	s.uplink_up = false;
	s.dev[2].last_poll_ms = 0;
	status_notify_line(&s, 3, 0, line, sizeof line);
	assert_string_equal(line, "STATUS=1 of 2 devices online, backlog 0 rows, uplink disconnected");

	assert_int_equal(status_snapshot_every_ms(&f.cfg), 30000);
	f.cfg.ndevices = 5000;
	assert_int_equal(status_snapshot_every_ms(&f.cfg), 50000);
	status_free(&s);
}

/* A reload: counters follow the device's id, whatever its new place. */
static void test_devices_swap(void **state)
{
	struct site_fx old, nc;
	struct status s;
	struct dev_status *dev = calloc(3, sizeof *dev);

	(void)state;
	assert_non_null(dev);
	site_fx(&old);
	site_fx(&nc);
	snprintf(nc.devices[0].id, ID_MAX, "spare");
	snprintf(nc.devices[1].id, ID_MAX, "new-one");
	snprintf(nc.devices[2].id, ID_MAX, "dma3-inlet");
	assert_int_equal(status_init(&s, 3, 0, 0), 0);
	s.dev[0] = (struct dev_status){ .ok = 7, .published = 1 };
	s.dev[2] = (struct dev_status){ .failed = 2, .published = 0 };
	status_devices_swap(&s, &old.cfg, &nc.cfg, dev);
	assert_ptr_equal(s.dev, dev);
	assert_int_equal(s.dev[0].failed, 2);
	assert_int_equal(s.dev[0].published, 0);
	assert_int_equal(s.dev[1].published, -1);
	assert_int_equal(s.dev[1].ok, 0);
	assert_int_equal(s.dev[2].ok, 7);
	assert_int_equal(s.dev[2].published, 1);
	status_free(&s);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

/* Health's numbers from a real store; the lag starts afresh after each message; the
 * snapshot goes into the store's meta, where sluicectl reads it. */
static void test_health_and_store(void **state)
{
	char tmp[] = "/tmp/sluice-status-XXXXXX", err[256], *snap = NULL;
	static const int ok[] = { 0 };
	struct store_row row = { .kind = ROW_TELEMETRY, .ts_ms = 1700000000000,
				 .topic = "telemetry/dma3-inlet", .body = "\"ts\":1" };
	struct site_fx f;
	struct status s;
	struct health h;
	struct store *st;
	struct reading *r;

	(void)state;
	site_fx(&f);
	assert_non_null(mkdtemp(tmp));
	st = store_open(tmp, NULL, err, sizeof err);
	if (!st)
		fail_msg("store_open: %s", err);
	assert_int_equal(status_init(&s, 3, 1699999990000, 5000), 0);
	r = reading_of(0, 1700000000000, ok, 1);
	status_reading(&s, r);
	reading_free(r);
	s.not_stored = 2;
	assert_int_equal(store_append(st, &row, 1, err, sizeof err), 0);

	status_health(&s, &f.cfg, st, 1700000065000, 70500, &h);
	assert_int_equal(h.ts_ms, 1700000065000);
	assert_int_equal(h.uptime_s, 65);
	assert_int_equal(h.polls_ok, 1);
	assert_int_equal(h.polls_failed, 0);
	assert_int_equal(h.backlog_rows, 1);
	assert_int_equal(h.backlog_age_s, 65);
	assert_int_equal(h.last_seq, row.seq);
	assert_true(h.db_bytes > 0);
	assert_int_equal(h.not_stored, 2);
	assert_null(h.store_error);
	assert_int_equal(h.lag_polls, 1);
	assert_int_equal(h.lag_p50_ms, 3);
	assert_ptr_equal(h.devices, f.devices);
	assert_ptr_equal(h.dev, s.dev);
	assert_int_equal(h.ndevices, 3);
	assert_int_equal(s.lag.total, 0);

	/* the wall clock stepped back past the oldest row: no negative age */
	status_health(&s, &f.cfg, st, 1690000000000, 70500, &h);
	assert_int_equal(h.backlog_age_s, 0);
	assert_int_equal(h.lag_polls, 0);

	status_write_snapshot(&s, &f.cfg, st, false, false);
	assert_int_equal(store_meta_get(st, STATUS_META_KEY, &snap), 0);
	assert_non_null(snap);
	assert_non_null(strstr(snap, "\"gateway\":\"gw1\""));
	assert_non_null(strstr(snap, "\"running\":true"));
	free(snap);
	store_close(st);
	status_free(&s);
	assert_int_equal(nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lag),
		cmocka_unit_test(test_reading_counters),
		cmocka_unit_test(test_device_turned),
		cmocka_unit_test(test_uplink),
		cmocka_unit_test(test_snapshot_and_notify),
		cmocka_unit_test(test_devices_swap),
		cmocka_unit_test(test_health_and_store),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
