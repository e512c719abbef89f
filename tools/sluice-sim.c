/*
 * sluice-sim: a Modbus TCP and RTU device simulator (the RTU ports are sim_rtu's).
 * Serves flow meters, level gauges and inverters (from the same profiles and configs
 * sluiced reads) on loopback or any local address, their values following simulated
 * time (sim_model), so a technician can try a config before going to site and the demo
 * and the integration tests can stand in for a whole site. Its command line is read by
 * sim_args, and the faults it injects on request are decided by sim_faults; this file
 * builds what is served from them and serves it.
 *
 * Owns its listening sockets, its connections and the trace file. One thread, one
 * epoll loop, non-blocking sockets throughout: a benchmark runs thousands of devices
 * each on its own port, so never a thread per connection and never select(). Must never
 * read YAML itself (daemon/config does) nor frame Modbus by hand (drivers/mbpdu does).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "codec.h"
#include "config.h"
#include "json.h"
#include "log.h"
#include "mberr.h"
#include "mbpdu.h"
#include "sim_args.h"
#include "sim_faults.h"
#include "sim_model.h"
#include "sim_rtu.h"
#include "sim_sunspec.h"

#define IN_CAP (2 * MBTCP_ADU_MAX) /* a whole frame always fits after compaction */
#define OUT_HIGH (64 * 1024)       /* stop reading a client that does not read its replies */
#define TRACE_FLUSH (64 * 1024)
#define MAX_EVENTS 256
#define EXC_GATEWAY_TARGET 0x0B    /* gateway target device failed to respond */
#define EXC_ILLEGAL_ADDRESS 0x02   /* illegal data address */
#define SUNSPEC_NAME "sluice-sim inverter"

enum { EV_LISTENER = 1, EV_CONN = 2 };

struct unit {
	uint8_t id;
	int scenario;
	char *label;               /* the config's device id, or the profile name */
	bool from_config;
	struct sim_device *dev;
	struct sim_faults faults;  /* injected on request: consulted where a reply is built
				      (serve_pdu) */
};

/* A Modbus TCP reply held back by --slow; the epoll wait ends when the first is due. */
struct delayed_reply {
	struct delayed_reply *next;
	struct conn *c;
	int64_t due;               /* clock_mono_ms */
	size_t len;
	uint8_t adu[MBTCP_ADU_MAX];
};

/* One address served: a bus of the config, or a --listen, --rtu, --rtu-tcp. */
struct endpoint {
	char *host, *port;         /* as given; a tty: its path, and port "" */
	char *label;               /* host:port ([v6]:port) or the tty's path */
	char *origin;              /* "bus pump-plc" or "--listen", for messages */
	int kind;                  /* enum sim_line */
	struct sim_rtu_line_opts rtu; /* RTU lines: speed, framing, pacing */
	struct unit *units;
	size_t nunits;
};

struct listener {
	int ev;                    /* EV_LISTENER; first, the epoll tag */
	int fd;
	struct endpoint *ep;
};

struct conn {
	int ev;                    /* EV_CONN */
	int fd;
	struct endpoint *ep;
	struct conn *prev, *next;
	uint32_t events;           /* what epoll watches now */
	char peer[64];
	size_t inlen;
	uint8_t in[IN_CAP];
	uint8_t *out;
	size_t outlen, outoff, outcap;
};

struct sim {
	struct endpoint *eps;
	size_t neps;
	struct listener **ls;
	size_t nls;
	struct conn *conns;
	size_t nconns;
	int epfd;
	double scale;
	int64_t sim0, mono0;       /* simulated time at start-up, and when that was */
	int64_t tz_min;            /* the simulated minute tz_off was computed for */
	int32_t tz_off;
	int trace_fd;
	char *trace_path;
	struct jbuf trace;
	bool paused;               /* listeners paused: out of descriptors */
	int64_t resume_at;
	uint64_t requests, dropped, accepted;
	struct sim_rtu *rtu;       /* the RTU lines, when any is served */
	struct delayed_reply *delayed; /* soonest first */
	uint64_t faulted;          /* replies a fault changed or --silent withheld (not
				      counting dead units) */
};

static volatile sig_atomic_t stop_signal;

/* --- time ---------------------------------------------------------------------------- */

/* Simulated time: starts at the real time of start-up (or --start) and runs `scale` times faster,
 * measured on the monotonic clock so a wall-clock step does not jump the simulation. */
static int64_t sim_now(const struct sim *s)
{
	return s->sim0 + (int64_t)((double)(clock_mono_ms() - s->mono0) * s->scale);
}

/* The zone's offset changes only on whole minutes (DST), so once a minute is enough. */
static int32_t sim_utc_offset(struct sim *s, int64_t sim_ms)
{
	int64_t min = sim_ms / 60000;
	if (min != s->tz_min) {
		time_t t = (time_t)(sim_ms / 1000);
		struct tm tm;
		s->tz_off = localtime_r(&t, &tm) ? (int32_t)tm.tm_gmtoff : 0;
		s->tz_min = min;
	}
	return s->tz_off;
}

/* --- building what is served --------------------------------------------------------- */

/* splitmix64's output of z: the noise step of sim_rtu, without keeping the state */
static uint64_t mix64(uint64_t z)
{
	return sim_rtu_noise_next(&z);
}

static uint64_t hash_str(const char *p)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (; *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
	return h;
}

