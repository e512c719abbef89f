/*
 * serpoll: the serial-line pollers. Owns one thread per line, the line's write queue,
 * and each of its devices' schedule and circuit breaker; the line's connection belongs
 * to its transport (struct sp_backend, serpoll_int.h): serpoll_tty.c, a tty through
 * libmodbus, or serpoll_dtu.c, RTU frames on a TCP socket to a DTU. It must never have
 * two requests on one line at once, never let one line wait on another, and never touch
 * a reading after handing it to the sink.
 *
 * Shape. A line's thread runs one loop: do a queued write if there is one (alert
 * actions should not wait a whole poll cycle), else a queued probe (reads asked by
 * `sluicectl probe` through the daemon, or by SunSpec discovery: drivers/poller.h), else
 * poll the device that is due first, else sleep until the next one is due. A line is
 * built for every serial bus that has a device, even one that waits for discovery to
 * give it points: the line is the daemon's, and discovery reads through it. A poll sends the device's planned
 * requests one after another, each after the line's guard time of silence. Every wait
 * (serpoll_line_wait, which the transports use too) also watches the line's eventfd, so
 * that a queued write wakes a sleeping line and a stop is heard at once.
 *
 * Failures. An exception reply fails only the points of its request: the device is
 * alive. Anything else (timeout, bad CRC, wrong unit, I/O error) fails the request and
 * the rest of that poll unsent: the device has just shown it is not answering, and a
 * dead device may cost its line only its timeout per attempt. A poll in which no
 * request got an answer is a failed poll; the device's circuit breaker
 * (drivers/breaker.h, shared with tcpoll) takes it offline after offline_after of them
 * in a row, retries it at a slower pace and logs it. A line that cannot be opened (a
 * USB adapter not plugged in, a DTU out of coverage) is retried with a backoff (its
 * link_breaker); meanwhile its polls still happen on schedule and fail at once with
 * MBE_CONNECT, so each still yields a reading.
 *
 * Schedule: as in tcpoll (drivers/polldev.h, drivers/breaker.h). The first poll of a
 * device falls at a Weyl-sequence fraction of its first interval; the next is due +
 * interval, re-anchored at now when that is past (never a catch-up burst). All on the
 * monotonic clock.
 */
#include "serpoll.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "breaker.h"
#include "clock.h"
#include "log.h"
#include "mberr.h"
#include "mbpdu.h"
#include "mbwrite.h"
#include "plan.h"
#include "polldev.h"
#include "reply.h"
#include "rtu.h"
#include "serpoll_int.h"

#define SP_DEFAULT_TIMEOUT_MS 1000
#define SP_MAX_WRITES 64         /* queued per line */
#define SP_MAX_PROBES 4          /* queued per line: a person's probe and discovery's read */
#define SP_WAIT_SLICE_MS 60000

struct sp_dev {
	struct polldev pd;           /* config, plan, breaker */
	struct sp_line *line;
	int64_t due;
};

struct sp_write {
	struct sp_write *next;
	struct sp_dev *dev;
	uint16_t point;
	uint64_t tag;
	double value;
	struct mbwrite w;
};

struct serpoll {
	struct site site;            /* the config's buses and devices */
	uint32_t generation;
	struct poller_sink sink;
	struct sp_line *lines;
	size_t nlines;
	struct sp_dev *devs;
	size_t ndevs;
	struct sp_dev **dev_of;      /* by config device index; NULL when not ours */
	size_t ncfgdevs;
	struct sp_line **line_of;    /* by config bus index; NULL when not ours */
	bool started, running;
	struct breaker_pace pace;    /* of offline retries */
	atomic_bool stopping;
	_Atomic uint64_t polls, failed, requests, timeouts, proto_errors, opens, open_fails,
		writes, write_fails, offline;
};

static void stat_inc(_Atomic uint64_t *s)
{
	atomic_fetch_add_explicit(s, 1, memory_order_relaxed);
}

static bool line_stopping(const struct sp_line *l)
{
	return atomic_load_explicit(&l->sp->stopping, memory_order_relaxed);
}

