/*
 * sim_rtu: sluice-sim's RTU ports. Owns the ttys it serves, its RTU-over-TCP listeners
 * and their connections, one timerfd per port for paced replies, and the replies held
 * back by a --slow fault (due by the simulator's epoll timeout). It must never
 * block (every descriptor is non-blocking and waits in the simulator's epoll set),
 * never decide what a request means (the serve callback does), and never answer a
 * frame with a bad CRC or one for a unit nobody serves: on a serial line, silence is
 * what a master gets then. It also owns what a --garbage or --short fault does to an
 * RTU reply's bytes (the callback only says which, and seeds the noise).
 *
 * Framing. RTU has no length field: a request's length follows from its function code
 * (rtu_request_len). Bytes that cannot begin a request are dropped, and so is a partial
 * frame followed by a gap (a real slave resynchronises on 3.5 characters of silence; a
 * pty delivers a request in one piece, so a 50 ms gap is safely "silence").
 */
#include "sim_rtu.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <termios.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "mbpdu.h"
#include "rtu.h"

#define GAP_MS 50
#define IN_MAX (2 * RTU_ADU_MAX)
#define OUT_MAX (8 * RTU_ADU_MAX)

enum port_kind { PK_TTY, PK_LISTENER, PK_CONN };
enum tag_role { TR_FD, TR_TIMER };

struct rtu_port;

/* A reply held back by a slow-reply fault. */
struct delayed {
	struct delayed *next;
	int64_t due;           /* clock_mono_ms */
	size_t len;
	uint8_t adu[RTU_ADU_MAX];
};

struct rtu_tag {
	int ev;                /* SIM_RTU_EV: first, as the header promises */
	int role;              /* enum tag_role */
	struct rtu_port *port;
};

struct rtu_line {
	void *cookie;
	char *label;
	unsigned baud, char_bits;
	bool pace;
	struct rtu_line *next;
};

struct rtu_port {
	struct rtu_tag fdtag, tmtag;
	int kind;              /* enum port_kind */
	int fd, tfd;
	struct rtu_line *line;
	uint32_t events;
	uint8_t in[IN_MAX];
	size_t inlen;
	int64_t in_at;         /* when the last byte came */
	uint8_t out[OUT_MAX];
	size_t outlen;
	bool holding;          /* a paced reply waits for its timer */
	bool dead;             /* a connection that failed: freed by sim_rtu_event */
	struct delayed *delayed; /* held-back replies, soonest first */
	struct rtu_port *prev, *next;
};

struct sim_rtu {
	int epfd;
	sim_rtu_serve_fn serve;
	void *ctx;
	struct rtu_port *ports;
	struct rtu_line *lines;
	uint64_t answered, bad_crc;
	size_t ndelayed;       /* over all ports: 0 spares a walk of every port */
};

struct sim_rtu *sim_rtu_new(int epfd, sim_rtu_serve_fn serve, void *ctx)
{
	struct sim_rtu *r = calloc(1, sizeof *r);

	if (r == NULL)
		return NULL;
	r->epfd = epfd;
	r->serve = serve;
	r->ctx = ctx;
	return r;
}

static struct rtu_line *line_new(struct sim_rtu *r, const char *label,
				 const struct sim_rtu_line_opts *o, void *cookie)
{
	struct rtu_line *l = calloc(1, sizeof *l);

	if (l == NULL || (l->label = strdup(label)) == NULL) {
		free(l);
		return NULL;
	}
	l->cookie = cookie;
	l->baud = o->baud ? o->baud : 9600;
	l->char_bits = rtu_char_bits(o->data_bits ? o->data_bits : 8, o->parity ? o->parity : 'N',
				     o->stop_bits ? o->stop_bits : 1);
	l->pace = o->pace;
	l->next = r->lines;
	r->lines = l;
	return l;
}