static char *fmt_hostport(const char *host, const char *port)
{
	char buf[320];
	snprintf(buf, sizeof buf, strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
	return strdup(buf);
}

static struct endpoint *endpoint_get(struct sim *s, const char *host, const char *port,
				     const char *origin)
{
	for (size_t i = 0; i < s->neps; i++)
		if (strcmp(s->eps[i].host, host) == 0 && strcmp(s->eps[i].port, port) == 0)
			return &s->eps[i];
	struct endpoint *ne = realloc(s->eps, (s->neps + 1) * sizeof *ne);
	if (!ne)
		return NULL;
	s->eps = ne;
	struct endpoint *ep = &ne[s->neps];
	memset(ep, 0, sizeof *ep);
	ep->host = strdup(host);
	ep->port = strdup(port);
	ep->label = fmt_hostport(host, port);
	ep->origin = strdup(origin);
	s->neps++;
	if (!ep->host || !ep->port || !ep->label || !ep->origin)
		return NULL;
	return ep;
}

/* Say how ep is served. A tty is named by its path alone. -1 when ep already serves
 * units as another kind of line (the same address given twice, two ways). */
static int endpoint_set_kind(struct endpoint *ep, int kind, unsigned baud, char parity,
			     unsigned data_bits, unsigned stop_bits, bool pace)
{
	if (ep->kind != kind && ep->nunits > 0)
		return -1;
	ep->kind = kind;
	ep->rtu = (struct sim_rtu_line_opts){ .baud = baud, .parity = parity,
					      .data_bits = data_bits, .stop_bits = stop_bits,
					      .pace = pace };
	if (kind == SIM_LINE_RTU_TTY && strcmp(ep->label, ep->host) != 0) {
		char *l = strdup(ep->host);
		if (!l)
			return 0; /* the label stays "path:"; only cosmetic */
		free(ep->label);
		ep->label = l;
	}
	return 0;
}

static struct unit *endpoint_unit(const struct endpoint *ep, unsigned id)
{
	for (size_t i = 0; i < ep->nunits; i++)
		if (ep->units[i].id == id)
			return &ep->units[i];
	return NULL;
}

/* Takes dev (frees it on failure). */
static int endpoint_add_unit(struct endpoint *ep, unsigned id, int scenario, const char *label,
			     bool from_config, struct sim_device *dev)
{
	struct unit *nu = realloc(ep->units, (ep->nunits + 1) * sizeof *nu);
	if (!nu) {
		sim_device_free(dev);
		return -1;
	}
	ep->units = nu;
	struct unit *u = &nu[ep->nunits];
	memset(u, 0, sizeof *u);
	u->id = (uint8_t)id;
	u->scenario = scenario;
	u->from_config = from_config;
	u->dev = dev;
	if (!(u->label = strdup(label))) {
		sim_device_free(dev);
		return -1;
	}
	ep->nunits++;
	return 0;
}

static uint64_t unit_seed(uint64_t seed, const struct endpoint *ep, unsigned id)
{
	return mix64(seed ^ hash_str(ep->label) ^ mix64(id));
}

static void print_diag(const struct config_diag *d)
{
	for (size_t i = 0; i < d->n; i++)
		fprintf(stderr, "%s\n", d->msgs[i]);
}

/* A profile, loaded once however many devices use it. */
struct prof_cache {
	char *name;
	struct point_def *points;
	size_t npoints;
	char *display;
};

static void prof_cache_free(struct prof_cache *pc, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(pc[i].name);
		free(pc[i].points);
		free(pc[i].display);
	}
	free(pc);
}

static int build_from_listen(struct sim *s, const struct sim_args *o, int64_t start)
{
	struct config_opts copts = { .profile_path = o->profile_path };
	struct prof_cache *pc = NULL;
	size_t npc = 0;
	int rc = SIM_EXIT_USAGE;
	char err[256];

	for (size_t i = 0; i < o->nlines; i++) {
		const struct sim_args_line *la = &o->lines[i];
		const char *origin = sim_args_line_option(la->kind);
		struct endpoint *ep = endpoint_get(s, la->host, la->port, origin);
		if (!ep)
			goto oom;
		if (endpoint_set_kind(ep, la->kind, o->baud, o->parity, 8, 1, o->pace) < 0) {
			rc = sim_args_error("%s %s: the address is also given as another kind "
					    "of line", origin, la->spec);
			goto out;
		}
		for (size_t k = 0; k < la->ndevs; k++) {
			const struct sim_args_device *da = &la->devs[k];
			int sc = da->scenario >= 0 ? da->scenario : o->scenario;
			uint64_t seed = unit_seed(o->seed, ep, da->unit);
			struct sim_device *dev;

			if (endpoint_unit(ep, da->unit)) {
				rc = sim_args_error("--device %s: unit %u is already served on %s",
						    da->spec, da->unit, ep->label);
				goto out;
			}
			if (strcmp(da->profile, "sunspec") == 0) {
				dev = sim_sunspec_new(SUNSPEC_NAME, (uint8_t)da->unit, 0, sc, seed,
						      start, err, sizeof err);
			} else {
				struct prof_cache *p = NULL;
				for (size_t j = 0; j < npc; j++)
					if (strcmp(pc[j].name, da->profile) == 0)
						p = &pc[j];
				if (!p) {
					struct prof_cache *np = realloc(pc, (npc + 1) * sizeof *np);
					if (!np)
						goto oom;
					pc = np;
					p = &pc[npc];
					memset(p, 0, sizeof *p);
					struct config_diag diag = { 0 };
					int lr = config_load_profile(da->profile, ".", &copts, &p->points,
								     &p->npoints, &p->display, &diag);
					print_diag(&diag);
					config_diag_free(&diag);
					if (lr != 0) {
						fprintf(stderr, "sluice-sim: --device %s: profile '%s' "
							"did not load\n", da->spec, da->profile);
						free(p->points);
						free(p->display);
						goto out;
					}
					if (!(p->name = strdup(da->profile))) {
						free(p->points);
						free(p->display);
						goto oom;
					}
					npc++;
				}
				dev = sim_device_new(p->points, p->npoints, p->display, sc, seed,
						     start, err, sizeof err);
			}
			if (!dev) {
				fprintf(stderr, "sluice-sim: --device %s: %s\n", da->spec, err);
				goto out;
			}
			if (endpoint_add_unit(ep, da->unit, sc, da->profile, false, dev) < 0)
				goto oom;
		}
	}
	rc = 0;
	goto out;
oom:
	fprintf(stderr, "sluice-sim: out of memory\n");
	rc = 1;
out:
	prof_cache_free(pc, npc);
	return rc;
}

static double rated_for(const struct config *cfg, size_t dev)
{
	for (size_t i = 0; i < cfg->nrules; i++) {
		const struct rule_cfg *r = &cfg->rules[i];
		if (r->kind == RULE_PV && r->has_inverter && r->inverter == dev &&
		    r->rated_power_w > 0)
			return r->rated_power_w;
	}
	return 0;
}

