/*
 * config_rules: the alerts: section. Owns the rule kinds' key tables (threshold,
 * waterlogging, leakage, pv), their defaults, the checks across a rule's keys, the
 * references a rule makes to devices and points ("device.point") with the units it
 * needs of them, and the actions a rule writes (on_fire, on_resolve).
 *
 * It must never: decide an alert (the engine, daemon/alert*.c, does that from the
 * structs filled here), nor read a device or a file. It runs after the buses and devices
 * are read, so that every reference can be resolved.
 *
 * How to add a key to a rule kind, for example night.min_nights to leakage rules:
 *   1. a field in struct rule_cfg (daemon/config.h), its meaning and default said there;
 *   2. a row in the kind's table below (night_keys for night:, leakage_keys for a key of
 *      its own): name, type (K_NUM, K_DUR, K_INT, K_BOOL, ...: config_int.h), the field
 *      (OFF), the range (min, max and KF_ flags), KF_REQ when it must be given, HAS()
 *      when the engine must know whether it was. A value with a syntax of its own gets
 *      a K_FN row and a function that parses it (tod_fn, power_fn). The walk reads,
 *      range-checks and stores the value, and reports it when it is not one;
 *   3. its default in rule_defaults(), unless it is 0;
 *   4. a check across keys, if it has one, in the block's or kind's check function
 *      (night_check, leakage_check), where keys_seen(night_keys, seen, "min_nights")
 *      is the node a message points at;
 *   5. docs/alerts.md and docs/configuration.md, and a test in tests/unit/test_config.c.
 * A key given in a file but missing from the table is reported as unknown (or as
 * another kind's), so a forgotten row shows at once. A table holds at most KEYS_MAX
 * rows: KEY_TABLE_FITS stops the build beyond that.
 *
 * Ranges:
 *   rule for                      0..7d;  hysteresis >= 0
 *   leakage window                1h..31d;  max_loss_ratio 0 < x < 1
 *   rise.within                   1s..1d;  pv min_output_ratio 0..1, peer_ratio 0 < x <= 1
 *   stuck.for                     1m..31d;  night.baseline 0..60 nights
 *   night.allowance 0..10; night.decision 0 < x <= 100; night.min_step >= 0;
 *   night.learn 7..56 nights;  night.exclude[].flow > 0
 *   burst.for                     0..1d;  burst.days 1..28
 */
#include "config_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct enumval severities[] = {
	{ "blue", SEV_BLUE }, { "yellow", SEV_YELLOW }, { "orange", SEV_ORANGE },
	{ "red", SEV_RED }, { NULL, 0 },
};

static const struct enumval rule_kinds[] = {
	{ "threshold", RULE_THRESHOLD }, { "waterlogging", RULE_WATERLOGGING },
	{ "leakage", RULE_LEAKAGE }, { "pv", RULE_PV }, { NULL, 0 },
};

const char *severity_name(int sev)
{
	return sev == SEV_NONE ? NULL : enum_name(severities, sev);
}

int severity_from_name(const char *s)
{
	int sev;

	return s && enum_find(severities, s, &sev) == 0 ? sev : -1;
}

/*
 * The checks each kind publishes as alert/<rule>/<check> (docs/mqtt.md, alert): above,
 * below (threshold); level, rise, stuck (waterlogging); balance, night, burst (leakage);
 * fault, no_output, low_output, peer (pv). For the topic length checked at load.
 */
const char *rule_longest_check(int kind)
{
	switch (kind) {
	case RULE_THRESHOLD:
		return "above";
	case RULE_WATERLOGGING:
		return "level";
	case RULE_LEAKAGE:
		return "balance";
	case RULE_PV:
		return "low_output";
	}
	return "";
}

const char *rule_kind_name(int kind)
{
	const char *name = enum_name(rule_kinds, kind);

	return name ? name : "unknown";
}

/* ---- references to points ------------------------------------------------------------ */

static bool unit_in(const char *unit, const char *const *set)
{
	for (; *set; set++)
		if (strcmp(unit, *set) == 0)
			return true;
	return false;
}

static const char *const level_units[] = { "m", "cm", "mm", NULL };
static const char *const volume_units[] = { "m3", "m³", "L", NULL };
static const char *const flow_units[] = { "m3/h", "m³/h", "L/s", "L/min", NULL };

/*
 * Resolve "device.point" into ref. Returns the point's definition, or NULL: for a
 * SunSpec device whose points are found at run time (ref->point = -1), or after an
 * error (*bad).
 */
