/* sim_model: behaviours chosen from unit and name, the daily curves, totalizers that
 * integrate their flow, scenarios, and a register image that decodes back (with the
 * gateway's own codec) to the model's values. Time is simulated: a day takes no time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "sim_model.h" /* tools/ is not on the include path */
#include "sim_sunspec.h"

#define MIN_MS (60 * 1000LL)
#define HOUR_MS (60 * MIN_MS)
#define DAY0 (1735689600000LL) /* 2025-01-01 00:00 UTC, a day boundary */

static struct point_def pt(const char *name, enum mb_table t, uint16_t addr, enum pt_type type,
			   const char *unit)
{
	struct point_def p;
	memset(&p, 0, sizeof p);
	snprintf(p.name, sizeof p.name, "%s", name);
	p.table = t;
	p.address = addr;
	p.type = type;
	p.bit = -1;
	p.scale = 1.0;
	snprintf(p.unit, sizeof p.unit, "%s", unit);
	return p;
}

/* The flowmeter-generic profile. */
static void flowmeter(struct point_def *p)
{
	p[0] = pt("flow", MB_HOLDING, 0, PT_FLOAT32, "m3/h");
	p[1] = pt("velocity", MB_HOLDING, 2, PT_FLOAT32, "m/s");
	p[2] = pt("total", MB_HOLDING, 4, PT_FLOAT64, "m3");
	p[3] = pt("pressure", MB_HOLDING, 8, PT_FLOAT32, "MPa");
	p[4] = pt("alarm", MB_HOLDING, 10, PT_UINT16, "");
}

static struct sim_device *mk(const struct point_def *p, size_t n, int scenario, int64_t start)
{
	char err[128] = "";
	struct sim_device *d = sim_device_new(p, n, "test device", scenario, 42, start, err,
					      sizeof err);
	if (!d)
		fail_msg("sim_device_new: %s", err);
	return d;
}

/* What a gateway would read for point i: decoded from the image by the codec. */
static double served(const struct sim_device *d, size_t i)
{
	size_t n;
	const struct point_def *p = sim_device_points(d, &n);
	struct value v;
	char s[160];

	if (p[i].table == MB_COIL || p[i].table == MB_DISCRETE) {
		codec_decode_bit(&p[i], sim_device_point_bit(d, i), &v);
	} else {
		assert_int_equal(codec_decode_regs(&p[i], sim_device_point_regs(d, i), &v, s,
						   sizeof s), 0);
	}
	switch (v.kind) {
	case VAL_BOOL:
		return v.v.b;
	case VAL_INT:
		return (double)v.v.i;
	case VAL_UINT:
		return (double)v.v.u;
	case VAL_DOUBLE:
		return v.v.d;
	default:
		fail_msg("point %s decoded to kind %d", p[i].name, v.kind);
	}
	return NAN;
}

