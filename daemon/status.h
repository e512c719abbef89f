/*
 * status: what the running daemon knows about itself — each device's polls and state,
 * how late polls start, the uplink's connection — and the three ways it is told: the
 * snapshot in the store that `sluicectl status` reads, the numbers of a health message
 * (written by a payload format, payload.h), and systemd's one-line STATUS=.
 *
 * Counters only: nothing here decides what is stored or published, speaks SQL (the
 * snapshot goes through store_meta_put) or MQTT. Only the core thread touches it.
 */
#ifndef SLUICE_STATUS_H
#define SLUICE_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "json.h"
#include "reading.h"

struct store;

/* The store's meta key of the snapshot; sluicectl status reads it. */
#define STATUS_META_KEY "status"

/* What the core knows of each device, for device/<id>, health and the snapshot. */
struct dev_status {
	uint64_t ok, failed;   /* polls since start */
	int published;         /* -1 nothing yet, 0 offline, 1 online: the last device state
				  stored */
	int last_err;          /* MBE_* of the last failed poll, 0 before any */
	int64_t last_poll_ms;  /* real time of the last reading */
	int64_t last_ok_ms;    /* real time of the last reading without a failed point */
};

/*
 * How late polls start against their schedule, per health interval: buckets of 1 ms
 * below STATUS_LAG_LINEAR ms, then doubling, so p50 and p99 cost no sorting and no
 * memory per poll.
 */
#define STATUS_LAG_LINEAR 64
#define STATUS_LAG_BUCKETS (STATUS_LAG_LINEAR + 16)
struct lag_hist {
	uint64_t n[STATUS_LAG_BUCKETS];
	uint64_t total;
};

void status_lag_add(struct lag_hist *h, int64_t ms);
/* The upper bound of the bucket holding quantile q (0 when nothing was counted). */
int64_t status_lag_quantile(const struct lag_hist *h, double q);

struct status {
	struct dev_status *dev;     /* one per device of the config in force */
	struct lag_hist lag;        /* since the last health message */
	uint64_t polls_ok, polls_failed;
	uint64_t not_stored;        /* readings and rows lost before the store took them
				       (out of memory, past the held rows' bound); the
				       queue's refusals are counted by the queue */
	int64_t started_ms;         /* real time */
	int64_t start_mono;
	bool uplink_up;
	int64_t uplink_since_ms;    /* real time of the last change, 0 before any */
	char uplink_why[160];       /* why it is down, when it said */
	char last_notify[200];      /* the last STATUS= sent */
};

/* ndevices devices, none heard from yet. 0, or -1 out of memory (nothing to free). */
int status_init(struct status *s, size_t ndevices, int64_t now_real, int64_t now_mono);
void status_free(struct status *s);

/*
 * A reload swaps in dev (nc->ndevices entries, given by the caller so that running out
 * of memory is found before the point of no return): each device of nc keeps the
 * counters of the device of old with the same id; a new one starts unheard of.
 */
void status_devices_swap(struct status *s, const struct config *old, const struct config *nc,
			 struct dev_status *dev);

/* A reading arrived (r->device indexes the config in force): counters and lag. */
void status_reading(struct status *s, const struct reading *r);

/*
 * Does this reading change the device's published state (device/<id>)? Then true, and
 * ds->published is the new state. A device is not "online" merely because its circuit
 * breaker has not tripped yet — one never heard from after start, or one that was
 * offline when a reload or a discovery gave it a fresh breaker: it turns online on an
 * answer (a value, or a Modbus exception); else it waits for offline_after failures.
 */
bool status_device_turned(struct dev_status *ds, const struct reading *r);

/* What the daemon thinks of the device, in the words of the snapshot: "online",
 * "offline", "unknown" (polled, no state published yet), "not polled". */
const char *status_device_state(const struct dev_status *ds);

/* The uplink connected (up) or went down or failed to connect (why may be NULL). */
void status_uplink(struct status *s, bool up, const char *why, int64_t now_real);

/*
 * One health message's numbers (docs/mqtt.md, health). The devices are the config's,
 * with dev[i] for devices[i]; a device with dev[i].published < 0 has no state yet and
 * is left out of the message.
 */
struct health {
	int64_t ts_ms;
	int64_t uptime_s;
	uint64_t polls_ok, polls_failed;
	uint64_t backlog_rows;
	int64_t backlog_age_s;
	uint64_t dropped, not_stored;
	uint64_t set_aside;         /* rows the broker refused, set aside, not yet delivered */
	const char *store_error;    /* NULL while the store writes */
	uint64_t held_rows, lost_at_stop, db_bytes, last_seq;
	uint64_t skipped;           /* seqs passed over at starts after a crash (store_stats) */
	const char *stream;         /* the seq space's id; points into the health's caller */
	int64_t lag_p50_ms, lag_p99_ms;
	uint64_t lag_polls;
	const struct device_cfg *devices;
	const struct dev_status *dev;
	size_t ndevices;
};

/*
 * The numbers for a health message now, with the store's from st. The lag histogram
 * starts afresh: each message covers the polls since the last. What only the caller
 * knows is its to add: the queue's refusals to not_stored, store_error, held_rows.
 */
void status_health(struct status *s, const struct config *cfg, struct store *st,
		   int64_t now_real, int64_t now_mono, struct health *h);

/* The snapshot's JSON (`sluicectl status` reads it; stopping: the daemon is stopping). */
void status_snapshot_json(struct jbuf *b, const struct status *s, const struct config *cfg,
			  int64_t now_real, bool stopping);

/* How often the snapshot is rewritten: every 30 s, and more seldom on a large site so
 * that an SD card is not rewritten with thousands of devices' state each time. While
 * sluiced runs, sluicectl status asks it over the control socket: the snapshot is for
 * when it does not answer. (Every 5 s, it was a tenth of what a small site wrote.) */
int64_t status_snapshot_every_ms(const struct config *cfg);

/* Write the snapshot to st's meta table; quiet: a failure is not logged (the store is
 * already known to fail, and says so elsewhere). */
void status_write_snapshot(const struct status *s, const struct config *cfg, struct store *st,
			   bool stopping, bool quiet);

/* systemd's STATUS= line for `systemctl status`: devices online of those polled, the
 * backlog, the uplink. */
void status_notify_line(const struct status *s, size_t ndevices, uint64_t backlog, char *buf,
			size_t len);

/* Send the STATUS= line when it differs from the last one sent. */
void status_notify(struct status *s, const struct config *cfg, struct store *st);

#endif