static const struct point_def *ref_parse(struct scope *scope, ynode_t *value, const char *key,
					 bool writable, struct point_ref *ref, bool *bad)
{
	struct loader *loader = scope->loader;
	const struct config *cfg = loader->cfg;
	const char *s = scope_expect_scalar(scope, value, key), *dot;
	const struct device_cfg *device;
	struct suggestion suggestion;
	char device_id[ID_MAX];
	long di, pi;

	*bad = true;
	memset(ref, 0, sizeof *ref);
	if (!s)
		return NULL;
	ref->loc = node_loc(scope->doc, value);
	dot = strchr(s, '.');
	if (!dot || dot == s || !dot[1]) {
		scope_error(scope, value, "%s '%s' is not a point reference (expected device.point, "
			    "e.g. booster-pump.pressure)", key, scope_quote(scope, s));
		return NULL;
	}
	/* no device has an id this long */
	if ((size_t)(dot - s) >= sizeof device_id) {
		scope_error(scope, value, "%s '%s': there is no such device", key,
			    scope_quote(scope, s));
		return NULL;
	}
	memcpy(device_id, s, (size_t)(dot - s));
	device_id[dot - s] = '\0';
	if ((di = loader_find_device(scope->loader, device_id)) < 0) {
		suggest_init(&suggestion, scope->loader, device_id);
		for (size_t i = 0; i < cfg->ndevices && suggest_more(&suggestion); i++)
			suggest_try(&suggestion, cfg->devices[i].id);
		scope_error(scope, value, "%s '%s': there is no device '%s'%s", key,
			    scope_quote(scope, s), scope_quote(scope, device_id),
			    suggest_text(scope, &suggestion, NULL));
		return NULL;
	}
	device = &cfg->devices[di];
	ref->device = (size_t)di;
	if (strlen(dot + 1) >= sizeof ref->name || !config_id_valid(dot + 1)) {
		scope_error(scope, value, "%s '%s': '%s' is not a valid point name", key,
			    scope_quote(scope, s), scope_quote(scope, dot + 1));
		return NULL;
	}
	strcpy(ref->name, dot + 1);
	if ((pi = config_find_point(device, ref->name)) < 0) {
		if (device->sunspec) {
			/* SunSpec points are named after discovery; writability is checked then */
			ref->point = -1;
			*bad = false;
			return NULL;
		}
		if (loader->device_incomplete[di])
			return NULL; /* its points could not all be read: that error suffices */
		suggest_init(&suggestion, scope->loader, ref->name);
		for (size_t i = 0; i < device->npoints && suggest_more(&suggestion); i++)
			suggest_try(&suggestion, device->points[i].name);
		scope_error(scope, value, "%s '%s': device %s has no point '%s'%s", key,
			    scope_quote(scope, s), device->id, scope_quote(scope, ref->name),
			    suggest_text(scope, &suggestion, NULL));
		return NULL;
	}
	ref->point = pi;
	if (writable && !device->points[pi].writable) {
		scope_error(scope, value, "%s '%s': point %s of device %s is not writable (it needs "
			    "writable: true, on a coil or holding register)", key,
			    scope_quote(scope, s), ref->name, device->id);
		return NULL;
	}
	*bad = false;
	return &device->points[pi];
}

/* The unit a rule needs of a point; a SunSpec point (unknown yet) passes. */
static void check_unit(struct scope *scope, ynode_t *value, const char *key,
		       const struct point_ref *ref, const struct point_def *def, bool level)
{
	const char *unit;

	if (!def)
		return;
	unit = def->unit;
	if (level ? unit_in(unit, level_units)
		  : unit_in(unit, volume_units) || unit_in(unit, flow_units))
		return;
	if (level)
		scope_error(scope, value, "%s '%s.%s' %s%s%s; a waterlogging rule needs a water level "
			    "in m, cm or mm", key, scope->loader->cfg->devices[ref->device].id,
			    ref->name, *unit ? "has unit '" : "has no unit",
			    *unit ? scope_quote(scope, unit) : "", *unit ? "'" : "");
	else
		scope_error(scope, value, "%s '%s.%s' %s%s%s; a leakage rule needs a volume (m3, m³, "
			    "L) or a flow (m3/h, m³/h, L/s, L/min)", key,
			    scope->loader->cfg->devices[ref->device].id, ref->name,
			    *unit ? "has unit '" : "has no unit",
			    *unit ? scope_quote(scope, unit) : "", *unit ? "'" : "");
}

/* One device.point, or a list of them (a zone's inflow meters). */
static struct point_ref *refs_parse(struct scope *scope, ynode_t *value, const char *key,
				    size_t *n, bool level)
{
	size_t count = value->type == YAML_SEQUENCE_NODE ? node_list_len(value) : 1;
	struct point_ref *refs;

	*n = 0;
	if (value->type == YAML_MAPPING_NODE || (value->type == YAML_SEQUENCE_NODE && count == 0) ||
	    node_is_null(value)) {
		scope_wrong_shape(scope, value, key, "a device.point, or a list of them");
		return NULL;
	}
	if (!(refs = loader_calloc(scope->loader, count, sizeof *refs)))
		return NULL;
	for (size_t i = 0; i < count; i++) {
		ynode_t *item = value->type == YAML_SEQUENCE_NODE
					    ? document_item(scope->doc, value, i)
					    : value;
		const struct point_def *def;
		bool bad;

		def = ref_parse(scope, item, key, false, &refs[*n], &bad);
		if (bad)
			continue;
		check_unit(scope, item, key, &refs[*n], def, level);
		(*n)++;
	}
	return refs;
}

/* ---- actions -------------------------------------------------------------------------- */

/* A value an action may write: a number, or true/false for 1/0. */
static void value_fn(struct scope *scope, const struct key *key, ynode_t *value, void *obj)
{
	const char *name = scope_key(scope, key->name);
	const char *s = scope_expect_scalar(scope, value, name);
	double *p = key_field(obj, key);
	bool on;

	if (!s)
		return;
	if (config_parse_bool(s, &on) == 0)
		*p = on;
	else if (config_parse_number(s, p) < 0)
		scope_error(scope, value, "%s '%s' is not a number", name, scope_quote(scope, s));
}

