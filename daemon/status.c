/*
 * status: owns the daemon's counters of itself (per device, per health interval, the
 * uplink's state) and the texts made of them for people: the snapshot `sluicectl
 * status` reads from the store, systemd's STATUS= line. It must never decide what is
 * stored or published, and never speak SQL or MQTT itself.
 */
#include "status.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "mberr.h"
#include "notify.h"
#include "reply.h"
#include "store.h"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "dev"
#endif

void status_lag_add(struct lag_hist *h, int64_t ms)
{
	size_t b;

	if (ms < 0)
		ms = 0;
	if (ms < STATUS_LAG_LINEAR) {
		b = (size_t)ms;
	} else {
		b = STATUS_LAG_LINEAR;
		for (int64_t top = STATUS_LAG_LINEAR * 2; ms >= top && b < STATUS_LAG_BUCKETS - 1;
		     top *= 2)
			b++;
	}
	h->n[b]++;
	h->total++;
}

int64_t status_lag_quantile(const struct lag_hist *h, double q)
{
	uint64_t want = (uint64_t)(q * (double)h->total), seen = 0;

	for (size_t b = 0; b < STATUS_LAG_BUCKETS; b++) {
		seen += h->n[b];
		if (seen > want)
			return b < STATUS_LAG_LINEAR ? (int64_t)b
						     : (int64_t)STATUS_LAG_LINEAR << (b - STATUS_LAG_LINEAR + 1);
	}
	return 0;
}

int status_init(struct status *s, size_t ndevices, int64_t now_real, int64_t now_mono)
{
	*s = (struct status){ .started_ms = now_real, .start_mono = now_mono };
	s->dev = calloc(ndevices ? ndevices : 1, sizeof *s->dev);
	if (!s->dev)
		return -1;
	for (size_t i = 0; i < ndevices; i++)
		s->dev[i].published = -1;
	return 0;
}

void status_free(struct status *s)
{
	free(s->dev);
	s->dev = NULL;
}

void status_devices_swap(struct status *s, const struct config *old, const struct config *nc,
			 struct dev_status *dev)
{
	for (size_t i = 0; i < nc->ndevices; i++) {
		long j = config_find_device(old, nc->devices[i].id);
		dev[i] = j >= 0 ? s->dev[j] : (struct dev_status){ .published = -1 };
	}
	free(s->dev);
	s->dev = dev;
}

void status_reading(struct status *s, const struct reading *r)
{
	struct dev_status *ds = &s->dev[r->device];
	bool failed = false;

	for (uint16_t k = 0; k < r->nvalues; k++)
		failed |= r->values[k].kind == VAL_NONE;
	ds->last_poll_ms = r->ts_ms;
	if (failed) {
		s->polls_failed++;
		ds->failed++;
		for (uint16_t k = 0; k < r->nvalues; k++)
			if (r->values[k].kind == VAL_NONE)
				ds->last_err = r->values[k].err;
	} else {
		s->polls_ok++;
		ds->ok++;
		ds->last_ok_ms = r->ts_ms;
	}
	status_lag_add(&s->lag, r->start_mono_ms - r->sched_mono_ms);
}

bool status_device_turned(struct dev_status *ds, const struct reading *r)
{
	if (ds->published == (int)r->online)
		return false;
	/* not online only because a breaker has not tripped yet: the first one after start,
	 * and the fresh one a reload or a discovery gives a device that was offline */
	if (r->online) {
		bool answered = false;

		/* an answer as the breaker counts one: a gateway's "no reply from the unit
		 * behind me" (0x0A, 0x0B) is not the device */
		for (uint16_t k = 0; k < r->nvalues; k++)
			answered |= r->values[k].kind != VAL_NONE ||
				    reply_is_answer(r->values[k].err);
		if (!answered && r->nvalues > 0)
			return false;
	}
	ds->published = r->online;
	return true;
}