static int build_from_config(struct sim *s, const struct sim_args *o, const struct config *cfg,
			     int64_t start)
{
	char err[256], port[8];
	int *scen = calloc(cfg->ndevices ? cfg->ndevices : 1, sizeof *scen);

	if (!scen) {
		fprintf(stderr, "sluice-sim: out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < cfg->ndevices; i++)
		scen[i] = o->scenario;
	for (size_t i = 0; i < o->nscens; i++) {
		long d = config_find_device(cfg, o->scens[i].device);
		if (d < 0) {
			free(scen);
			return sim_args_error("--scenario %s=%s: %s has no device '%s'",
					      o->scens[i].device,
					      sim_scenario_name(o->scens[i].scenario), o->config,
					      o->scens[i].device);
		}
		scen[d] = o->scens[i].scenario;
	}
	for (size_t b = 0; b < cfg->nbuses; b++) {
		const struct bus_cfg *bus = &cfg->buses[b];
		int kind = bus->kind == BUS_RTU ? SIM_LINE_RTU_TTY
			   : bus->kind == BUS_RTU_OVER_TCP ? SIM_LINE_RTU_TCP : SIM_LINE_TCP;
		char origin[ID_MAX + 8];
		snprintf(origin, sizeof origin, "bus %s", bus->id);
		snprintf(port, sizeof port, "%u", bus->port);
		if (kind == SIM_LINE_RTU_TTY)
			port[0] = '\0';
		struct endpoint *ep = endpoint_get(s, kind == SIM_LINE_RTU_TTY ? bus->device : bus->host,
						   port, origin);
		if (!ep)
			goto oom;
		if (endpoint_set_kind(ep, kind, o->baud ? o->baud : bus->baud,
				      o->parity ? o->parity : bus->parity, bus->data_bits,
				      bus->stop_bits, o->pace) < 0) {
			free(scen);
			fprintf(stderr, "sluice-sim: bus %s: %s is also served as another kind of "
				"line\n", bus->id, ep->label);
			return SIM_EXIT_USAGE;
		}
		for (size_t i = 0; i < cfg->ndevices; i++) {
			const struct device_cfg *d = &cfg->devices[i];
			struct sim_device *dev;
			if (d->bus != b)
				continue;
			struct unit *other = endpoint_unit(ep, d->unit_id);
			if (other) {
				free(scen);
				fprintf(stderr, "sluice-sim: %s:%d:%d: device %s: unit %u on %s is "
					"already device %s\n", d->loc.file ? d->loc.file : o->config,
					d->loc.line, d->loc.col, d->id, d->unit_id, ep->label,
					other->label);
				return SIM_EXIT_USAGE;
			}
			uint64_t seed = unit_seed(o->seed, ep, d->unit_id);
			double rated = rated_for(cfg, i);
			if (d->sunspec)
				dev = sim_sunspec_new(d->name ? d->name : SUNSPEC_NAME, d->unit_id,
						      rated, scen[i], seed, start, err, sizeof err);
			else
				dev = sim_device_new(d->points, d->npoints, d->name, scen[i], seed,
						     start, err, sizeof err);
			if (!dev) {
				free(scen);
				fprintf(stderr, "sluice-sim: device %s: %s\n", d->id, err);
				return SIM_EXIT_USAGE;
			}
			if (rated > 0)
				sim_device_set_rated(dev, rated);
			if (endpoint_add_unit(ep, d->unit_id, scen[i], d->id, true, dev) < 0)
				goto oom;
		}
	}
	free(scen);
	for (size_t i = 0; i < s->neps; i++)
		if (s->eps[i].nunits)
			return 0;
	fprintf(stderr, "sluice-sim: %s: no device on any bus, nothing to serve\n", o->config);
	return SIM_EXIT_USAGE;
oom:
	free(scen);
	fprintf(stderr, "sluice-sim: out of memory\n");
	return 1;
}

/* Give the units their faults. A target names a device of the --config or a unit id
 * (every address serving it). 0, or an exit status. */
static int apply_faults(struct sim *s, const struct sim_args *o)
{
	for (size_t i = 0; i < o->nfaults; i++) {
		const struct sim_args_fault *f = &o->faults[i];
		size_t matched = 0, applied = 0;
		bool by_device = false;

		if (o->config)
			for (size_t e = 0; e < s->neps && !by_device; e++)
				for (size_t k = 0; k < s->eps[e].nunits; k++)
					if (s->eps[e].units[k].from_config &&
					    strcmp(s->eps[e].units[k].label, f->target) == 0)
						by_device = true;
		if (!by_device && f->unit < 0) {
			if (o->config)
				return sim_args_error("%s %s: %s has no device '%s' (and it is not a "
						      "unit id 0..255)", f->opt, f->spec, o->config,
						      f->target);
			return sim_args_error("%s %s: the unit id must be a number 0..255", f->opt,
					      f->spec);
		}
		for (size_t e = 0; e < s->neps; e++) {
			struct endpoint *ep = &s->eps[e];
			for (size_t k = 0; k < ep->nunits; k++) {
				struct unit *u = &ep->units[k];
				if (by_device ? !(u->from_config && strcmp(u->label, f->target) == 0)
					      : u->id != f->unit)
					continue;
				matched++;
				/* not from the address: a test on a free port is reproducible too */
				sim_faults_seed(&u->faults, mix64(o->seed ^ hash_str(u->label) ^
								  mix64(u->id ^ 0xfa0175ULL)));
				int rc = sim_faults_add(&u->faults, &f->fault, ep->kind != SIM_LINE_TCP);
				if (rc < 0) {
					fprintf(stderr, "sluice-sim: out of memory\n");
					return 1;
				}
				if (rc > 0)
					continue;
				applied++;
				log_info("%s unit %u (%s): fault %s %s", ep->label, u->id, u->label,
					 f->opt, strchr(f->spec, ':') + 1);
			}
		}
		if (matched == 0)
			return sim_args_error("%s %s: no unit %s is served", f->opt, f->spec,
					      f->target);
		if (applied == 0)
			return sim_args_error("%s %s: unit %s is served over Modbus TCP only, which "
					      "has no CRC (serve it with --rtu or --rtu-tcp)", f->opt,
					      f->spec, f->target);
	}
	return 0;
}

/* --- sockets ------------------------------------------------------------------------- */

/* Port 0 asked for any port: once one is bound (port, its digits), the label names it.
 * Out of memory the label stays as it was: only cosmetic. */
static void endpoint_bound(struct endpoint *ep, const char *port)
{
	if (strcmp(ep->port, "0") != 0)
		return;
	char *np = strdup(port);
	char *nl = np ? fmt_hostport(ep->host, np) : NULL;
	if (!nl) {
		free(np);
		return;
	}
	free(ep->port);
	free(ep->label);
	ep->port = np;
	ep->label = nl;
}

/* What ep serves, for the log: "1 inlet (steady), 5 underpass (rain)". */
static void endpoint_units(const struct endpoint *ep, char *buf, size_t cap)
{
	size_t len = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < ep->nunits && len + 64 < cap; i++) {
		int n = snprintf(buf + len, cap - len, "%s%u %s (%s)", i ? ", " : "",
				 ep->units[i].id, ep->units[i].label,
				 sim_scenario_name(ep->units[i].scenario));
		if (n > 0)
			len += (size_t)n;
	}
}

static void fmt_addr(const struct sockaddr *sa, char *buf, size_t len)
{
	char h[INET6_ADDRSTRLEN], p[8];
	if (getnameinfo(sa, sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						      : sizeof(struct sockaddr_in),
			h, sizeof h, p, sizeof p, NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		snprintf(buf, len, "?");
		return;
	}
	snprintf(buf, len, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", h, p);
}

static int endpoint_listen(struct sim *s, struct endpoint *ep)
{
	struct addrinfo hints, *res, *ai;
	int gai, bound = 0, failed = 0, lasterr = 0;
	char where[128], failwhere[128] = "";

	if (ep->nunits == 0)
		return 0;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((gai = getaddrinfo(ep->host, ep->port, &hints, &res)) != 0) {
		log_errx("%s: cannot listen on %s: %s", ep->origin, ep->label, gai_strerror(gai));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		int one = 1;
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
				ai->ai_protocol);
		fmt_addr(ai->ai_addr, where, sizeof where);
		if (fd < 0) {
			lasterr = errno;
			failed++;
			snprintf(failwhere, sizeof failwhere, "%s", where);
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		/* [::] must not claim the IPv4 port too: 0.0.0.0 may be listened on apart */
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
			lasterr = errno;
			failed++;
			snprintf(failwhere, sizeof failwhere, "%s", where);
			close(fd);
			continue;
		}
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
			fmt_addr((struct sockaddr *)&ss, where, sizeof where);
		struct listener *l = malloc(sizeof *l);
		struct listener **nls = realloc(s->ls, (s->nls + 1) * sizeof *nls);
		if (nls)
			s->ls = nls;
		if (!l || !nls) {
			free(l);
			close(fd);
			freeaddrinfo(res);
			log_errx("out of memory");
			return -1;
		}
		l->ev = EV_LISTENER;
		l->fd = fd;
		l->ep = ep;
		s->ls[s->nls++] = l;
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = l };
		if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			log_err("epoll_ctl");
			freeaddrinfo(res);
			return -1;
		}
		if (bound == 0 && strrchr(where, ':'))
			endpoint_bound(ep, strrchr(where, ':') + 1);
		bound++;
		char units[1024];
		endpoint_units(ep, units, sizeof units);
		if (s->neps <= 32)
			log_info("%s: listening on %s: unit %s", ep->origin, where, units);
		else
			log_debug("%s: listening on %s: unit %s", ep->origin, where, units);
	}
	freeaddrinfo(res);
	if (bound == 0) {
		bool bus = strncmp(ep->origin, "bus ", 4) == 0;
		log_errx("%s: cannot listen on %s: %s%s", ep->origin, ep->label,
			 strerror(lasterr),
			 lasterr == EADDRNOTAVAIL ? (bus ? " (not an address of this machine: serve "
						     "a copy of the config with 127.0.0.1 "
						     "addresses)"
						   : " (not an address of this machine)")
			 : lasterr == EADDRINUSE ? " (another program has that port)"
			 : lasterr == EACCES ? " (ports below 1024 need root)" : "");
		return -1;
	}
	/* "localhost" may name ::1 on a machine without IPv6: what did bind is enough */
	if (failed)
		log_warnx("%s: %s is served, but not on %s: %s", ep->origin, ep->label, failwhere,
			  strerror(lasterr));
	return 0;
}