static void port_unlink_free(struct sim_rtu *r, struct rtu_port *p)
{
	while (p->delayed) {
		struct delayed *d = p->delayed;
		p->delayed = d->next;
		r->ndelayed--;
		free(d);
	}
	if (p->fd >= 0) {
		epoll_ctl(r->epfd, EPOLL_CTL_DEL, p->fd, NULL);
		close(p->fd);
	}
	if (p->tfd >= 0) {
		epoll_ctl(r->epfd, EPOLL_CTL_DEL, p->tfd, NULL);
		close(p->tfd);
	}
	if (p->prev)
		p->prev->next = p->next;
	else if (r->ports == p)
		r->ports = p->next;
	if (p->next)
		p->next->prev = p->prev;
	free(p);
}

/* A port on fd (taken: closed on failure) registered with epoll. */
static struct rtu_port *port_new(struct sim_rtu *r, int kind, int fd, struct rtu_line *line)
{
	struct rtu_port *p = calloc(1, sizeof *p);
	struct epoll_event ev;

	if (p == NULL) {
		close(fd);
		return NULL;
	}
	p->kind = kind;
	p->fd = fd;
	p->tfd = -1;
	p->line = line;
	p->fdtag = (struct rtu_tag){ SIM_RTU_EV, TR_FD, p };
	p->tmtag = (struct rtu_tag){ SIM_RTU_EV, TR_TIMER, p };
	p->next = r->ports;
	if (r->ports)
		r->ports->prev = p;
	r->ports = p;
	p->events = EPOLLIN;
	ev = (struct epoll_event){ .events = p->events, .data.ptr = &p->fdtag };
	if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		goto fail;
	if (kind != PK_LISTENER && line->pace) {
		p->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = &p->tmtag };
		if (p->tfd < 0 || epoll_ctl(r->epfd, EPOLL_CTL_ADD, p->tfd, &ev) < 0)
			goto fail;
	}
	return p;
fail:
	port_unlink_free(r, p);
	return NULL;
}

static speed_t baud_const(unsigned baud)
{
	switch (baud) {
	case 1200: return B1200;
	case 2400: return B2400;
	case 4800: return B4800;
	case 19200: return B19200;
	case 38400: return B38400;
	case 57600: return B57600;
	case 115200: return B115200;
	case 230400: return B230400;
	case 460800: return B460800;
	case 921600: return B921600;
	default: return B9600;
	}
}

