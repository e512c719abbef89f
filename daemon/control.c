/*
 * control: owns the control socket, its clients and the probes they asked for while the
 * owning poller holds them (daemon/control.h). Requests are read by control_req.c; the
 * status comes from status.c, the config from the core, the reads from the pollers.
 * It must never block the core loop — every descriptor is non-blocking, every client has
 * a deadline, every buffer a bound — never look at a path or name a client gives it
 * (the asker resolves its own; the daemon compares), never open a bus itself, and never
 * let a probe go to a bus that no poller of this daemon owns.
 */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "codec.h"
#include "json.h"
#include "log.h"
#include "mberr.h"
#include "polldev.h"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "dev"
#endif

#define CONTROL_NEVER INT64_MAX

/* A probe handed to a poller: the job, and who waits for its answer. */
struct pending {
	struct pending *next;
	struct poller_probe job;
	struct control *ctl;
	control_answer_fn answer;
	void *actx;                  /* NULL once the asker is gone */
	char id[80];
	size_t bus;                  /* in the config it was asked under ... */
	char bus_id[ID_MAX];         /* ... which a reload may have replaced by the answer */
	int64_t bus_timeout_ms;
	bool back;                   /* the poller gave it back (under ctl->mu) */
};

struct client {
	int fd;                      /* -1: a free slot */
	char in[CONTROL_REQUEST_MAX];
	size_t inlen;
	struct jbuf out;             /* the reply being written */
	size_t outoff;
	bool waiting;                /* a request is being answered (a probe) */
	bool eof;                    /* the client shut its side: close once answered */
	bool bye;                    /* close once the reply is out */
	int64_t deadline;
};

struct control {
	const struct control_core *core;
	struct control_core core_copy;
	char path[108];
	char link[108];              /* data_dir/control, a link to path; "" when none */
	ino_t ino;                   /* of the socket we bound, to remove only ours */
	int lfd;
	int efd;                     /* eventfd: a probe came back */
	struct client cl[CONTROL_CLIENTS_MAX];
	struct client *slot_of[CONTROL_POLLFDS_MAX]; /* pollfd index -> client, last fill */
	/* probes handed to pollers; those given back wait in the same list, back set */
	pthread_mutex_t mu;
	struct pending *pend;
	/* the live status, built at most every CONTROL_STATUS_EVERY_MS */
	struct jbuf status;
	int64_t status_at;
	struct jbuf reply;           /* a reply being built */
};

/* ---- where ----------------------------------------------------------------------- */

int control_socket_path(const char *runtime_dir, const char *data_dir, char *sock, size_t len,
			char *link, size_t linklen)
{
	struct sockaddr_un sa;
	int n, l = 0;

	if (linklen)
		link[0] = '\0';
	if (runtime_dir && runtime_dir[0]) {
		/* systemd lists one directory per RuntimeDirectory= name, colon-separated */
		const char *colon = strchr(runtime_dir, ':');
		size_t dl = colon ? (size_t)(colon - runtime_dir) : strlen(runtime_dir);

		n = snprintf(sock, len, "%.*s/%s", (int)dl, runtime_dir, CONTROL_SOCKET_NAME);
		l = snprintf(link, linklen, "%s/%s", data_dir, CONTROL_SOCKET_NAME);
	} else {
		n = snprintf(sock, len, "%s/%s", data_dir, CONTROL_SOCKET_NAME);
	}
	/* the link too is a path a client connects through */
	if (n < 0 || (size_t)n >= len || (size_t)n >= sizeof sa.sun_path || l < 0 ||
	    (l > 0 && ((size_t)l >= linklen || (size_t)l >= sizeof sa.sun_path)))
		return -1;
	return 0;
}

/* ---- replies --------------------------------------------------------------------- */

static void reply_start(struct jbuf *b, const char *id, bool *first)
{
	jb_cstr(b, "{");
	jb_key(b, "v", first);
	jb_i64(b, CONTROL_PROTOCOL);
	if (id && id[0]) {
		jb_key(b, "id", first);
		jb_cstr(b, id);
	}
	jb_key(b, "ok", first);
	jb_bool(b, true);
}