static void wake_drain(struct sp_line *l)
{
	uint64_t v;

	while (read(l->wakefd, &v, sizeof v) == (ssize_t)sizeof v)
		;
}

int serpoll_line_wait(struct sp_line *l, int fd, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd p[2] = { { .fd = l->wakefd, .events = POLLIN },
				       { .fd = fd, .events = events } };
		int64_t left;
		int n;

		if (line_stopping(l))
			return SP_STOPPED;
		left = deadline - clock_mono_ms();
		if (left < 0)
			left = 0;
		n = poll(p, fd >= 0 ? 2 : 1, (int)(left < SP_WAIT_SLICE_MS ? left : SP_WAIT_SLICE_MS));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_warn("bus %s: poll", l->bus->id);
			return 0;
		}
		if (p[0].revents) {
			wake_drain(l);
			if (line_stopping(l))
				return SP_STOPPED;
			if (fd < 0)
				return 2;
		}
		if (fd >= 0 && p[1].revents)
			return 1;
		if (clock_mono_ms() >= deadline)
			return 0;
	}
}

/* The guard time: silence since the line's last transaction. SP_STOPPED or 0. */
static int line_guard(struct sp_line *l)
{
	int64_t until = l->last_end + l->guard;

	while (clock_mono_ms() < until) {
		int rc = serpoll_line_wait(l, -1, 0, until);
		if (rc == SP_STOPPED)
			return SP_STOPPED;
	}
	return line_stopping(l) ? SP_STOPPED : 0;
}

/* --- the line ------------------------------------------------------------------------ */

static const char *line_what(const struct sp_line *l)
{
	return l->bus->kind == BUS_RTU ? l->bus->device : l->bus->host;
}

/* 0 when the line is open, else MBE_CONNECT (or SP_STOPPED). Opening is retried with a
 * backoff, and its failures logged once, then at widening intervals. */
static int line_open(struct sp_line *l)
{
	struct serpoll *sp = l->sp;
	enum breaker_event ev;
	char err[512];
	int rc;

	if (l->conn != NULL)
		return 0;
	if (!breaker_link_may_try(&l->link, clock_mono_ms()))
		return MBE_CONNECT;
	err[0] = '\0';
	rc = l->be->open(l, err, sizeof err);
	if (rc == SP_STOPPED)
		return SP_STOPPED;
	if (rc == 0) {
		stat_inc(&sp->opens);
		ev = breaker_link_opened(&l->link);
		breaker_link_log(&l->link, ev, l->bus->id, line_what(l), NULL);
		l->last_end = clock_mono_ms(); /* a fresh line: let it settle one guard time */
		return 0;
	}
	stat_inc(&sp->open_fails);
	ev = breaker_link_failed(&l->link, clock_mono_ms());
	breaker_link_log(&l->link, ev, l->bus->id, NULL, err);
	return MBE_CONNECT;
}

static void line_count(struct sp_line *l, int rc)
{
	if (rc == MBE_TIMEOUT)
		stat_inc(&l->sp->timeouts);
	else if (rc == MBE_PROTO || rc == MBE_BAD_CRC || rc == MBE_WRONG_UNIT)
		stat_inc(&l->sp->proto_errors);
}

/* Open the line if need be and keep the guard: 0, MBE_CONNECT or SP_STOPPED. */
static int line_ready(struct sp_line *l)
{
	int rc = line_open(l);

	if (rc != 0)
		return rc;
	if (line_guard(l) != 0)
		return SP_STOPPED;
	stat_inc(&l->sp->requests);
	return 0;
}

/* A request is over with rc: note when the line fell silent, count it. An I/O error or
 * a closed connection closes the line; the next request reopens it. */
static int line_done(struct sp_line *l, int rc)
{
	l->last_end = clock_mono_ms();
	line_count(l, rc);
	if (rc == MBE_IO || rc == MBE_CLOSED) {
		log_debug("bus %s: %s, closing the line", l->bus->id, mb_strerror(rc));
		l->be->close(l);
	}
	return rc;
}