static void listeners_pause(struct sim *s, bool pause)
{
	for (size_t i = 0; i < s->nls; i++) {
		struct epoll_event ev = { .events = pause ? 0 : EPOLLIN, .data.ptr = s->ls[i] };
		epoll_ctl(s->epfd, EPOLL_CTL_MOD, s->ls[i]->fd, &ev);
	}
	s->paused = pause;
	if (pause)
		s->resume_at = clock_mono_ms() + 1000;
}

/* A closed connection's held-back replies go with it. */
static void delayed_drop(struct sim *s, const struct conn *c)
{
	struct delayed_reply **pp = &s->delayed;

	while (*pp) {
		struct delayed_reply *d = *pp;
		if (d->c == c) {
			*pp = d->next;
			free(d);
		} else {
			pp = &d->next;
		}
	}
}

static void conn_close(struct sim *s, struct conn *c, const char *why)
{
	log_debug("%s: %s: %s", c->ep->label, c->peer, why);
	delayed_drop(s, c);
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	free(c->out);
	free(c);
}

static void on_accept(struct sim *s, struct listener *l)
{
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* level-triggered: the pending connection would wake us forever */
				log_warn("%s: cannot accept (%zu connections open); pausing for 1 s",
					 l->ep->label, s->nconns);
				listeners_pause(s, true);
				return;
			}
			log_warn("%s: accept", l->ep->label);
			return;
		}
		struct conn *c = calloc(1, sizeof *c);
		if (!c) {
			close(fd);
			log_warnx("%s: out of memory for a connection", l->ep->label);
			return;
		}
		int one = 1;
		/* replies are small and a poller waits for each: do not let Nagle hold them */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		c->ev = EV_CONN;
		c->fd = fd;
		c->ep = l->ep;
		c->events = EPOLLIN | EPOLLRDHUP;
		fmt_addr((struct sockaddr *)&ss, c->peer, sizeof c->peer);
		struct epoll_event ev = { .events = c->events, .data.ptr = c };
		if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			log_warn("epoll_ctl");
			close(fd);
			free(c);
			return;
		}
		c->next = s->conns;
		if (s->conns)
			s->conns->prev = c;
		s->conns = c;
		s->nconns++;
		s->accepted++;
		log_debug("%s: connection from %s", l->ep->label, c->peer);
	}
}

static size_t conn_pending(const struct conn *c)
{
	return c->outlen - c->outoff;
}

static int conn_append(struct conn *c, const uint8_t *p, size_t n)
{
	if (c->outoff && c->outoff == c->outlen)
		c->outoff = c->outlen = 0;
	if (c->outlen + n > c->outcap) {
		if (c->outoff) {
			memmove(c->out, c->out + c->outoff, c->outlen - c->outoff);
			c->outlen -= c->outoff;
			c->outoff = 0;
		}
		size_t cap = c->outcap ? c->outcap : 512;
		while (cap < c->outlen + n)
			cap *= 2;
		if (cap != c->outcap) {
			uint8_t *no = realloc(c->out, cap);
			if (!no)
				return -1;
			c->out = no;
			c->outcap = cap;
		}
	}
	memcpy(c->out + c->outlen, p, n);
	c->outlen += n;
	return 0;
}