static void test_kinds_from_unit_and_name(void **state)
{
	(void)state;
	struct point_def p[16];
	flowmeter(p);
	p[5] = pt("level", MB_HOLDING, 20, PT_UINT16, "m");
	p[5].scale = 0.001;
	p[6] = pt("air", MB_HOLDING, 21, PT_UINT16, "m");
	p[7] = pt("running", MB_HOLDING, 22, PT_BOOL, "");
	p[7].bit = 0;
	p[8] = pt("fault", MB_HOLDING, 22, PT_BOOL, "");
	p[8].bit = 3;
	p[9] = pt("ac_power", MB_INPUT, 0, PT_INT32, "W");
	p[10] = pt("yield", MB_INPUT, 2, PT_UINT32, "kWh");
	p[11] = pt("message", MB_HOLDING, 30, PT_STRING, "");
	p[11].length = 8;
	p[12] = pt("temperature", MB_INPUT, 10, PT_FLOAT32, "degC");
	p[13] = pt("red_lamp", MB_COIL, 0, PT_BOOL, "");
	p[14] = pt("pump_on", MB_DISCRETE, 0, PT_BOOL, "");
	p[15] = pt("flow_lps", MB_INPUT, 12, PT_FLOAT32, "L/s");
	struct sim_device *d = mk(p, 16, SIM_STEADY, DAY0);

	static const int want[16] = {
		SIM_K_FLOW, SIM_K_VELOCITY, SIM_K_VOLUME, SIM_K_PRESSURE, SIM_K_STATUS,
		SIM_K_LEVEL, SIM_K_GAP, SIM_K_ON, SIM_K_FAULTBIT, SIM_K_POWER, SIM_K_ENERGY,
		SIM_K_STRING, SIM_K_CONST, SIM_K_OFF, SIM_K_ON, SIM_K_FLOW,
	};
	for (size_t i = 0; i < 16; i++) {
		if (sim_device_kind(d, i) != want[i])
			fail_msg("%s: kind %s, want %s", p[i].name,
				 sim_kind_name(sim_device_kind(d, i)), sim_kind_name(want[i]));
	}

	sim_device_update(d, DAY0 + 8 * HOUR_MS, 0);
	assert_true(served(d, 7) == 1.0);   /* running */
	assert_true(served(d, 8) == 0.0);   /* fault */
	assert_true(served(d, 4) == 0.0);   /* alarm word */
	assert_true(served(d, 14) == 1.0);  /* pump_on */
	/* L/s reads the same flow as m3/h (the same measurement), in its own unit */
	assert_true(fabs(served(d, 15) * 3.6 - served(d, 0)) < 1e-5 * served(d, 0));
	/* velocity is flow over a DN200 pipe's area */
	double v = served(d, 0) / 3600.0 / (M_PI * 0.01);
	assert_true(fabs(served(d, 1) - v) < 1e-4);
	/* pressure around 0.30 MPa */
	assert_true(served(d, 3) > 0.25 && served(d, 3) < 0.32);
	/* the air gap mirrors the level under the gauge */
	assert_true(served(d, 6) > 2.9 && served(d, 6) <= 3.0);

	/* a constant from the name: stable across devices and runs */
	struct sim_device *d2 = mk(p, 16, SIM_STEADY, DAY0 + 5);
	sim_device_update(d2, DAY0 + 20 * HOUR_MS, 0);
	assert_true(served(d, 12) == served(d2, 12));
	sim_device_free(d2);
	sim_device_free(d);
}

static void test_flow_daily_pattern(void **state)
{
	(void)state;
	struct point_def p[5];
	flowmeter(p);
	struct sim_device *d = mk(p, 5, SIM_STEADY, DAY0);
	double minv = INFINITY, minh = -1, at[25];

	for (int m = 0; m < 24 * 60; m += 5) {
		sim_device_update(d, DAY0 + m * MIN_MS, 0);
		double q = served(d, 0);
		assert_true(q > 0);
		if (q < minv) {
			minv = q;
			minh = m / 60.0;
		}
		if (m % 60 == 30 || m % 60 == 0)
			at[m / 60] = q;
	}
	/* the night minimum is around 03:00, well below both peaks */
	assert_true(minh >= 1.5 && minh <= 4.5);
	sim_device_update(d, DAY0 + 7 * HOUR_MS + 30 * MIN_MS, 0);
	double morning = served(d, 0);
	sim_device_update(d, DAY0 + 19 * HOUR_MS + 30 * MIN_MS, 0);
	double evening = served(d, 0);
	assert_true(minv < 0.5 * morning);
	assert_true(minv < 0.5 * evening);
	/* the peaks are peaks: higher than the hours around them */
	assert_true(morning > at[5] && morning > at[11]);
	assert_true(evening > at[16] && evening > at[23]);
	/* the nominal flow scales it: a morning peak in the tens of m3/h */
	assert_true(morning > 30 && morning < 80);

	/* local time: UTC 19:30 is 03:30 in UTC+8, the night */
	sim_device_update(d, DAY0 + 19 * HOUR_MS + 30 * MIN_MS, 8 * 3600);
	assert_true(served(d, 0) < 0.5 * evening);
	sim_device_free(d);
}