static int line_read(struct sp_line *l, uint8_t unit, const struct plan_req *rq, uint16_t *regs,
		     uint8_t *bits)
{
	int rc = line_ready(l);

	return rc != 0 ? rc : line_done(l, l->be->read(l, unit, rq, regs, bits));
}

static int line_write(struct sp_line *l, uint8_t unit, const struct mbwrite *w)
{
	int rc = line_ready(l);

	return rc != 0 ? rc : line_done(l, l->be->write(l, unit, w));
}

/* --- polls ------------------------------------------------------------------------- */

static void dev_poll(struct sp_line *l, struct sp_dev *d, int64_t now)
{
	struct serpoll *sp = l->sp;
	const struct read_plan *plan = &d->pd.plan;
	struct reading *r;
	uint16_t regs[MB_MAX_READ_REGS];
	uint8_t bits[MB_MAX_READ_BITS];
	bool answered = plan->nreqs == 0;
	enum breaker_event ev;
	int err = 0;

	r = polldev_reading(&d->pd, sp->generation, d->due, now);
	if (r == NULL) {
		d->due = breaker_dev_next(&d->pd.brk, BREAKER_NONE, d->due, now, now);
		return;
	}
	for (size_t i = 0; i < plan->nreqs; i++) {
		int rc = line_read(l, d->pd.cfg->unit_id, &plan->reqs[i], regs, bits);

		if (rc == SP_STOPPED) {
			reading_free(r); /* abandoned, as the header promises */
			return;
		}
		if (rc == 0) {
			reply_decode(d->pd.cfg, plan, r, i, regs, bits);
			answered = true;
		} else if (reply_is_answer(rc)) {
			/* an exception: the device is there, only this request fails */
			reply_fail(plan, r, i, i + 1, rc);
			answered = true;
		} else {
			reply_fail(plan, r, i, plan->nreqs, rc);
			err = rc;
			break;
		}
	}
	now = clock_mono_ms();
	ev = polldev_judge(&d->pd, &sp->pace, r, answered, err, now);
	if (ev == BREAKER_DOWN)
		stat_inc(&sp->offline);
	else if (ev == BREAKER_BACK)
		atomic_fetch_sub(&sp->offline, 1);
	stat_inc(&sp->polls);
	if (reply_reading_failed(r))
		stat_inc(&sp->failed);
	d->due = breaker_dev_next(&d->pd.brk, ev, d->due, r->start_mono_ms, now);
	if (sp->sink.emit != NULL)
		sp->sink.emit(sp->sink.ctx, r);
	else
		reading_free(r);
}

/* --- writes ------------------------------------------------------------------------ */

static struct sp_write *wq_pop(struct sp_line *l)
{
	struct sp_write *w;

	pthread_mutex_lock(&l->mu);
	w = l->wq_head;
	if (w != NULL) {
		l->wq_head = w->next;
		if (l->wq_head == NULL)
			l->wq_tail = NULL;
		l->nwq--;
	}
	pthread_mutex_unlock(&l->mu);
	return w;
}

static void line_do_write(struct sp_line *l, struct sp_write *w)
{
	struct serpoll *sp = l->sp;
	const struct device_cfg *dc = w->dev->pd.cfg;
	int rc = 0;

	if (w->w.rmw) {
		/* a bool on a bit shares its register with others: read it, change one bit */
		struct plan_req rq = { .table = MB_HOLDING, .start = w->w.addr, .count = 1 };
		uint16_t reg = 0;
		uint8_t unused[1];

		rc = line_read(l, dc->unit_id, &rq, &reg, unused);
		if (rc == 0)
			mbwrite_set_bit(&w->w, &dc->points[w->point], reg);
	}
	if (rc == 0)
		rc = line_write(l, dc->unit_id, &w->w);
	if (rc == SP_STOPPED)
		rc = MBE_CLOSED;
	polldev_log_write(&w->dev->pd, w->point, w->value, rc);
	stat_inc(&sp->writes);
	if (rc != 0)
		stat_inc(&sp->write_fails);
	if (sp->sink.write_done != NULL)
		sp->sink.write_done(sp->sink.ctx, w->dev->pd.index, w->point, w->tag, rc);
	free(w);
}