/* Does value fit the point it is written to? (value - offset) / scale in the raw type. */
static void check_write_value(struct scope *scope, ynode_t *node, const char *key,
			      const struct point_def *def, double value)
{
	double raw, lo, hi;

	if (def->type == PT_STRING) {
		scope_error(scope, node, "%s: point %s is a string; an action writes numbers", key,
			    def->name);
		return;
	}
	if (def->type == PT_BOOL) {
		if (value != 0 && value != 1)
			scope_error(scope, node, "%s %g cannot be written to bool point %s (expected 0 "
				    "or 1, or false or true)", key, value, def->name);
		return;
	}
	switch (def->type) {
	case PT_INT16:
		lo = INT16_MIN, hi = INT16_MAX;
		break;
	case PT_UINT16:
		lo = 0, hi = UINT16_MAX;
		break;
	case PT_INT32:
		lo = INT32_MIN, hi = INT32_MAX;
		break;
	case PT_UINT32:
		lo = 0, hi = UINT32_MAX;
		break;
	case PT_INT64:
		lo = -9.2e18, hi = 9.2e18;
		break;
	case PT_UINT64:
		lo = 0, hi = 1.8e19;
		break;
	case PT_FLOAT32:
		lo = -3.4e38, hi = 3.4e38;
		break;
	default:
		return;
	}
	raw = (value - def->offset) / def->scale;
	if (def->type != PT_FLOAT32)
		raw = round(raw);
	if (raw < lo || raw > hi) {
		double a = lo * def->scale + def->offset, b = hi * def->scale + def->offset;
		scope_error(scope, node, "%s %g does not fit point %s (%s%s: expected %g..%g)", key,
			    value, def->name, point_type_name(def->type),
			    def->scale != 1 || def->offset != 0 ? " with scale and offset" : "",
			    a < b ? a : b, a < b ? b : a);
	}
}

static const struct key fire_keys[] = {
	{ .name = "severity", .type = K_ENUM, .off = OFF(struct action_cfg, severity),
	  .names = severities },
	{ .name = "write", .type = K_NODE, .flags = KF_REQ },
	{ .name = "value", .type = K_FN, .fn = value_fn, .off = OFF(struct action_cfg, value),
	  .flags = KF_REQ },
	{ NULL },
};
KEY_TABLE_FITS(fire_keys);

static const struct key resolve_keys[] = {
	{ .name = "write", .type = K_NODE, .flags = KF_REQ },
	{ .name = "value", .type = K_FN, .fn = value_fn, .off = OFF(struct action_cfg, value),
	  .flags = KF_REQ },
	{ NULL },
};
KEY_TABLE_FITS(resolve_keys);

static void actions_parse(struct scope *scope, ynode_t *list, const char *key, bool fire,
			  struct action_cfg **out, size_t *n)
{
	struct loader *loader = scope->loader;
	const struct key *keys = fire ? fire_keys : resolve_keys;

	if (!scope_expect_list(scope, list, key))
		return;
	if (!(*out = loader_calloc(loader, node_list_len(list), sizeof **out)))
		return;
	for (size_t i = 0; i < node_list_len(list); i++) {
		ynode_t *item = document_item(scope->doc, list, i), *seen[KEYS_MAX], *target;
		struct action_cfg *action = &(*out)[*n];
		const char *what = loader_text(loader, "%s[%zu]", key, i);
		size_t errors_before = loader->nerrors;
		const struct point_def *def;
		struct scope action_scope;
		bool bad;

		if (!scope_expect_map(scope, item, what))
			continue;
		(*n)++;
		action->loc = node_loc(scope->doc, item);
		scope_nest(&action_scope, scope, loader_text(loader, "%s.", what));
		keys_walk(&action_scope, item, keys, action, seen);
		if (!(target = keys_seen(keys, seen, "write")))
			continue;
		def = ref_parse(&action_scope, target, scope_key(&action_scope, "write"), true,
				&action->target, &bad);
		if (def && loader->nerrors == errors_before)
			check_write_value(&action_scope, keys_seen(keys, seen, "value"),
					  scope_key(&action_scope, "value"), def, action->value);
	}
}

/* ---- rule kinds ----------------------------------------------------------------------- */

/* What a rule holds before its keys are read: the default of every key that is not 0. */
static void rule_defaults(struct rule_cfg *rule)
{
	*rule = (struct rule_cfg){
		.kind = -1,
		.severity = SEV_YELLOW,
		/* waterlogging */
		.spike = NAN,                   /* the lowest level given, or rise.by */
		/* leakage */
		.window_ms = DAY_MS,
		.max_loss_ratio = 0.085,        /* when outflow: is given */
		.night_baseline = 7,            /* when the nightly verdict is asked for */
		.night_ratio = 0.1,
		.night_allowance = 2,           /* the change detector */
		.night_decision = 5,
		.night_learn = 14,
		.night_pump_steps = true,
		.burst_ratio = 0.5,
		.burst_for_ms = HOUR_MS,
		.burst_days = 7,
		/* pv */
		.min_output_ratio = 0.1,
		.peer_ratio = 0.5,
	};
	for (int grade = 0; grade < 5; grade++)
		rule->levels[grade] = NAN;  /* a grade without a level */
}

static void tod_fn(struct scope *scope, const struct key *key, ynode_t *value, void *obj)
{
	const char *name = scope_key(scope, key->name);
	const char *s = scope_expect_scalar(scope, value, name);

	if (s && config_parse_time_of_day(s, key_field(obj, key)) < 0)
		scope_error(scope, value, "%s '%s' is not a time of day (expected hours:minutes, e.g. "
			    "\"02:00\")", name, scope_quote(scope, s));
}