/* Watch for output while replies wait; stop reading while too many do. */
static int conn_rearm(struct sim *s, struct conn *c)
{
	uint32_t want = 0;
	if (conn_pending(c) <= OUT_HIGH)
		want |= EPOLLIN | EPOLLRDHUP;
	if (conn_pending(c))
		want |= EPOLLOUT;
	if (want == c->events)
		return 0;
	struct epoll_event ev = { .events = want, .data.ptr = c };
	if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		return -1;
	c->events = want;
	return 0;
}

static int conn_flush(struct sim *s, struct conn *c)
{
	while (conn_pending(c)) {
		ssize_t n = send(c->fd, c->out + c->outoff, conn_pending(c), MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -1;
		}
		c->outoff += (size_t)n;
	}
	if (!conn_pending(c))
		c->outoff = c->outlen = 0;
	return conn_rearm(s, c);
}

/* --- requests ------------------------------------------------------------------------ */

static int cb_read_regs(void *ctx, enum mb_table t, uint16_t start, uint16_t count, uint16_t *out)
{
	return sim_device_read_regs(ctx, t, start, count, out);
}

static int cb_read_bits(void *ctx, enum mb_table t, uint16_t start, uint16_t count, uint8_t *out)
{
	return sim_device_read_bits(ctx, t, start, count, out);
}

static int cb_write_regs(void *ctx, uint16_t start, uint16_t count, const uint16_t *in)
{
	return sim_device_write_regs(ctx, start, count, in);
}

static int cb_write_bits(void *ctx, uint16_t start, uint16_t count, const uint8_t *in)
{
	return sim_device_write_bits(ctx, start, count, in);
}

/* Decode point i as a gateway would, from what is served. */
static void point_decode(const struct sim_device *d, size_t i, struct value *v, char *sbuf,
			 size_t scap)
{
	size_t n;
	const struct point_def *p = &sim_device_points(d, &n)[i];
	if (p->table == MB_COIL || p->table == MB_DISCRETE)
		codec_decode_bit(p, sim_device_point_bit(d, i), v);
	else if (codec_decode_regs(p, sim_device_point_regs(d, i), v, sbuf, scap) < 0)
		v->kind = VAL_NONE;
}

static bool point_within(const struct point_def *p, enum mb_table t, uint16_t start,
			 uint16_t count)
{
	uint32_t w = p->table == MB_COIL || p->table == MB_DISCRETE ? 1 : codec_width(p);
	return p->table == t && p->address >= start &&
	       (uint32_t)p->address + w <= (uint32_t)start + count;
}

static void trace_flush(struct sim *s)
{
	size_t off = 0;
	if (s->trace_fd < 0 || s->trace.len == 0)
		return;
	while (off < s->trace.len) {
		ssize_t n = write(s->trace_fd, s->trace.p + off, s->trace.len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			log_warn("--trace %s: write failed; tracing stops", s->trace_path);
			close(s->trace_fd);
			s->trace_fd = -1;
			break;
		}
		off += (size_t)n;
	}
	jb_reset(&s->trace);
}

/* One trace line. fault names what a fault did to the reply that carried the values
 * (NULL: it went out as served), so a test can tell values a master should accept from
 * values it must not. */
static void trace_read(struct sim *s, const struct endpoint *ep, const struct unit *u,
		       enum mb_table t, uint16_t start, uint16_t count, const char *fault)
{
	struct jbuf *b = &s->trace;
	bool first = true, vfirst = true;
	size_t n;
	const struct point_def *pts = sim_device_points(u->dev, &n);
	char sbuf[POINT_STRING_MAX_REGS * 2 + 1];

	jb_raw(b, "{", 1);
	jb_key(b, "t", &first);
	jb_i64(b, clock_real_ms());
	jb_key(b, "listen", &first);
	jb_str(b, ep->label);
	jb_key(b, "unit", &first);
	jb_i64(b, u->id);
	if (u->from_config) {
		jb_key(b, "device", &first);
		jb_str(b, u->label);
	}
	if (fault) {
		jb_key(b, "fault", &first);
		jb_str(b, fault);
	}
	jb_key(b, "values", &first);
	jb_raw(b, "{", 1);
	for (size_t i = 0; i < n; i++) {
		struct value v;
		if (!point_within(&pts[i], t, start, count))
			continue;
		point_decode(u->dev, i, &v, sbuf, sizeof sbuf);
		jb_key(b, pts[i].name, &vfirst);
		jb_point_value(b, &pts[i], &v);
	}
	jb_raw(b, "}}\n", 3);
	if (b->oom) {
		log_warnx("--trace: out of memory; a line is lost");
		jb_reset(b);
	}
	if (b->len >= TRACE_FLUSH)
		trace_flush(s);
}

/* Writes are what alert actions do: say which points changed, by name. */
static void log_write(const struct endpoint *ep, const struct unit *u, uint8_t fc,
		      uint16_t start, uint16_t count)
{
	char line[512], sbuf[POINT_STRING_MAX_REGS * 2 + 1];
	size_t len = 0, n;
	const struct point_def *pts = sim_device_points(u->dev, &n);
	enum mb_table t = sim_faults_fc_table(fc);
	struct jbuf vb;

	jb_init(&vb);
	line[0] = '\0';
	for (size_t i = 0; i < n && len < sizeof line - 80; i++) {
		const struct point_def *p = &pts[i];
		uint32_t w = t == MB_COIL ? 1 : codec_width(p);
		if (p->table != t || p->address >= (uint32_t)start + count ||
		    (uint32_t)p->address + w <= start)
			continue;
		struct value v;
		point_decode(u->dev, i, &v, sbuf, sizeof sbuf);
		jb_reset(&vb);
		jb_point_value(&vb, p, &v);
		int k = snprintf(line + len, sizeof line - len, " %s=%s", p->name, jb_cstr_get(&vb));
		if (k > 0)
			len += (size_t)k;
	}
	jb_free(&vb);
	if (len >= sizeof line)
		len = sizeof line - 1;
	log_info("%s unit %u (%s): %s %u..%u written:%s", ep->label, u->id, u->label,
		 codec_table_name(t), start, (unsigned)start + count - 1,
		 len ? line : " (no point there)");
}