/* --- probes ------------------------------------------------------------------------ */

static struct poller_probe *pq_pop(struct sp_line *l)
{
	struct poller_probe *p;

	pthread_mutex_lock(&l->mu);
	p = l->pq_head;
	if (p != NULL) {
		l->pq_head = p->next;
		if (l->pq_head == NULL)
			l->pq_tail = NULL;
		l->npq--;
	}
	pthread_mutex_unlock(&l->mu);
	return p;
}

/* The probe's reads one after another, at the probe's timeout; the line's own timeout
 * comes back after. A stop abandons the rest (PROBE_STOPPED). */
static void line_do_probe(struct sp_line *l, struct poller_probe *p)
{
	int64_t timeout = l->timeout;
	int status = PROBE_DONE;

	if (clock_mono_ms() > p->start_by) {
		poller_probe_finish(p, PROBE_LATE);
		return;
	}
	if (p->timeout_ms > 0)
		l->timeout = p->timeout_ms;
	for (size_t i = 0; i < p->nreads; i++) {
		struct poller_read *rd = &p->reads[i];
		struct plan_req rq = { .table = (enum mb_table)rd->table, .start = rd->start,
				       .count = rd->count };
		int rc = line_read(l, p->unit, &rq, rd->regs, rd->bits);

		if (rc == SP_STOPPED) {
			poller_probe_fail(p, i, MBE_CLOSED);
			status = PROBE_STOPPED;
			break;
		}
		rd->err = rc;
		if (rc != 0 && p->stop_on_silence && poller_silent(rc)) {
			poller_probe_fail(p, i + 1, rc);
			break;
		}
	}
	l->timeout = timeout;
	poller_probe_finish(p, status);
}

/* Probes still queued when the line's thread is gone: said to their askers. */
static void line_drop_probes(struct sp_line *l)
{
	struct poller_probe *p;

	while (l->mu_init && (p = pq_pop(l)) != NULL) {
		poller_probe_fail(p, 0, MBE_CLOSED);
		poller_probe_finish(p, PROBE_STOPPED);
	}
}

/* --- the thread -------------------------------------------------------------------- */

static struct sp_dev *line_next_due(struct sp_line *l)
{
	struct sp_dev *best = NULL;

	for (size_t i = 0; i < l->ndevs; i++)
		if (best == NULL || l->devs[i]->due < best->due)
			best = l->devs[i];
	return best;
}

static void *line_main(void *arg)
{
	struct sp_line *l = arg;
	struct sp_write *w;
	struct poller_probe *p;

	while (!line_stopping(l)) {
		int64_t now = clock_mono_ms();
		struct sp_dev *d;

		if ((w = wq_pop(l)) != NULL) {
			line_do_write(l, w);
			continue;
		}
		if ((p = pq_pop(l)) != NULL) {
			line_do_probe(l, p);
			continue;
		}
		d = line_next_due(l);
		if (d == NULL) {
			serpoll_line_wait(l, -1, 0, now + SP_WAIT_SLICE_MS);
			continue;
		}
		if (d->due > now) {
			serpoll_line_wait(l, -1, 0, d->due);
			continue;
		}
		dev_poll(l, d, now);
	}
	l->be->close(l);
	return NULL;
}

/* --- the public side ------------------------------------------------------------------ */

#define SP_KINDS (POLLDEV_BUS(BUS_RTU) | POLLDEV_BUS(BUS_RTU_OVER_TCP))

