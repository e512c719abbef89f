/*
 * test_polldev: what both pollers do per device — which devices a poller takes, where
 * a device's first poll falls, the reading a poll starts from and the verdict written
 * into it — and the replies' rules (drivers/reply): decoding, failing, what counts as
 * an answer for the circuit breaker.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "log.h"
#include "mberr.h"
#include "polldev.h"
#include "reply.h"

struct fx {
	struct bus_cfg buses[3];
	struct device_cfg devs[4];
	struct point_def pts[4][3];
	struct site site;
};

static void fx_init(struct fx *f)
{
	memset(f, 0, sizeof *f);
	for (int b = 0; b < 3; b++) {
		snprintf(f->buses[b].id, sizeof f->buses[b].id, "bus%d", b);
		f->buses[b].kind = b; /* BUS_TCP, BUS_RTU, BUS_RTU_OVER_TCP */
	}
	for (int d = 0; d < 4; d++) {
		struct device_cfg *dc = &f->devs[d];
		snprintf(dc->id, sizeof dc->id, "dev%d", d);
		dc->bus = (size_t)(d % 3);
		dc->unit_id = (uint8_t)(d + 1);
		dc->points = f->pts[d];
		dc->npoints = 2;
		dc->interval_ms = 1000;
		dc->offline_after = 2;
		dc->max_registers = 125;
		for (int p = 0; p < 2; p++) {
			struct point_def *pt = &f->pts[d][p];
			snprintf(pt->name, sizeof pt->name, "p%d", p);
			pt->table = MB_HOLDING;
			pt->address = (uint16_t)(10 * p);
			pt->type = PT_UINT16;
			pt->bit = -1;
			pt->scale = 1.0;
		}
	}
	f->site = (struct site){ f->buses, 3, f->devs, 4 };
}

static void test_selection(void **state)
{
	(void)state;
	struct fx f;
	char err[128];
	size_t n;

	fx_init(&f);
	assert_int_equal(polldev_count(&f.site, POLLDEV_BUS(BUS_TCP), &n, err, sizeof err), 0);
	assert_int_equal(n, 2); /* dev0, dev3 */
	assert_int_equal(polldev_count(&f.site, POLLDEV_BUS(BUS_RTU) | POLLDEV_BUS(BUS_RTU_OVER_TCP),
				       &n, err, sizeof err), 0);
	assert_int_equal(n, 2);
	/* a sunspec device waits for discovery to give it points */
	f.devs[3].sunspec = true;
	assert_true(polldev_selected(&f.site, &f.devs[3], POLLDEV_BUS(BUS_TCP)));
	f.devs[3].npoints = 0;
	assert_false(polldev_selected(&f.site, &f.devs[3], POLLDEV_BUS(BUS_TCP)));
	/* a bad device is named, whichever poller looks */
	f.devs[2].bus = 7;
	assert_int_equal(polldev_count(&f.site, POLLDEV_BUS(BUS_TCP), &n, err, sizeof err), -1);
	assert_string_equal(err, "device dev2: bus index 7 out of range");
	f.devs[2].bus = 2;
	f.devs[1].npoints = 70000;
	assert_int_equal(polldev_count(&f.site, POLLDEV_BUS(BUS_RTU), &n, err, sizeof err), -1);
	assert_non_null(strstr(err, "device dev1: 70000 points"));
}

static void test_phase_spread(void **state)
{
	(void)state;
	int64_t seen[10] = { 0 };

	for (uint32_t i = 0; i < 1000; i++) {
		int64_t ph = polldev_phase(i, 1000);
		assert_true(ph >= 0 && ph < 1000);
		seen[ph / 100]++;
	}
	/* a thousand devices fill every tenth of the interval about evenly */
	for (int k = 0; k < 10; k++)
		assert_in_range(seen[k], 90, 110);
	assert_int_equal(polldev_phase(0, 1000), 0);
	assert_int_not_equal(polldev_phase(1, 1000), polldev_phase(2, 1000));
}

/* A poll's reading: stamped, decoded, failed, judged. */
static void test_reading_and_verdict(void **state)
{
	(void)state;
	struct fx f;
	struct polldev pd;
	const struct breaker_pace pace = { 5000, 60000 };
	char err[128];
	struct reading *r;
	uint16_t regs[1] = { 42 };

	fx_init(&f);
	f.pts[0][1].type = PT_STRING;
	f.pts[0][1].length = 2;
	assert_int_equal(polldev_init(&pd, &f.site, 0, err, sizeof err), 0);
	assert_int_equal(pd.plan.nreqs, 2);
	assert_int_equal(pd.strbytes, 5);
	assert_int_equal(polldev_first_due(&pd, 100), 100); /* index 0: at once */
	r = polldev_reading(&pd, 9, 1000, 1003);
	assert_non_null(r);
	assert_int_equal(r->device, 0);
	assert_int_equal(r->generation, 9);
	assert_int_equal(r->sched_mono_ms, 1000);
	assert_int_equal(r->start_mono_ms, 1003);
	reply_decode(&f.devs[0], &pd.plan, r, 0, regs, NULL);
	assert_int_equal(r->values[0].kind, VAL_UINT);
	assert_int_equal(r->values[0].v.u, 42);
	reply_fail(&pd.plan, r, 1, 2, MBE_EXC_BASE + 2);
	assert_int_equal(r->values[1].kind, VAL_NONE);
	assert_int_equal(r->values[1].err, MBE_EXC_BASE + 2);
	assert_true(reply_reading_failed(r));
	assert_int_equal(polldev_judge(&pd, &pace, r, true, 0, 1010), BREAKER_NONE);
	assert_true(r->online);
	assert_int_equal(r->last_err, 0);
	reading_free(r);
	/* two polls without an answer (offline_after 2): the second reading says offline */
	for (int i = 0; i < 2; i++) {
		r = polldev_reading(&pd, 9, 2000 + 1000 * i, 2000 + 1000 * i);
		assert_int_equal(polldev_judge(&pd, &pace, r, false, MBE_CONNECT, 2010 + 1000 * i),
				 i == 0 ? BREAKER_FAILED : BREAKER_DOWN);
		assert_int_equal(r->online, i == 0);
		assert_int_equal(r->last_err, MBE_CONNECT);
		reading_free(r);
	}
	polldev_fini(&pd);
}

/* An exception is an answer (the device is there), but not a gateway's 0x0A/0x0B. */
static void test_is_answer(void **state)
{
	(void)state;
	assert_true(reply_is_answer(0));
	assert_true(reply_is_answer(MBE_EXC_BASE + 1));
	assert_true(reply_is_answer(MBE_EXC_BASE + 2));
	assert_true(reply_is_answer(MBE_EXC_BASE + 6));
	assert_false(reply_is_answer(MBE_EXC_BASE + 0x0A));
	assert_false(reply_is_answer(MBE_EXC_BASE + 0x0B));
	assert_false(reply_is_answer(MBE_TIMEOUT));
	assert_false(reply_is_answer(MBE_PROTO));
	assert_false(reply_is_answer(MBE_BAD_CRC));
	assert_false(reply_is_answer(MBE_CONNECT));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_selection),
		cmocka_unit_test(test_phase_spread),
		cmocka_unit_test(test_reading_and_verdict),
		cmocka_unit_test(test_is_answer),
	};
	log_init(getenv("SLUICE_TEST_DEBUG") ? 7 : 3, "test_polldev");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