/* Sum of flow x dt over an hour of 10 s polls, against the totalizer's advance. */
static void check_integration(int scenario, int64_t from)
{
	struct point_def p[5];
	flowmeter(p);
	struct sim_device *d = mk(p, 5, scenario, DAY0);
	double prev, sum = 0;
	int n = 0;

	sim_device_update(d, from, 0);
	double t0 = prev = served(d, 2);
	assert_true(t0 > 1000); /* a plausible meter reading, not zero */
	for (int64_t t = from + 10000; t <= from + HOUR_MS; t += 10000) {
		sim_device_update(d, t, 0);
		double tot = served(d, 2);
		assert_true(tot >= prev); /* monotonic */
		prev = tot;
		sum += served(d, 0);
		n++;
	}
	double mean = sum / n;
	double delta = prev - t0;
	if (fabs(delta - mean) > 0.03 * mean)
		fail_msg("scenario %s: total advanced %.3f m3 in 1 h, mean flow %.3f m3/h",
			 sim_scenario_name(scenario), delta, mean);
	sim_device_free(d);
}

static void test_totalizer_integrates_flow(void **state)
{
	(void)state;
	check_integration(SIM_STEADY, DAY0 + 7 * HOUR_MS);  /* across the morning peak */
	check_integration(SIM_STEADY, DAY0 + 2 * HOUR_MS + 30 * MIN_MS);
	check_integration(SIM_LEAK, DAY0 + 12 * HOUR_MS);
	check_integration(SIM_BURST, DAY0 + 2 * HOUR_MS);
}

static void test_totalizer_coarse_polls_and_time_going_back(void **state)
{
	(void)state;
	struct point_def p[5];
	flowmeter(p);
	struct sim_device *fine = mk(p, 5, SIM_STEADY, DAY0);
	struct sim_device *coarse = mk(p, 5, SIM_STEADY, DAY0);

	/* a day polled every 10 s and the same day polled every 24 min (10 s at a time
	 * scale of 144) end on the same total */
	for (int64_t t = DAY0; t <= DAY0 + 24 * HOUR_MS; t += 10000)
		sim_device_update(fine, t, 0);
	for (int64_t t = DAY0; t <= DAY0 + 24 * HOUR_MS; t += 24 * MIN_MS)
		sim_device_update(coarse, t, 0);
	double a = served(fine, 2), b = served(coarse, 2);
	assert_true(fabs(a - b) < 0.5);
	/* and a day's volume is the curve's: tens of m3/h for 24 h */
	sim_device_update(fine, DAY0 + 24 * HOUR_MS, 0);
	struct sim_device *fresh = mk(p, 5, SIM_STEADY, DAY0);
	sim_device_update(fresh, DAY0, 0);
	double day = a - served(fresh, 2);
	assert_true(day > 24 * 20.0 && day < 24 * 40.0);

	/* time going backwards leaves the total alone */
	sim_device_update(coarse, DAY0 + 2 * HOUR_MS, 0);
	assert_true(served(coarse, 2) == b);
	sim_device_free(fine);
	sim_device_free(coarse);
	sim_device_free(fresh);
}

static void test_totalizer_without_flow_point_and_rollover(void **state)
{
	(void)state;
	struct point_def p[2];
	p[0] = pt("total", MB_HOLDING, 0, PT_UINT32, "L");
	p[1] = pt("volume_small", MB_HOLDING, 2, PT_UINT16, "m3");
	struct sim_device *d = mk(p, 2, SIM_STEADY, DAY0);

	sim_device_update(d, DAY0, 0);
	double l0 = served(d, 0), s0 = served(d, 1);
	assert_true(s0 < 32768); /* starts in the lower half of a small counter */
	sim_device_update(d, DAY0 + 24 * HOUR_MS, 0);
	/* the nominal flow, in litres */
	double dl = served(d, 0) - l0;
	assert_true(dl > 24 * 20000.0 && dl < 24 * 40000.0);
	/* a year later the small counter has rolled over and still decodes */
	sim_device_update(d, DAY0 + 365 * 24 * HOUR_MS, 0);
	assert_true(served(d, 1) >= 0 && served(d, 1) <= 65535);
	sim_device_free(d);
}

