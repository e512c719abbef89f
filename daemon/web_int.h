/*
 * web_int: what the page's files share (daemon/web.h): the state of one page, and the
 * message a request becomes when it needs the core. web.c is the core thread's side,
 * web_http.c the HTTP thread's, web_hist.c the store's history, web_auth.c and
 * web_req.c pure helpers, web_assets.c (generated from daemon/web/) the files served.
 */
#ifndef SLUICE_WEB_INT_H
#define SLUICE_WEB_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json.h"
#include "web.h"
#include "web_auth.h"
#include "web_req.h"

struct MHD_Daemon;
struct MHD_Connection;

/* What a request asks of the core. */
enum web_ask {
	WEB_ASK_STATUS,      /* the overview: /api/status */
	WEB_ASK_DEVICE,      /* one device: /api/devices/<id> (its history is web_hist's) */
	WEB_ASK_ALERTS,      /* the active alerts: /api/alerts (the recent ones are the store's) */
	WEB_ASK_PROBE,       /* reads through the control module: /api/probe */
};

/*
 * One HTTP request, from its first header to its response: the HTTP thread's, except
 * while it waits for the core. Then it is the core's from the moment it is queued until
 * it is answered (answered set under web.mu, then its connection resumed); its
 * connection stays suspended meanwhile, so libmicrohttpd keeps it alive.
 */
struct web_req {
	struct web_req *next;          /* in web.queue, or the core's list of probes */
	struct MHD_Connection *conn;
	struct web *w;
	/* the question */
	int ask;                       /* enum web_ask */
	char device[ID_MAX];
	struct web_probe probe;
	/* the answer: code and text (malloc'ed), given under mu */
	bool queued, answered;
	unsigned code;
	char *text;
	size_t len;
	/* the HTTP thread's own */
	int route;
	char *body;                    /* a POST's body, at most WEB_BODY_MAX bytes */
	size_t blen;
	bool too_large;
};

/* A POST's body: a login form, a probe. */
#define WEB_BODY_MAX 4096

struct web {
	struct web_core core;
	/* fixed while served: the HTTP thread reads them */
	char *listen;
	struct config_listen addr;
	bool https;
	bool login;                    /* a password file is given: sessions */
	char *data_dir;                /* the store's, for history */
	char *tls_cert, *tls_key;      /* PEM, while served with HTTPS */
	char *pwfile;

	/* shared between the threads: under mu */
	pthread_mutex_t mu;
	struct web_req *queue, **queue_tail; /* asked, not yet taken by the core */
	bool closing;                  /* nothing more is queued: answered at once */
	struct web_users users;        /* swapped by a reload */
	int efd;                       /* the core's wake-up */

	/* the core thread's */
	struct web_req *probes;        /* handed to the control module */
	struct reading **last;         /* per device of the config in force */
	size_t nlast;
	struct jbuf status;            /* the overview, built at most every WEB_STATUS_EVERY_MS */
	int64_t status_at;
	struct jbuf out;               /* an answer being built */

	/* the HTTP thread's */
	struct MHD_Daemon *mhd;
	struct web_sessions sessions;
	struct web_throttle throttle;
	void *crypt;                   /* struct crypt_data */
	char open_csrf[WEB_TOKEN_HEX + 1]; /* the token of a page without login */
	char start_err[256];           /* libmicrohttpd's last word while starting */
	bool starting;
};

/* The overview is built at most this often; requests in between share it. */
#define WEB_STATUS_EVERY_MS 500

/* ---- web_http.c: serving, on the HTTP thread --------------------------------------- */

/* Start serving w's address (w->listen, w->https and its PEM): 0, or -1 with err. */
int web_http_start(struct web *w, char *err, size_t errlen);
/* Stop: every request still waiting answered first (web_answer). */
void web_http_stop(struct web *w);
/* rq was answered: its connection, suspended meanwhile, goes on (any thread). */
void web_http_resume(struct web_req *rq);
/* libmicrohttpd was built with TLS (GnuTLS): HTTPS can be served. */
bool web_http_tls(void);

/* ---- web.c: the core's side ----------------------------------------------------------- */

/* Give rq its answer (text copied, len bytes) and resume its connection. Any thread
 * that holds rq (the core, or web_close). */
void web_answer(struct web_req *rq, unsigned code, const char *text, size_t len);
/* The same with the page's error object {"error":CODE,"message":TEXT}. */
void web_answer_error(struct web_req *rq, unsigned code, const char *error, const char *msg);

/* ---- web_hist.c: history from the store, on the HTTP thread ----------------------------- */

/* How far back the device page's plot goes, and how many readings it reads at most. */
#define WEB_HISTORY_MS (3 * 3600 * 1000LL)
#define WEB_HISTORY_ROWS 5000
/* Points per series in the plot: each bucket's lowest and highest value. */
#define WEB_HISTORY_BUCKETS 240
/* Recent alert transitions on the alerts page. */
#define WEB_RECENT_ALERTS 50

/*
 * The device's readings of the last WEB_HISTORY_MS before now_ms, as a JSON object
 * (into b): {"from","to","readings","series":[{"point","t":[...],"v":[...]}]}, each series
 * at most 2 * WEB_HISTORY_BUCKETS points. 0, or -1 with err (b untouched).
 */
int web_hist_device(const char *data_dir, const char *device, int64_t now_ms, struct jbuf *b,
		    char *err, size_t errlen);
/* The newest max alert transitions, newest first, as a JSON array into b. 0 or -1. */
int web_hist_alerts(const char *data_dir, size_t max, struct jbuf *b, char *err, size_t errlen);

/* ---- web_assets.c (generated by tools/embed from daemon/web/) ----------------------------- */

struct web_asset {
	const char *path;              /* "/app.js" */
	const unsigned char *data;
	size_t len;
	const char *type;              /* Content-Type */
};
extern const struct web_asset web_assets[]; /* ends with a NULL path */

#endif