/* How u's reply goes out (sim_faults decides), said in the debug log and counted. */
static void fault_reply(struct sim *s, const struct endpoint *ep, struct unit *u,
			struct sim_rtu_fault *f)
{
	if (!sim_faults_reply(&u->faults, u->id, ep->kind != SIM_LINE_TCP, f))
		return;
	s->faulted++;
	if (f->bad_crc)
		log_debug("%s unit %u: fault: a corrupt CRC", ep->label, u->id);
	if (f->unit != u->id)
		log_debug("%s unit %u: fault: the reply says unit %u", ep->label, u->id, f->unit);
	if (f->mangle != SIM_RTU_INTACT)
		log_debug("%s unit %u: fault: the reply %s", ep->label, u->id,
			  f->mangle == SIM_RTU_GARBAGE ? "replaced by noise" : "cut short");
}

/* Answer one request PDU to unit uid of ep: the reply PDU in resp and its length, or 0
 * for no reply; f (unit: uid, no fault, on entry) says how it goes out. peer names the
 * master in debug logs. Shared by Modbus TCP and RTU. */
static size_t serve_pdu(struct sim *s, struct endpoint *ep, const char *peer, uint8_t uid,
			const uint8_t *pdu, size_t plen, uint8_t *resp, struct sim_rtu_fault *f)
{
	struct unit *u = endpoint_unit(ep, uid);
	size_t rlen;
	uint8_t fc = pdu[0];
	bool read = fc >= MB_FC_READ_COILS && fc <= MB_FC_READ_INPUT;

	s->requests++;
	if (!u && ep->kind != SIM_LINE_TCP) {
		/* on a serial line nobody answers for a unit that is not there */
		log_debug("%s: unit %u is not on this line: no reply", ep->label, uid);
		return 0;
	}
	if (!u) {
		/* what a Modbus TCP gateway answers for a device it cannot reach */
		log_debug("%s: %s: unit %u is not served: exception 0x0B", ep->label, peer,
			  uid);
		resp[0] = (uint8_t)(fc | 0x80);
		resp[1] = EXC_GATEWAY_TARGET;
		rlen = 2;
	} else if (u->scenario == SIM_DEAD) {
		s->dropped++;
		log_debug("%s: unit %u is dead: no reply", ep->label, uid);
		return 0;
	} else if (sim_faults_silent(&u->faults)) {
		/* as if the request never arrived: not served, so a write is not done */
		s->faulted++;
		log_debug("%s unit %u: function %u: fault: no reply", ep->label, uid, fc);
		return 0;
	} else if (sim_faults_exception(&u->faults, pdu, plen)) {
		log_debug("%s unit %u: function %u at %u: fault: exception 0x02", ep->label,
			  uid, fc, (unsigned)(pdu[1] << 8 | pdu[2]));
		resp[0] = (uint8_t)(fc | 0x80);
		resp[1] = EXC_ILLEGAL_ADDRESS;
		rlen = 2;
		fault_reply(s, ep, u, f);
	} else {
		struct mbpdu_server srv = {
			.ctx = u->dev,
			.read_regs = cb_read_regs,
			.read_bits = cb_read_bits,
			.write_regs = cb_write_regs,
			.write_bits = cb_write_bits,
		};
		if (read) {
			int64_t now = sim_now(s);
			sim_device_update(u->dev, now, sim_utc_offset(s, now));
		}
		rlen = mbpdu_serve(&srv, pdu, plen, resp);
		if (rlen == 0)
			return 0;
		fault_reply(s, ep, u, f);
		if (plen >= 5)
			log_debug("%s unit %u: function %u, address %u, %s %u", ep->label, uid,
				  fc, (unsigned)(pdu[1] << 8 | pdu[2]),
				  fc == MB_FC_WRITE_COIL || fc == MB_FC_WRITE_REGISTER ? "value" : "count",
				  (unsigned)(pdu[3] << 8 | pdu[4]));
		if (rlen >= 1 && resp[0] == fc && plen >= 5) {
			uint16_t start = (uint16_t)(pdu[1] << 8 | pdu[2]);
			uint16_t count = fc == MB_FC_WRITE_COIL || fc == MB_FC_WRITE_REGISTER
						 ? 1 : (uint16_t)(pdu[3] << 8 | pdu[4]);
			if (read && s->trace_fd >= 0)
				trace_read(s, ep, u, sim_faults_fc_table(fc), start, count,
					   f->mangle == SIM_RTU_GARBAGE ? "garbage"
					   : f->mangle == SIM_RTU_SHORT ? "short"
					   : f->bad_crc ? "bad-crc"
					   : f->unit != uid ? "wrong-unit" : NULL);
			else if (!read)
				log_write(ep, u, fc, start, count);
		}
		if (rlen >= 2 && resp[0] & 0x80)
			log_debug("%s unit %u: function %u: exception %u", ep->label, uid, fc,
				  resp[1]);
	}
	return rlen;
}

/* Hold a reply back (--slow): queued by due time, sent by delayed_send. Later replies
 * on the connection are not held behind it, as a gateway with several units answers. */
static int delayed_add(struct sim *s, struct conn *c, const uint8_t *adu, size_t len,
		       unsigned ms)
{
	struct delayed_reply *d = malloc(sizeof *d), **pp;

	if (!d)
		return conn_append(c, adu, len);
	d->c = c;
	d->due = clock_mono_ms() + ms;
	d->len = len;
	memcpy(d->adu, adu, len);
	for (pp = &s->delayed; *pp && (*pp)->due <= d->due; pp = &(*pp)->next)
		;
	d->next = *pp;
	*pp = d;
	return 0;
}

/* Send the held-back replies due by now. */
static void delayed_send(struct sim *s, int64_t now)
{
	while (s->delayed && s->delayed->due <= now) {
		struct delayed_reply *d = s->delayed;
		struct conn *c = d->c;
		s->delayed = d->next;
		int rc = conn_append(c, d->adu, d->len);
		free(d);
		if (rc < 0 || conn_flush(s, c) < 0)
			conn_close(s, c, "send failed"); /* drops its other delayed replies */
	}
}