static void test_scenarios_leak_and_burst(void **state)
{
	(void)state;
	struct point_def p[5];
	flowmeter(p);
	/* same seed, same calls: the same noise, so flows compare exactly */
	struct sim_device *s = mk(p, 5, SIM_STEADY, DAY0);
	struct sim_device *l = mk(p, 5, SIM_LEAK, DAY0);
	struct sim_device *b = mk(p, 5, SIM_BURST, DAY0);

	for (int64_t t = DAY0 + 10 * MIN_MS; t < DAY0 + 3 * HOUR_MS; t += 10 * MIN_MS) {
		sim_device_update(s, t, 0);
		sim_device_update(l, t, 0);
		sim_device_update(b, t, 0);
		double qs = served(s, 0);
		assert_true(fabs(served(l, 0) / qs - 1.25) < 1e-5);
		double want = t - DAY0 >= HOUR_MS ? 2.5 : 1.0;
		assert_true(fabs(served(b, 0) / qs - want) < 1e-5);
	}
	/* the leak's totalizer ran 25 % ahead */
	sim_device_update(s, DAY0 + 3 * HOUR_MS, 0);
	sim_device_update(l, DAY0 + 3 * HOUR_MS, 0);
	struct sim_device *s0 = mk(p, 5, SIM_STEADY, DAY0);
	sim_device_update(s0, DAY0, 0);
	double base = served(s0, 2);
	double ds = served(s, 2) - base, dl = served(l, 2) - base;
	assert_true(fabs(dl / ds - 1.25) < 0.01);
	/* a burst pulls the pressure down */
	sim_device_update(b, DAY0 + 3 * HOUR_MS, 0);
	assert_true(served(b, 3) < served(s, 3));
	sim_device_free(s);
	sim_device_free(l);
	sim_device_free(b);
	sim_device_free(s0);
}

static void test_pv_day_and_night(void **state)
{
	(void)state;
	struct point_def p[4];
	p[0] = pt("power", MB_INPUT, 0, PT_UINT16, "W");
	p[1] = pt("energy", MB_INPUT, 2, PT_UINT32, "kWh");
	p[1].scale = 0.1;
	p[2] = pt("rated_power", MB_INPUT, 4, PT_FLOAT32, "kW");
	p[3] = pt("fault", MB_DISCRETE, 0, PT_BOOL, "");
	struct sim_device *d = mk(p, 4, SIM_STEADY, DAY0);

	int night[] = { 0, 3, 5, 19, 23 };
	for (size_t i = 0; i < sizeof night / sizeof night[0]; i++) {
		sim_device_update(d, DAY0 + night[i] * HOUR_MS, 0);
		assert_true(served(d, 0) == 0.0);
	}
	sim_device_update(d, DAY0 + 24 * HOUR_MS, 0);
	double e_midnight = served(d, 1);
	sim_device_update(d, DAY0 + 24 * HOUR_MS + 5 * HOUR_MS, 0);
	assert_true(served(d, 1) == e_midnight); /* no energy before dawn */
	sim_device_update(d, DAY0 + 36 * HOUR_MS, 0);
	double noon = served(d, 0);
	assert_true(noon > 0.8 * 30000 && noon <= 30000);
	assert_true(served(d, 2) == 30.0);
	sim_device_update(d, DAY0 + 48 * HOUR_MS, 0);
	/* a clear day of a 30 kW plant: some 150-250 kWh */
	double day = served(d, 1) - e_midnight;
	assert_true(day > 150 && day < 250);
	assert_true(served(d, 3) == 0.0);
	sim_device_free(d);

	/* the fault scenario: fault set, no output at noon */
	d = mk(p, 4, SIM_FAULT, DAY0);
	sim_device_update(d, DAY0 + 12 * HOUR_MS, 0);
	assert_true(served(d, 0) == 0.0);
	assert_true(served(d, 3) == 1.0);
	sim_device_free(d);
}

