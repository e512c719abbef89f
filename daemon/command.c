/*
 * command: owns what a command from the platform means (command.h): which topics carry
 * one in each format, how it is read, every reason it is refused, the reply's bytes, and
 * the memory of commands already answered. It must never carry a command out, read a
 * clock or do I/O: the core hands the writes to the poller that owns the device, and
 * publishes the reply when the write's result comes back.
 *
 * A write is checked as the poller will encode it (drivers/mbwrite.h), so that what is
 * accepted here is what can go on the wire; refused here, it never reaches a poller.
 */
#include "command.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "jread.h"
#include "mbwrite.h"
#include "payload_sparkplug.h"
#include "payload_thingsboard.h"
#include "spb.h"

#define NODE_REBIRTH "Node Control/Rebirth"

static void refuse(struct command *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void refuse(struct command *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->reason, sizeof c->reason, fmt, ap);
	va_end(ap);
	c->what = COMMAND_REFUSED;
	c->nwrites = 0;
}

/* FNV-1a, over a tag and the bytes that make a command the same command */
static uint64_t hash_add(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;

	for (size_t i = 0; i < n; i++) {
		h ^= s[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static uint64_t key_of(char tag, const char *a, const void *b, size_t blen)
{
	uint64_t h = 0xcbf29ce484222325ull;

	h = hash_add(h, &tag, 1);
	h = hash_add(h, a, strlen(a) + 1);
	h = hash_add(h, b, blen);
	return h ? h : 1;   /* 0 means "no key" */
}

/* The shortest text of a number, for the reasons. */
static const char *num(char *buf, size_t len, double v)
{
	struct jbuf b;

	jb_init(&b);
	jb_double(&b, v);
	snprintf(buf, len, "%s", b.oom ? "?" : jb_cstr_get(&b));
	jb_free(&b);
	return buf;
}

static void copy(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

/* ---- the checks every format shares -------------------------------------------------- */

/* Too old (or as far in the future) by the command's own time, when it has one. */
static bool check_age(const struct command_env *env, struct command *c)
{
	int64_t max = env->cfg->uplink.command_max_age_ms, age;

	if (c->ts_ms < 0)
		return true;
	age = env->now_ms - c->ts_ms;
	if (age > max) {
		refuse(c, "the command is %lld s old (uplink.command_max_age is %lld s)",
		       (long long)(age / 1000), (long long)(max / 1000));
		return false;
	}
	if (-age > max) {
		refuse(c, "the command's time is %lld s ahead of the gateway's clock "
		       "(uplink.command_max_age is %lld s)", (long long)(-age / 1000),
		       (long long)(max / 1000));
		return false;
	}
	return true;
}

static bool find_device(const struct command_env *env, struct command *c, const char *id,
			size_t *di)
{
	long d = config_find_device(env->cfg, id);

	if (d < 0) {
		refuse(c, "no device '%.*s'", ID_MAX, id);
		return false;
	}
	*di = (size_t)d;
	return true;
}

/*
 * Whether value may be written to point pi of device di, as the poller would encode it,
 * within the point's min and max. what names the value in a reason ("value",
 * "metric 2").
 */
static bool check_value(struct command *c, const struct device_cfg *d, size_t pi, double value,
			const char *what)
{
	static const struct mbwrite_rules rules = { .readonly_errno = EROFS, .value_first = false };
	const struct point_def *p = &d->points[pi];
	struct mbwrite w;
	char v[40], lim[40];

	if (!p->writable || p->table == MB_INPUT || p->table == MB_DISCRETE) {
		refuse(c, "point %s.%s is not writable", d->id, p->name);
		return false;
	}
	if (p->type == PT_STRING) {
		refuse(c, "point %s.%s is a string: only numbers and bools are written", d->id,
		       p->name);
		return false;
	}
	if (p->type == PT_BOOL && value != 0.0 && value != 1.0) {
		refuse(c, "%s %s cannot be written to bool point %s.%s (expected true or false)",
		       what, num(v, sizeof v, value), d->id, p->name);
		return false;
	}
	if (p->type != PT_BOOL && codec_is_exact(p) && value != trunc(value)) {
		refuse(c, "%s %s is not a whole number (%s.%s is %s)", what, num(v, sizeof v, value),
		       d->id, p->name, point_type_name(p->type));
		return false;
	}
	if (p->has_min && value < p->min) {
		refuse(c, "%s %s is below the min of %s.%s (%s)", what, num(v, sizeof v, value),
		       d->id, p->name, num(lim, sizeof lim, p->min));
		return false;
	}
	if (p->has_max && value > p->max) {
		refuse(c, "%s %s is above the max of %s.%s (%s)", what, num(v, sizeof v, value),
		       d->id, p->name, num(lim, sizeof lim, p->max));
		return false;
	}
	if (mbwrite_prepare(p, value, &rules, &w) < 0) {
		refuse(c, "%s %s does not fit point %s.%s (%s)", what, num(v, sizeof v, value), d->id,
		       p->name, point_type_name(p->type));
		return false;
	}
	return true;
}

static bool check_online(const struct command_env *env, struct command *c, size_t di)
{
	if (env->online && env->online(env->ctx, di))
		return true;
	refuse(c, "device %s is offline", env->cfg->devices[di].id);
	return false;
}

/* ---- JSON (sluice, thingsboard) ------------------------------------------------------ */

/* A JSON value as a write's value: a number, or true/false for a bool point. */
static bool json_value(struct command *c, const struct device_cfg *d, size_t pi,
		       const struct jval *v, double *out)
{
	const struct point_def *p = &d->points[pi];

	if (!v) {
		refuse(c, "no \"value\"");
		return false;
	}
	if (v->type == J_BOOL && p->type == PT_BOOL) {
		*out = v->b ? 1.0 : 0.0;
		return true;
	}
	if (v->type == J_NUM) {
		*out = v->num;
		return true;
	}
	if (p->type == PT_BOOL)
		refuse(c, "value must be true or false (%s.%s is a bool)", d->id, p->name);
	else
		refuse(c, "value must be a number (%s.%s is %s)", d->id, p->name,
		       point_type_name(p->type));
	return false;
}

/* A member that must be a string: the string, or NULL after refusing. */
static const char *json_string(struct command *c, const struct jval *obj, const char *key,
			       size_t max)
{
	const struct jval *v = jread_get(obj, key);

	if (!v) {
		refuse(c, "no \"%s\"", key);
		return NULL;
	}
	if (v->type != J_STR || strlen(v->str) != v->len) {
		refuse(c, "\"%s\" must be a string", key);
		return NULL;
	}
	if (v->len >= max) {
		refuse(c, "\"%s\" is longer than %zu bytes", key, max - 1);
		return NULL;
	}
	return v->str;
}

/* The id of a command: a string, or a whole number (kept as its digits). */
static bool json_id(struct command *c, const struct jval *v)
{
	if (!v) {
		refuse(c, "no \"id\"");
		return false;
	}
	if (v->type == J_NUM && v->num == trunc(v->num) && fabs(v->num) < 9.2e18 &&
	    strlen(v->str) < sizeof c->id && !strpbrk(v->str, ".eE")) {
		copy(c->id, sizeof c->id, v->str);
		c->id_is_number = true;
		return true;
	}
	if (v->type == J_STR && strlen(v->str) == v->len && v->len < sizeof c->id) {
		copy(c->id, sizeof c->id, v->str);
		return true;
	}
	refuse(c, "\"id\" must be a string or a whole number, of at most %zu bytes",
	       sizeof c->id - 1);
	return false;
}

/* One write of device, point, value (a JSON value), all checked. */
static void json_write(const struct command_env *env, struct command *c, const struct jval *value)
{
	const struct device_cfg *d;
	size_t di;
	long pi;
	double v;

	if (!find_device(env, c, c->device, &di))
		return;
	d = &env->cfg->devices[di];
	if ((pi = config_find_point(d, c->point)) < 0) {
		refuse(c, "device %s has no point '%s'", d->id, c->point);
		return;
	}
	if (!json_value(c, d, (size_t)pi, value, &v) || !check_value(c, d, (size_t)pi, v, "value") ||
	    !check_online(env, c, di))
		return;
	c->writes[0] = (struct command_write){ .device = di, .point = (size_t)pi, .value = v };
	c->nwrites = 1;
	c->what = COMMAND_WRITE;
}

static struct jval *json_parse(struct command *c, const void *payload, size_t len)
{
	char err[120];
	struct jval *v = jread_parse(payload, len, err, sizeof err);

	if (!v)
		refuse(c, "malformed JSON: %s", err);
	else if (v->type != J_OBJ) {
		refuse(c, "malformed: the command must be a JSON object");
		jread_free(v);
		v = NULL;
	}
	return v;
}

/* {"id":"…","device":"…","point":"…","value":…[,"ts":ms]} */
static void sluice_write(const struct command_env *env, const void *payload, size_t len,
			 struct command *c)
{
	struct jval *v = json_parse(c, payload, len);
	const struct jval *ts;
	const char *s;

	if (!v)
		return;
	if (!json_id(c, jread_get(v, "id")))
		goto done;
	c->key = key_of('s', c->id, NULL, 0);
	if (!(s = json_string(c, v, "device", sizeof c->device)))
		goto done;
	copy(c->device, sizeof c->device, s);
	if (!(s = json_string(c, v, "point", sizeof c->point)))
		goto done;
	copy(c->point, sizeof c->point, s);
	if ((ts = jread_get(v, "ts"))) {
		if (ts->type != J_NUM || ts->num < 0 || ts->num > 9.2e18) {
			refuse(c, "\"ts\" must be a time in ms since the epoch");
			goto done;
		}
		c->ts_ms = (int64_t)ts->num;
	}
	if (!env->cfg->uplink.commands) {
		refuse(c, "commands are off on this gateway (uplink.commands)");
		goto done;
	}
	if (check_age(env, c))
		json_write(env, c, jread_get(v, "value"));
done:
	jread_free(v);
}

/* {"device":"d","data":{"id":7,"method":"write","params":{"point":"p","value":5}}} */
static void thingsboard_rpc(const struct command_env *env, const void *payload, size_t len,
			    struct command *c)
{
	struct jval *v = json_parse(c, payload, len);
	const struct jval *data, *params;
	const char *s;

	if (!v)
		return;
	data = jread_get(v, "data");
	/* a reply on the same topic — the gateway's own, which the broker hands back to its
	 * subscription (MQTT 3.1.1 has no "no local"): not a command, and no answer */
	if (jread_get(v, "id") && data && data->type == J_OBJ && jread_get(data, "success") &&
	    !jread_get(data, "method"))
		goto done;
	if (!(s = json_string(c, v, "device", sizeof c->device)))
		goto done;
	copy(c->device, sizeof c->device, s);
	if (!data || data->type != J_OBJ) {
		refuse(c, "no \"data\" object");
		goto done;
	}
	if (!json_id(c, jread_get(data, "id")))
		goto done;
	c->key = key_of('t', c->device, c->id, strlen(c->id));
	if (!(s = json_string(c, data, "method", 64)))
		goto done;
	if (strcmp(s, "write") != 0) {
		refuse(c, "method '%s' is not one the gateway takes (write)", s);
		goto done;
	}
	params = jread_get(data, "params");
	if (!params || params->type != J_OBJ) {
		refuse(c, "no \"params\" object");
		goto done;
	}
	if (!(s = json_string(c, params, "point", sizeof c->point)))
		goto done;
	copy(c->point, sizeof c->point, s);
	if (!env->cfg->uplink.commands)
		refuse(c, "commands are off on this gateway (uplink.commands)");
	else
		json_write(env, c, jread_get(params, "value"));
done:
	jread_free(v);
}

/* ---- Sparkplug ------------------------------------------------------------------------- */

/* A metric's value for point p: a number, or a bool for a bool point. */
static bool spb_value(struct command *c, const struct device_cfg *d, size_t pi,
		      const struct spb_metric *m, size_t index, double *out)
{
	const struct point_def *p = &d->points[pi];
	bool sgn;

	switch (m->is_null ? SPB_V_NONE : m->value.kind) {
	case SPB_V_BOOL:
		*out = m->value.v.b ? 1.0 : 0.0;
		if (p->type == PT_BOOL)
			return true;
		break;
	case SPB_V_INT:
		/* uint32 on the wire: signed when the metric (or else the point) says so */
		sgn = m->has_datatype ? m->datatype >= SPB_INT8 && m->datatype <= SPB_INT32
				      : p->type == PT_INT16 || p->type == PT_INT32;
		*out = sgn ? (double)(int32_t)m->value.v.i : (double)m->value.v.i;
		return true;
	case SPB_V_LONG:
		sgn = m->has_datatype ? m->datatype == SPB_INT64 : p->type == PT_INT64;
		*out = sgn ? (double)(int64_t)m->value.v.l : (double)m->value.v.l;
		return true;
	case SPB_V_FLOAT:
		*out = m->value.v.f;
		return true;
	case SPB_V_DOUBLE:
		*out = m->value.v.d;
		return true;
	default:
		break;
	}
	refuse(c, "metric %zu (%s.%s) has no %s value", index, d->id, p->name,
	       p->type == PT_BOOL ? "boolean" : "numeric");
	return false;
}

/* DCMD to device di: every metric a write, all of them valid or none. */
static void sparkplug_dcmd(const struct command_env *env, const struct spb_payload *p, size_t di,
			   struct command *c)
{
	const struct device_cfg *d = &env->cfg->devices[di];

	if (p->nmetrics == 0) {
		refuse(c, "a DCMD without metrics");
		return;
	}
	if (p->nmetrics > COMMAND_WRITES_MAX) {
		refuse(c, "a DCMD of %zu metrics; the gateway takes at most %d", p->nmetrics,
		       COMMAND_WRITES_MAX);
		return;
	}
	for (size_t i = 0; i < p->nmetrics; i++) {
		const struct spb_metric *m = &p->metrics[i];
		size_t dd, pi;
		long found = -1;
		char what[32];
		double v;

		if (m->name) {
			found = config_find_point(d, m->name);
			if (found < 0) {
				refuse(c, "device %s has no point '%.*s'", d->id, POINT_NAME_MAX, m->name);
				return;
			}
		} else if (m->has_alias) {
			if (payload_sparkplug_alias_point(m->alias, &dd, &pi) < 0 || dd != di ||
			    pi >= d->npoints) {
				refuse(c, "alias %llu names no point of device %s",
				       (unsigned long long)m->alias, d->id);
				return;
			}
			found = (long)pi;
		} else {
			refuse(c, "metric %zu has neither a name nor an alias", i);
			return;
		}
		snprintf(what, sizeof what, "metric %zu:", i);
		if (!spb_value(c, d, (size_t)found, m, i, &v) ||
		    !check_value(c, d, (size_t)found, v, what))
			return;
		c->writes[c->nwrites++] = (struct command_write){ .device = di,
								   .point = (size_t)found,
								   .value = v };
		if (i == 0)
			copy(c->point, sizeof c->point, d->points[found].name);
	}
	if (!check_online(env, c, di))
		return;
	c->what = COMMAND_WRITE;
}

/* NCMD: Node Control/Rebirth (by name or its alias) set true; the node has no other
 * metric a host may write. */
static void sparkplug_ncmd(const struct spb_payload *p, struct command *c)
{
	bool rebirth = false;

	for (size_t i = 0; i < p->nmetrics; i++) {
		const struct spb_metric *m = &p->metrics[i];
		bool is_rebirth = m->name ? strcmp(m->name, NODE_REBIRTH) == 0
					  : m->has_alias && m->alias == PSP_ALIAS_REBIRTH;
		if (!is_rebirth && m->name) {
			refuse(c, "node metric '%.*s' cannot be written (only " NODE_REBIRTH ")",
			       POINT_NAME_MAX, m->name);
			return;
		}
		if (!is_rebirth) {
			refuse(c, "node metric alias %llu cannot be written (only " NODE_REBIRTH
			       ", alias %d)", (unsigned long long)m->alias, PSP_ALIAS_REBIRTH);
			return;
		}
		if (!m->is_null && m->value.kind == SPB_V_BOOL && m->value.v.b)
			rebirth = true;
	}
	if (rebirth)
		c->what = COMMAND_REBIRTH;
	else
		refuse(c, "an NCMD that asks for nothing (" NODE_REBIRTH " is not true)");
}

static void sparkplug_cmd(const struct command_env *env, const char *rest, const void *payload,
			  size_t len, struct command *c)
{
	const char *gw = env->cfg->gateway.id;
	size_t gl = strlen(gw);
	struct spb_payload *p;
	char err[160];
	bool dcmd = strncmp(rest, "DCMD/", 5) == 0;
	size_t di = 0;

	/* rest: NCMD/<gw> or DCMD/<gw>/<device> */
	if (strncmp(rest + 5, gw, gl) != 0)
		return;
	if (dcmd ? rest[5 + gl] != '/' || !rest[6 + gl] : rest[5 + gl] != '\0')
		return;
	c->key = key_of('p', rest, payload, len);
	if (!(p = spb_decode(payload, len, err, sizeof err))) {
		refuse(c, "malformed Sparkplug payload: %s", err);
		return;
	}
	c->ts_ms = p->has_timestamp && p->timestamp <= INT64_MAX ? (int64_t)p->timestamp : -1;
	if (dcmd)
		copy(c->device, sizeof c->device, rest + 6 + gl);
	if (!p->has_timestamp)
		refuse(c, "a Sparkplug command without a timestamp");
	else if (dcmd && !env->cfg->uplink.commands)
		refuse(c, "commands are off on this gateway (uplink.commands)");
	else if (check_age(env, c)) {
		if (!dcmd)
			sparkplug_ncmd(p, c);
		else if (find_device(env, c, c->device, &di))
			sparkplug_dcmd(env, p, di, c);
	}
	spb_free(p);
}

/* ---- entry points ------------------------------------------------------------------- */

/* topic without "<a>/<b>/", or NULL when it does not start so. */
static const char *after(const char *topic, const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (strncmp(topic, a, la) != 0 || topic[la] != '/' || strncmp(topic + la + 1, b, lb) != 0 ||
	    topic[la + 1 + lb] != '/')
		return NULL;
	return topic + la + 1 + lb + 1;
}

int command_parse(const struct command_env *env, const char *topic, const void *payload,
		  size_t len, struct command *out)
{
	const struct uplink_cfg *u = &env->cfg->uplink;
	const char *rest;

	memset(out, 0, sizeof *out);
	out->format = u->format;
	out->ts_ms = -1;
	out->what = COMMAND_NONE;
	switch (u->format) {
	case FORMAT_SPARKPLUG:
		if (u->sparkplug_primary_host && (rest = after(topic, "spBv1.0", "STATE")) &&
		    strcmp(rest, u->sparkplug_primary_host) == 0) {
			if (len <= COMMAND_PAYLOAD_MAX &&
			    payload_sparkplug_state(payload, len, &out->host_online,
						    &out->host_ts_ms) == 0)
				out->what = COMMAND_HOST;
			else
				refuse(out, "a STATE message that is not Sparkplug 3.0's "
				       "{\"online\":...,\"timestamp\":...}");
			return out->what;
		}
		if (!u->sparkplug_group || !(rest = after(topic, "spBv1.0", u->sparkplug_group)) ||
		    (strncmp(rest, "NCMD/", 5) != 0 && strncmp(rest, "DCMD/", 5) != 0))
			return out->what;
		if (len > COMMAND_PAYLOAD_MAX)
			refuse(out, "a command of %zu bytes (at most %d)", len, COMMAND_PAYLOAD_MAX);
		else
			sparkplug_cmd(env, rest, payload, len, out);
		return out->what;
	case FORMAT_THINGSBOARD:
		if (strcmp(topic, PTB_TOPIC_RPC) != 0)
			return out->what;
		if (len > COMMAND_PAYLOAD_MAX)
			refuse(out, "a command of %zu bytes (at most %d)", len, COMMAND_PAYLOAD_MAX);
		else
			thingsboard_rpc(env, payload, len, out);
		return out->what;
	default:
		if (!(rest = after(topic, u->topic_prefix ? u->topic_prefix : "sluice",
				   env->cfg->gateway.id)) ||
		    strcmp(rest, "command/write") != 0)
			return out->what;
		if (len > COMMAND_PAYLOAD_MAX)
			refuse(out, "a command of %zu bytes (at most %d)", len, COMMAND_PAYLOAD_MAX);
		else
			sluice_write(env, payload, len, out);
		return out->what;
	}
}

int command_subscriptions(const struct config *cfg, char (*topics)[COMMAND_TOPIC_MAX], size_t max)
{
	const struct uplink_cfg *u = &cfg->uplink;
	const char *gw = cfg->gateway.id;
	size_t n = 0;
	int w;

#define SUB(...)                                                                           \
	do {                                                                               \
		char t_[COMMAND_TOPIC_MAX];                                                \
		w = snprintf(t_, sizeof t_, __VA_ARGS__);                                  \
		if (w < 0 || (size_t)w >= sizeof t_)                                       \
			return -1;                                                         \
		if (n < max)                                                               \
			memcpy(topics[n], t_, (size_t)w + 1);                              \
		n++;                                                                       \
	} while (0)

	switch (u->format) {
	case FORMAT_SPARKPLUG:
		if (!u->sparkplug_group)
			return 0;
		SUB("spBv1.0/%s/NCMD/%s", u->sparkplug_group, gw);
		if (u->commands)
			SUB("spBv1.0/%s/DCMD/%s/+", u->sparkplug_group, gw);
		if (u->sparkplug_primary_host)
			SUB("spBv1.0/STATE/%s", u->sparkplug_primary_host);
		break;
	case FORMAT_THINGSBOARD:
		if (u->commands)
			SUB("%s", PTB_TOPIC_RPC);
		break;
	default:
		if (u->commands)
			SUB("%s/%s/command/write", u->topic_prefix ? u->topic_prefix : "sluice", gw);
		break;
	}
#undef SUB
	return (int)n;
}

int command_reply(struct payload_msg *m, const struct command *c, bool ok, const char *error)
{
	struct jbuf *b = &m->body;

	if (c->format == FORMAT_SPARKPLUG || !c->id[0])
		return 1;   /* Sparkplug has no reply; a command without an id has no one to answer */
	jb_reset(b);
	m->retain = false;
	if (c->format == FORMAT_THINGSBOARD) {
		if (!c->device[0])
			return 1;
		snprintf(m->topic, sizeof m->topic, "%s", PTB_TOPIC_RPC);
		jb_cstr(b, "{\"device\":");
		jb_str(b, c->device);
		jb_cstr(b, ",\"id\":");
		if (c->id_is_number)
			jb_cstr(b, c->id);
		else
			jb_str(b, c->id);
		jb_cstr(b, ",\"data\":{\"success\":");
		jb_bool(b, ok);
		if (!ok) {
			jb_cstr(b, ",\"error\":");
			jb_str(b, error ? error : "");
		}
		jb_cstr(b, "}}");
		return b->oom ? -1 : 0;
	}
	snprintf(m->topic, sizeof m->topic, "command/reply");
	jb_cstr(b, "{\"id\":");
	if (c->id_is_number)
		jb_cstr(b, c->id);
	else
		jb_str(b, c->id);
	if (c->device[0]) {
		jb_cstr(b, ",\"device\":");
		jb_str(b, c->device);
	}
	if (c->point[0]) {
		jb_cstr(b, ",\"point\":");
		jb_str(b, c->point);
	}
	jb_cstr(b, ",\"ok\":");
	jb_bool(b, ok);
	if (!ok) {
		jb_cstr(b, ",\"error\":");
		jb_str(b, error ? error : "");
	}
	jb_cstr(b, "}");
	return b->oom ? -1 : 0;
}

int command_event(struct payload_msg *m, const struct command *c, const struct config *cfg,
		  bool ok, const char *error, int64_t ts_ms)
{
	struct jbuf *b = &m->body;

	jb_reset(b);
	m->retain = false;
	snprintf(m->topic, sizeof m->topic, "command/event");
	jb_cstr(b, "\"ts\":");
	jb_i64(b, ts_ms);
	jb_cstr(b, ",\"format\":");
	jb_str(b, uplink_format_name(c->format));
	jb_cstr(b, ",\"id\":");
	jb_str(b, c->id[0] ? c->id : NULL);
	jb_cstr(b, ",\"device\":");
	jb_str(b, c->device[0] ? c->device : NULL);
	jb_cstr(b, ",\"writes\":[");
	for (size_t i = 0; c->what == COMMAND_WRITE && i < c->nwrites; i++) {
		const struct command_write *w = &c->writes[i];
		const struct point_def *p = &cfg->devices[w->device].points[w->point];

		jb_cstr(b, i ? ",{\"point\":" : "{\"point\":");
		jb_str(b, p->name);
		jb_cstr(b, ",\"value\":");
		jb_double(b, w->value);
		jb_cstr(b, "}");
	}
	jb_cstr(b, "],\"ok\":");
	jb_bool(b, ok);
	if (!ok) {
		jb_cstr(b, ",\"error\":");
		jb_str(b, error ? error : "");
	}
	return b->oom ? -1 : 0;
}

/* ---- deduplication ----------------------------------------------------------------- */

void command_dedup_init(struct command_dedup *d)
{
	memset(d, 0, sizeof *d);
}

static struct command_seen *dedup_find(struct command_dedup *d, uint64_t key, int64_t now_ms)
{
	for (size_t i = 0; i < COMMAND_SEEN_MAX; i++) {
		struct command_seen *e = &d->seen[i];
		if (e->state && e->key == key && now_ms - e->at_ms <= COMMAND_SEEN_MS &&
		    now_ms >= e->at_ms)
			return e;
	}
	return NULL;
}

const struct command_seen *command_dedup(struct command_dedup *d, const struct command *c,
					 int64_t now_ms)
{
	struct command_seen *e;

	if (!c->key || (c->what != COMMAND_WRITE && c->what != COMMAND_REFUSED))
		return NULL;
	if ((e = dedup_find(d, c->key, now_ms)))
		return e;
	/* the oldest slot: a ring, so memory stays COMMAND_SEEN_MAX entries */
	e = &d->seen[d->next];
	d->next = (d->next + 1) % COMMAND_SEEN_MAX;
	e->key = c->key;
	e->at_ms = now_ms;
	if (c->what == COMMAND_WRITE) {
		e->state = COMMAND_SEEN_PENDING;
		e->error[0] = '\0';
	} else {
		e->state = COMMAND_SEEN_FAILED;
		copy(e->error, sizeof e->error, c->reason);
	}
	return NULL;
}

void command_dedup_done(struct command_dedup *d, uint64_t key, bool ok, const char *error)
{
	for (size_t i = 0; i < COMMAND_SEEN_MAX; i++) {
		struct command_seen *e = &d->seen[i];
		if (e->state == COMMAND_SEEN_PENDING && e->key == key) {
			e->state = ok ? COMMAND_SEEN_OK : COMMAND_SEEN_FAILED;
			copy(e->error, sizeof e->error, ok ? "" : error);
			return;
		}
	}
}