static void power_fn(struct scope *scope, const struct key *key, ynode_t *value, void *obj)
{
	const char *name = scope_key(scope, key->name);
	const char *s = scope_expect_scalar(scope, value, name);
	double watts;

	if (!s)
		return;
	if (config_parse_power(s, &watts) < 0)
		scope_error(scope, value, "%s '%s' is not a power (expected a number and a unit: "
			    "800W, 30kW, 1.2MW)", name, scope_quote(scope, s));
	else if (watts <= 0)
		scope_error(scope, value, "%s must be more than 0", name);
	else
		*(double *)key_field(obj, key) = watts;
}

#define RULE_COMMON_KEYS                                                                   \
	{ .name = "id", .type = K_ID, .off = OFF(struct rule_cfg, id), .flags = KF_REQ },  \
	{ .name = "kind", .type = K_NODE, .flags = KF_REQ },                               \
	{ .name = "name", .type = K_STR, .off = OFF(struct rule_cfg, name) },              \
	{ .name = "description", .type = K_TEXT },                                         \
	{ .name = "severity", .type = K_ENUM, .off = OFF(struct rule_cfg, severity),       \
	  .names = severities },                                                           \
	{ .name = "for", .type = K_DUR, .off = OFF(struct rule_cfg, for_ms), .min = 0,     \
	  .max = 7.0 * DAY_MS },                                                           \
	{ .name = "hysteresis", .type = K_NUM, .off = OFF(struct rule_cfg, hysteresis),    \
	  .min = 0, .flags = KF_MIN },                                                     \
	{ .name = "on_fire", .type = K_NODE },                                             \
	{ .name = "on_resolve", .type = K_NODE }

static const struct key common_rule_keys[] = { RULE_COMMON_KEYS, { NULL } };
KEY_TABLE_FITS(common_rule_keys);

static const struct key threshold_keys[] = {
	RULE_COMMON_KEYS,
	{ .name = "point", .type = K_NODE, .flags = KF_REQ },
	{ .name = "above", .type = K_NUM, .off = OFF(struct rule_cfg, above),
	  .has = HAS(struct rule_cfg, has_above) },
	{ .name = "below", .type = K_NUM, .off = OFF(struct rule_cfg, below),
	  .has = HAS(struct rule_cfg, has_below) },
	{ NULL },
};
KEY_TABLE_FITS(threshold_keys);

static const struct key waterlogging_keys[] = {
	RULE_COMMON_KEYS,
	{ .name = "point", .type = K_NODE, .flags = KF_REQ },
	{ .name = "levels", .type = K_NODE },
	{ .name = "rise", .type = K_NODE },
	{ .name = "spike", .type = K_NUM, .off = OFF(struct rule_cfg, spike), .min = 0,
	  .flags = KF_MIN },
	{ .name = "stuck", .type = K_NODE },
	{ NULL },
};
KEY_TABLE_FITS(waterlogging_keys);

static const struct key leakage_keys[] = {
	RULE_COMMON_KEYS,
	{ .name = "inflow", .type = K_NODE, .flags = KF_REQ },
	{ .name = "outflow", .type = K_NODE },
	{ .name = "window", .type = K_DUR, .off = OFF(struct rule_cfg, window_ms),
	  .min = HOUR_MS, .max = 31.0 * DAY_MS },
	{ .name = "max_loss_ratio", .type = K_NUM, .off = OFF(struct rule_cfg, max_loss_ratio),
	  .min = 0, .max = 1, .flags = KF_XMIN | KF_XMAX },
	{ .name = "night", .type = K_NODE },
	{ .name = "burst", .type = K_NODE },
	{ .name = "rollover", .type = K_NUM, .off = OFF(struct rule_cfg, rollover), .min = 0,
	  .flags = KF_XMIN },
	{ NULL },
};
KEY_TABLE_FITS(leakage_keys);

static const struct key pv_keys[] = {
	RULE_COMMON_KEYS,
	{ .name = "inverter", .type = K_NODE, .flags = KF_REQ },
	{ .name = "rated_power", .type = K_FN, .fn = power_fn,
	  .off = OFF(struct rule_cfg, rated_power_w) },
	{ .name = "daylight", .type = K_NODE },
	{ .name = "min_output_ratio", .type = K_NUM,
	  .off = OFF(struct rule_cfg, min_output_ratio), .min = 0, .max = 1,
	  .flags = KF_MIN | KF_MAX },
	{ .name = "power", .type = K_NODE },
	{ .name = "fault", .type = K_NODE },
	{ .name = "peer_ratio", .type = K_NUM, .off = OFF(struct rule_cfg, peer_ratio), .min = 0,
	  .max = 1, .flags = KF_XMIN | KF_MAX },
	{ NULL },
};
KEY_TABLE_FITS(pv_keys);

static const struct key levels_keys[] = {
	{ .name = "blue", .type = K_NUM, .off = OFF(struct rule_cfg, levels[SEV_BLUE]) },
	{ .name = "yellow", .type = K_NUM, .off = OFF(struct rule_cfg, levels[SEV_YELLOW]) },
	{ .name = "orange", .type = K_NUM, .off = OFF(struct rule_cfg, levels[SEV_ORANGE]) },
	{ .name = "red", .type = K_NUM, .off = OFF(struct rule_cfg, levels[SEV_RED]) },
	{ NULL },
};
KEY_TABLE_FITS(levels_keys);