static int line_init(struct sp_line *l, struct serpoll *sp, const struct bus_cfg *b,
		     size_t busidx, char *err, size_t errlen)
{
	unsigned chars35;

	l->sp = sp;
	l->bus = b;
	l->busidx = busidx;
	l->wakefd = -1;
	l->nc = (struct netconn)NETCONN_INIT;
	l->be = b->kind == BUS_RTU ? &serpoll_tty_backend : &serpoll_dtu_backend;
	if (b->kind == BUS_RTU && (b->device == NULL || b->device[0] == '\0')) {
		snprintf(err, errlen, "bus %s: no serial device", b->id);
		return -1;
	}
	if (b->kind == BUS_RTU_OVER_TCP && (b->host == NULL || b->host[0] == '\0')) {
		snprintf(err, errlen, "bus %s: no host", b->id);
		return -1;
	}
	l->timeout = b->timeout_ms > 0 ? b->timeout_ms : SP_DEFAULT_TIMEOUT_MS;
	l->char_bits = rtu_char_bits(b->data_bits, b->parity, b->stop_bits);
	/* RTU ends a frame with 3.5 characters of silence: a guard shorter than that would
	 * run two frames together at low baud rates */
	chars35 = (unsigned)rtu_transfer_ms(b->baud, l->char_bits * 7, 1);
	chars35 = (chars35 + 1) / 2;
	l->guard = b->guard_ms > 0 ? b->guard_ms : 0;
	if (b->kind == BUS_RTU && l->guard < chars35)
		l->guard = chars35;
	if (pthread_mutex_init(&l->mu, NULL) != 0) {
		snprintf(err, errlen, "serpoll: cannot create a mutex");
		return -1;
	}
	l->mu_init = true;
	return 0;
}

struct serpoll *serpoll_new(const struct site *cfg, uint32_t generation,
			    const struct poller_sink *sink, char *err, size_t errlen)
{
	struct serpoll *sp;
	size_t *line_of_bus = NULL, nd = 0;

	sp = calloc(1, sizeof *sp);
	if (sp == NULL)
		goto nomem;
	sp->site = *cfg;
	sp->generation = generation;
	if (sink != NULL)
		sp->sink = *sink;
	atomic_init(&sp->stopping, false);
	sp->pace = (struct breaker_pace){ BREAKER_RETRY_MIN_MS, BREAKER_RETRY_MAX_MS };

	if (polldev_count(cfg, SP_KINDS, &nd, err, errlen) != 0)
		goto fail;
	line_of_bus = malloc((cfg->nbuses ? cfg->nbuses : 1) * sizeof *line_of_bus);
	sp->devs = calloc(nd ? nd : 1, sizeof *sp->devs);
	sp->lines = calloc(cfg->nbuses ? cfg->nbuses : 1, sizeof *sp->lines);
	sp->dev_of = calloc(cfg->ndevices ? cfg->ndevices : 1, sizeof *sp->dev_of);
	sp->line_of = calloc(cfg->nbuses ? cfg->nbuses : 1, sizeof *sp->line_of);
	if (line_of_bus == NULL || sp->devs == NULL || sp->lines == NULL || sp->dev_of == NULL ||
	    sp->line_of == NULL)
		goto nomem;
	sp->ncfgdevs = cfg->ndevices;

	/* a line for every serial bus with a device on it, polled or waiting for discovery */
	for (size_t b = 0; b < cfg->nbuses; b++) {
		struct sp_line *l = &sp->lines[sp->nlines];

		line_of_bus[b] = SIZE_MAX;
		if (!polldev_bus_owned(cfg, b, SP_KINDS))
			continue;
		line_of_bus[b] = sp->nlines++;
		if (line_init(l, sp, &cfg->buses[b], b, err, errlen) != 0)
			goto fail;
		sp->line_of[b] = l;
	}
	for (size_t i = 0; i < cfg->ndevices; i++) {
		struct sp_dev *d;
		if (!polldev_selected(cfg, &cfg->devices[i], SP_KINDS))
			continue;
		d = &sp->devs[sp->ndevs];
		d->line = &sp->lines[line_of_bus[cfg->devices[i].bus]];
		if (polldev_init(&d->pd, cfg, (uint32_t)i, err, errlen) != 0)
			goto fail;
		sp->ndevs++;
		d->line->ndevs++;
		sp->dev_of[i] = d;
	}
	for (size_t k = 0; k < sp->nlines; k++) {
		struct sp_line *l = &sp->lines[k];
		l->devs = calloc(l->ndevs ? l->ndevs : 1, sizeof *l->devs);
		if (l->devs == NULL)
			goto nomem;
		l->ndevs = 0;
	}
	for (size_t k = 0; k < sp->ndevs; k++) {
		struct sp_line *l = sp->devs[k].line;
		l->devs[l->ndevs++] = &sp->devs[k];
	}
	/* Serial lines first, while descriptors are low (see serpoll.h); a line that
	 * does not open now is retried by its thread. */
	for (size_t k = 0; k < sp->nlines; k++)
		if (sp->lines[k].bus->kind == BUS_RTU)
			(void)line_open(&sp->lines[k]);
	for (size_t k = 0; k < sp->nlines; k++) {
		sp->lines[k].wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (sp->lines[k].wakefd < 0) {
			snprintf(err, errlen, "serpoll: eventfd: %s", strerror(errno));
			goto fail;
		}
		/* the thread tries again at its first poll, still counting the same streak */
		sp->lines[k].link.retry_at = 0;
		sp->lines[k].link.backoff = 0;
	}
	free(line_of_bus);
	return sp;

nomem:
	snprintf(err, errlen, "serpoll: out of memory");
fail:
	free(line_of_bus);
	serpoll_free(sp);
	return NULL;
}