static void answer_error(struct control *ctl, control_answer_fn answer, void *actx,
			 const char *id, const char *code, const char *msg)
{
	jb_reset(&ctl->reply);
	control_error_reply(&ctl->reply, id, code, msg);
	answer(actx, jb_cstr_get(&ctl->reply), ctl->reply.len);
}

static void answer_hello(struct control *ctl, const struct control_request *rq,
			 control_answer_fn answer, void *actx)
{
	const struct config *cfg = ctl->core->config(ctl->core->ctx);
	struct jbuf *b = &ctl->reply;
	bool first = true;

	jb_reset(b);
	reply_start(b, rq->id, &first);
	jb_key(b, "sluiced", &first);
	jb_str(b, SLUICE_VERSION);
	jb_key(b, "protocol", &first);
	jb_i64(b, CONTROL_PROTOCOL);
	jb_key(b, "pid", &first);
	jb_i64(b, (int64_t)getpid());
	jb_key(b, "gateway", &first);
	jb_str(b, cfg->gateway.id);
	/* the asker checks it is the daemon of its config's data directory */
	jb_key(b, "data_dir", &first);
	jb_str(b, cfg->gateway.data_dir);
	jb_key(b, "ops", &first);
	jb_cstr(b, "[\"hello\",\"status\",\"probe\"]}\n");
	answer(actx, jb_cstr_get(b), b->len);
}

static void answer_status(struct control *ctl, const struct control_request *rq,
			  control_answer_fn answer, void *actx)
{
	int64_t now = clock_mono_ms();
	struct jbuf *b = &ctl->reply;
	bool first = true;

	if (ctl->status.len == 0 || now - ctl->status_at >= CONTROL_STATUS_EVERY_MS) {
		jb_reset(&ctl->status);
		status_snapshot_json(&ctl->status, ctl->core->status(ctl->core->ctx),
				     ctl->core->config(ctl->core->ctx), clock_real_ms(), false);
		ctl->status_at = now;
	}
	jb_reset(b);
	reply_start(b, rq->id, &first);
	jb_key(b, "status", &first);
	jb_raw(b, ctl->status.p, ctl->status.len);
	jb_cstr(b, "}\n");
	if (b->oom || ctl->status.oom) {
		jb_reset(&ctl->status);
		answer_error(ctl, answer, actx, rq->id, "internal", "out of memory");
		return;
	}
	answer(actx, jb_cstr_get(b), b->len);
}

/* ---- probes ---------------------------------------------------------------------- */

static const char *const kind_names[] = { "tcp", "rtu", "rtu_over_tcp" };
static const char *const kind_opts[] = { "--tcp", "--rtu", "--rtu-tcp" };