const char *status_device_state(const struct dev_status *ds)
{
	if (ds->published < 0)
		return ds->last_poll_ms ? "unknown" : "not polled";
	return ds->published ? "online" : "offline";
}

void status_uplink(struct status *s, bool up, const char *why, int64_t now_real)
{
	/* since: when it came up, or when it was first found down (not every failed retry) */
	if (up || s->uplink_up || !s->uplink_since_ms)
		s->uplink_since_ms = now_real;
	s->uplink_up = up;
	snprintf(s->uplink_why, sizeof s->uplink_why, "%s", !up && why ? why : "");
}

void status_health(struct status *s, const struct config *cfg, struct store *st,
		   int64_t now_real, int64_t now_mono, struct health *h)
{
	struct store_stats ss = { 0 };

	store_stats(st, &ss);
	*h = (struct health){
		.ts_ms = now_real,
		.uptime_s = (now_mono - s->start_mono) / 1000,
		.polls_ok = s->polls_ok,
		.polls_failed = s->polls_failed,
		.backlog_rows = ss.unsent,
		/* never negative: after a wall clock step back, rows stamped before it look
		 * young */
		.backlog_age_s = ss.oldest_unsent_ms && now_real > ss.oldest_unsent_ms
					 ? (now_real - ss.oldest_unsent_ms) / 1000 : 0,
		.dropped = ss.dropped,
		.set_aside = ss.aside,
		.lost_at_stop = ss.lost_at_stop,
		.not_stored = s->not_stored,
		.db_bytes = ss.db_bytes,
		.last_seq = ss.last_seq,
		.skipped = ss.skipped,
		.stream = store_stream(st)[0] ? store_stream(st) : NULL,
		.lag_p50_ms = status_lag_quantile(&s->lag, 0.50),
		.lag_p99_ms = status_lag_quantile(&s->lag, 0.99),
		.lag_polls = s->lag.total,
		.devices = cfg->devices,
		.dev = s->dev,
		.ndevices = cfg->ndevices,
	};
	memset(&s->lag, 0, sizeof s->lag);
}

static void snapshot_uplink(struct jbuf *b, const struct status *s, const struct config *cfg)
{
	jb_cstr(b, "{\"host\":");
	jb_str(b, cfg->uplink.host);
	jb_cstr(b, ",\"port\":");
	jb_i64(b, cfg->uplink.port);
	jb_cstr(b, ",\"connected\":");
	jb_bool(b, s->uplink_up);
	jb_cstr(b, ",\"since\":");
	jb_i64(b, s->uplink_since_ms);
	if (!s->uplink_up && s->uplink_why[0]) {
		jb_cstr(b, ",\"error\":");
		jb_str(b, s->uplink_why);
	}
	jb_cstr(b, "}");
}

static void snapshot_buses(struct jbuf *b, const struct config *cfg)
{
	static const char *const kinds[] = { "tcp", "rtu", "rtu_over_tcp" };

	jb_cstr(b, "[");
	for (size_t i = 0; i < cfg->nbuses; i++) {
		const struct bus_cfg *bus = &cfg->buses[i];

		if (i)
			jb_cstr(b, ",");
		jb_cstr(b, "{\"id\":");
		jb_str(b, bus->id);
		jb_cstr(b, ",\"kind\":");
		jb_str(b, kinds[bus->kind]);
		jb_cstr(b, ",\"address\":");
		if (bus->kind == BUS_RTU) {
			jb_str(b, bus->device);
		} else {
			char addr[300];
			snprintf(addr, sizeof addr, strchr(bus->host, ':') ? "[%s]:%u" : "%s:%u",
				 bus->host, bus->port);
			jb_str(b, addr);
		}
		jb_cstr(b, "}");
	}
	jb_cstr(b, "]");
}