static int handle_request(struct sim *s, struct conn *c, uint16_t tid, uint8_t uid,
			  const uint8_t *pdu, size_t plen)
{
	uint8_t resp[MB_PDU_MAX], adu[MBTCP_ADU_MAX];
	struct sim_rtu_fault f = { .unit = uid };
	size_t rlen = serve_pdu(s, c->ep, c->peer, uid, pdu, plen, resp, &f);

	if (rlen == 0)
		return 0;
	size_t alen = mbtcp_frame(adu, tid, f.unit, resp, rlen);
	if (alen && f.mangle == SIM_RTU_GARBAGE)
		alen = sim_faults_tcp_garbage(adu, alen, tid, uid, pdu, plen, f.noise);
	else if (alen && f.mangle == SIM_RTU_SHORT)
		alen = sim_faults_tcp_short(adu, alen, f.noise);
	if (alen && f.delay_ms)
		return delayed_add(s, c, adu, alen, f.delay_ms);
	return alen ? conn_append(c, adu, alen) : 0;
}

static size_t rtu_serve(void *ctx, void *line, uint8_t unit, const uint8_t *pdu, size_t len,
			uint8_t *resp, struct sim_rtu_fault *f)
{
	return serve_pdu(ctx, line, "the RTU master", unit, pdu, len, resp, f);
}

/* Serve ep: listen for Modbus TCP, or open its RTU line. 0 or -1 (logged). */
static int endpoint_serve(struct sim *s, struct endpoint *ep)
{
	char err[512], units[1024];
	unsigned bound = 0;
	int rc;

	if (ep->kind == SIM_LINE_TCP)
		return endpoint_listen(s, ep);
	if (ep->nunits == 0)
		return 0;
	if (!s->rtu && !(s->rtu = sim_rtu_new(s->epfd, rtu_serve, s))) {
		log_errx("out of memory");
		return -1;
	}
	if (ep->kind == SIM_LINE_RTU_TTY)
		rc = sim_rtu_add_tty(s->rtu, ep->host, &ep->rtu, ep, err, sizeof err);
	else
		rc = sim_rtu_add_tcp(s->rtu, ep->host, ep->port, &ep->rtu, ep, &bound, err,
				     sizeof err);
	if (rc < 0) {
		log_errx("%s: %s", ep->origin, err);
		return -1;
	}
	if (bound != 0) {
		char pb[16];
		snprintf(pb, sizeof pb, "%u", bound);
		endpoint_bound(ep, pb);
	}
	endpoint_units(ep, units, sizeof units);
	log_info("%s: serving RTU %s %s at %u baud%s: unit %s", ep->origin,
		 ep->kind == SIM_LINE_RTU_TTY ? "on" : "over TCP on", ep->label,
		 ep->rtu.baud ? ep->rtu.baud : 9600, ep->rtu.pace ? ", paced" : "", units);
	return 0;
}


/* Answer every whole frame in the input, in order. -1: close the connection. */
static int conn_process(struct sim *s, struct conn *c)
{
	size_t off = 0;
	int rc = 0;

	while (c->inlen - off >= MBTCP_HDR && conn_pending(c) <= OUT_HIGH) {
		uint16_t tid;
		uint8_t uid;
		int plen = mbtcp_header(c->in + off, &tid, &uid);
		if (plen < 0) {
			log_debug("%s: %s: not a Modbus TCP header (transaction %u)", c->ep->label,
				  c->peer, tid);
			rc = -1;
			break;
		}
		if (c->inlen - off < MBTCP_HDR + (size_t)plen)
			break;
		if (handle_request(s, c, tid, uid, c->in + off + MBTCP_HDR, (size_t)plen) < 0) {
			rc = -1;
			break;
		}
		off += MBTCP_HDR + (size_t)plen;
	}
	if (off) {
		memmove(c->in, c->in + off, c->inlen - off);
		c->inlen -= off;
	}
	return rc;
}

static void on_conn(struct sim *s, struct conn *c, uint32_t events)
{
	/* an error or a hang-up in both directions (a reset): nothing more can be sent */
	if (events & (EPOLLERR | EPOLLHUP)) {
		conn_close(s, c, events & EPOLLERR ? "connection error" : "connection reset");
		return;
	}
	if (events & EPOLLOUT) {
		if (conn_flush(s, c) < 0) {
			conn_close(s, c, "send failed");
			return;
		}
		/* replies drained: answer what waited in the input meanwhile */
		if (c->inlen && conn_pending(c) <= OUT_HIGH) {
			if (conn_process(s, c) < 0 || conn_flush(s, c) < 0) {
				conn_close(s, c, "closed");
				return;
			}
		}
	}
	if (!(events & (EPOLLIN | EPOLLRDHUP)) || conn_pending(c) > OUT_HIGH)
		return;
	for (int round = 0; round < 8; round++) {
		size_t room = IN_CAP - c->inlen;
		ssize_t n = recv(c->fd, c->in + c->inlen, room, 0);
		if (n == 0) {
			conn_flush(s, c); /* best effort: the peer may still read */
			conn_close(s, c, "closed by peer");
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			conn_close(s, c, strerror(errno));
			return;
		}
		c->inlen += (size_t)n;
		if (conn_process(s, c) < 0) {
			conn_close(s, c, "not Modbus TCP, closed");
			return;
		}
		if ((size_t)n < room || conn_pending(c) > OUT_HIGH)
			break;
	}
	if (conn_flush(s, c) < 0)
		conn_close(s, c, "send failed");
}

/* --- main ---------------------------------------------------------------------------- */

static void on_signal(int sig)
{
	stop_signal = sig;
}

static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rlim_t was = rl.rlim_cur;
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn("cannot raise the open-file limit from %llu", (unsigned long long)was);
	}
}

static void sim_free(struct sim *s)
{
	while (s->conns)
		conn_close(s, s->conns, "shutting down");
	while (s->delayed) {
		struct delayed_reply *d = s->delayed;
		s->delayed = d->next;
		free(d);
	}
	for (size_t i = 0; i < s->nls; i++) {
		close(s->ls[i]->fd);
		free(s->ls[i]);
	}
	free(s->ls);
	sim_rtu_free(s->rtu);
	s->rtu = NULL;
	for (size_t i = 0; i < s->neps; i++) {
		struct endpoint *ep = &s->eps[i];
		for (size_t k = 0; k < ep->nunits; k++) {
			sim_device_free(ep->units[k].dev);
			free(ep->units[k].label);
			sim_faults_free(&ep->units[k].faults);
		}
		free(ep->units);
		free(ep->host);
		free(ep->port);
		free(ep->label);
		free(ep->origin);
	}
	free(s->eps);
	trace_flush(s);
	if (s->trace_fd >= 0)
		close(s->trace_fd);
	jb_free(&s->trace);
	if (s->epfd >= 0)
		close(s->epfd);
}