/* "host:port" or "[v6]:port" */
static void host_port(char *buf, size_t len, const char *host, uint16_t port)
{
	snprintf(buf, len, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
}

/* Is this serial bus the line the asker names? The same path, or the same character
 * device (a /dev/serial/by-id link, another name of the same adapter). Only the
 * config's own path is looked at: the asker's was looked at by the asker. */
static bool same_line(const struct bus_cfg *b, const struct control_target *t)
{
	struct stat st;

	if (b->kind != BUS_RTU || !b->device)
		return false;
	if (strcmp(b->device, t->device) == 0)
		return true;
	return t->has_rdev && stat(b->device, &st) == 0 && S_ISCHR(st.st_mode) &&
	       (uint64_t)st.st_rdev == t->rdev;
}

/*
 * The bus of the config that the target names: its index, or -1 with the reply's error
 * code and message. A bus named in the config but with no device is not opened by any
 * poller, so it is not ours to probe through.
 */
static long find_bus(const struct config *cfg, const struct control_target *t, const char **code,
		     char *msg, size_t len)
{
	struct site site = config_site(cfg);
	char where[300];
	long found = -1;

	if (t->kind == BUS_RTU)
		snprintf(where, sizeof where, "%s", t->device);
	else
		host_port(where, sizeof where, t->host, t->port);
	for (size_t i = 0; i < cfg->nbuses && found < 0; i++) {
		const struct bus_cfg *b = &cfg->buses[i];

		if (t->kind == BUS_RTU ? same_line(b, t)
				       : b->kind != BUS_RTU && b->host &&
					 strcasecmp(b->host, t->host) == 0 && b->port == t->port)
			found = (long)i;
	}
	if (found < 0) {
		*code = "not_owned";
		snprintf(msg, len, "sluiced has no bus at %s: nothing of this daemon uses it", where);
		return -1;
	}
	const struct bus_cfg *b = &cfg->buses[found];
	if (b->kind != t->kind) {
		*code = "mismatch";
		snprintf(msg, len, "bus %s (%s) is %s in sluiced's configuration: probe it with %s",
			 b->id, where, kind_names[b->kind], kind_opts[b->kind]);
		return -1;
	}
	if (t->kind == BUS_RTU &&
	    ((t->baud && t->baud != b->baud) || (t->parity && t->parity != b->parity) ||
	     (t->data_bits && t->data_bits != b->data_bits) ||
	     (t->stop_bits && t->stop_bits != b->stop_bits))) {
		*code = "mismatch";
		snprintf(msg, len, "sluiced polls %s at %u baud, %u%c%u (bus %s), and a probe "
			 "through it reads the line as it is: leave out --baud, --parity, "
			 "--data-bits and --stop-bits, or stop sluiced to try other settings", where,
			 b->baud, (unsigned)b->data_bits, b->parity, (unsigned)b->stop_bits, b->id);
		return -1;
	}
	if (!polldev_bus_owned(&site, (size_t)found, ~0u)) {
		*code = "not_owned";
		snprintf(msg, len, "bus %s (%s) has no device in sluiced's configuration, so "
			 "sluiced does not open it", b->id, where);
		return -1;
	}
	return found;
}

/* From the poller's thread: the probe is over; the core takes it in control_io. */
static void probe_back(struct poller_probe *p)
{
	struct pending *pd = p->ctx;
	struct control *ctl = pd->ctl;
	uint64_t one = 1;

	pthread_mutex_lock(&ctl->mu);
	pd->back = true;
	pthread_mutex_unlock(&ctl->mu);
	if (write(ctl->efd, &one, sizeof one) < 0) {
		/* the counter is saturated: the core is awake anyway */
	}
}

/* The device of the config at the probe's bus and unit, and what the daemon thinks of it:
 * said in the reply, so that a probe of a device the daemon has offline says so. Nothing
 * when the bus is no longer that one (a reload came between). */
static void probe_device(struct jbuf *b, const struct control *ctl, const struct pending *pd,
			 bool *first)
{
	const struct config *cfg = ctl->core->config(ctl->core->ctx);
	const struct status *st = ctl->core->status(ctl->core->ctx);
	size_t bus = pd->bus;
	uint8_t unit = pd->job.unit;

	if (bus >= cfg->nbuses || strcmp(cfg->buses[bus].id, pd->bus_id) != 0)
		return;
	for (size_t i = 0; i < cfg->ndevices; i++) {
		const struct device_cfg *d = &cfg->devices[i];
		bool f2 = true;

		if (d->bus != bus || d->unit_id != unit)
			continue;
		jb_key(b, "device", first);
		jb_cstr(b, "{");
		jb_key(b, "id", &f2);
		jb_str(b, d->id);
		jb_key(b, "state", &f2);
		jb_str(b, status_device_state(&st->dev[i]));
		if (st->dev[i].last_err) {
			jb_key(b, "last_error", &f2);
			jb_str(b, mb_strerror(st->dev[i].last_err));
		}
		jb_cstr(b, "}");
		return;
	}
}

static void answer_probe_result(struct control *ctl, struct pending *pd)
{
	const struct poller_probe *p = &pd->job;
	struct jbuf *b = &ctl->reply;
	bool first = true;
	char msg[300];

	if (p->status == PROBE_LATE) {
		snprintf(msg, sizeof msg, "bus %s was busy with sluiced's polls for %d s: try "
			 "again", pd->bus_id, CONTROL_PROBE_WAIT_MS / 1000);
		answer_error(ctl, pd->answer, pd->actx, pd->id, "busy", msg);
		return;
	}
	if (p->status == PROBE_STOPPED) {
		answer_error(ctl, pd->answer, pd->actx, pd->id, "stopped",
			     "sluiced stopped its pollers (a reload, or it is stopping) before the "
			     "probe was done: try again");
		return;
	}
	jb_reset(b);
	reply_start(b, pd->id, &first);
	jb_key(b, "via", &first);
	jb_str(b, "sluiced");
	jb_key(b, "bus", &first);
	jb_str(b, pd->bus_id);
	jb_key(b, "unit", &first);
	jb_u64(b, p->unit);
	jb_key(b, "timeout_ms", &first);
	jb_i64(b, p->timeout_ms > 0 ? p->timeout_ms : pd->bus_timeout_ms);
	probe_device(b, ctl, pd, &first);
	jb_key(b, "reads", &first);
	jb_cstr(b, "[");
	for (size_t i = 0; i < p->nreads; i++) {
		const struct poller_read *rd = &p->reads[i];
		bool bits = rd->table == MB_COIL || rd->table == MB_DISCRETE, f2 = true;

		jb_cstr(b, i ? ",{" : "{");
		jb_key(b, "table", &f2);
		jb_str(b, codec_table_name((enum mb_table)rd->table));
		jb_key(b, "address", &f2);
		jb_u64(b, rd->start);
		jb_key(b, "count", &f2);
		jb_u64(b, rd->count);
		if (rd->err != 0) {
			jb_key(b, "error", &f2);
			jb_str(b, mb_strerror(rd->err));
			jb_key(b, "code", &f2);
			jb_i64(b, rd->err);
		} else {
			jb_key(b, bits ? "bits" : "registers", &f2);
			jb_cstr(b, "[");
			for (uint16_t k = 0; k < rd->count; k++) {
				if (k)
					jb_cstr(b, ",");
				jb_u64(b, bits ? rd->bits[k] : rd->regs[k]);
			}
			jb_cstr(b, "]");
		}
		jb_cstr(b, "}");
	}
	jb_cstr(b, "]}\n");
	if (b->oom) {
		answer_error(ctl, pd->answer, pd->actx, pd->id, "internal", "out of memory");
		return;
	}
	pd->answer(pd->actx, jb_cstr_get(b), b->len);
}

static void start_probe(struct control *ctl, const struct control_request *rq,
			control_answer_fn answer, void *actx)
{
	const struct config *cfg = ctl->core->config(ctl->core->ctx);
	const char *code = NULL;
	struct pending *pd, *q;
	struct poller_read *reads;
	char msg[1024];
	long bus = find_bus(cfg, &rq->target, &code, msg, sizeof msg);
	bool busy = false;

	if (bus < 0) {
		answer_error(ctl, answer, actx, rq->id, code, msg);
		return;
	}
	/* one probe at a time on a line: a person's probes must not crowd out the polls */
	pthread_mutex_lock(&ctl->mu);
	for (q = ctl->pend; q; q = q->next)
		busy |= q->bus == (size_t)bus && !q->back;
	pthread_mutex_unlock(&ctl->mu);
	if (busy) {
		snprintf(msg, sizeof msg, "another probe is in progress on bus %s: try again when "
			 "it is over", cfg->buses[bus].id);
		answer_error(ctl, answer, actx, rq->id, "busy", msg);
		return;
	}
	pd = calloc(1, sizeof *pd);
	reads = calloc(rq->nreads, sizeof *reads);
	if (!pd || !reads) {
		free(pd);
		free(reads);
		answer_error(ctl, answer, actx, rq->id, "internal", "out of memory");
		return;
	}
	pd->ctl = ctl;
	pd->answer = answer;
	pd->actx = actx;
	pd->bus = (size_t)bus;
	snprintf(pd->bus_id, sizeof pd->bus_id, "%s", cfg->buses[bus].id);
	pd->bus_timeout_ms = cfg->buses[bus].timeout_ms;
	snprintf(pd->id, sizeof pd->id, "%s", rq->id);
	pd->job = (struct poller_probe){ .unit = rq->unit, .timeout_ms = rq->timeout_ms,
					 .start_by = clock_mono_ms() + CONTROL_PROBE_WAIT_MS,
					 .stop_on_silence = rq->stop_on_silence,
					 .reads = reads, .nreads = rq->nreads,
					 .done = probe_back, .ctx = pd };
	for (size_t i = 0; i < rq->nreads; i++)
		reads[i] = (struct poller_read){ .table = rq->reads[i].table,
							 .start = rq->reads[i].address,
							 .count = rq->reads[i].count };
	/* listed before it is handed over: the poller may give it back at once */
	pthread_mutex_lock(&ctl->mu);
	pd->next = ctl->pend;
	ctl->pend = pd;
	pthread_mutex_unlock(&ctl->mu);
	if (ctl->core->probe(ctl->core->ctx, (size_t)bus, &pd->job) == 0) {
		log_info("control: probe of bus %s unit %u (%zu read%s) handed to its poller",
			 cfg->buses[bus].id, rq->unit, rq->nreads, rq->nreads == 1 ? "" : "s");
		return;
	}
	int e = errno;
	pthread_mutex_lock(&ctl->mu);
	for (struct pending **pp = &ctl->pend; *pp; pp = &(*pp)->next)
		if (*pp == pd) {
			*pp = pd->next;
			break;
		}
	pthread_mutex_unlock(&ctl->mu);
	if (e == ENOBUFS)
		snprintf(msg, sizeof msg, "bus %s has too many probes waiting: try again",
			 cfg->buses[bus].id);
	else
		snprintf(msg, sizeof msg, "bus %s: its poller does not take probes now (%s)",
			 cfg->buses[bus].id, strerror(e));
	answer_error(ctl, answer, actx, pd->id, e == ENOBUFS ? "busy" : "stopped", msg);
	free(pd->job.reads);
	free(pd);
}

/* The probes given back: answered (when their asker is still there) and freed. */
static void take_back(struct control *ctl)
{
	struct pending *done = NULL, **pp;
	uint64_t v;

	if (read(ctl->efd, &v, sizeof v) < 0 && errno != EAGAIN)
		log_warn("control: eventfd");
	pthread_mutex_lock(&ctl->mu);
	for (pp = &ctl->pend; *pp;) {
		struct pending *pd = *pp;
		if (pd->back) {
			*pp = pd->next;
			pd->next = done;
			done = pd;
		} else {
			pp = &pd->next;
		}
	}
	pthread_mutex_unlock(&ctl->mu);
	while (done) {
		struct pending *pd = done;

		done = pd->next;
		if (pd->actx)
			answer_probe_result(ctl, pd);
		free(pd->job.reads);
		free(pd);
	}
}

/* ---- the entry points --------------------------------------------------------------- */

void control_handle(struct control *ctl, const char *text, size_t len, control_answer_fn answer,
		    void *actx)
{
	struct control_request *rq = malloc(sizeof *rq);
	const char *code;
	char msg[300];

	if (!rq) {
		answer_error(ctl, answer, actx, NULL, "internal", "out of memory");
		return;
	}
	if (control_parse(text, len, rq, &code, msg, sizeof msg) != 0) {
		answer_error(ctl, answer, actx, rq->id, code, msg);
		free(rq);
		return;
	}
	switch (rq->op) {
	case CTL_HELLO:
		answer_hello(ctl, rq, answer, actx);
		break;
	case CTL_STATUS:
		answer_status(ctl, rq, answer, actx);
		break;
	default:
		start_probe(ctl, rq, answer, actx);
		break;
	}
	free(rq);
}

void control_forget(struct control *ctl, void *actx)
{
	pthread_mutex_lock(&ctl->mu);
	for (struct pending *pd = ctl->pend; pd; pd = pd->next)
		if (pd->actx == actx)
			pd->actx = NULL;
	pthread_mutex_unlock(&ctl->mu);
}

/* ---- clients ----------------------------------------------------------------------- */

static void client_close(struct control *ctl, struct client *c)
{
	char sink[4096];

	control_forget(ctl, c);
	/* bytes it sent that were not read would make the close a reset, and its last
	 * reply (too_large, timeout) would be lost to it: what waits is read first, a
	 * bounded amount, without waiting */
	for (int i = 0; i < 16 && recv(c->fd, sink, sizeof sink, MSG_DONTWAIT) > 0; i++)
		;
	close(c->fd);
	c->fd = -1;
	jb_free(&c->out);
	c->inlen = c->outoff = 0;
	c->waiting = c->eof = c->bye = false;
}

/* A reply for client c (actx): written out from control_io. */
static void client_answer(void *actx, const char *line, size_t len)
{
	struct client *c = actx;

	jb_reset(&c->out);
	jb_raw(&c->out, line, len);
	c->outoff = 0;
	c->waiting = false;
	c->deadline = clock_mono_ms() + CONTROL_WRITE_MS;
	if (c->out.oom)
		c->bye = true; /* nothing sensible to write: let it go */
}

/* Write what is due; false when the client is gone. */
static bool client_write(struct control *ctl, struct client *c)
{
	while (c->outoff < c->out.len) {
		ssize_t n = send(c->fd, c->out.p + c->outoff, c->out.len - c->outoff,
				 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return true;
			client_close(ctl, c);
			return false;
		}
		c->outoff += (size_t)n;
	}
	jb_reset(&c->out);
	c->outoff = 0;
	if (c->bye) {
		client_close(ctl, c);
		return false;
	}
	c->deadline = clock_mono_ms() + CONTROL_IDLE_MS;
	return true;
}

/* Answer the requests waiting whole in c->in, one at a time: the next is taken only once
 * the reply to this one is out (a probe's comes later). False when the client is gone. */
static bool client_requests(struct control *ctl, struct client *c)
{
	while (!c->waiting && c->out.len == 0 && c->fd >= 0) {
		char *nl = memchr(c->in, '\n', c->inlen);
		size_t len;

		if (!nl) {
			if (c->inlen == sizeof c->in) {
				char msg[96];
				snprintf(msg, sizeof msg, "a request is one line of at most %d bytes",
					 CONTROL_REQUEST_MAX);
				answer_error(ctl, client_answer, c, NULL, "too_large", msg);
				c->bye = true;
				return client_write(ctl, c);
			}
			if (c->eof) {
				if (c->inlen == 0) {
					client_close(ctl, c);
					return false;
				}
				/* a last request without its newline: taken as it is */
				nl = c->in + c->inlen;
			} else {
				return true;
			}
		}
		len = (size_t)(nl - c->in);
		c->waiting = true;
		control_handle(ctl, c->in, len > 0 && c->in[len - 1] == '\r' ? len - 1 : len,
			       client_answer, c);
		len = len < c->inlen ? len + 1 : len;
		memmove(c->in, c->in + len, c->inlen - len);
		c->inlen -= len;
		if (c->waiting)
			c->deadline = CONTROL_NEVER; /* a probe: the poller gives it back in time */
		else if (!client_write(ctl, c))
			return false;
	}
	return true;
}

static void client_read(struct control *ctl, struct client *c)
{
	while (c->inlen < sizeof c->in) {
		ssize_t n = recv(c->fd, c->in + c->inlen, sizeof c->in - c->inlen, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				client_close(ctl, c);
			break;
		}
		if (n == 0) {
			c->eof = true;
			break;
		}
		c->inlen += (size_t)n;
		if (memchr(c->in + c->inlen - (size_t)n, '\n', (size_t)n))
			break;
	}
	if (c->fd >= 0)
		client_requests(ctl, c);
}

static void accept_clients(struct control *ctl, int64_t now)
{
	for (;;) {
		int fd = accept4(ctl->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct client *c = NULL;

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warn("control: accept");
			return;
		}
		for (size_t i = 0; i < CONTROL_CLIENTS_MAX && !c; i++)
			if (ctl->cl[i].fd < 0)
				c = &ctl->cl[i];
		if (!c) {
			char line[160];
			int n = snprintf(line, sizeof line, "{\"v\":%d,\"ok\":false,\"error\":\"busy\","
					 "\"message\":\"%d clients are connected already: try "
					 "again\"}\n", CONTROL_PROTOCOL, CONTROL_CLIENTS_MAX);
			/* a fresh socket's buffer takes a line: said, not waited for; what it
			 * sent already is read, or the close would be a reset that loses it */
			if (send(fd, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
				/* it went away already */
			}
			for (int i = 0; i < 16 && recv(fd, line, sizeof line, MSG_DONTWAIT) > 0; i++)
				;
			close(fd);
			continue;
		}
		*c = (struct client){ .fd = fd, .deadline = now + CONTROL_IDLE_MS };
		jb_init(&c->out);
	}
}

/* ---- the socket -------------------------------------------------------------------- */

struct control *control_open(const char *path, const char *link,
			     const struct control_core *core, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct control *ctl = calloc(1, sizeof *ctl);
	char tmp[sizeof sa.sun_path + 16];
	struct stat st;

	if (!ctl) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ctl->core_copy = *core;
	ctl->core = &ctl->core_copy;
	ctl->lfd = ctl->efd = -1;
	for (size_t i = 0; i < CONTROL_CLIENTS_MAX; i++)
		ctl->cl[i].fd = -1;
	pthread_mutex_init(&ctl->mu, NULL);
	jb_init(&ctl->status);
	jb_init(&ctl->reply);
	/* bound under another name and moved into place once it is 0660: the path never
	 * names a socket with the umask's mode, nor is it ever missing while a stale one is
	 * replaced */
	if (snprintf(ctl->path, sizeof ctl->path, "%s", path) >= (int)sizeof ctl->path ||
	    snprintf(tmp, sizeof tmp, "%s.%ld", path, (long)getpid()) >= (int)sizeof sa.sun_path) {
		snprintf(err, errlen, "%s: the path is too long for a socket (at most %zu bytes)",
			 path, sizeof sa.sun_path - 8);
		goto fail;
	}
	memcpy(sa.sun_path, tmp, strlen(tmp) + 1);
	ctl->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ctl->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ctl->efd < 0 || ctl->lfd < 0) {
		snprintf(err, errlen, "%s", strerror(errno));
		goto fail;
	}
	unlink(tmp);
	if (bind(ctl->lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || chmod(tmp, 0660) != 0 ||
	    listen(ctl->lfd, CONTROL_CLIENTS_MAX) != 0 || rename(tmp, path) != 0 ||
	    stat(path, &st) != 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		unlink(tmp);
		goto fail;
	}
	ctl->ino = st.st_ino;
	if (link && link[0]) {
		/* made beside and moved over: a stale socket or link there is replaced whole */
		char ltmp[sizeof ctl->link + 16];

		if (snprintf(ctl->link, sizeof ctl->link, "%s", link) >= (int)sizeof ctl->link ||
		    snprintf(ltmp, sizeof ltmp, "%s.%ld", link, (long)getpid()) >= (int)sizeof ltmp) {
			snprintf(err, errlen, "%s: the path is too long", link);
			goto fail;
		}
		unlink(ltmp);
		if (symlink(path, ltmp) != 0 || rename(ltmp, link) != 0) {
			snprintf(err, errlen, "%s: %s", link, strerror(errno));
			unlink(ltmp);
			ctl->link[0] = '\0';
			goto fail;
		}
	}
	return ctl;
fail:
	if (ctl->ino == 0)
		ctl->path[0] = '\0'; /* not bound: whatever is there is not ours */
	control_close(ctl);
	return NULL;
}

void control_close(struct control *ctl)
{
	struct stat st;

	if (!ctl)
		return;
	for (size_t i = 0; i < CONTROL_CLIENTS_MAX; i++)
		if (ctl->cl[i].fd >= 0)
			client_close(ctl, &ctl->cl[i]);
	/* the pollers are gone: every probe is back */
	while (ctl->pend) {
		struct pending *pd = ctl->pend;
		ctl->pend = pd->next;
		free(pd->job.reads);
		free(pd);
	}
	if (ctl->lfd >= 0)
		close(ctl->lfd);
	if (ctl->efd >= 0)
		close(ctl->efd);
	/* ours only: a socket someone put there since is theirs */
	if (ctl->path[0] && stat(ctl->path, &st) == 0 && st.st_ino == ctl->ino)
		unlink(ctl->path);
	if (ctl->link[0]) {
		char to[sizeof ctl->path];
		ssize_t n = readlink(ctl->link, to, sizeof to - 1);

		if (n > 0 && (to[n] = '\0', strcmp(to, ctl->path) == 0))
			unlink(ctl->link);
	}
	pthread_mutex_destroy(&ctl->mu);
	jb_free(&ctl->status);
	jb_free(&ctl->reply);
	free(ctl);
}

size_t control_pollfds(struct control *ctl, struct pollfd *pfd, size_t max)
{
	size_t n = 0;

	if (max < 2)
		return 0;
	pfd[n] = (struct pollfd){ .fd = ctl->efd, .events = POLLIN };
	ctl->slot_of[n++] = NULL;
	pfd[n] = (struct pollfd){ .fd = ctl->lfd, .events = POLLIN };
	ctl->slot_of[n++] = NULL;
	for (size_t i = 0; i < CONTROL_CLIENTS_MAX && n < max; i++) {
		struct client *c = &ctl->cl[i];
		short ev = 0;

		if (c->fd < 0)
			continue;
		if (c->out.len > c->outoff)
			ev = POLLOUT;
		else if (!c->waiting && !c->eof)
			ev = POLLIN; /* the next request, once this one is answered */
		if (!ev)
			continue; /* waiting for a probe: a hang-up would be reported every turn */
		pfd[n] = (struct pollfd){ .fd = c->fd, .events = ev };
		ctl->slot_of[n++] = c;
	}
	return n;
}

void control_io(struct control *ctl, const struct pollfd *pfd, size_t n, int64_t now)
{
	if (n >= 2 && (pfd[0].revents & POLLIN))
		take_back(ctl);
	for (size_t k = 2; k < n; k++) {
		struct client *c = ctl->slot_of[k];

		if (!c || c->fd != pfd[k].fd || !pfd[k].revents)
			continue;
		if (pfd[k].revents & POLLOUT) {
			if (client_write(ctl, c))
				client_requests(ctl, c);
		} else if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR)) {
			client_read(ctl, c);
		}
	}
	/* answers that came back (take_back) and were not written yet */
	for (size_t i = 0; i < CONTROL_CLIENTS_MAX; i++) {
		struct client *c = &ctl->cl[i];

		if (c->fd >= 0 && c->out.len > c->outoff && client_write(ctl, c))
			client_requests(ctl, c);
		if (c->fd >= 0 && c->deadline <= now) {
			/* a client that does not finish a request, or does not read its reply */
			if (c->out.len == 0 && c->inlen > 0) {
				char line[160];
				int len = snprintf(line, sizeof line, "{\"v\":%d,\"ok\":false,\"error\":"
						   "\"timeout\",\"message\":\"no whole request in "
						   "%d s\"}\n", CONTROL_PROTOCOL,
						   CONTROL_IDLE_MS / 1000);
				if (send(c->fd, line, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
					/* it is being let go either way */
				}
			}
			client_close(ctl, c);
		}
	}
	if (n >= 2 && (pfd[1].revents & POLLIN))
		accept_clients(ctl, now);
}

int64_t control_deadline(const struct control *ctl)
{
	int64_t at = CONTROL_NEVER;

	for (size_t i = 0; i < CONTROL_CLIENTS_MAX; i++)
		if (ctl->cl[i].fd >= 0 && ctl->cl[i].deadline < at)
			at = ctl->cl[i].deadline;
	return at;
}
