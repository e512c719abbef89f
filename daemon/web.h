/*
 * web: the technicians' page (config web:, docs/operations.md "The web page") — the
 * gateway's state, every device's last values, plots of their history, the alerts, and
 * a probe — served by libmicrohttpd on a thread of its own, in its epoll mode.
 *
 * Threads. The HTTP thread (libmicrohttpd's) owns the connections, the sessions and the
 * login throttle; it reads the store's history through a read-only handle of its own
 * (web_hist.c). Everything only the core thread may touch — the config in force, status,
 * the alert engine, the control module and through it the pollers — it asks for: a
 * request that needs the core is queued under one mutex, the core is woken through an
 * eventfd in its poll() (web_fd), the connection is suspended meanwhile, and the core
 * answers with text and resumes it (web_io). The core never waits for the HTTP thread
 * and the HTTP thread never waits for the core: a probe that takes a Modbus timeout
 * holds a suspended connection, never a thread.
 *
 * The core also hands the page each device's last reading (web_keep), which it would
 * otherwise free: the page's values cost nothing when there is no page.
 */
#ifndef SLUICE_WEB_H
#define SLUICE_WEB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alert.h"
#include "config.h"
#include "control.h"
#include "reading.h"
#include "status.h"

/* The backlog and what was lost, as the core knows them now. */
struct web_backlog {
	uint64_t rows;             /* unsent, not counting those set aside */
	int64_t oldest_ms;         /* real time of the oldest unsent row, 0 when none */
	uint64_t dropped;          /* unsent rows dropped by the size bound, ever */
	uint64_t not_stored;       /* readings lost before the store took them, since start */
	uint64_t set_aside;        /* rows the broker refused, set aside */
	uint64_t db_bytes;
	const char *store_error;   /* NULL while the store writes */
};

/* What the page asks of the core, on the core thread. */
struct web_core {
	void *ctx;
	const struct config *(*config)(void *ctx);
	const struct status *(*status)(void *ctx);
	const struct alert_engine *(*alerts)(void *ctx);   /* NULL when there is none */
	void (*backlog)(void *ctx, struct web_backlog *out);
	struct control *(*control)(void *ctx);             /* NULL when there is none */
};

struct web;

/*
 * What web: names that the config loader does not read: the password file's lines and
 * the TLS files' contents (it only proves they can be opened). 0, or -1 with err
 * ("web.password_file PATH: line 3: ..."). For --check-config and before a start.
 */
int web_check(const struct web_cfg *cfg, char *err, size_t errlen);

/* Serve cfg->web (listen set). NULL with err when it cannot (the port taken, a file
 * gone, libmicrohttpd without epoll or TLS): the daemon runs on without the page. */
struct web *web_open(const struct config *cfg, const struct web_core *core, char *err,
		     size_t errlen);
/* Answer every request still waiting (503), stop serving, free all. NULL is fine. */
void web_close(struct web *w);

/* The eventfd that says requests wait; then web_io answers them, never waiting. */
int web_fd(const struct web *w);
void web_io(struct web *w);

/* The reading just stored (its generation the config in force): the page keeps it as the
 * device's last values and frees it later. False when the page does not take it. */
bool web_keep(struct web *w, struct reading *r);

/*
 * A reload swapped old for nc: the last readings follow their devices by id (a device
 * whose points changed starts without), and the page is served as nc says — started,
 * stopped, or restarted when its address, files or users changed (sessions of users
 * gone or with a new password end). *w may be NULL before and after. At start, old is
 * NULL (and *w too): the page is started when nc has one. A page that cannot be served
 * is logged, and sluiced runs on without it.
 */
void web_reload(struct web **w, const struct config *old, const struct config *nc,
		const struct web_core *core);

#endif
