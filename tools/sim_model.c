/*
 * sim_model: simulated devices — behaviours chosen from each point's unit and name,
 * computed from simulated time, encoded into a register image with drivers/codec.
 *
 * Owns each device's points (a copy), its register image and its random generator.
 * Must never do I/O, read a clock or log: the simulator (and the unit tests) hand it
 * the simulated time, which is what makes a day testable in microseconds.
 */
#include "sim_model.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MS_PER_H 3600000.0
#define MIN_MS (60 * 1000LL)
#define HOUR_MS (60 * MIN_MS)
#define DAY_S 86400

/* Rain event timeline, in simulated ms from the start of each cycle. */
#define RAIN_CYCLE (6 * HOUR_MS)
#define RAIN_BEGIN (2 * MIN_MS)
#define RAIN_RISE (15 * MIN_MS)
#define RAIN_HOLD (20 * MIN_MS)
#define RAIN_DRAIN (30 * MIN_MS)

/* Integration step for totalizers: fine enough to follow the demand curve's peaks,
 * with a cap so that a client that comes back after a long silence costs little. */
#define INTEG_STEP_MS 60000
#define INTEG_MAX_STEPS 20000

struct sim_point {
	int kind;
	double factor;   /* point unit per base unit (m3/h, m3, m, W, kWh, MPa, m/s) */
	double cval;     /* SIM_K_CONST: the value; counters: the starting reading */
	double val;      /* after the last update */
	double lo, hi;   /* what the type can hold, in engineering units */
	double modulus;  /* counters on integer registers roll over here; 0: never */
	char *str;       /* SIM_K_STRING: its own text, or NULL for the display name */
	bool held;
};

struct sim_table {
	uint32_t lo, n;  /* served addresses [lo, lo+n) */
	uint16_t *regs;  /* input, holding */
	uint8_t *bits;   /* coil, discrete */
};

struct sim_device {
	struct point_def *pts;
	struct sim_point *sp;
	size_t n;
	char *name;
	int scenario;
	uint64_t rng;
	int64_t start_ms, last_ms;
	double volume_m3;   /* integrated since start */
	double energy_kwh;
	double nominal_m3h, rated_w;
	long flow_idx;      /* the device's (first) flow point, -1 */
	bool has_volume, has_energy;
	struct sim_table tab[4];
};

static const char *const scenario_names[SIM_NSCENARIOS] = {
	"steady", "leak", "burst", "rain", "fault", "dead",
};

static const char *const kind_names[SIM_NKINDS] = {
	"constant", "flow", "volume", "level", "air-gap", "power", "rated-power", "energy",
	"pressure", "velocity", "on", "off", "fault-bit", "status", "string",
	"inverter-state",
};

const char *sim_scenario_name(int s)
{
	return s >= 0 && s < SIM_NSCENARIOS ? scenario_names[s] : NULL;
}

int sim_scenario_from_name(const char *s)
{
	for (int i = 0; i < SIM_NSCENARIOS; i++)
		if (strcmp(s, scenario_names[i]) == 0)
			return i;
	return -1;
}

const char *sim_kind_name(int k)
{
	return k >= 0 && k < SIM_NKINDS ? kind_names[k] : "?";
}

/* --- random numbers: splitmix64, one stream per device ---------------------------- */