static void test_rain_event(void **state)
{
	(void)state;
	struct point_def p[3];
	p[0] = pt("level", MB_HOLDING, 3, PT_UINT16, "m");
	p[0].scale = 0.001;
	p[1] = pt("air", MB_HOLDING, 1, PT_UINT16, "m");
	p[1].scale = 0.001;
	p[2] = pt("depth_cm", MB_INPUT, 0, PT_INT16, "cm");
	struct sim_device *rain = mk(p, 3, SIM_RAIN, DAY0);
	struct sim_device *dry = mk(p, 3, SIM_STEADY, DAY0);
	double peak = 0, first_above = -1;

	for (int64_t t = DAY0; t <= DAY0 + 2 * HOUR_MS; t += 30000) {
		sim_device_update(rain, t, 0);
		sim_device_update(dry, t, 0);
		double l = served(rain, 0);
		assert_true(l >= 0);
		assert_true(served(dry, 0) >= 0 && served(dry, 0) < 0.02);
		if (l > peak)
			peak = l;
		if (l > 0.40 && first_above < 0)
			first_above = (double)(t - DAY0) / MIN_MS;
		/* the centimetre point and the air gap see the same water */
		assert_true(fabs(served(rain, 2) / 100.0 - l) < 0.0051);
		assert_true(fabs(served(rain, 1) + l - SIM_GAUGE_HEIGHT_M) < 0.0011);
	}
	assert_true(peak > 0.40 && peak < 0.50);
	/* rising over ~15 simulated minutes, after a dry start */
	assert_true(first_above > 8 && first_above < 20);
	/* and drained again an hour and a half in */
	sim_device_update(rain, DAY0 + 2 * HOUR_MS + 10 * MIN_MS, 0);
	assert_true(served(rain, 0) < 0.02);
	/* the air gap shrinks as the water rises */
	sim_device_update(rain, DAY0 + 6 * HOUR_MS + 25 * MIN_MS, 0);
	assert_true(served(rain, 0) > 0.40);
	assert_true(served(rain, 1) < 2.62);
	sim_device_free(rain);
	sim_device_free(dry);
}

static void test_registers_decode_to_model(void **state)
{
	(void)state;
	struct point_def p[12];
	p[0] = pt("flow", MB_INPUT, 0, PT_FLOAT32, "m3/h");
	p[0].word_order = ORDER_LITTLE;
	p[1] = pt("total", MB_HOLDING, 8, PT_UINT32, "m3");
	p[1].word_order = ORDER_LITTLE;
	p[1].scale = 0.01;
	p[2] = pt("pressure", MB_HOLDING, 12, PT_INT16, "MPa");
	p[2].scale = 0.001;
	p[3] = pt("running", MB_HOLDING, 110, PT_BOOL, "");
	p[3].bit = 0;
	p[4] = pt("fault", MB_HOLDING, 110, PT_BOOL, "");
	p[4].bit = 3;
	p[5] = pt("level", MB_INPUT, 10, PT_INT32, "mm");
	p[5].byte_order = ORDER_LITTLE;
	p[6] = pt("temp", MB_INPUT, 20, PT_INT16, "degC");
	p[6].scale = 0.1;
	p[6].offset = -40;
	p[7] = pt("energy", MB_HOLDING, 20, PT_UINT64, "Wh");
	p[8] = pt("power", MB_HOLDING, 30, PT_FLOAT64, "kW");
	p[8].byte_order = ORDER_LITTLE;
	p[8].word_order = ORDER_LITTLE;
	p[9] = pt("velocity", MB_HOLDING, 40, PT_FLOAT32, "m/s");
	p[10] = pt("red_lamp", MB_COIL, 0, PT_BOOL, "");
	p[11] = pt("status", MB_HOLDING, 42, PT_INT16, "");
	struct sim_device *d = mk(p, 12, SIM_STEADY, DAY0);

	for (int64_t t = DAY0; t < DAY0 + 24 * HOUR_MS; t += 37 * MIN_MS) {
		sim_device_update(d, t, 0);
		for (size_t i = 0; i < 12; i++) {
			double want = sim_device_value(d, i), got = served(d, i);
			double tol = p[i].type == PT_FLOAT32 ? fabs(want) * 1e-6 + 1e-9
				   : p[i].type == PT_FLOAT64 ? 1e-12
				   : fabs(p[i].scale) / 2 + 1e-9;
			if (p[i].type == PT_BOOL)
				tol = 0;
			if (fabs(want - got) > tol)
				fail_msg("%s at %+.0f min: model %.9g, served %.9g", p[i].name,
					 (double)(t - DAY0) / MIN_MS, want, got);
		}
	}
	sim_device_free(d);
}