int sim_rtu_add_tty(struct sim_rtu *r, const char *path, const struct sim_rtu_line_opts *o,
		    void *cookie, char *err, size_t errlen)
{
	struct termios t;
	struct rtu_line *l;
	int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (tcgetattr(fd, &t) < 0) {
		snprintf(err, errlen, "%s is not a terminal: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	cfmakeraw(&t);
	t.c_cflag |= CLOCAL | CREAD;
	t.c_cflag &= ~(tcflag_t)(CSIZE | PARENB | PARODD | CSTOPB);
	t.c_cflag |= (o->data_bits == 7 ? CS7 : CS8);
	if (o->parity == 'E' || o->parity == 'O')
		t.c_cflag |= PARENB | (o->parity == 'O' ? PARODD : 0);
	if (o->stop_bits == 2)
		t.c_cflag |= CSTOPB;
	/* MIN 1: a read with nothing to read is EAGAIN; MIN 0 would return 0, like EOF */
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	cfsetispeed(&t, baud_const(o->baud));
	cfsetospeed(&t, baud_const(o->baud));
	if (tcsetattr(fd, TCSANOW, &t) < 0) {
		snprintf(err, errlen, "%s: cannot set the line: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	tcflush(fd, TCIOFLUSH);
	if ((l = line_new(r, path, o, cookie)) == NULL || port_new(r, PK_TTY, fd, l) == NULL) {
		if (l == NULL)
			close(fd);
		snprintf(err, errlen, "%s: out of memory or epoll: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

int sim_rtu_add_tcp(struct sim_rtu *r, const char *host, const char *port,
		    const struct sim_rtu_line_opts *o, void *cookie, unsigned *bound_port,
		    char *err, size_t errlen)
{
	struct addrinfo hints, *res, *ai;
	struct rtu_line *l;
	char label[320];
	int gai, lasterr = EADDRNOTAVAIL, n = 0;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((gai = getaddrinfo(host, port, &hints, &res)) != 0) {
		snprintf(err, errlen, "cannot listen on %s port %s: %s", host, port,
			 gai_strerror(gai));
		return -1;
	}
	snprintf(label, sizeof label, strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
	if ((l = line_new(r, label, o, cookie)) == NULL) {
		freeaddrinfo(res);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		int one = 1;
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			lasterr = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 16) < 0) {
			lasterr = errno;
			close(fd);
			continue;
		}
		if (bound_port != NULL) {
			struct sockaddr_storage ss;
			socklen_t sl = sizeof ss;
			if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
				*bound_port = ntohs(ss.ss_family == AF_INET6
					? ((struct sockaddr_in6 *)&ss)->sin6_port
					: ((struct sockaddr_in *)&ss)->sin_port);
		}
		if (port_new(r, PK_LISTENER, fd, l) == NULL) {
			lasterr = errno;
			continue;
		}
		n++;
	}
	freeaddrinfo(res);
	if (n == 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", label, strerror(lasterr));
		return -1;
	}
	return 0;
}

/* --- replies ------------------------------------------------------------------------ */

static void port_set_events(struct sim_rtu *r, struct rtu_port *p, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = &p->fdtag };

	if (events != p->events && epoll_ctl(r->epfd, EPOLL_CTL_MOD, p->fd, &ev) == 0)
		p->events = events;
}

/* Write what is due. A connection that fails is marked dead, not freed here. */
static void port_flush(struct sim_rtu *r, struct rtu_port *p)
{
	size_t off = 0;

	while (!p->holding && off < p->outlen) {
		ssize_t n = write(p->fd, p->out + off, p->outlen - off);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		log_debug("%s: write: %s", p->line->label, strerror(errno));
		if (p->kind == PK_CONN)
			p->dead = true;
		off = p->outlen; /* drop it: a tty nobody reads loses it, as a line does */
	}
	memmove(p->out, p->out + off, p->outlen - off);
	p->outlen -= off;
	if (!p->dead)
		port_set_events(r, p, EPOLLIN | (p->outlen && !p->holding ? EPOLLOUT : 0));
}

static void port_reply(struct sim_rtu *r, struct rtu_port *p, const uint8_t *adu, size_t len)
{
	if (p->outlen + len > OUT_MAX) {
		log_debug("%s: the master does not read its replies; one dropped", p->line->label);
		return;
	}
	memcpy(p->out + p->outlen, adu, len);
	p->outlen += len;
	if (p->line->pace && p->tfd >= 0 && !p->holding) {
		/* the reply reaches the master after its transfer time at the line's speed */
		int64_t us = rtu_transfer_us(p->line->baud, p->line->char_bits, len);
		struct itimerspec its = { .it_value = { .tv_sec = us / 1000000,
							.tv_nsec = (us % 1000000) * 1000 + 1 } };
		if (timerfd_settime(p->tfd, 0, &its, NULL) == 0) {
			p->holding = true;
			return;
		}
	}
	port_flush(r, p);
}

/* Hold a reply back for delay_ms; sim_rtu_tick sends it. Later replies of other units
 * are not held behind it: a slow unit on a line is slow on its own. */
static void port_delay(struct sim_rtu *r, struct rtu_port *p, const uint8_t *adu, size_t len,
		       unsigned delay_ms)
{
	struct delayed *d = malloc(sizeof *d), **pp;

	if (d == NULL) {
		log_warnx("%s: out of memory for a delayed reply; sent now", p->line->label);
		port_reply(r, p, adu, len);
		return;
	}
	d->due = clock_mono_ms() + delay_ms;
	d->len = len;
	memcpy(d->adu, adu, len);
	for (pp = &p->delayed; *pp && (*pp)->due <= d->due; pp = &(*pp)->next)
		;
	d->next = *pp;
	*pp = d;
	r->ndelayed++;
}

uint64_t sim_rtu_noise_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/*
 * --garbage: line noise in place of the reply adu[0..alen), of a plausible length (half
 * to one and a half times the reply's). Half the time it starts with the reply's unit id
 * and function code, so a master gets past its first checks and must find the fault in
 * the byte count or the CRC. A master reads as many bytes as the function code and byte
 * count promise and checks their CRC, so no prefix of the noise may check out: one that
 * does by chance (1 in 65536) gets its last byte changed. Returns the noise's length.
 */
static size_t rtu_garbage(uint8_t *adu, size_t alen, uint64_t noise)
{
	uint64_t x = noise;
	size_t lo = alen / 2 > 0 ? alen / 2 : 1;
	size_t n = lo + (size_t)(sim_rtu_noise_next(&x) % (alen + 1));
	size_t keep = sim_rtu_noise_next(&x) % 2 ? 2 : 0;

	if (n > RTU_ADU_MAX)
		n = RTU_ADU_MAX;
	for (size_t i = keep; i < n; i++)
		adu[i] = (uint8_t)sim_rtu_noise_next(&x);
	for (size_t k = RTU_ADU_MIN; k <= n; k++)
		if (rtu_unframe(adu, k, NULL, NULL, NULL) == 0)
			adu[k - 1] ^= 0x01; /* shorter prefixes do not hold this byte */
	return n;
}

/* --short: the reply cut before its end, after 1 to alen - 1 of its bytes. */
static size_t rtu_cut(size_t alen, uint64_t noise)
{
	uint64_t x = noise;

	return alen < 2 ? alen : 1 + (size_t)(sim_rtu_noise_next(&x) % (alen - 1));
}

static void handle_frame(struct sim_rtu *r, struct rtu_port *p, const uint8_t *frame, size_t len)
{
	uint8_t unit, resp[MB_PDU_MAX], adu[RTU_ADU_MAX];
	const uint8_t *pdu;
	size_t plen, rlen, alen;
	struct sim_rtu_fault f;

	if (rtu_unframe(frame, len, &unit, &pdu, &plen) != 0) {
		r->bad_crc++;
		log_debug("%s: a request with a bad CRC, ignored", p->line->label);
		return;
	}
	f = (struct sim_rtu_fault){ .unit = unit };
	rlen = r->serve(r->ctx, p->line->cookie, unit, pdu, plen, resp, &f);
	if (rlen == 0 || unit == 0)
		return; /* silence; and a broadcast is never answered */
	alen = rtu_frame(adu, f.unit, resp, rlen);
	if (alen == 0)
		return;
	if (f.bad_crc) {
		/* both bytes: no chance the corrupt frame checks out */
		adu[alen - 2] ^= 0xA5;
		adu[alen - 1] ^= 0x5A;
	}
	if (f.mangle == SIM_RTU_GARBAGE)
		alen = rtu_garbage(adu, alen, f.noise);
	else if (f.mangle == SIM_RTU_SHORT)
		alen = rtu_cut(alen, f.noise);
	r->answered++;
	if (f.delay_ms)
		port_delay(r, p, adu, alen, f.delay_ms);
	else
		port_reply(r, p, adu, alen);
}

static void port_process(struct sim_rtu *r, struct rtu_port *p)
{
	size_t off = 0;

	for (;;) {
		int len = rtu_request_len(p->in + off, p->inlen - off);
		if (len < 0) {
			log_debug("%s: %zu bytes that are not an RTU request, dropped",
				  p->line->label, p->inlen - off);
			off = p->inlen;
			break;
		}
		if (len == 0 || p->inlen - off < (size_t)len)
			break;
		handle_frame(r, p, p->in + off, (size_t)len);
		off += (size_t)len;
	}
	memmove(p->in, p->in + off, p->inlen - off);
	p->inlen -= off;
}

static void port_read(struct sim_rtu *r, struct rtu_port *p, uint32_t events)
{
	for (;;) {
		int64_t now = clock_mono_ms();
		ssize_t n;

		if (p->inlen == sizeof p->in)
			p->inlen = 0; /* no request is this long: noise */
		n = read(p->fd, p->in + p->inlen, sizeof p->in - p->inlen);
		if (n > 0) {
			if (p->inlen && now - p->in_at > GAP_MS) {
				/* a gap ends a frame: what came before was a fragment */
				memmove(p->in, p->in + p->inlen, (size_t)n);
				p->inlen = 0;
			}
			p->inlen += (size_t)n;
			p->in_at = now;
			port_process(r, p);
			if (p->dead)
				return;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		/* a tty has no end of file, but once the other end of a pty pair is closed
		 * it reads 0 with EPOLLHUP, level-triggered: that is a hang-up too, or the
		 * loop would spin on it (and never let a SIGTERM in) */
		if (n == 0 && p->kind == PK_TTY && !(events & (EPOLLHUP | EPOLLERR)))
			return;
		if (p->kind == PK_CONN)
			log_debug("%s: connection closed", p->line->label);
		else
			/* the other end of a pty pair went away: stop rather than spin */
			log_warnx("%s: %s; no longer served", p->line->label,
				  n == 0 ? "end of file" : strerror(errno));
		p->dead = true;
		return;
	}
}

static void port_accept(struct sim_rtu *r, struct rtu_port *l)
{
	for (;;) {
		int one = 1;
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_warn("%s: accept", l->line->label);
			return;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (port_new(r, PK_CONN, fd, l->line) == NULL)
			log_warnx("%s: cannot serve a connection", l->line->label);
		else
			log_debug("%s: a master connected", l->line->label);
	}
}

void sim_rtu_event(struct sim_rtu *r, void *tagp, uint32_t events)
{
	struct rtu_tag *tag = tagp;
	struct rtu_port *p = tag->port;

	if (tag->role == TR_TIMER) {
		uint64_t exp;
		while (read(p->tfd, &exp, sizeof exp) > 0)
			;
		p->holding = false;
		port_flush(r, p);
	} else if (p->kind == PK_LISTENER) {
		port_accept(r, p);
	} else {
		if (events & EPOLLOUT)
			port_flush(r, p);
		if (!p->dead && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
			port_read(r, p, events);
	}
	if (p->dead)
		port_unlink_free(r, p);
}

int64_t sim_rtu_next_due(const struct sim_rtu *r)
{
	int64_t due = -1;

	if (r == NULL || r->ndelayed == 0)
		return -1;
	for (const struct rtu_port *p = r->ports; p; p = p->next)
		if (p->delayed && (due < 0 || p->delayed->due < due))
			due = p->delayed->due;
	return due;
}

void sim_rtu_tick(struct sim_rtu *r, int64_t now)
{
	struct rtu_port *p, *next;

	if (r == NULL || r->ndelayed == 0)
		return;
	for (p = r->ports; p; p = next) {
		next = p->next;
		while (p->delayed && p->delayed->due <= now && !p->dead) {
			struct delayed *d = p->delayed;
			p->delayed = d->next;
			r->ndelayed--;
			port_reply(r, p, d->adu, d->len);
			free(d);
		}
		if (p->dead)
			port_unlink_free(r, p);
	}
}

void sim_rtu_counts(const struct sim_rtu *r, uint64_t *answered, uint64_t *bad_crc)
{
	if (answered)
		*answered = r ? r->answered : 0;
	if (bad_crc)
		*bad_crc = r ? r->bad_crc : 0;
}

void sim_rtu_free(struct sim_rtu *r)
{
	if (r == NULL)
		return;
	while (r->ports)
		port_unlink_free(r, r->ports);
	while (r->lines) {
		struct rtu_line *l = r->lines;
		r->lines = l->next;
		free(l->label);
		free(l);
	}
	free(r);
}