static void snapshot_devices(struct jbuf *b, const struct status *s, const struct config *cfg)
{
	jb_cstr(b, "[");
	for (size_t i = 0; i < cfg->ndevices; i++) {
		const struct device_cfg *d = &cfg->devices[i];
		const struct dev_status *ds = &s->dev[i];

		if (i)
			jb_cstr(b, ",");
		jb_cstr(b, "{\"id\":");
		jb_str(b, d->id);
		if (d->name) {
			jb_cstr(b, ",\"name\":");
			jb_str(b, d->name);
		}
		jb_cstr(b, ",\"bus\":");
		jb_str(b, cfg->buses[d->bus].id);
		jb_cstr(b, ",\"state\":");
		jb_str(b, status_device_state(ds));
		jb_cstr(b, ",\"last_poll\":");
		jb_i64(b, ds->last_poll_ms);
		jb_cstr(b, ",\"last_ok\":");
		jb_i64(b, ds->last_ok_ms);
		jb_cstr(b, ",\"polls_ok\":");
		jb_u64(b, ds->ok);
		jb_cstr(b, ",\"polls_failed\":");
		jb_u64(b, ds->failed);
		if (ds->last_err) {
			jb_cstr(b, ",\"last_error\":");
			jb_str(b, mb_strerror(ds->last_err));
		}
		jb_cstr(b, "}");
	}
	jb_cstr(b, "]");
}

void status_snapshot_json(struct jbuf *b, const struct status *s, const struct config *cfg,
			  int64_t now_real, bool stopping)
{
	bool first = true;

	jb_cstr(b, "{");
	jb_key(b, "pid", &first);
	jb_i64(b, (int64_t)getpid());
	jb_key(b, "version", &first);
	jb_str(b, SLUICE_VERSION);
	jb_key(b, "gateway", &first);
	jb_str(b, cfg->gateway.id);
	jb_key(b, "started", &first);
	jb_i64(b, s->started_ms);
	jb_key(b, "updated", &first);
	jb_i64(b, now_real);
	jb_key(b, "running", &first);
	jb_bool(b, !stopping);
	jb_key(b, "uplink", &first);
	snapshot_uplink(b, s, cfg);
	jb_key(b, "buses", &first);
	snapshot_buses(b, cfg);
	jb_key(b, "devices", &first);
	snapshot_devices(b, s, cfg);
	jb_cstr(b, "}");
}

int64_t status_snapshot_every_ms(const struct config *cfg)
{
	int64_t ms = (int64_t)cfg->ndevices * 10; /* 10 ms per device: 5,000 -> 50 s */
	return ms < 30000 ? 30000 : ms;
}

void status_write_snapshot(const struct status *s, const struct config *cfg, struct store *st,
			   bool stopping, bool quiet)
{
	struct jbuf b;

	jb_init(&b);
	status_snapshot_json(&b, s, cfg, clock_real_ms(), stopping);
	if (!b.oom && store_meta_put(st, STATUS_META_KEY, jb_cstr_get(&b)) != 0 && !quiet)
		log_warnx("store: could not write the status snapshot: %s", store_error(st));
	jb_free(&b);
}

void status_notify_line(const struct status *s, size_t ndevices, uint64_t backlog, char *buf,
			size_t len)
{
	size_t online = 0, polled = 0;

	for (size_t i = 0; i < ndevices; i++) {
		polled += s->dev[i].last_poll_ms != 0;
		online += s->dev[i].published == 1;
	}
	snprintf(buf, len, "STATUS=%zu of %zu devices online, backlog %" PRIu64 " rows, uplink %s",
		 online, polled, backlog, s->uplink_up ? "connected" : "disconnected");
}

void status_notify(struct status *s, const struct config *cfg, struct store *st)
{
	char line[sizeof s->last_notify];
	struct store_stats ss = { 0 };

	store_stats(st, &ss);
	status_notify_line(s, cfg->ndevices, ss.unsent, line, sizeof line);
	if (strcmp(line, s->last_notify) != 0) {
		notify_send(line);
		memcpy(s->last_notify, line, sizeof line);
	}
}