static void test_clamp_and_strings(void **state)
{
	(void)state;
	struct point_def p[4];
	/* 40 m3/h at the morning peak cannot fit 0.0001 m3/h steps in a uint16 */
	p[0] = pt("flow", MB_HOLDING, 0, PT_UINT16, "m3/h");
	p[0].scale = 0.0001;
	p[1] = pt("name", MB_HOLDING, 1, PT_STRING, "");
	p[1].length = 4;
	p[2] = pt("model", MB_HOLDING, 5, PT_STRING, "");
	p[2].length = 20; /* 40 bytes: exactly the name, no NUL */
	p[2].byte_order = ORDER_LITTLE;
	p[3] = pt("power", MB_HOLDING, 25, PT_INT16, "W"); /* 30 kW fits; more would clamp */
	char err[128];
	struct sim_device *d = sim_device_new(p, 4, "三号计量分区 进水电磁流量计",
					      SIM_STEADY, 7, DAY0, err, sizeof err);
	assert_non_null(d);

	sim_device_update(d, DAY0 + 7 * HOUR_MS + 30 * MIN_MS, 0);
	assert_int_equal(sim_device_point_regs(d, 0)[0], 65535);

	struct value v;
	char s[160];
	/* 8 bytes: two 3-byte characters, never half of the third */
	assert_int_equal(codec_decode_regs(&p[1], sim_device_point_regs(d, 1), &v, s, sizeof s), 0);
	assert_int_equal(v.kind, VAL_STRING);
	assert_string_equal(v.s, "三号");
	assert_int_equal(codec_decode_regs(&p[2], sim_device_point_regs(d, 2), &v, s, sizeof s), 0);
	assert_string_equal(v.s, "三号计量分区 进水电磁流量计");

	/* no display name: SLUICE-SIM */
	struct sim_device *d2 = sim_device_new(p, 4, NULL, SIM_STEADY, 7, DAY0, err, sizeof err);
	assert_non_null(d2);
	assert_int_equal(codec_decode_regs(&p[2], sim_device_point_regs(d2, 2), &v, s, sizeof s), 0);
	assert_string_equal(v.s, "SLUICE-SIM");
	sim_device_free(d2);
	sim_device_free(d);
}

static void test_serving_and_writes(void **state)
{
	(void)state;
	struct point_def p[7];
	flowmeter(p);
	p[5] = pt("red_lamp", MB_COIL, 4, PT_BOOL, "");
	p[5].writable = true;
	p[6] = pt("setpoint", MB_HOLDING, 11, PT_INT16, "");
	p[6].writable = true;
	struct sim_device *d = mk(p, 7, SIM_STEADY, DAY0);
	uint16_t regs[16];
	uint8_t bits[4];

	sim_device_update(d, DAY0 + 12 * HOUR_MS, 0);
	/* served span: holding 0..11, coil 4 */
	assert_int_equal(sim_device_read_regs(d, MB_HOLDING, 0, 12, regs), 0);
	assert_int_equal(sim_device_read_regs(d, MB_HOLDING, 0, 13, regs), 2);
	assert_int_equal(sim_device_read_regs(d, MB_HOLDING, 12, 1, regs), 2);
	assert_int_equal(sim_device_read_regs(d, MB_INPUT, 0, 1, regs), 2);
	assert_int_equal(sim_device_read_bits(d, MB_COIL, 4, 1, bits), 0);
	assert_int_equal(bits[0], 0);
	assert_int_equal(sim_device_read_bits(d, MB_COIL, 3, 2, bits), 2);
	assert_int_equal(sim_device_read_bits(d, MB_DISCRETE, 0, 1, bits), 2);
	assert_int_equal(sim_device_write_regs(d, 12, 1, regs), 2);

	/* what is read is the image */
	assert_int_equal(sim_device_read_regs(d, MB_HOLDING, 0, 2, regs), 0);
	struct value v;
	assert_int_equal(codec_decode_regs(&p[0], regs, &v, NULL, 0), 0);
	assert_true(v.v.d == served(d, 0));

	/* a written lamp stays lit; a written flow is held and the total follows it */
	uint8_t on = 1;
	assert_int_equal(sim_device_write_bits(d, 4, 1, &on), 0);
	uint16_t q[2];
	assert_int_equal(codec_encode_regs(&p[0], 100.0, q), 2);
	assert_int_equal(sim_device_write_regs(d, 0, 2, q), 0);
	uint16_t sp = 77;
	assert_int_equal(sim_device_write_regs(d, 11, 1, &sp), 0);
	assert_true(sim_device_held(d, 0));
	assert_false(sim_device_held(d, 1));
	assert_true(sim_device_held(d, 5));
	double t0 = served(d, 2);
	sim_device_update(d, DAY0 + 13 * HOUR_MS, 0);
	assert_true(served(d, 0) == 100.0);
	assert_true(served(d, 5) == 1.0);
	assert_true(served(d, 6) == 77.0);
	assert_true(fabs(served(d, 2) - t0 - 100.0) < 0.01);
	/* velocity follows the meter's (written) flow */
	assert_true(fabs(served(d, 1) - 100.0 / 3600.0 / (M_PI * 0.01)) < 1e-4);
	sim_device_free(d);
}

