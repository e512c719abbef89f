/*
 * web_hist: the page's one way into what the store keeps: a device's readings of the
 * last hours for its plot, the recent alert transitions for the alerts page. Called on
 * the page's HTTP thread, each through a read-only store handle of its own (why:
 * daemon/web_hist.c). A device's readings come through the store's per-device access
 * path (store_recent), as values (schema 3) or, stored by an older release, as text.
 */
#ifndef SLUICE_WEB_HIST_H
#define SLUICE_WEB_HIST_H

#include <stddef.h>
#include <stdint.h>

#include "json.h"

/* How far back the device page's plot goes, and how many readings it reads at most. */
#define WEB_HISTORY_MS (3 * 3600 * 1000LL)
#define WEB_HISTORY_ROWS 5000
/* Points per series in the plot: each bucket's lowest and highest value. */
#define WEB_HISTORY_BUCKETS 240
/* Recent alert transitions on the alerts page. */
#define WEB_RECENT_ALERTS 50

/*
 * The device's readings of the last WEB_HISTORY_MS before now_ms (at most the newest
 * WEB_HISTORY_ROWS: then "from" is the oldest of them), as a JSON object into b:
 * {"from","to","readings","series":[{"point","t":[...],"v":[...]}]}, one series per
 * numeric or boolean point in time order, each at most 2 * WEB_HISTORY_BUCKETS points.
 * 0, or -1 with err (b untouched): no store in data_dir, or it cannot be read.
 */
int web_hist_device(const char *data_dir, const char *device, int64_t now_ms, struct jbuf *b,
		    char *err, size_t errlen);
/* The newest max alert transitions, newest first, as a JSON array into b (each as the
 * outbox holds it, with its seq). 0 or -1 with err. */
int web_hist_alerts(const char *data_dir, size_t max, struct jbuf *b, char *err, size_t errlen);

#endif