static const struct key rise_keys[] = {
	{ .name = "by", .type = K_NUM, .off = OFF(struct rule_cfg, rise_by), .min = 0,
	  .flags = KF_REQ | KF_XMIN },
	{ .name = "within", .type = K_DUR, .off = OFF(struct rule_cfg, rise_within_ms),
	  .min = SEC_MS, .max = DAY_MS, .flags = KF_REQ },
	{ NULL },
};
KEY_TABLE_FITS(rise_keys);

static const struct key night_keys[] = {
	{ .name = "from", .type = K_FN, .fn = tod_fn, .off = OFF(struct rule_cfg, night_from_s),
	  .flags = KF_REQ },
	{ .name = "to", .type = K_FN, .fn = tod_fn, .off = OFF(struct rule_cfg, night_to_s),
	  .flags = KF_REQ },
	{ .name = "max_flow", .type = K_NUM, .off = OFF(struct rule_cfg, night_max_flow),
	  .min = 0, .flags = KF_MIN, .has = HAS(struct rule_cfg, has_night_max_flow) },
	{ .name = "baseline", .type = K_INT, .off = OFF(struct rule_cfg, night_baseline),
	  .min = 0, .max = 60 },
	{ .name = "ratio", .type = K_NUM, .off = OFF(struct rule_cfg, night_ratio), .min = 0,
	  .flags = KF_MIN },
	{ .name = "by", .type = K_NUM, .off = OFF(struct rule_cfg, night_by), .min = 0,
	  .flags = KF_MIN },
	{ .name = "weekly", .type = K_BOOL, .off = OFF(struct rule_cfg, night_weekly) },
	{ .name = "allowance", .type = K_NUM, .off = OFF(struct rule_cfg, night_allowance),
	  .min = 0, .max = 10, .flags = KF_MIN | KF_MAX },
	{ .name = "decision", .type = K_NUM, .off = OFF(struct rule_cfg, night_decision),
	  .min = 0, .max = 100, .flags = KF_XMIN | KF_MAX },
	{ .name = "min_step", .type = K_NUM, .off = OFF(struct rule_cfg, night_min_step),
	  .min = 0, .flags = KF_MIN },
	{ .name = "learn", .type = K_INT, .off = OFF(struct rule_cfg, night_learn), .min = 7,
	  .max = 56 },
	{ .name = "pump_steps", .type = K_BOOL, .off = OFF(struct rule_cfg, night_pump_steps) },
	{ .name = "exclude", .type = K_NODE },
	{ NULL },
};
KEY_TABLE_FITS(night_keys);

static const struct key exclude_keys[] = {
	{ .name = "run", .type = K_NODE, .flags = KF_REQ },
	{ .name = "flow", .type = K_NUM, .off = OFF(struct night_exclude, flow), .min = 0,
	  .flags = KF_REQ | KF_XMIN },
	{ NULL },
};
KEY_TABLE_FITS(exclude_keys);

static const struct key burst_keys[] = {
	{ .name = "ratio", .type = K_NUM, .off = OFF(struct rule_cfg, burst_ratio), .min = 0,
	  .flags = KF_MIN },
	{ .name = "by", .type = K_NUM, .off = OFF(struct rule_cfg, burst_by), .min = 0,
	  .flags = KF_MIN },
	{ .name = "for", .type = K_DUR, .off = OFF(struct rule_cfg, burst_for_ms), .min = 0,
	  .max = DAY_MS },
	{ .name = "days", .type = K_INT, .off = OFF(struct rule_cfg, burst_days), .min = 1,
	  .max = 28 },
	{ NULL },
};
KEY_TABLE_FITS(burst_keys);

static const struct key stuck_keys[] = {
	{ .name = "for", .type = K_DUR, .off = OFF(struct rule_cfg, stuck_for_ms),
	  .min = MIN_MS, .max = 31.0 * DAY_MS, .flags = KF_REQ },
	{ .name = "tolerance", .type = K_NUM, .off = OFF(struct rule_cfg, stuck_tolerance),
	  .min = 0, .flags = KF_MIN },
	{ NULL },
};
KEY_TABLE_FITS(stuck_keys);

static const struct key daylight_keys[] = {
	{ .name = "from", .type = K_FN, .fn = tod_fn,
	  .off = OFF(struct rule_cfg, daylight_from_s), .flags = KF_REQ },
	{ .name = "to", .type = K_FN, .fn = tod_fn, .off = OFF(struct rule_cfg, daylight_to_s),
	  .flags = KF_REQ },
	{ NULL },
};
KEY_TABLE_FITS(daylight_keys);

/*
 * A block of a rule (levels:, night:, ...) given at value: walk it against keys into
 * rule, its keys named "NAME." in messages, and return true; false when it is not a
 * mapping (which is said). seen[] as for keys_walk.
 */
static bool rule_block(struct scope *scope, ynode_t *value, const char *name,
		       const struct key *keys, struct rule_cfg *rule, ynode_t **seen)
{
	struct scope block;

	if (!scope_expect_map(scope, value, name))
		return false;
	scope_nest(&block, scope, loader_text(scope->loader, "%s.", name));
	keys_walk(&block, value, keys, rule, seen);
	return true;
}

typedef void rule_check_fn(struct scope *scope, ynode_t *map, ynode_t **seen,
			   struct rule_cfg *rule);