static void test_determinism_and_bad_input(void **state)
{
	(void)state;
	struct point_def p[5];
	flowmeter(p);
	struct sim_device *a = mk(p, 5, SIM_STEADY, DAY0);
	struct sim_device *b = mk(p, 5, SIM_STEADY, DAY0);
	for (int64_t t = DAY0; t < DAY0 + HOUR_MS; t += MIN_MS) {
		sim_device_update(a, t, 0);
		sim_device_update(b, t, 0);
		for (size_t i = 0; i < 5; i++)
			assert_true(served(a, i) == served(b, i));
	}
	sim_device_free(a);
	sim_device_free(b);

	char err[128] = "";
	p[0].address = 65535; /* a float32 there runs past the table */
	assert_null(sim_device_new(p, 5, NULL, SIM_STEADY, 1, DAY0, err, sizeof err));
	assert_non_null(strstr(err, "flow"));
	flowmeter(p);
	assert_null(sim_device_new(p, 5, NULL, 99, 1, DAY0, err, sizeof err));

	assert_int_equal(sim_scenario_from_name("rain"), SIM_RAIN);
	assert_int_equal(sim_scenario_from_name("dead"), SIM_DEAD);
	assert_int_equal(sim_scenario_from_name("drizzle"), -1);
	assert_string_equal(sim_scenario_name(SIM_LEAK), "leak");

	/* a device with no points at all is still a device (it answers exception 2) */
	struct sim_device *e = sim_device_new(NULL, 0, NULL, SIM_STEADY, 1, DAY0, err, sizeof err);
	assert_non_null(e);
	sim_device_update(e, DAY0, 0);
	uint16_t r;
	assert_int_equal(sim_device_read_regs(e, MB_HOLDING, 0, 1, &r), 2);
	sim_device_free(e);
}

/* Registers of a device as a SunSpec client reads them. */
static uint16_t reg(struct sim_device *d, uint16_t addr)
{
	uint16_t r = 0xdead;
	assert_int_equal(sim_device_read_regs(d, MB_HOLDING, addr, 1, &r), 0);
	return r;
}

static double sf_value(struct sim_device *d, uint16_t addr, uint16_t sf_addr, bool is_signed)
{
	int16_t sf = (int16_t)reg(d, sf_addr);
	double v = is_signed ? (double)(int16_t)reg(d, addr) : (double)reg(d, addr);
	return v * pow(10.0, sf);
}