static int run(struct sim *s, const sigset_t *waitmask)
{
	struct epoll_event evs[MAX_EVENTS];

	while (!stop_signal) {
		int64_t now = clock_mono_ms(), wake = -1, due;
		if (s->paused)
			wake = s->resume_at;
		if (s->delayed && (wake < 0 || s->delayed->due < wake))
			wake = s->delayed->due;
		if ((due = sim_rtu_next_due(s->rtu)) >= 0 && (wake < 0 || due < wake))
			wake = due;
		int timeout = wake < 0 ? -1 : wake > now ? (int)(wake - now) : 0;
		int n = epoll_pwait(s->epfd, evs, MAX_EVENTS, timeout, waitmask);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_err("epoll_wait");
			return 1;
		}
		if (n > 0) {
			/* epoll_pwait lets a signal in only when it sleeps: a descriptor that
			 * is always ready would keep a SIGTERM out for good */
			sigset_t pend;
			if (sigpending(&pend) == 0 && (sigismember(&pend, SIGTERM) ||
						       sigismember(&pend, SIGINT)))
				stop_signal = sigismember(&pend, SIGINT) ? SIGINT : SIGTERM;
		}
		for (int i = 0; i < n; i++) {
			int *tag = evs[i].data.ptr;
			if (*tag == SIM_RTU_EV)
				sim_rtu_event(s->rtu, evs[i].data.ptr, evs[i].events);
			else if (*tag == EV_LISTENER)
				on_accept(s, evs[i].data.ptr);
			else
				on_conn(s, evs[i].data.ptr, evs[i].events);
		}
		now = clock_mono_ms();
		delayed_send(s, now);
		sim_rtu_tick(s->rtu, now);
		trace_flush(s);
		if (s->paused && clock_mono_ms() >= s->resume_at)
			listeners_pause(s, false);
	}
	log_info("stopping on %s: %" PRIu64 " requests (%" PRIu64 " left unanswered by dead "
		 "devices, %" PRIu64 " replies changed or withheld by a fault), %" PRIu64
		 " connections",
		 stop_signal == SIGINT ? "SIGINT" : "SIGTERM", s->requests, s->dropped,
		 s->faulted, s->accepted);
	return 0;
}

int main(int argc, char **argv)
{
	struct sim_args o = { 0 };
	struct sim s;
	struct config *cfg = NULL;
	sigset_t block, waitmask;
	int rc;

	log_init(6, "sluice-sim");
	memset(&s, 0, sizeof s);
	s.epfd = -1;
	s.trace_fd = -1;
	s.tz_min = INT64_MIN;
	jb_init(&s.trace);

	/* Signals are only let in while waiting for events, so a stop never cuts a
	 * request in half and never slips in between a check and the wait. */
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &waitmask);
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);

	if ((rc = sim_args_parse(argc, argv, &o)) >= 0)
		goto out;
	if (o.verbose)
		log_set_level(7);
	if (!o.have_seed)
		o.seed = mix64((uint64_t)clock_real_ms() ^ ((uint64_t)getpid() << 32));
	s.scale = o.scale;

	if (o.config) {
		struct config_opts copts = { .profile_path = o.profile_path,
					     .skip_secret_files = true };
		struct config_diag diag = { 0 };
		cfg = config_load(o.config, &copts, &diag);
		print_diag(&diag);
		if (!cfg) {
			fprintf(stderr, "sluice-sim: %s: %zu error%s; nothing served\n", o.config,
				diag.nerrors, diag.nerrors == 1 ? "" : "s");
			config_diag_free(&diag);
			rc = SIM_EXIT_USAGE;
			goto out;
		}
		config_diag_free(&diag);
	}

	const char *zone = o.tz;
	if (!zone && cfg && cfg->gateway.timezone)
		zone = cfg->gateway.timezone;
	if (!zone)
		zone = getenv("TZ") && *getenv("TZ") ? getenv("TZ") : "UTC";
	if (!sim_args_zone_known(zone)) {
		log_warnx("time zone %s is not known here; the daily patterns use UTC", zone);
		zone = "UTC";
	}
	setenv("TZ", zone, 1);
	tzset();

	s.mono0 = clock_mono_ms();
	s.sim0 = clock_real_ms();
	if (o.start_s >= 0) {
		time_t now = (time_t)(s.sim0 / 1000);
		struct tm tm;
		localtime_r(&now, &tm);
		tm.tm_hour = o.start_s / 3600;
		tm.tm_min = o.start_s / 60 % 60;
		tm.tm_sec = o.start_s % 60;
		tm.tm_isdst = -1;
		s.sim0 = (int64_t)mktime(&tm) * 1000;
	}
	rc = cfg ? build_from_config(&s, &o, cfg, s.sim0) : build_from_listen(&s, &o, s.sim0);
	if (rc == 0)
		rc = apply_faults(&s, &o);
	if (rc != 0)
		goto out;

	if (o.trace) {
		s.trace_fd = open(o.trace, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (s.trace_fd < 0) {
			fprintf(stderr, "sluice-sim: --trace %s: %s\n", o.trace, strerror(errno));
			rc = SIM_EXIT_USAGE;
			goto out;
		}
		s.trace_path = (char *)o.trace;
	}

	raise_nofile();
	if ((s.epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		log_err("epoll_create1");
		rc = 1;
		goto out;
	}
	for (size_t i = 0; i < s.neps; i++)
		if (endpoint_serve(&s, &s.eps[i]) < 0) {
			rc = 1;
			goto out;
		}
	size_t nunits = 0;
	for (size_t i = 0; i < s.neps; i++)
		nunits += s.eps[i].nunits;
	log_info("serving %zu device%s on %zu address%s", nunits, nunits == 1 ? "" : "s", s.neps,
		 s.neps == 1 ? "" : "es");
	char when[64];
	time_t t0 = (time_t)(s.sim0 / 1000);
	struct tm tm0;
	strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S %Z", localtime_r(&t0, &tm0));
	log_info("simulated time starts at %s (%s), runs %g times real time; seed %" PRIu64,
		 when, zone, s.scale, o.seed);
	printf("sluice-sim: ready\n");
	fflush(stdout);
	rc = run(&s, &waitmask);
out:
	sim_free(&s);
	config_free(cfg);
	sim_args_free(&o);
	return rc;
}