static rule_check_fn threshold_check, waterlogging_check, leakage_check, pv_check;

/* One row per rule kind, indexed by enum rule_kind: its keys, and what is checked after
 * they are walked (references, blocks, keys that go together). */
static const struct rule_spec {
	const struct key *keys;
	rule_check_fn *check;
} rule_specs[] = {
	[RULE_THRESHOLD] = { threshold_keys, threshold_check },
	[RULE_WATERLOGGING] = { waterlogging_keys, waterlogging_check },
	[RULE_LEAKAGE] = { leakage_keys, leakage_check },
	[RULE_PV] = { pv_keys, pv_check },
};

#define NKINDS (sizeof rule_specs / sizeof rule_specs[0])

/* A key of another kind of rule: say whose it is rather than "unknown". */
static bool rule_foreign(struct scope *scope, ynode_t *key)
{
	const char *kinds = "";

	for (size_t i = 0; i < NKINDS; i++) {
		if ((int)i == scope->kind)
			continue;
		for (const struct key *row = rule_specs[i].keys; row->name; row++)
			if (strcmp(row->name, node_text(key)) == 0)
				kinds = loader_text(scope->loader, "%s%s%s", kinds,
						    *kinds ? " and " : "", rule_kinds[i].name);
	}
	if (!*kinds)
		return false;
	if (scope->kind < 0)
		return true; /* the kind is wrong or missing: that error says enough */
	scope_error(scope, key, "key '%s' is not for %s rules (it belongs to %s rules)",
		    scope_quote(scope, node_text(key)), rule_kinds[scope->kind].name, kinds);
	return true;
}

static void threshold_check(struct scope *scope, ynode_t *map, ynode_t **seen,
			    struct rule_cfg *rule)
{
	ynode_t *value;
	bool bad;

	if ((value = keys_seen(threshold_keys, seen, "point"))) {
		ref_parse(scope, value, "point", false, &rule->point, &bad);
		rule->has_point = !bad;
	}
	if (!keys_seen(threshold_keys, seen, "above") && !keys_seen(threshold_keys, seen, "below"))
		scope_error(scope, map, "a threshold rule needs above:, below: or both");
	else if (rule->has_above && rule->has_below && rule->above <= rule->below)
		scope_error(scope, keys_seen(threshold_keys, seen, "above"), "above (%g) must be more "
			    "than below (%g), or the rule would always fire", rule->above,
			    rule->below);
}

/* levels: each given grade above the one before it */
static void levels_check(struct scope *scope, ynode_t *map, ynode_t **seen,
			 const struct rule_cfg *rule)
{
	int last = 0;

	for (int grade = SEV_BLUE; grade <= SEV_RED; grade++) {
		ynode_t *value = keys_seen(levels_keys, seen, severity_name(grade));
		if (!value || isnan(rule->levels[grade]))
			continue;
		if (last && rule->levels[grade] <= rule->levels[last])
			scope_error(scope, value, "levels.%s %g must be higher than levels.%s %g (the "
				    "grades rise: blue, yellow, orange, red)", severity_name(grade),
				    rule->levels[grade], severity_name(last), rule->levels[last]);
		last = grade;
	}
	if (!node_map_len(map))
		scope_error(scope, map, "levels needs at least one of blue, yellow, orange, red");
}

static void waterlogging_check(struct scope *scope, ynode_t *map, ynode_t **seen,
			       struct rule_cfg *rule)
{
	ynode_t *value, *block_seen[KEYS_MAX];
	const struct point_def *def;
	bool bad;

	if ((value = keys_seen(waterlogging_keys, seen, "point"))) {
		def = ref_parse(scope, value, "point", false, &rule->point, &bad);
		rule->has_point = !bad;
		if (!bad)
			check_unit(scope, value, "point", &rule->point, def, true);
	}
	if ((value = keys_seen(waterlogging_keys, seen, "levels")) &&
	    rule_block(scope, value, "levels", levels_keys, rule, block_seen))
		levels_check(scope, value, block_seen, rule);
	if ((value = keys_seen(waterlogging_keys, seen, "rise")) &&
	    rule_block(scope, value, "rise", rise_keys, rule, block_seen))
		rule->has_rise = true;
	if ((value = keys_seen(waterlogging_keys, seen, "stuck")) &&
	    rule_block(scope, value, "stuck", stuck_keys, rule, block_seen))
		rule->has_stuck = true;
	if (!keys_seen(waterlogging_keys, seen, "levels") &&
	    !keys_seen(waterlogging_keys, seen, "rise"))
		scope_error(scope, map, "a waterlogging rule needs levels: (or rise:)");
}

/*
 * night.exclude: pumps whose run signal the site has, each { run: device.point, flow: m3/h },
 * one mapping or a list of them. The run point may be of any unit: 1 or true is running.
 */