static void test_sunspec_inverter(void **state)
{
	(void)state;
	char err[128];
	struct sim_device *d = sim_sunspec_new("屋顶光伏", 3, 50000, SIM_STEADY, 9, DAY0, err,
					       sizeof err);
	assert_non_null(d);

	/* the marker, then models chained by their lengths, then the end marker */
	sim_device_update(d, DAY0 + 12 * HOUR_MS, 0);
	assert_int_equal(reg(d, 40000), 0x5375);
	assert_int_equal(reg(d, 40001), 0x6e53);
	uint16_t a = 40002, seen[8], n = 0, inv = 0, np = 0;
	while (reg(d, a) != 0xffff && n < 8) {
		seen[n++] = reg(d, a);
		if (reg(d, a) == 103)
			inv = a + 2;
		if (reg(d, a) == 120)
			np = a + 2;
		a = (uint16_t)(a + 2 + reg(d, a + 1));
	}
	assert_int_equal(n, 3);
	assert_int_equal(seen[0], 1);
	assert_int_equal(seen[1], 103);
	assert_int_equal(seen[2], 120);
	assert_int_equal(reg(d, a + 1), 0);
	assert_int_equal(reg(d, 40002 + 2 + 64), 3); /* DA: the unit id */
	/* Mn is the simulator's, Md the device's name */
	char mn[33] = "", md[33] = "";
	for (int i = 0; i < 16; i++) {
		mn[2 * i] = (char)(reg(d, (uint16_t)(40004 + i)) >> 8);
		mn[2 * i + 1] = (char)reg(d, (uint16_t)(40004 + i));
		md[2 * i] = (char)(reg(d, (uint16_t)(40020 + i)) >> 8);
		md[2 * i + 1] = (char)reg(d, (uint16_t)(40020 + i));
	}
	assert_string_equal(mn, "sluice");
	assert_string_equal(md, "屋顶光伏");

	/* noon: producing (St 4), W near the rating, which fits only with a scale factor */
	double w = sf_value(d, inv + 12, inv + 13, true);
	assert_true(w > 0.8 * 50000 && w <= 50000 * 1.05);
	assert_int_equal(reg(d, inv + 36), 4);
	assert_true(sf_value(d, np + 1, np + 2, false) == 50000);
	uint32_t wh_noon = (uint32_t)reg(d, inv + 22) << 16 | reg(d, inv + 23);
	sim_device_update(d, DAY0 + 23 * HOUR_MS, 0);
	uint32_t wh_night = (uint32_t)reg(d, inv + 22) << 16 | reg(d, inv + 23);
	assert_true(sf_value(d, inv + 12, inv + 13, true) == 0);
	assert_int_equal(reg(d, inv + 36), 2); /* sleeping */
	/* the afternoon of a 50 kW plant: between 100 and 300 kWh */
	assert_true(wh_night > wh_noon + 100000 && wh_night < wh_noon + 300000);
	sim_device_free(d);

	d = sim_sunspec_new(NULL, 1, 0, SIM_FAULT, 9, DAY0, err, sizeof err);
	assert_non_null(d);
	sim_device_update(d, DAY0 + 12 * HOUR_MS, 0);
	assert_true(sf_value(d, inv + 12, inv + 13, true) == 0);
	assert_int_equal(reg(d, inv + 36), 7);           /* fault */
	assert_int_equal(reg(d, inv + 39), 1);           /* Evt1: ground fault */
	assert_true(sf_value(d, np + 1, np + 2, false) == SIM_RATED_POWER_W);
	sim_device_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kinds_from_unit_and_name),
		cmocka_unit_test(test_flow_daily_pattern),
		cmocka_unit_test(test_totalizer_integrates_flow),
		cmocka_unit_test(test_totalizer_coarse_polls_and_time_going_back),
		cmocka_unit_test(test_totalizer_without_flow_point_and_rollover),
		cmocka_unit_test(test_scenarios_leak_and_burst),
		cmocka_unit_test(test_pv_day_and_night),
		cmocka_unit_test(test_rain_event),
		cmocka_unit_test(test_registers_decode_to_model),
		cmocka_unit_test(test_clamp_and_strings),
		cmocka_unit_test(test_serving_and_writes),
		cmocka_unit_test(test_determinism_and_bad_input),
		cmocka_unit_test(test_sunspec_inverter),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