int serpoll_start(struct serpoll *sp)
{
	int64_t now = clock_mono_ms();

	if (sp->started) {
		errno = EALREADY;
		return -1;
	}
	sp->started = true;
	for (size_t k = 0; k < sp->ndevs; k++) {
		struct sp_dev *d = &sp->devs[k];
		d->due = polldev_first_due(&d->pd, now);
	}
	sp->running = true;
	for (size_t k = 0; k < sp->nlines; k++) {
		struct sp_line *l = &sp->lines[k];
		int rc = pthread_create(&l->thread, NULL, line_main, l);
		if (rc != 0) {
			errno = rc;
			log_err("serpoll: cannot start the thread of bus %s", l->bus->id);
			serpoll_stop(sp);
			return -1;
		}
		l->started = true;
	}
	return 0;
}

void serpoll_stop(struct serpoll *sp)
{
	if (sp == NULL || !sp->running)
		return;
	atomic_store(&sp->stopping, true);
	for (size_t k = 0; k < sp->nlines; k++) {
		uint64_t one = 1;
		if (sp->lines[k].started && write(sp->lines[k].wakefd, &one, sizeof one) < 0)
			log_warn("serpoll: cannot signal the thread of bus %s", sp->lines[k].bus->id);
	}
	for (size_t k = 0; k < sp->nlines; k++) {
		if (sp->lines[k].started)
			pthread_join(sp->lines[k].thread, NULL);
		sp->lines[k].started = false;
	}
	/* the threads are gone: a probe still queued cannot be done */
	for (size_t k = 0; k < sp->nlines; k++)
		line_drop_probes(&sp->lines[k]);
	sp->running = false;
}

void serpoll_free(struct serpoll *sp)
{
	if (sp == NULL)
		return;
	serpoll_stop(sp);
	for (size_t k = 0; k < sp->nlines; k++) {
		struct sp_line *l = &sp->lines[k];
		struct sp_write *w;
		if (l->be != NULL)
			l->be->close(l);
		netconn_fini(&l->nc);
		if (l->wakefd >= 0)
			close(l->wakefd);
		/* writes still queued are dropped without write_done, as tcpoll does */
		while (l->mu_init && (w = wq_pop(l)) != NULL)
			free(w);
		line_drop_probes(l); /* a serpoll never started */
		if (l->mu_init)
			pthread_mutex_destroy(&l->mu);
		free(l->devs);
	}
	for (size_t k = 0; k < sp->ndevs; k++)
		polldev_fini(&sp->devs[k].pd);
	free(sp->lines);
	free(sp->devs);
	free(sp->dev_of);
	free(sp->line_of);
	free(sp);
}

/* serpoll's refusals, as serpoll.h documents them: a point that cannot be written is
 * EINVAL before its value is looked at, whatever the value. */
static const struct mbwrite_rules sp_wrules = {
	.readonly_errno = EINVAL,
	.value_first = false,
	.coil_any_type = true,
};