static void exclude_parse(struct scope *scope, ynode_t *value, struct rule_cfg *rule)
{
	struct loader *loader = scope->loader;
	bool list = value->type == YAML_SEQUENCE_NODE;
	size_t count = list ? node_list_len(value) : 1;

	if (!list && !scope_expect_map(scope, value, "night.exclude"))
		return;
	if (!(rule->night_exclude = loader_calloc(loader, count, sizeof *rule->night_exclude)))
		return;
	for (size_t i = 0; i < count; i++) {
		ynode_t *item = list ? document_item(scope->doc, value, i) : value, *seen[KEYS_MAX];
		struct night_exclude *x = &rule->night_exclude[rule->nnight_exclude];
		const char *what = list ? loader_text(loader, "night.exclude[%zu]", i)
					: "night.exclude";
		struct scope item_scope;
		ynode_t *run;
		bool bad;

		if (!scope_expect_map(scope, item, what))
			continue;
		scope_nest(&item_scope, scope, loader_text(loader, "%s.", what));
		keys_walk(&item_scope, item, exclude_keys, x, seen);
		if (!(run = keys_seen(exclude_keys, seen, "run")))
			continue;
		ref_parse(&item_scope, run, scope_key(&item_scope, "run"), false, &x->run, &bad);
		if (!bad && x->run.point < 0)
			scope_error(&item_scope, run, "%s: a SunSpec point cannot be a pump's run "
				    "signal", scope_key(&item_scope, "run"));
		else if (!bad)
			rule->nnight_exclude++;
	}
}

/* night: the zone's night flow, as a change detector, or (naming baseline, ratio, by,
 * weekly or max_flow) a verdict each night against max_flow and/or past nights */
static void night_check(struct scope *scope, ynode_t *map, ynode_t **seen,
			struct rule_cfg *rule)
{
	static const char *const verdict_keys[] = { "baseline", "ratio", "by", "weekly",
						    "max_flow" };
	ynode_t *exclude = keys_seen(night_keys, seen, "exclude");

	if (rule->night_from_s >= 0 && rule->night_from_s == rule->night_to_s)
		scope_error(scope, keys_seen(night_keys, seen, "to"), "night.to is the same time as "
			    "night.from: the window is empty");
	for (size_t i = 0; i < sizeof verdict_keys / sizeof *verdict_keys; i++)
		if (keys_seen(night_keys, seen, verdict_keys[i]))
			rule->night_legacy = true;
	if (!rule->night_legacy) {
		if (exclude)
			exclude_parse(scope, exclude, rule);
		return;
	}
	if (!rule->has_night_max_flow && rule->night_baseline == 0)
		scope_error(scope, map, "night needs max_flow:, a baseline: of at least 1 night, or "
			    "both");
	/* the keys of the change detector mean nothing to the nightly verdict */
	for (const struct key *row = night_keys; row->name; row++) {
		ynode_t *v = keys_seen(night_keys, seen, row->name);
		if (v && (!strcmp(row->name, "allowance") || !strcmp(row->name, "decision") ||
			  !strcmp(row->name, "min_step") || !strcmp(row->name, "learn") ||
			  !strcmp(row->name, "pump_steps") || !strcmp(row->name, "exclude")))
			scope_error(scope, v, "night.%s belongs to the change detector, and this "
				    "night check names %s, which asks for a verdict each night "
				    "instead: drop one or the other", row->name,
				    keys_seen(night_keys, seen, "baseline") ? "baseline"
				    : keys_seen(night_keys, seen, "ratio") ? "ratio"
				    : keys_seen(night_keys, seen, "by") ? "by"
				    : keys_seen(night_keys, seen, "weekly") ? "weekly" : "max_flow");
	}
}

static void leakage_check(struct scope *scope, ynode_t *map, ynode_t **seen,
			  struct rule_cfg *rule)
{
	ynode_t *value, *block_seen[KEYS_MAX];

	(void)map;
	if ((value = keys_seen(leakage_keys, seen, "inflow")))
		rule->inflow = refs_parse(scope, value, "inflow", &rule->ninflow, false);
	if ((value = keys_seen(leakage_keys, seen, "outflow")))
		rule->outflow = refs_parse(scope, value, "outflow", &rule->noutflow, false);
	if ((value = keys_seen(leakage_keys, seen, "max_loss_ratio")) &&
	    !keys_seen(leakage_keys, seen, "outflow"))
		scope_error(scope, value, "max_loss_ratio compares inflow with outflow: give "
			    "outflow: too");
	if (keys_seen(leakage_keys, seen, "outflow"))
		rule->has_max_loss_ratio = true; /* the plan's 8.5 % unless given */
	if ((value = keys_seen(leakage_keys, seen, "night"))) {
		/* -1 until parsed: a from or to that does not parse is not compared */
		rule->night_from_s = rule->night_to_s = -1;
		if (rule_block(scope, value, "night", night_keys, rule, block_seen)) {
			rule->has_night = true;
			night_check(scope, value, block_seen, rule);
		}
	}
	if ((value = keys_seen(leakage_keys, seen, "burst")) &&
	    rule_block(scope, value, "burst", burst_keys, rule, block_seen))
		rule->has_burst = true;
}

/* inverter: a device id; -1 when it is not one. */
static long pv_inverter(struct scope *scope, ynode_t *value)
{
	const struct config *cfg = scope->loader->cfg;
	struct suggestion suggestion;
	const char *s;
	long di;

	if (!(s = scope_expect_scalar(scope, value, "inverter")))
		return -1;
	if ((di = loader_find_device(scope->loader, s)) >= 0)
		return di;
	suggest_init(&suggestion, scope->loader, s);
	for (size_t i = 0; i < cfg->ndevices && suggest_more(&suggestion); i++)
		suggest_try(&suggestion, cfg->devices[i].id);
	scope_error(scope, value, "inverter '%s': there is no device '%s'%s", scope_quote(scope, s),
		    scope_quote(scope, s), suggest_text(scope, &suggestion, NULL));
	return -1;
}