static uint64_t sim_rand(struct sim_device *d)
{
	uint64_t z = (d->rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Uniform in (0, 1]. */
static double sim_unif(struct sim_device *d)
{
	return ((double)(sim_rand(d) >> 11) + 1.0) / 9007199254740992.0;
}

/* Standard normal (Box-Muller); noise is small, so tails beyond a few sigma are cut to
 * keep a flow meter from ever reading a wild spike. */
static double sim_gauss(struct sim_device *d)
{
	double g = sqrt(-2.0 * log(sim_unif(d))) * cos(2.0 * M_PI * sim_unif(d));
	return g > 3.0 ? 3.0 : g < -3.0 ? -3.0 : g;
}

static uint64_t sim_hash(const char *s, uint64_t h)
{
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return h;
}

#define FNV_BASIS 0xcbf29ce484222325ULL

/* --- the daily curves ----------------------------------------------------------------- */

static double bump(double h, double centre, double sigma)
{
	/* distance on the 24 h circle, so the evening peak's tail reaches past midnight */
	double x = fabs(h - centre);
	if (x > 12.0)
		x = 24.0 - x;
	x /= sigma;
	return exp(-0.5 * x * x);
}

double sim_demand(double h)
{
	/* a base that breathes with the day (lowest at 03:00), plus the morning and
	 * evening peaks of household use */
	double base = 0.30 + 0.35 * (1.0 - cos(2.0 * M_PI * (h - 3.0) / 24.0)) / 2.0;
	return base + 0.90 * bump(h, 7.5, 1.2) + 0.75 * bump(h, 19.5, 1.5);
}

double sim_solar(double h)
{
	if (h <= 6.0 || h >= 18.0)
		return 0.0;
	return 0.92 * pow(sin(M_PI * (h - 6.0) / 12.0), 1.3);
}

static double local_hour(int64_t sim_ms, int32_t off)
{
	int64_t s = sim_ms / 1000 - (sim_ms % 1000 < 0) + off;
	int64_t sod = s % DAY_S;
	if (sod < 0)
		sod += DAY_S;
	int64_t ms = sim_ms % 1000;
	if (ms < 0)
		ms += 1000;
	return ((double)sod + (double)ms / 1000.0) / 3600.0;
}

static double smoothstep(double x)
{
	if (x <= 0.0)
		return 0.0;
	if (x >= 1.0)
		return 1.0;
	return x * x * (3.0 - 2.0 * x);
}

static double scenario_flow_factor(const struct sim_device *d, int64_t sim_ms)
{
	switch (d->scenario) {
	case SIM_LEAK:
		return 1.25;
	case SIM_BURST:
		return sim_ms - d->start_ms >= HOUR_MS ? 2.5 : 1.0;
	default:
		return 1.0;
	}
}

/* The flow the device's totalizers and derived points follow, m3/h, without noise. */
static double model_flow_m3h(const struct sim_device *d, int64_t sim_ms, int32_t off)
{
	const struct sim_point *fp = d->flow_idx >= 0 ? &d->sp[d->flow_idx] : NULL;
	if (fp && fp->held)
		return fp->val / fp->factor;
	return d->nominal_m3h * sim_demand(local_hour(sim_ms, off)) *
	       scenario_flow_factor(d, sim_ms);
}

static double model_power_w(const struct sim_device *d, int64_t sim_ms, int32_t off)
{
	if (d->scenario == SIM_FAULT)
		return 0.0;
	return d->rated_w * sim_solar(local_hour(sim_ms, off));
}

static double rain_level_m(const struct sim_device *d, int64_t sim_ms)
{
	int64_t t = sim_ms - d->start_ms;
	if (d->scenario != SIM_RAIN || t < 0)
		return 0.0;
	double u = (double)(t % RAIN_CYCLE - RAIN_BEGIN);
	if (u < 0)
		return 0.0;
	if (u < RAIN_RISE)
		return SIM_RAIN_PEAK_M * smoothstep(u / RAIN_RISE);
	u -= RAIN_RISE;
	if (u < RAIN_HOLD)
		return SIM_RAIN_PEAK_M;
	u -= RAIN_HOLD;
	if (u < RAIN_DRAIN)
		return SIM_RAIN_PEAK_M * (1.0 - smoothstep(u / RAIN_DRAIN));
	return 0.0;
}

/* --- choosing a behaviour ------------------------------------------------------------ */

struct unit_map {
	const char *unit;
	int kind;
	double factor;
};

/* Base units: m3/h, m3, m, W, kWh, MPa, m/s. */
static const struct unit_map unit_maps[] = {
	{ "m3/h", SIM_K_FLOW, 1.0 },       { "m³/h", SIM_K_FLOW, 1.0 },
	{ "L/s", SIM_K_FLOW, 1.0 / 3.6 },  { "l/s", SIM_K_FLOW, 1.0 / 3.6 },
	{ "L/min", SIM_K_FLOW, 1000.0 / 60.0 }, { "l/min", SIM_K_FLOW, 1000.0 / 60.0 },
	{ "m3", SIM_K_VOLUME, 1.0 },       { "m³", SIM_K_VOLUME, 1.0 },
	{ "L", SIM_K_VOLUME, 1000.0 },     { "l", SIM_K_VOLUME, 1000.0 },
	{ "m", SIM_K_LEVEL, 1.0 },         { "cm", SIM_K_LEVEL, 100.0 },
	{ "mm", SIM_K_LEVEL, 1000.0 },
	{ "W", SIM_K_POWER, 1.0 },         { "kW", SIM_K_POWER, 0.001 },
	{ "Wh", SIM_K_ENERGY, 1000.0 },    { "kWh", SIM_K_ENERGY, 1.0 },
	{ "MPa", SIM_K_PRESSURE, 1.0 },    { "kPa", SIM_K_PRESSURE, 1000.0 },
	{ "bar", SIM_K_PRESSURE, 10.0 },
	{ "m/s", SIM_K_VELOCITY, 1.0 },
};

static void lower_name(const char *s, char *out, size_t cap)
{
	size_t i = 0;
	for (; s[i] && i + 1 < cap; i++)
		out[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
	out[i] = '\0';
}

/* A short word must be a whole token of the name ("pump_on", not "conductivity"). */
static bool has_token(const char *name, const char *word)
{
	size_t wl = strlen(word);
	for (const char *p = name; (p = strstr(p, word)) != NULL; p++) {
		bool left = p == name || !((p[-1] >= 'a' && p[-1] <= 'z') ||
					  (p[-1] >= '0' && p[-1] <= '9'));
		char r = p[wl];
		bool right = !((r >= 'a' && r <= 'z') || (r >= '0' && r <= '9'));
		if (left && right)
			return true;
	}
	return false;
}

static bool has_any(const char *name, const char *const *words)
{
	for (; *words; words++)
		if (strstr(name, *words))
			return true;
	return false;
}

static const char *const fault_words[] = { "fault", "alarm", "trip", "error", "fail", NULL };
static const char *const status_words[] = { "status", "state", "alarm", "fault", "error",
					    "trip", "warn", "code", "fail", NULL };
static const char *const totalizer_words[] = { "total", "accum", "cumul", "counter",
					       "sum", "forward", "fwd", "volume",
					       "consum", "reading", "meter", NULL };
static const char *const gap_words[] = { "air", "gap", "distance", "dist", "headroom",
					 "empty", "space", NULL };
static const char *const rated_words[] = { "rated", "rating", "nameplate", "rtg", "max",
					   "capacity", NULL };

static bool is_int_type(enum pt_type t)
{
	return t >= PT_INT16 && t <= PT_UINT64;
}

static int choose_kind(const struct point_def *p, double *factor)
{
	char name[POINT_NAME_MAX];
	lower_name(p->name, name, sizeof name);
	*factor = 1.0;

	if (p->type == PT_STRING)
		return SIM_K_STRING;
	if (p->type == PT_BOOL || p->table == MB_COIL || p->table == MB_DISCRETE) {
		if (has_any(name, fault_words))
			return SIM_K_FAULTBIT;
		if (strstr(name, "running") || has_token(name, "run") || has_token(name, "on") ||
		    has_token(name, "online") || has_token(name, "ok"))
			return SIM_K_ON;
		return SIM_K_OFF;
	}
	if (is_int_type(p->type) && p->unit[0] == '\0' && has_any(name, status_words))
		return SIM_K_STATUS;

	for (size_t i = 0; i < sizeof unit_maps / sizeof unit_maps[0]; i++) {
		if (strcmp(p->unit, unit_maps[i].unit) != 0)
			continue;
		int k = unit_maps[i].kind;
		*factor = unit_maps[i].factor;
		if (k == SIM_K_VOLUME && !has_any(name, totalizer_words))
			return SIM_K_CONST;
		if (k == SIM_K_LEVEL && has_any(name, gap_words))
			return SIM_K_GAP;
		if (k == SIM_K_POWER && has_any(name, rated_words))
			return SIM_K_RATED;
		return k;
	}
	if (is_int_type(p->type) && has_any(name, status_words))
		return SIM_K_STATUS;
	return SIM_K_CONST;
}

/* The raw range of a type, as doubles that convert back without overflow. */
static void type_range(enum pt_type t, double *lo, double *hi)
{
	switch (t) {
	case PT_BOOL:    *lo = 0; *hi = 1; break;
	case PT_INT16:   *lo = -32768.0; *hi = 32767.0; break;
	case PT_UINT16:  *lo = 0; *hi = 65535.0; break;
	case PT_INT32:   *lo = -2147483648.0; *hi = 2147483647.0; break;
	case PT_UINT32:  *lo = 0; *hi = 4294967295.0; break;
	/* the largest doubles below 2^63 and 2^64 */
	case PT_INT64:   *lo = -9223372036854774784.0; *hi = 9223372036854774784.0; break;
	case PT_UINT64:  *lo = 0; *hi = 18446744073709549568.0; break;
	case PT_FLOAT32: *lo = -FLT_MAX; *hi = FLT_MAX; break;
	default:         *lo = -DBL_MAX; *hi = DBL_MAX; break;
	}
}

static double pt_scale(const struct point_def *p)
{
	return p->scale != 0.0 && isfinite(p->scale) ? p->scale : 1.0;
}

/* A plausible meter reading, different for each device (by its name) but stable
 * across runs, in the point's unit; on a small register, within the lower half of what
 * it can count before it rolls over. */
static double counter_start(const struct sim_device *d, size_t i)
{
	const struct sim_point *s = &d->sp[i];
	uint64_t hd = sim_hash(d->name, sim_hash(d->pts[i].name, FNV_BASIS));
	double v = (s->kind == SIM_K_VOLUME ? 10000.0 + (double)(hd % 90000)
					    : 20000.0 + (double)(hd % 80000)) +
		   (double)((hd >> 32) % 1000) / 1000.0;
	v *= s->factor;
	if (s->modulus > 0 && v >= s->modulus / 2)
		v = fmod(v, s->modulus / 2);
	return v;
}

static void point_init(struct sim_device *d, size_t i)
{
	const struct point_def *p = &d->pts[i];
	struct sim_point *s = &d->sp[i];
	double rlo, rhi, sc = pt_scale(p);
	uint64_t h = sim_hash(p->name, FNV_BASIS);

	s->kind = choose_kind(p, &s->factor);
	type_range(p->type, &rlo, &rhi);
	s->lo = p->offset + sc * (sc > 0 ? rlo : rhi);
	s->hi = p->offset + sc * (sc > 0 ? rhi : rlo);
	s->modulus = 0.0;
	if (is_int_type(p->type) && rhi < 1e10)
		s->modulus = (rhi + 1.0) * fabs(sc);

	switch (s->kind) {
	case SIM_K_VOLUME:
	case SIM_K_ENERGY:
		s->cval = counter_start(d, i);
		break;
	case SIM_K_CONST:
		if (is_int_type(p->type)) {
			double cap = rhi + 1.0 < 1000.0 ? rhi + 1.0 : 1000.0;
			s->cval = (double)(h % (uint64_t)cap) * sc + p->offset;
		} else {
			s->cval = (double)(h % 100000) / 100.0;
		}
		break;
	default:
		s->cval = 0.0;
		break;
	}
	s->val = s->kind == SIM_K_STRING ? NAN : s->cval;
}

/* --- the register image -------------------------------------------------------------- */

static bool is_bit_table(enum mb_table t)
{
	return t == MB_COIL || t == MB_DISCRETE;
}

static uint16_t point_width(const struct point_def *p)
{
	if (is_bit_table(p->table))
		return 1;
	uint16_t w = codec_width(p);
	return w ? w : 1;
}

static int image_build(struct sim_device *d, char *err, size_t errlen)
{
	uint32_t lo[4], hi[4];
	for (int t = 0; t < 4; t++) {
		lo[t] = UINT32_MAX;
		hi[t] = 0;
	}
	for (size_t i = 0; i < d->n; i++) {
		const struct point_def *p = &d->pts[i];
		if ((unsigned)p->table > MB_HOLDING) {
			snprintf(err, errlen, "point %s: unknown table", p->name);
			return -1;
		}
		uint32_t end = (uint32_t)p->address + point_width(p);
		if (end > 65536) {
			snprintf(err, errlen, "point %s: address %u + width runs past 65535",
				 p->name, p->address);
			return -1;
		}
		if (p->address < lo[p->table])
			lo[p->table] = p->address;
		if (end > hi[p->table])
			hi[p->table] = end;
	}
	for (int t = 0; t < 4; t++) {
		struct sim_table *tb = &d->tab[t];
		if (lo[t] == UINT32_MAX)
			continue;
		tb->lo = lo[t];
		tb->n = hi[t] - lo[t];
		if (is_bit_table((enum mb_table)t))
			tb->bits = calloc(tb->n, 1);
		else
			tb->regs = calloc(tb->n, sizeof *tb->regs);
		if (!tb->bits && !tb->regs) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	return 0;
}

static uint16_t *point_regs(const struct sim_device *d, size_t i)
{
	const struct point_def *p = &d->pts[i];
	const struct sim_table *tb = &d->tab[p->table];
	if (is_bit_table(p->table) || !tb->regs)
		return NULL;
	return tb->regs + (p->address - tb->lo);
}

const uint16_t *sim_device_point_regs(const struct sim_device *d, size_t i)
{
	return i < d->n ? point_regs(d, i) : NULL;
}

uint8_t sim_device_point_bit(const struct sim_device *d, size_t i)
{
	if (i >= d->n)
		return 0;
	const struct point_def *p = &d->pts[i];
	const struct sim_table *tb = &d->tab[p->table];
	if (is_bit_table(p->table))
		return tb->bits[p->address - tb->lo];
	const uint16_t *r = point_regs(d, i);
	if (p->bit >= 0 && p->bit < 16)
		return (r[0] >> p->bit) & 1;
	return r[0] != 0;
}

/* Strings are written byte by byte: the display name truncated at a UTF-8 character
 * boundary so a Chinese name never ends in half a character, NUL-padded. */
static void encode_string(const struct point_def *p, const char *s, uint16_t *regs)
{
	uint16_t nregs = codec_width(p);
	size_t cap = (size_t)nregs * 2, len = strlen(s);
	uint8_t bytes[POINT_STRING_MAX_REGS * 2 + 2];

	if (cap > sizeof bytes)
		cap = sizeof bytes;
	if (len > cap) {
		len = cap;
		while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
			len--;
	}
	memset(bytes, 0, sizeof bytes);
	memcpy(bytes, s, len);
	for (uint16_t r = 0; r < nregs && (size_t)r * 2 < cap; r++) {
		uint8_t a = bytes[2 * r], b = bytes[2 * r + 1];
		regs[r] = p->byte_order == ORDER_LITTLE ? (uint16_t)(b << 8 | a)
							: (uint16_t)(a << 8 | b);
	}
}

static void encode_point(struct sim_device *d, size_t i)
{
	const struct point_def *p = &d->pts[i];
	struct sim_point *s = &d->sp[i];
	struct sim_table *tb = &d->tab[p->table];

	if (is_bit_table(p->table)) {
		tb->bits[p->address - tb->lo] = s->val != 0.0;
		return;
	}
	uint16_t *r = point_regs(d, i);
	if (s->kind == SIM_K_STRING) {
		encode_string(p, s->str ? s->str : d->name, r);
		return;
	}
	if (p->type == PT_BOOL && p->bit >= 0) {
		codec_set_bit(p, s->val != 0.0, r);
		return;
	}
	uint16_t tmp[8];
	double v = s->val;
	if (isnan(v))
		v = 0.0;
	if (v < s->lo)
		v = s->lo;
	if (v > s->hi)
		v = s->hi;
	int nr = codec_encode_regs(p, v, tmp);
	if (nr < 0 && p->type == PT_BOOL) {
		tmp[0] = v != 0.0;
		nr = 1;
	}
	if (nr < 0) {
		/* rounding at the very edge of the range: encode the raw limit exactly */
		double raw = (v - p->offset) / pt_scale(p);
		int64_t ri = raw <= -9.2e18 ? INT64_MIN : raw >= 9.2e18 ? INT64_MAX : (int64_t)raw;
		nr = codec_encode_int(p, ri, tmp);
	}
	if (nr > 0)
		memcpy(r, tmp, (size_t)nr * sizeof *r);
}

/* --- the device ---------------------------------------------------------------------- */

/* Which point the others follow (the first flow: totalizers, velocity and pressure),
 * and whether there is anything to integrate at all; again after every override. */
static void refresh_derived(struct sim_device *d)
{
	d->flow_idx = -1;
	d->has_volume = d->has_energy = false;
	for (size_t i = 0; i < d->n; i++) {
		if (d->sp[i].kind == SIM_K_FLOW && d->flow_idx < 0)
			d->flow_idx = (long)i;
		d->has_volume |= d->sp[i].kind == SIM_K_VOLUME;
		d->has_energy |= d->sp[i].kind == SIM_K_ENERGY;
	}
}

struct sim_device *sim_device_new(const struct point_def *points, size_t n,
				  const char *display_name, int scenario, uint64_t seed,
				  int64_t start_ms, char *err, size_t errlen)
{
	struct sim_device *d;

	if (scenario < 0 || scenario >= SIM_NSCENARIOS) {
		snprintf(err, errlen, "unknown scenario %d", scenario);
		return NULL;
	}
	if (!(d = calloc(1, sizeof *d))) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	d->n = n;
	d->scenario = scenario;
	d->rng = seed;
	d->start_ms = d->last_ms = start_ms;
	d->nominal_m3h = SIM_NOMINAL_FLOW_M3H;
	d->rated_w = SIM_RATED_POWER_W;
	d->flow_idx = -1;
	d->name = strdup(display_name && *display_name ? display_name : "SLUICE-SIM");
	d->pts = calloc(n ? n : 1, sizeof *d->pts);
	d->sp = calloc(n ? n : 1, sizeof *d->sp);
	if (!d->name || !d->pts || !d->sp) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (n)
		memcpy(d->pts, points, n * sizeof *points);
	if (image_build(d, err, errlen) < 0)
		goto fail;
	for (size_t i = 0; i < n; i++)
		point_init(d, i);
	refresh_derived(d);
	/* a device whose map names its rated power runs at that rating */
	for (size_t i = 0; i < n; i++)
		if (d->sp[i].kind == SIM_K_RATED)
			d->sp[i].cval = d->rated_w * d->sp[i].factor;
	for (size_t i = 0; i < n; i++)
		encode_point(d, i);
	return d;
fail:
	sim_device_free(d);
	return NULL;
}

void sim_device_free(struct sim_device *d)
{
	if (!d)
		return;
	for (int t = 0; t < 4; t++) {
		free(d->tab[t].regs);
		free(d->tab[t].bits);
	}
	for (size_t i = 0; d->sp && i < d->n; i++)
		free(d->sp[i].str);
	free(d->pts);
	free(d->sp);
	free(d->name);
	free(d);
}

int sim_device_scenario(const struct sim_device *d)
{
	return d->scenario;
}

const struct point_def *sim_device_points(const struct sim_device *d, size_t *n)
{
	*n = d->n;
	return d->pts;
}

int sim_device_kind(const struct sim_device *d, size_t i)
{
	return i < d->n ? d->sp[i].kind : -1;
}

void sim_device_set_kind(struct sim_device *d, size_t i, int kind, double factor)
{
	if (i >= d->n || kind < 0 || kind >= SIM_NKINDS)
		return;
	struct sim_point *s = &d->sp[i];
	bool was_counter = s->kind == SIM_K_VOLUME || s->kind == SIM_K_ENERGY;
	s->kind = kind;
	if (factor > 0)
		s->factor = factor;
	if ((kind == SIM_K_VOLUME || kind == SIM_K_ENERGY) && !was_counter)
		s->cval = counter_start(d, i);
	if (kind == SIM_K_RATED)
		s->cval = d->rated_w * s->factor;
	refresh_derived(d);
}

int sim_device_set_string(struct sim_device *d, size_t i, const char *str)
{
	if (i >= d->n || d->pts[i].type != PT_STRING)
		return -1;
	char *c = strdup(str);
	if (!c)
		return -1;
	free(d->sp[i].str);
	d->sp[i].str = c;
	d->sp[i].kind = SIM_K_STRING;
	refresh_derived(d);
	encode_point(d, i);
	return 0;
}

void sim_device_set_const(struct sim_device *d, size_t i, double v)
{
	if (i >= d->n)
		return;
	d->sp[i].kind = SIM_K_CONST;
	d->sp[i].cval = d->sp[i].val = v;
	refresh_derived(d);
	encode_point(d, i);
}

void sim_device_set_rated(struct sim_device *d, double watts)
{
	d->rated_w = watts;
	for (size_t i = 0; i < d->n; i++)
		if (d->sp[i].kind == SIM_K_RATED)
			d->sp[i].cval = watts * d->sp[i].factor;
}

double sim_device_rated(const struct sim_device *d)
{
	return d->rated_w;
}

void sim_device_set_nominal_flow(struct sim_device *d, double m3h)
{
	d->nominal_m3h = m3h;
}

/* Advance the totalizers from last_ms to sim_ms along the noise-free curves (midpoint
 * rule): a gateway polling every 10 s at a time scale of 144 sees 24 simulated
 * minutes between polls, and the totals must still follow the demand peaks. */
static void integrate(struct sim_device *d, int64_t sim_ms, int32_t off)
{
	int64_t from = d->last_ms, dt = sim_ms - from;
	if (dt <= 0)
		return;
	d->last_ms = sim_ms;
	if (!d->has_volume && !d->has_energy)
		return;
	int64_t steps = (dt + INTEG_STEP_MS - 1) / INTEG_STEP_MS;
	if (steps > INTEG_MAX_STEPS)
		steps = INTEG_MAX_STEPS;
	double step = (double)dt / (double)steps;
	for (int64_t k = 0; k < steps; k++) {
		int64_t mid = from + (int64_t)(((double)k + 0.5) * step);
		if (d->has_volume)
			d->volume_m3 += model_flow_m3h(d, mid, off) * step / MS_PER_H;
		if (d->has_energy)
			d->energy_kwh += model_power_w(d, mid, off) / 1000.0 * step / MS_PER_H;
	}
}

static double counter_value(const struct sim_point *s, double acc_base)
{
	double v = s->cval + acc_base * s->factor;
	if (s->modulus > 0)
		v = fmod(v, s->modulus);
	return v;
}

void sim_device_update(struct sim_device *d, int64_t sim_ms, int32_t off)
{
	bool fault = d->scenario == SIM_FAULT;
	double h = local_hour(sim_ms, off);
	double flow_now;

	integrate(d, sim_ms, off);

	/*
	 * One measurement of each quantity per update, shared by every point that shows
	 * it: a gauge's level and its air gap see the same water, an inverter's W, VA and
	 * current the same output, a meter's m3/h and L/s the same flow.
	 */
	double q = d->nominal_m3h * sim_demand(h) * scenario_flow_factor(d, sim_ms) *
		   (1.0 + 0.01 * sim_gauss(d));
	if (q < 0)
		q = 0;
	double level = rain_level_m(d, sim_ms);
	/* a dry road reads 0 with a little sensor noise, never below */
	level = level > 0 ? level + 0.003 * sim_gauss(d) : 0.002 * sim_gauss(d);
	if (level < 0)
		level = 0;
	double power = model_power_w(d, sim_ms, off);
	double pnoise = sim_gauss(d);
	if (power > 0)
		power *= 1.0 + 0.01 * pnoise;
	if (power < 0)
		power = 0;

	/* flows first: velocity and pressure follow what the meter shows */
	for (size_t i = 0; i < d->n; i++) {
		struct sim_point *s = &d->sp[i];
		if (!s->held && s->kind == SIM_K_FLOW)
			s->val = q * s->factor;
	}
	if (d->flow_idx >= 0)
		flow_now = d->sp[d->flow_idx].val / d->sp[d->flow_idx].factor;
	else
		flow_now = model_flow_m3h(d, sim_ms, off);
	double mpa = 0.31 - 0.02 * flow_now / d->nominal_m3h + 0.001 * sim_gauss(d);
	if (mpa < 0)
		mpa = 0;

	for (size_t i = 0; i < d->n; i++) {
		struct sim_point *s = &d->sp[i];
		double v;
		if (s->held || s->kind == SIM_K_FLOW)
			continue;
		switch (s->kind) {
		case SIM_K_VOLUME:
			v = counter_value(s, d->volume_m3);
			break;
		case SIM_K_ENERGY:
			v = counter_value(s, d->energy_kwh);
			break;
		case SIM_K_LEVEL:
			v = level * s->factor;
			break;
		case SIM_K_GAP:
			v = (SIM_GAUGE_HEIGHT_M - level) * s->factor;
			break;
		case SIM_K_POWER:
			v = power * s->factor;
			break;
		case SIM_K_PRESSURE:
			v = mpa * s->factor;
			break;
		case SIM_K_VELOCITY: {
			double area = M_PI * SIM_PIPE_DN_M * SIM_PIPE_DN_M / 4.0;
			v = flow_now / 3600.0 / area * s->factor;
			break;
		}
		case SIM_K_ON:
			v = !fault;
			break;
		case SIM_K_OFF:
			v = 0;
			break;
		case SIM_K_FAULTBIT:
			v = fault;
			break;
		case SIM_K_STATUS:
			v = fault ? 1 : 0;
			break;
		case SIM_K_INV_STATE:
			v = fault ? 7 : power > 0 ? 4 : 2;
			break;
		case SIM_K_STRING:
			v = NAN;
			break;
		case SIM_K_RATED:
		case SIM_K_CONST:
		default:
			v = s->cval;
			break;
		}
		s->val = v;
	}
	for (size_t i = 0; i < d->n; i++)
		if (!d->sp[i].held)
			encode_point(d, i);
}

double sim_device_value(const struct sim_device *d, size_t i)
{
	return i < d->n ? d->sp[i].val : NAN;
}

bool sim_device_held(const struct sim_device *d, size_t i)
{
	return i < d->n && d->sp[i].held;
}

/* --- serving ------------------------------------------------------------------------- */

static int range_ok(const struct sim_table *tb, uint16_t start, uint16_t count)
{
	return count > 0 && tb->n > 0 && start >= tb->lo &&
	       (uint32_t)start + count <= tb->lo + tb->n;
}

int sim_device_read_regs(struct sim_device *d, enum mb_table t, uint16_t start,
			 uint16_t count, uint16_t *out)
{
	if (t != MB_INPUT && t != MB_HOLDING)
		return 1;
	const struct sim_table *tb = &d->tab[t];
	if (!range_ok(tb, start, count))
		return 2;
	memcpy(out, tb->regs + (start - tb->lo), (size_t)count * sizeof *out);
	return 0;
}

int sim_device_read_bits(struct sim_device *d, enum mb_table t, uint16_t start,
			 uint16_t count, uint8_t *out)
{
	if (t != MB_COIL && t != MB_DISCRETE)
		return 1;
	const struct sim_table *tb = &d->tab[t];
	if (!range_ok(tb, start, count))
		return 2;
	memcpy(out, tb->bits + (start - tb->lo), count);
	return 0;
}

/* A written point is the client's from now on: read back what was written, so that
 * the totalizers (for a flow) and derived points follow it. */
static void hold_written(struct sim_device *d, enum mb_table t, uint16_t start,
			 uint16_t count)
{
	uint32_t end = (uint32_t)start + count;
	for (size_t i = 0; i < d->n; i++) {
		const struct point_def *p = &d->pts[i];
		struct sim_point *s = &d->sp[i];
		if (p->table != t || p->address >= end ||
		    (uint32_t)p->address + point_width(p) <= start)
			continue;
		s->held = true;
		if (is_bit_table(t)) {
			s->val = sim_device_point_bit(d, i);
			continue;
		}
		struct value v;
		char sbuf[POINT_STRING_MAX_REGS * 2 + 1];
		if (codec_decode_regs(p, point_regs(d, i), &v, sbuf, sizeof sbuf) < 0)
			continue;
		switch (v.kind) {
		case VAL_BOOL:   s->val = v.v.b; break;
		case VAL_INT:    s->val = (double)v.v.i; break;
		case VAL_UINT:   s->val = (double)v.v.u; break;
		case VAL_DOUBLE: s->val = v.v.d; break;
		default:         s->val = NAN; break;
		}
	}
}

int sim_device_write_regs(struct sim_device *d, uint16_t start, uint16_t count,
			  const uint16_t *in)
{
	struct sim_table *tb = &d->tab[MB_HOLDING];
	if (!range_ok(tb, start, count))
		return 2;
	memcpy(tb->regs + (start - tb->lo), in, (size_t)count * sizeof *in);
	hold_written(d, MB_HOLDING, start, count);
	return 0;
}

int sim_device_write_bits(struct sim_device *d, uint16_t start, uint16_t count,
			  const uint8_t *in)
{
	struct sim_table *tb = &d->tab[MB_COIL];
	if (!range_ok(tb, start, count))
		return 2;
	for (uint16_t k = 0; k < count; k++)
		tb->bits[start - tb->lo + k] = in[k] != 0;
	hold_written(d, MB_COIL, start, count);
	return 0;
}