int serpoll_write(struct serpoll *sp, uint32_t device, uint16_t point, double value,
		  uint64_t tag)
{
	struct sp_dev *d;
	struct mbwrite q;
	struct sp_write *w;
	struct sp_line *l;
	uint64_t one = 1;

	if (sp == NULL || device >= sp->ncfgdevs || (d = sp->dev_of[device]) == NULL ||
	    point >= d->pd.cfg->npoints) {
		errno = ENOENT;
		return -1;
	}
	if (mbwrite_prepare(&d->pd.cfg->points[point], value, &sp_wrules, &q) != 0)
		return -1;
	w = calloc(1, sizeof *w);
	if (w == NULL)
		return -1;
	w->dev = d;
	w->point = point;
	w->tag = tag;
	w->value = value;
	w->w = q;
	l = d->line;
	pthread_mutex_lock(&l->mu);
	if (l->nwq >= SP_MAX_WRITES) {
		pthread_mutex_unlock(&l->mu);
		free(w);
		errno = ENOBUFS;
		return -1;
	}
	if (l->wq_tail != NULL)
		l->wq_tail->next = w;
	else
		l->wq_head = w;
	l->wq_tail = w;
	l->nwq++;
	pthread_mutex_unlock(&l->mu);
	if (write(l->wakefd, &one, sizeof one) < 0)
		log_warn("serpoll: cannot wake the thread of bus %s", l->bus->id);
	return 0;
}

int serpoll_probe(struct serpoll *sp, size_t bus, struct poller_probe *p)
{
	struct sp_line *l;
	uint64_t one = 1;

	if (sp == NULL || bus >= sp->site.nbuses || (l = sp->line_of[bus]) == NULL) {
		errno = ENOENT;
		return -1;
	}
	p->next = NULL;
	pthread_mutex_lock(&l->mu);
	/* under the lock that serpoll_stop drains the queue with: a probe is either
	 * drained or refused, never left behind */
	if (atomic_load(&sp->stopping)) {
		pthread_mutex_unlock(&l->mu);
		errno = ESHUTDOWN;
		return -1;
	}
	if (l->npq >= SP_MAX_PROBES) {
		pthread_mutex_unlock(&l->mu);
		errno = ENOBUFS;
		return -1;
	}
	if (l->pq_tail != NULL)
		l->pq_tail->next = p;
	else
		l->pq_head = p;
	l->pq_tail = p;
	l->npq++;
	pthread_mutex_unlock(&l->mu);
	if (write(l->wakefd, &one, sizeof one) < 0)
		log_warn("serpoll: cannot wake the thread of bus %s", l->bus->id);
	return 0;
}

void serpoll_get_stats(struct serpoll *sp, struct serpoll_stats *out)
{
	out->polls = atomic_load(&sp->polls);
	out->failed = atomic_load(&sp->failed);
	out->requests = atomic_load(&sp->requests);
	out->timeouts = atomic_load(&sp->timeouts);
	out->proto_errors = atomic_load(&sp->proto_errors);
	out->opens = atomic_load(&sp->opens);
	out->open_fails = atomic_load(&sp->open_fails);
	out->writes = atomic_load(&sp->writes);
	out->write_fails = atomic_load(&sp->write_fails);
	out->offline = atomic_load(&sp->offline);
}

void serpoll_set_offline_retry(struct serpoll *sp, int64_t min_ms, int64_t max_ms)
{
	sp->pace.retry_min = min_ms > 0 ? min_ms : BREAKER_RETRY_MIN_MS;
	sp->pace.retry_max = max_ms >= sp->pace.retry_min ? max_ms : sp->pace.retry_min;
}

size_t serpoll_ndevices(const struct serpoll *sp)
{
	return sp->ndevs;
}

size_t serpoll_nlines(const struct serpoll *sp)
{
	return sp->nlines;
}

bool serpoll_owns(const struct serpoll *sp, uint32_t device)
{
	return sp != NULL && device < sp->ncfgdevs && sp->dev_of[device] != NULL;
}