static void pv_check(struct scope *scope, ynode_t *map, ynode_t **seen,
		     struct rule_cfg *rule)
{
	const struct config *cfg = scope->loader->cfg;
	ynode_t *value, *block_seen[KEYS_MAX];
	long di;

	if ((value = keys_seen(pv_keys, seen, "inverter")) && (di = pv_inverter(scope, value)) >= 0) {
		rule->has_inverter = true;
		rule->inverter = (size_t)di;
	}
	/* power: (a number in W or kW), fault: (non-zero when faulted), both of the inverter */
	for (int is_fault = 0; is_fault < 2; is_fault++) {
		const char *key = is_fault ? "fault" : "power";
		struct point_ref *ref = is_fault ? &rule->fault : &rule->power;
		const struct point_def *def;
		bool bad;

		if (!(value = keys_seen(pv_keys, seen, key)))
			continue;
		def = ref_parse(scope, value, key, false, ref, &bad);
		if (bad)
			continue;
		if (rule->has_inverter && ref->device != rule->inverter)
			scope_error(scope, value, "%s '%s.%s' is not a point of the inverter %s", key,
				    cfg->devices[ref->device].id, ref->name,
				    cfg->devices[rule->inverter].id);
		else if (!is_fault && def && strcmp(def->unit, "W") != 0 &&
			 strcmp(def->unit, "kW") != 0)
			scope_error(scope, value, "power '%s.%s' %s%s%s; a pv rule needs a power in W "
				    "or kW", cfg->devices[ref->device].id, ref->name,
				    *def->unit ? "has unit '" : "has no unit",
				    *def->unit ? scope_quote(scope, def->unit) : "",
				    *def->unit ? "'" : "");
		else if (is_fault)
			rule->has_fault = true;
		else
			rule->has_power = true;
	}
	if (rule->has_inverter && !cfg->devices[rule->inverter].sunspec &&
	    !keys_seen(pv_keys, seen, "power"))
		scope_error(scope, map, "inverter %s is not a SunSpec device: give power: (its AC "
			    "power point)", cfg->devices[rule->inverter].id);
	if ((value = keys_seen(pv_keys, seen, "daylight"))) {
		/* -1 until parsed: a from or to that does not parse is not compared */
		rule->daylight_from_s = rule->daylight_to_s = -1;
		if (rule_block(scope, value, "daylight", daylight_keys, rule, block_seen)) {
			rule->has_daylight = true;
			if (rule->daylight_from_s >= 0 && rule->daylight_to_s >= 0 &&
			    rule->daylight_from_s >= rule->daylight_to_s)
				scope_error(scope, keys_seen(daylight_keys, block_seen, "to"),
					    "daylight.to must be later than daylight.from");
		}
	}
}

/* ---- a rule --------------------------------------------------------------------------- */

/* kind: decides which keys belong, so it is read before the walk. */
static void rule_kind(struct scope *scope, ynode_t *map, struct rule_cfg *rule)
{
	struct suggestion suggestion;
	ynode_t *value;
	const char *s;
	int kind;

	if (!(value = document_peek(scope->doc, map, "kind")) ||
	    !(s = scope_expect_scalar(scope, value, "kind")))
		return;
	if (enum_find(rule_kinds, s, &kind) == 0) {
		rule->kind = scope->kind = kind;
		return;
	}
	suggest_init(&suggestion, scope->loader, s);
	for (size_t i = 0; i < NKINDS; i++)
		suggest_try(&suggestion, rule_kinds[i].name);
	scope_error(scope, value, "kind '%s' is not one of %s%s", scope_quote(scope, s),
		    enum_list(scope, rule_kinds), suggest_text(scope, &suggestion, NULL));
}

static const char *rule_id(const void *items, size_t i)
{
	return ((const struct rule_cfg *)items)[i].id;
}

void parse_rule(struct scope *root, ynode_t *map, size_t index)
{
	struct loader *loader = root->loader;
	struct config *cfg = loader->cfg;
	size_t ri = cfg->nrules;
	struct rule_cfg *rule = &cfg->rules[ri];
	const struct key *keys = common_rule_keys;
	ynode_t *seen[KEYS_MAX], *value;
	struct scope scope;

	if (!scope_open_item(&scope, root, map, "alerts", index))
		return;
	loader->rule_ids.name = rule_id;
	cfg->nrules++;
	rule_defaults(rule);
	rule->loc = node_loc(root->doc, map);
	scope.foreign = rule_foreign;
	scope.kind = -1;
	rule_kind(&scope, map, rule);
	if (rule->kind >= 0)
		keys = rule_specs[rule->kind].keys;
	keys_walk(&scope, map, keys, rule, seen);
	if ((value = keys_seen(keys, seen, "id")) && rule->id[0])
		scope_unique_id(&scope, value, "rule", rule->id, cfg->rules, ri, loader->rule_id_locs,
				&loader->rule_ids);
	if (rule->kind >= 0)
		rule_specs[rule->kind].check(&scope, map, seen, rule);
	if ((value = keys_seen(keys, seen, "on_fire")))
		actions_parse(&scope, value, "on_fire", true, &rule->on_fire, &rule->non_fire);
	if ((value = keys_seen(keys, seen, "on_resolve")))
		actions_parse(&scope, value, "on_resolve", false, &rule->on_resolve,
			      &rule->non_resolve);
}
