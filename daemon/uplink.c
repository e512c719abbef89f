/*
 * uplink: owns the MQTT session — the one struct mosquitto *, its socket, the
 * reconnect schedule and the gateway's status messages (their bytes and topics are the
 * payload format's). Nothing else in sluice calls libmosquitto.
 *
 * It must never call what select()s or starts libmosquitto's own thread (mosquitto_loop,
 * mosquitto_loop_forever, mosquitto_loop_start): the socket is driven from the core's
 * poll() with mosquitto_loop_read/write/misc, so its number may be past 1023. The one
 * thread it starts is a connect's (below), which touches nothing but its own attempt. It must
 * never hand libmosquitto a message before CONNACK or after the connection is lost,
 * because libmosquitto would queue it without bound; the store's outbox is the only
 * queue. It reads nothing of the config but cfg->gateway and cfg->uplink, and copies
 * what it needs so a reload cannot pull a string from under a live session.
 *
 * Callbacks from libmosquitto only record what happened; the events (connected,
 * acked, refused, disconnected) are delivered after the libmosquitto call has returned,
 * so an event handler may publish without re-entering libmosquitto from inside itself.
 *
 * The one thing it runs off the core thread: mosquitto_connect_async, which looks the
 * host name up with a blocking getaddrinfo before it opens its non-blocking socket. It
 * runs on a detached thread of its own (struct ul_attempt), which hands the handle back
 * through an eventfd that the core polls; an attempt that takes too long is abandoned,
 * and the thread frees what it holds whenever its lookup ends. The host name still goes
 * to libmosquitto as it was written, because TLS checks the broker's certificate
 * against it and sends it as SNI: resolving it ourselves would lose both. A probe of the
 * first broker while on a fallback (struct ul_probe) runs on such a thread too: a name
 * lookup and a TCP connect, nothing of MQTT, reported back under its mutex.
 *
 * Messages that arrive (the subscriptions) are copied out of libmosquitto's callback into
 * a bounded list and handed to the caller after the loop call, like acknowledgements.
 */
#include "uplink.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "clock.h"
#include "command.h"
#include "log.h"
#include "payload.h"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "dev"
#endif

/* Where the system's CA certificates are when tls: names no ca_file. */
#ifndef SLUICE_OS_CA_DIR
#define SLUICE_OS_CA_DIR "/etc/ssl/certs"
#endif

#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 60000
/* A session this long (or the keepalive, when shorter) resets the backoff. */
#define STABLE_MAX_MS 30000
/* uplink_reconnect_soon's attempts at the shortest backoff between two such sessions:
 * enough to narrow the window and strike a row three times (suspect.h), and one more. */
#define SOON_MAX 5
#define CONNACK_WAIT_MAX_MS 30000
#define TOPIC_MAX UPLINK_TOPIC_MAX
#define MID_MAX 65536      /* MQTT packet identifiers are 16 bits */
/*
 * Connect threads still running, abandoned ones included, past which no new attempt
 * starts: a resolver that never answers holds each lookup for its own timeout
 * (resolv.conf's timeout × attempts), and one attempt per backoff must not pile up.
 */
#define ATTEMPTS_LIVE_MAX 4
/* A probe's TCP connect to the first broker is given up after this long. */
#define PROBE_CONNECT_MS 5000
#define BROKERS_MAX (1 + UPLINK_FALLBACK_MAX)
/* How long a planned switch back to the first broker waits for its goodbye to be written */
#define SWITCH_WAIT_MS 500

_Static_assert(COMMAND_TOPIC_MAX == UPLINK_TOPIC_MAX, "a subscription is a topic");

enum ul_state { UL_IDLE, UL_CONNECTING, UL_CONNECTED, UL_SHUTDOWN };

/* What an outstanding message id is, so that only the caller's messages are acked. */
enum ul_track { TRACK_NONE = 0, TRACK_CALLER, TRACK_STATUS, TRACK_CALLER0 /* QoS 0 */ };

/*
 * A connect under way on its own thread. Shared by the core (through u->att) and the
 * thread, each holding a reference; the last to let go frees it, with the handle if
 * nobody took it. Until done, the thread owns mosq and lib_err; after, the core may take
 * them (under mu).
 */
struct ul_attempt {
	pthread_mutex_t mu;
	int refs;
	bool done;
	int efd;               /* eventfd: written when done */
	struct mosquitto *mosq;
	char *host;
	int port, keepalive_s;
	int rc, err;           /* of mosquitto_connect_async, and its errno */
	char lib_err[200];     /* libmosquitto's last error line meanwhile */
};

/* Connect threads running, across every uplink (a reload makes a second one). */
static atomic_int ul_attempts_live;

/*
 * A probe of the first broker, on a thread of its own: can a TCP connection to it be
 * opened (its name looked up first)? Shared like an attempt: the last of the core and
 * the thread to let go frees it.
 */
struct ul_probe {
	pthread_mutex_t mu;
	int refs;
	bool done, ok;
	char *host;
	int port;
	int64_t started;       /* monotonic ms */
	char why[160];         /* why it failed */
};

/* A broker: the first (uplink.host and its keys) or a fallback, as it is connected to. */
struct ul_broker {
	char *host;
	int port;
	char *client_id;
	char *username;
	char *password;        /* wiped before it is freed */
	bool tls;
	char *ca_file, *cert_file, *key_file;
	char hostport[300];    /* for log lines: host:port, [v6]:port */
};

/* A message that arrived, copied for the caller. */
struct ul_msg {
	char *topic;
	void *payload;
	size_t len;
};

/* A message tracked for its acknowledgement, in publish order: the oldest one still
 * unacknowledged says whether an acknowledgement is overdue. */
struct ul_sent {
	int mid;
	int64_t at;            /* monotonic ms */
};

/* An acknowledgement that refused (MQTT 5 reason code >= 0x80). */
struct ul_refused {
	int mid;
	int reason;
};

struct uplink {
	/* from cfg->gateway and cfg->uplink, owned */
	struct ul_broker brokers[BROKERS_MAX]; /* the first, then the fallbacks */
	size_t nbrokers;
	size_t bi;              /* the broker of this session or attempt */
	/* brokers[bi]'s, not owned: what a connect uses */
	char *host;
	int port;
	char *client_id;
	char *username;
	char *password;
	bool tls;
	char *ca_file, *cert_file, *key_file;
	const char *hostport;   /* for log lines: host:port, [v6]:port */
	int protocol;           /* MQTT_PROTOCOL_V311 or MQTT_PROTOCOL_V5 */
	char *prefix;           /* the format's root: topic_prefix, or Sparkplug's group */
	char *gateway_id;
	char *gateway_name;
	char stream[24];        /* the seq space's id (uplink_set_stream), in the status */
	const struct payload_format *fmt; /* writes the status, the will and every topic */
	bool sparkplug;         /* the will carries a bdSeq, one more each attempt */
	uint64_t bdseq, bdseq_next;
	char (*subs)[COMMAND_TOPIC_MAX]; /* subscribed to on each connect */
	size_t nsubs;
	int *sub_mids;          /* the SUBSCRIBE of each, for its SUBACK */
	int64_t fallback_check_ms;
	int64_t probe_at;       /* monotonic ms: the next probe of the first broker */
	struct ul_probe *probe; /* under way */
	bool switching;         /* this session ends to go back to the first broker */
	bool closing;           /* uplink_shutdown is under way: no probe, no switch */
	int keepalive_s;
	int inflight_max;
	int64_t connack_wait_ms;
	int64_t ack_timeout_ms;  /* an acknowledgement later than this ends the session */
	int64_t stable_ms;      /* a session this long resets the backoff */
	uint64_t max_packet;    /* uplink.max_packet_size, 0 for none */

	struct uplink_events ev;

	struct mosquitto *mosq; /* one per session; NULL between sessions */
	struct ul_attempt *att; /* a connect beginning on its thread; then mosq is NULL */
	enum ul_state state;
	int64_t attempt_at;     /* monotonic ms: the next connect attempt */
	bool reschedule;        /* attempt_at is to be set from the next tick's now */
	int64_t attempt_started;
	int64_t backoff_ms;
	unsigned warned;        /* the brokers (bit bi) that had this outage's one warning */
	int64_t up_since;       /* monotonic ms of this session's CONNACK */
	bool stable;            /* it has lasted stable_ms: the backoff was reset */
	int soon_left;          /* uplink_reconnect_soon's budget until a session lasts */
	uint32_t broker_max;    /* Maximum Packet Size from the CONNACK (MQTT 5), 0 none */
	uint64_t rng;

	/* recorded by libmosquitto's callbacks during one loop call */
	bool cb_connack;
	bool cb_lost;
	bool broken;            /* a publish saw the connection fail */
	char why[256];          /* the first reason given for losing this session */
	bool ours;              /* ... and it was our decision (enum uplink_end) */
	char lib_err[200];      /* libmosquitto's last error line (TLS detail) */
	int *acks;              /* caller mids acknowledged, delivered after the call */
	size_t nacks, acks_cap;
	struct ul_refused *refs; /* caller mids refused, delivered after the call */
	size_t nrefs, refs_cap;
	char refusal[200];      /* why the last uplink_publish returned UPLINK_REFUSED */
	bool in_publish;        /* inside mosquitto_publish: a QoS 0 message may be written */
	int written_mid;        /* ... and this one was, before its mid was known to us */
	struct ul_msg msgs[UPLINK_MSGS_MAX]; /* arrived during one loop call */
	size_t nmsgs;
	uint64_t msgs_dropped;  /* too long, or too many at once: logged 1st, 10th, 100th... */

	unsigned char *track;   /* enum ul_track by mid */
	unsigned inflight;      /* tracked mids (caller and status) not yet acknowledged */
	struct ul_sent *sent;   /* tracked mids in publish order, acknowledged ones among
				   them until they are swept out (ul_sent_sweep) */
	size_t sent_head, sent_n, sent_cap;
};

/* ---------------------------------------------------------------------------------- */

static char *ul_strdup(const char *s, bool *ok)
{
	char *d;

	if (s == NULL)
		return NULL;
	d = strdup(s);
	if (d == NULL)
		*ok = false;
	return d;
}

static int64_t ul_jitter(struct uplink *u, int64_t ms)
{
	/* xorshift64: spread gateways that lost the broker at the same moment */
	u->rng ^= u->rng << 13;
	u->rng ^= u->rng >> 7;
	u->rng ^= u->rng << 17;
	/* 80 % .. 120 % */
	return ms * 8 / 10 + (int64_t)(u->rng % (uint64_t)(ms * 4 / 10 + 1));
}

static void ul_set_why(struct uplink *u, const char *fmt, ...) PRINTF(2, 3);

static void ul_set_why(struct uplink *u, const char *fmt, ...)
{
	va_list ap;

	if (u->why[0])
		return;   /* the first reason is the real one; later ones are consequences */
	va_start(ap, fmt);
	vsnprintf(u->why, sizeof u->why, fmt, ap);
	va_end(ap);
}

/* A reason that is our own decision to end the session, when it is the first. */
static void ul_set_why_ours(struct uplink *u, const char *fmt, ...) PRINTF(2, 3);

static void ul_set_why_ours(struct uplink *u, const char *fmt, ...)
{
	va_list ap;

	if (u->why[0])
		return;
	va_start(ap, fmt);
	vsnprintf(u->why, sizeof u->why, fmt, ap);
	va_end(ap);
	u->ours = true;
}

/*
 * A reason for a libmosquitto return code. MOSQ_ERR_ERRNO means "see errno", and a
 * TLS failure is only explained by the OpenSSL line libmosquitto logged.
 */
static void ul_why_rc(struct uplink *u, int rc, int err)
{
	const char *s;

	if (rc == MOSQ_ERR_KEEPALIVE) {
		/* libmosquitto's own clock: no packet from the broker for a keepalive */
		if (u->state == UL_CONNECTING)
			ul_set_why_ours(u, "no CONNACK within the keepalive (%d s)", u->keepalive_s);
		else
			ul_set_why_ours(u, "the broker did not answer within the keepalive (%d s)",
					u->keepalive_s);
		return;
	}
	if (rc == MOSQ_ERR_ERRNO && err == EPROTO && u->tls)
		s = "TLS error";   /* what OpenSSL said, if anything, is in lib_err */
	else if (rc == MOSQ_ERR_ERRNO)
		s = err ? strerror(err) : "system error";
	else if (rc >= 128)
		s = mosquitto_reason_string(rc);   /* an MQTT 5 reason from the broker */
	else
		s = mosquitto_strerror(rc);
	if (u->lib_err[0] && (rc == MOSQ_ERR_ERRNO || rc == MOSQ_ERR_TLS ||
			      rc == MOSQ_ERR_TLS_HANDSHAKE || rc == MOSQ_ERR_PROTOCOL ||
			      rc == MOSQ_ERR_INVAL || rc == MOSQ_ERR_CONN_LOST))
		ul_set_why(u, "%s (%s)", s, u->lib_err);
	else
		ul_set_why(u, "%s", s);
}

/* ---------------------------------------------------------------------------------- */
/* libmosquitto callbacks: record only */

static void ul_on_connect(struct mosquitto *m, void *obj, int rc, int flags,
			  const mosquitto_property *props)
{
	struct uplink *u = obj;

	(void)m;
	(void)flags;
	if (rc == 0) {
		uint32_t max = 0;

		/* MQTT 5: the largest packet the broker takes; libmosquitto enforces it too */
		if (props && mosquitto_property_read_int32(props, MQTT_PROP_MAXIMUM_PACKET_SIZE,
							   &max, false))
			u->broker_max = max;
		u->cb_connack = true;
		return;
	}
	ul_set_why(u, "broker refused the connection: %s",
		   u->protocol == MQTT_PROTOCOL_V5 ? mosquitto_reason_string(rc)
						   : mosquitto_connack_string(rc));
	u->cb_lost = true;
}

static void ul_on_disconnect(struct mosquitto *m, void *obj, int rc,
			     const mosquitto_property *props)
{
	struct uplink *u = obj;
	int err = errno;

	(void)m;
	(void)props;
	if (rc == 0)
		ul_set_why(u, "disconnected");
	else
		ul_why_rc(u, rc, err);
	u->cb_lost = true;
}

/* An acknowledgement to hand the caller after the loop call. */
static void ul_ack_push(struct uplink *u, int mid)
{
	if (u->nacks == u->acks_cap) {
		size_t ncap = u->acks_cap ? u->acks_cap * 2 : 64;
		int *na = realloc(u->acks, ncap * sizeof *na);
		if (na == NULL) {
			/* losing an ack only means the message is sent again: at least once */
			log_warnx("uplink: out of memory, ack of message %d dropped", mid);
			return;
		}
		u->acks = na;
		u->acks_cap = ncap;
	}
	u->acks[u->nacks++] = mid;
}

static void ul_on_publish(struct mosquitto *m, void *obj, int mid, int reason,
			  const mosquitto_property *props)
{
	struct uplink *u = obj;
	unsigned char t;

	(void)m;
	(void)props;
	if (mid <= 0 || mid >= MID_MAX)
		return;
	t = u->track[mid];
	if (t == TRACK_NONE && u->in_publish) {
		/* a QoS 0 message written at once, inside mosquitto_publish: uplink_publish
		 * reports it when it knows it is the caller's */
		u->written_mid = mid;
		return;
	}
	if (t == TRACK_NONE)
		return;   /* the status message at QoS 0, or after a reset: nothing to report */
	u->track[mid] = TRACK_NONE;
	if (u->inflight > 0)
		u->inflight--;
	if (reason >= 128 && t == TRACK_STATUS) {
		log_warnx("uplink: the broker refused the status message: %s",
			  mosquitto_reason_string(reason));
		return;
	}
	if (t == TRACK_STATUS)
		return;
	if (reason >= 128) {
		/* acknowledged but not taken (MQTT 5: not authorised for the topic, quota
		 * exceeded, ...): the caller decides what becomes of it */
		if (u->nrefs == u->refs_cap) {
			size_t ncap = u->refs_cap ? u->refs_cap * 2 : 16;
			struct ul_refused *nr = realloc(u->refs, ncap * sizeof *nr);
			if (nr == NULL) {
				/* unreported, the message is sent again on the next session */
				log_warnx("uplink: out of memory, refusal of message %d dropped", mid);
				return;
			}
			u->refs = nr;
			u->refs_cap = ncap;
		}
		u->refs[u->nrefs++] = (struct ul_refused){ .mid = mid, .reason = reason };
		return;
	}
	ul_ack_push(u, mid);
}

/* Log the 1st, 10th, 100th, ... message dropped. */
static void ul_msg_dropped(struct uplink *u, const char *topic, const char *why)
{
	uint64_t n = ++u->msgs_dropped;

	for (uint64_t p = 1; p <= n && p <= UINT64_MAX / 10; p *= 10)
		if (p == n) {
			log_warnx("uplink: a message on %s is dropped: %s (%" PRIu64 " dropped so far)",
				  topic, why, n);
			return;
		}
}

/* A message on a subscription: copied, to be handed over after the loop call. */
static void ul_on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg,
			  const mosquitto_property *props)
{
	struct uplink *u = obj;
	struct ul_msg *e;
	size_t len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;

	(void)m;
	(void)props;
	if (len > UPLINK_MSG_MAX) {
		ul_msg_dropped(u, msg->topic, "longer than the gateway reads");
		return;
	}
	if (u->nmsgs == UPLINK_MSGS_MAX) {
		ul_msg_dropped(u, msg->topic, "too many at once");
		return;
	}
	e = &u->msgs[u->nmsgs];
	e->topic = strdup(msg->topic);
	e->payload = malloc(len ? len : 1);
	if (!e->topic || !e->payload) {
		free(e->topic);
		free(e->payload);
		ul_msg_dropped(u, msg->topic, "out of memory");
		return;
	}
	if (len)
		memcpy(e->payload, msg->payload, len);
	e->len = len;
	u->nmsgs++;
}

/* SUBACK: a refused subscription (not authorised) means commands that never arrive. */
static void ul_on_subscribe(struct mosquitto *m, void *obj, int mid, int count, const int *granted,
			    const mosquitto_property *props)
{
	struct uplink *u = obj;

	(void)m;
	(void)props;
	for (size_t i = 0; i < u->nsubs; i++) {
		if (u->sub_mids[i] != mid)
			continue;
		if (count < 1 || granted[0] >= 128)
			log_warnx("uplink: %s refused the subscription to %s (%s): nothing sent there "
				  "will reach the gateway", u->hostport, u->subs[i],
				  count < 1 ? "no answer" : mosquitto_reason_string(granted[0]));
		else
			log_debug("uplink: subscribed to %s at QoS %d", u->subs[i], granted[0]);
		u->sub_mids[i] = 0;
	}
}

static void ul_on_log(struct mosquitto *m, void *obj, int level, const char *str)
{
	struct uplink *u = obj;

	(void)m;
	if (level & MOSQ_LOG_ERR)
		snprintf(u->lib_err, sizeof u->lib_err, "%s", str);
	log_debug("uplink: mosquitto: %s", str);
}

/* ---------------------------------------------------------------------------------- */

/*
 * The messages awaiting acknowledgement, oldest first, for ack_timeout. Entries of
 * acknowledged messages stay until the oldest outstanding one moves past them, or a
 * sweep when the ring is full; a sweep at the latest every sent_cap publishes keeps an
 * acknowledged mid from lingering until libmosquitto hands it out again (at 65,535).
 */
static void ul_sent_sweep(struct uplink *u)
{
	size_t w = 0;

	for (size_t i = 0; i < u->sent_n; i++) {
		struct ul_sent e = u->sent[(u->sent_head + i) % u->sent_cap];
		if (u->track[e.mid] != TRACK_NONE)
			u->sent[w++] = e;
	}
	u->sent_head = 0;
	u->sent_n = w;
}

static void ul_sent_push(struct uplink *u, int mid, int64_t at)
{
	if (u->sent_n == u->sent_cap) {
		ul_sent_sweep(u);
		if (u->sent_n > u->sent_cap / 2) {
			size_t ncap = u->sent_cap * 2;
			struct ul_sent *n = realloc(u->sent, ncap * sizeof *n);
			if (n == NULL) {
				/* untimed: a broker that never acknowledges it is still caught by
				 * the messages around it, or by the keepalive */
				return;
			}
			u->sent = n;
			u->sent_cap = ncap;
		}
	}
	u->sent[(u->sent_head + u->sent_n) % u->sent_cap] = (struct ul_sent){ mid, at };
	u->sent_n++;
}

/* Since when the oldest unacknowledged message waits (monotonic ms), 0 when none. */
static int64_t ul_sent_oldest(struct uplink *u)
{
	while (u->sent_n > 0) {
		struct ul_sent e = u->sent[u->sent_head];
		if (u->track[e.mid] != TRACK_NONE)
			return e.at;
		u->sent_head = (u->sent_head + 1) % u->sent_cap;
		u->sent_n--;
	}
	return 0;
}

/* A message that awaits an acknowledgement. */
static void ul_track(struct uplink *u, int mid, enum ul_track t)
{
	if (mid <= 0 || mid >= MID_MAX)
		return;
	u->track[mid] = (unsigned char)t;
	u->inflight++;
	if (t != TRACK_CALLER0)   /* QoS 0 is done when written: no acknowledgement to time */
		ul_sent_push(u, mid, clock_mono_ms());
}

static struct payload_gateway ul_gateway(const struct uplink *u)
{
	return (struct payload_gateway){ .id = u->gateway_id, .name = u->gateway_name,
					 .version = SLUICE_VERSION,
					 .stream = u->stream[0] ? u->stream : NULL, .bdseq = u->bdseq };
}

/*
 * Publish our own status (the sluice format's, retained), or, saying goodbye in a format
 * that has none, its will (Sparkplug's NDEATH: a clean DISCONNECT does not fire the
 * will, and a host must hear it); ThingsBoard has neither. Its acknowledgement is not
 * the caller's.
 */
static int ul_publish_status(struct uplink *u, bool online)
{
	struct payload_gateway g = ul_gateway(u);
	char topic[TOPIC_MAX];
	struct payload_msg m;
	int mid = 0, rc;

	if (!u->fmt->status && (online || !u->fmt->will))
		return 0;
	payload_msg_init(&m);
	if (u->fmt->status ? u->fmt->status(&m, &g, online, clock_real_ms()) != 0
			   : u->fmt->will(&m, &g) != 0) {
		payload_msg_free(&m);
		log_warnx("uplink: out of memory for the status message");
		return -1;
	}
	if (uplink_topic(u, m.topic, topic, sizeof topic) < 0) {
		payload_msg_free(&m);
		return -1;
	}
	rc = mosquitto_publish(u->mosq, &mid, topic, (int)m.body.len, m.body.p, 1, m.retain);
	payload_msg_free(&m);
	if (rc != MOSQ_ERR_SUCCESS) {
		int err = errno;
		log_warnx("uplink: cannot publish status %s: %s", online ? "online" : "offline",
			  rc == MOSQ_ERR_ERRNO ? strerror(err) : mosquitto_strerror(rc));
		if (rc != MOSQ_ERR_NOMEM) {
			ul_why_rc(u, rc, err);
			u->broken = true;
		}
		return -1;
	}
	ul_track(u, mid, TRACK_STATUS);
	return 0;
}

/* ---- a connect on its own thread ---------------------------------------------------- */

static void ul_attempt_release(struct ul_attempt *a)
{
	bool last;

	pthread_mutex_lock(&a->mu);
	last = --a->refs == 0;
	pthread_mutex_unlock(&a->mu);
	if (!last)
		return;
	if (a->mosq)
		mosquitto_destroy(a->mosq);
	if (a->efd >= 0)
		close(a->efd);
	pthread_mutex_destroy(&a->mu);
	free(a->host);
	free(a);
}

/* libmosquitto's log lines while the thread owns the handle: into the attempt. */
static void ul_attempt_log(struct mosquitto *m, void *obj, int level, const char *str)
{
	struct ul_attempt *a = obj;

	(void)m;
	if (level & MOSQ_LOG_ERR)
		snprintf(a->lib_err, sizeof a->lib_err, "%s", str);
	log_debug("uplink: mosquitto: %s", str);
}

static void *ul_attempt_run(void *arg)
{
	struct ul_attempt *a = arg;
	uint64_t one = 1;
	int rc, err;

	/* the name lookup (blocking), then a non-blocking connect and, with TLS, the
	 * handshake's first step; CONNECT is queued */
	rc = mosquitto_connect_async(a->mosq, a->host, a->port, a->keepalive_s);
	err = errno;
	pthread_mutex_lock(&a->mu);
	a->rc = rc;
	a->err = err;
	a->done = true;
	pthread_mutex_unlock(&a->mu);
	if (write(a->efd, &one, sizeof one) < 0) {
		/* the counter cannot be full: nothing else writes it */
	}
	ul_attempt_release(a);
	atomic_fetch_sub(&ul_attempts_live, 1);
	return NULL;
}

/* Let go of the attempt under way; its thread frees the rest when its lookup ends. */
static void ul_abandon(struct uplink *u)
{
	if (u->att == NULL)
		return;
	ul_attempt_release(u->att);
	u->att = NULL;
}

/* ---- a probe of the first broker, on its own thread -------------------------------- */

static void ul_probe_release(struct ul_probe *p)
{
	bool last;

	pthread_mutex_lock(&p->mu);
	last = --p->refs == 0;
	pthread_mutex_unlock(&p->mu);
	if (!last)
		return;
	pthread_mutex_destroy(&p->mu);
	free(p->host);
	free(p);
}

/* Can one of addr's addresses be connected to within PROBE_CONNECT_MS? */
static bool ul_probe_connect(const struct addrinfo *ai, char *why, size_t len)
{
	int fd, e = 0;
	socklen_t el = sizeof e;
	struct pollfd pfd;

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0) {
		snprintf(why, len, "%s", strerror(errno));
		return false;
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
		snprintf(why, len, "%s", strerror(errno));
		close(fd);
		return false;
	}
	pfd = (struct pollfd){ .fd = fd, .events = POLLOUT };
	if (poll(&pfd, 1, PROBE_CONNECT_MS) <= 0) {
		snprintf(why, len, "no answer within %d s", PROBE_CONNECT_MS / 1000);
		close(fd);
		return false;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0 || e) {
		snprintf(why, len, "%s", strerror(e ? e : errno));
		close(fd);
		return false;
	}
	close(fd);
	return true;
}

static void *ul_probe_run(void *arg)
{
	struct ul_probe *p = arg;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res = NULL;
	char port[16], why[sizeof p->why] = "";
	bool ok = false;
	int rc;

	snprintf(port, sizeof port, "%d", p->port);
	rc = getaddrinfo(p->host, port, &hints, &res);
	if (rc != 0)
		snprintf(why, sizeof why, "cannot resolve %s: %s", p->host, gai_strerror(rc));
	for (const struct addrinfo *ai = res; ai && !ok; ai = ai->ai_next)
		ok = ul_probe_connect(ai, why, sizeof why);
	if (res)
		freeaddrinfo(res);
	pthread_mutex_lock(&p->mu);
	p->ok = ok;
	p->done = true;
	memcpy(p->why, why, sizeof p->why);
	pthread_mutex_unlock(&p->mu);
	ul_probe_release(p);
	atomic_fetch_sub(&ul_attempts_live, 1);
	return NULL;
}

static void ul_probe_abandon(struct uplink *u)
{
	if (u->probe == NULL)
		return;
	ul_probe_release(u->probe);
	u->probe = NULL;
}

/* Begin a probe of the first broker; false when no thread could be started for it. */
static bool ul_probe_start(struct uplink *u, int64_t now)
{
	struct ul_probe *p;
	sigset_t all, old;
	pthread_attr_t attr;
	pthread_t tid;
	int rc;

	if (atomic_load(&ul_attempts_live) >= ATTEMPTS_LIVE_MAX)
		return false;
	if (!(p = calloc(1, sizeof *p)) || !(p->host = strdup(u->brokers[0].host))) {
		free(p);
		return false;
	}
	pthread_mutex_init(&p->mu, NULL);
	p->refs = 2;
	p->port = u->brokers[0].port;
	p->started = now;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	atomic_fetch_add(&ul_attempts_live, 1);
	rc = pthread_create(&tid, &attr, ul_probe_run, p);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		atomic_fetch_sub(&ul_attempts_live, 1);
		p->refs = 1;
		ul_probe_release(p);
		return false;
	}
	u->probe = p;
	return true;
}

/* The probe's verdict: 1 the first broker answers, 0 not (or given up), -1 not yet. */
static int ul_probe_result(struct uplink *u, int64_t now)
{
	struct ul_probe *p = u->probe;
	char why[sizeof p->why] = "no answer";
	int r = -1;

	pthread_mutex_lock(&p->mu);
	if (p->done) {
		r = p->ok ? 1 : 0;
		if (p->why[0])
			memcpy(why, p->why, sizeof why);
	}
	pthread_mutex_unlock(&p->mu);
	if (r < 0 && now - p->started >= u->connack_wait_ms)
		r = 0;   /* a lookup that hangs: the thread frees the probe when it ends */
	if (r == 0)
		log_debug("uplink: %s does not answer yet: %s", u->brokers[0].hostport, why);
	if (r >= 0)
		ul_probe_abandon(u);
	return r;
}

/* Forget the session: libmosquitto's queues go with the handle. */
static void ul_drop_handle(struct uplink *u)
{
	ul_abandon(u);
	ul_probe_abandon(u);
	if (u->mosq) {
		mosquitto_destroy(u->mosq);
		u->mosq = NULL;
	}
	memset(u->track, 0, MID_MAX);
	u->inflight = 0;
	u->sent_head = u->sent_n = 0;
	u->broken = false;
	u->broker_max = 0;
}

static void ul_deliver_acks(struct uplink *u)
{
	/* index, not pointer: a handler's publish may not grow the array, but be safe */
	for (size_t i = 0; i < u->nacks; i++)
		if (u->ev.acked)
			u->ev.acked(u->ev.ctx, u->acks[i]);
	u->nacks = 0;
	for (size_t i = 0; i < u->nrefs; i++)
		if (u->ev.refused)
			u->ev.refused(u->ev.ctx, u->refs[i].mid,
				      mosquitto_reason_string(u->refs[i].reason));
	u->nrefs = 0;
	/* the messages that arrived: a handler may publish, but no more arrive meanwhile */
	for (size_t i = 0; i < u->nmsgs; i++) {
		if (u->ev.message)
			u->ev.message(u->ev.ctx, u->msgs[i].topic, u->msgs[i].payload,
				      u->msgs[i].len);
		free(u->msgs[i].topic);
		free(u->msgs[i].payload);
	}
	u->nmsgs = 0;
}

/* Connect to brokers[i] from now on (its fields are what ul_setup and ul_attempt use). */
static void ul_use_broker(struct uplink *u, size_t i)
{
	struct ul_broker *b = &u->brokers[i];

	u->bi = i;
	u->host = b->host;
	u->port = b->port;
	u->client_id = b->client_id;
	u->username = b->username;
	u->password = b->password;
	u->tls = b->tls;
	u->ca_file = b->ca_file;
	u->cert_file = b->cert_file;
	u->key_file = b->key_file;
	u->hostport = b->hostport;
}

/*
 * The session (or the attempt to start one) is over. One warning per outage: the
 * first failure after a working connection (or at start) is a warning, the retries
 * that follow are debug lines, and the next success is an info line.
 */
static void ul_fail(struct uplink *u)
{
	bool was_up = u->state == UL_CONNECTED;
	enum uplink_end end = !was_up ? UPLINK_END_ATTEMPT
			      : u->ours ? UPLINK_END_OURS : UPLINK_END_BROKER;
	char why[sizeof u->why];
	const char *from = u->hostport;
	bool next = !was_up && !u->switching && u->bi + 1 < u->nbrokers;

	if (!u->why[0])
		snprintf(u->why, sizeof u->why, "connection closed");
	memcpy(why, u->why, sizeof why);
	ul_drop_handle(u);
	u->state = UL_IDLE;

	if (u->switching)
		log_info("uplink: left %s: %s", from, why);
	else if (was_up)
		log_warnx("uplink: lost connection to %s: %s", from, why);
	else if (!(u->warned & 1u << u->bi))
		log_warnx("uplink: cannot connect to %s: %s (%s)", from, why,
			  next ? "trying the next broker" : "retrying");
	else
		log_debug("uplink: connect to %s failed again: %s", from, why);
	u->warned = u->switching ? 0 : u->warned | 1u << u->bi;
	/*
	 * Which broker next: within a round, the next one at once; a round that is over, or a
	 * session that was up, starts again from the first after the backoff; going back to
	 * the first on purpose, at once.
	 */
	if (next || u->switching) {
		ul_use_broker(u, next ? u->bi + 1 : 0);
		u->reschedule = false;
		u->attempt_at = clock_mono_ms();
	} else {
		ul_use_broker(u, 0);
		u->reschedule = true;
	}
	u->switching = false;

	ul_deliver_acks(u);
	if (u->ev.disconnected)
		u->ev.disconnected(u->ev.ctx, why, end);
}

static void ul_begin(struct uplink *u)
{
	u->cb_connack = false;
	u->cb_lost = false;
	if (!u->broken) {  /* keep the reason a failed publish recorded */
		u->why[0] = '\0';
		u->ours = false;
	}
}

/* The format's subscriptions, at QoS 1, on every new session (it is a clean one). */
static void ul_subscribe(struct uplink *u)
{
	for (size_t i = 0; i < u->nsubs; i++) {
		int mid = 0, rc = mosquitto_subscribe(u->mosq, &mid, u->subs[i], 1), err = errno;

		if (rc == MOSQ_ERR_SUCCESS) {
			u->sub_mids[i] = mid;
			continue;
		}
		log_warnx("uplink: cannot subscribe to %s: %s", u->subs[i],
			  rc == MOSQ_ERR_ERRNO ? strerror(err) : mosquitto_strerror(rc));
		if (rc != MOSQ_ERR_NOMEM && rc != MOSQ_ERR_INVAL && rc != MOSQ_ERR_MALFORMED_UTF8 &&
		    rc != MOSQ_ERR_OVERSIZE_PACKET) {
			/* the socket failed under the write: the loop ends the session */
			ul_why_rc(u, rc, err);
			u->broken = true;
			return;
		}
	}
}

/* After a libmosquitto call: act on what its callbacks recorded, then tell the core. */
static void ul_settle(struct uplink *u, int rc, int err)
{
	bool up = false;

	if (u->mosq == NULL)
		return;
	if (u->cb_connack && !u->cb_lost && u->state == UL_CONNECTING) {
		u->state = UL_CONNECTED;
		/* the backoff is reset only once the session has lasted (uplink_tick) */
		u->up_since = clock_mono_ms();
		u->stable = false;
		u->warned = 0;
		up = true;
		if (u->broker_max)
			log_info("uplink: connected to %s (the broker takes packets of up to %u "
				 "bytes)", u->hostport, (unsigned)u->broker_max);
		else
			log_info("uplink: connected to %s", u->hostport);
		if (u->bi > 0) {
			log_info("uplink: %s is fallback %zu; %s is tried again every %lld s",
				 u->hostport, u->bi, u->brokers[0].hostport,
				 (long long)(u->fallback_check_ms / 1000));
			u->probe_at = u->up_since + u->fallback_check_ms;
		}
		/* the status goes first, before anything the core sends on connected() */
		ul_publish_status(u, true);
		ul_subscribe(u);
	}
	if (rc > 0 && !u->cb_lost)
		ul_why_rc(u, rc, err);
	if (rc > 0 || u->cb_lost || u->broken || mosquitto_socket(u->mosq) < 0) {
		ul_fail(u);
		return;
	}
	ul_deliver_acks(u);
	if (up && u->ev.connected)
		u->ev.connected(u->ev.ctx);
}

/* OpenSSL's pass phrase callback: there is none to give, and without this OpenSSL
 * would ask for one on the daemon's terminal and wait. */
static int ul_no_passphrase(char *buf, int size, int rwflag, void *userdata)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)userdata;
	return 0;
}

/* Options, credentials, will and TLS of a new handle; no callbacks yet (they go on
 * when the core takes the handle: ul_adopt). */
static int ul_setup(struct uplink *u, struct mosquitto *m)
{
	struct payload_gateway g = ul_gateway(u);
	struct payload_msg will;
	char topic[TOPIC_MAX];
	int rc;

	/* the protocol first: username_pw_set checks against it */
	rc = mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, u->protocol);
	if (!rc)
		rc = mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
	if (!rc)
		rc = mosquitto_int_option(m, MOSQ_OPT_SEND_MAXIMUM, u->inflight_max);
	if (rc)
		return rc;

	if (u->username || u->password) {
		rc = mosquitto_username_pw_set(m, u->username, u->password);
		if (rc)
			return rc;
	}
	/* the broker publishes this when the connection dies without a DISCONNECT (none in
	 * ThingsBoard's format: the platform follows the gateway's connection itself) */
	payload_msg_init(&will);
	if (!u->fmt->will)
		rc = MOSQ_ERR_SUCCESS;
	else if (u->fmt->will(&will, &g) != 0)
		rc = MOSQ_ERR_NOMEM;
	else if (uplink_topic(u, will.topic, topic, sizeof topic) < 0)
		rc = MOSQ_ERR_INVAL;
	else
		rc = mosquitto_will_set(m, topic, (int)will.body.len, will.body.p, 1, will.retain);
	payload_msg_free(&will);
	if (rc)
		return rc;
	if (u->tls) {
		/*
		 * Server verification is always on: a CA file, else the system's CAs.
		 * A key file that needs a pass phrase fails the attempt. The name checked
		 * against the certificate (and sent as SNI) is the host given to connect.
		 */
		if (u->ca_file) {
			rc = mosquitto_tls_set(m, u->ca_file, NULL, u->cert_file, u->key_file,
					       ul_no_passphrase);
		} else {
			mosquitto_int_option(m, MOSQ_OPT_TLS_USE_OS_CERTS, 1);
			rc = mosquitto_tls_set(m, NULL, SLUICE_OS_CA_DIR, u->cert_file,
					       u->key_file, ul_no_passphrase);
		}
		if (rc) {
			/* libmosquitto only says "invalid arguments": name the file */
			const char *files[] = { u->ca_file, u->cert_file, u->key_file };
			for (size_t i = 0; i < 3; i++) {
				FILE *f = files[i] ? fopen(files[i], "re") : NULL;
				if (files[i] && f == NULL) {
					ul_set_why(u, "cannot read TLS file %s: %s", files[i],
						   strerror(errno));
					break;
				}
				if (f)
					fclose(f);
			}
			return rc;
		}
		rc = mosquitto_tls_opts_set(m, 1 /* SSL_VERIFY_PEER */, NULL, NULL);
		if (rc)
			return rc;
		rc = mosquitto_tls_insecure_set(m, false);
		if (rc)
			return rc;
	}
	return MOSQ_ERR_SUCCESS;
}

/*
 * A new handle, set up here, and its connect begun on a thread of its own
 * (ul_attempt_run); the handle comes back through uplink_io or uplink_tick (ul_collect).
 */
static void ul_attempt(struct uplink *u, int64_t now)
{
	struct ul_attempt *a;
	struct mosquitto *m;
	sigset_t all, old;
	pthread_attr_t attr;
	pthread_t tid;
	int rc, err;

	ul_begin(u);
	u->lib_err[0] = '\0';
	u->attempt_started = now;
	u->state = UL_CONNECTING;
	log_debug("uplink: connecting to %s", u->hostport);
	if (u->sparkplug) {
		/* every CONNECT's will carries a new bdSeq (Sparkplug 3.0), stored by the caller */
		u->bdseq = u->bdseq_next;
		u->bdseq_next = (u->bdseq + 1) % 256;
		if (u->ev.bdseq)
			u->ev.bdseq(u->ev.ctx, u->bdseq);
	}

	if (atomic_load(&ul_attempts_live) >= ATTEMPTS_LIVE_MAX) {
		ul_set_why(u, "%d earlier connects are still looking %s up", ATTEMPTS_LIVE_MAX,
			   u->host);
		ul_fail(u);
		return;
	}
	m = mosquitto_new(u->client_id, true, NULL);
	if (m == NULL) {
		ul_set_why(u, "cannot create an MQTT client: %s", strerror(errno));
		ul_fail(u);
		return;
	}
	rc = ul_setup(u, m);
	if (rc) {
		err = errno;
		mosquitto_destroy(m);
		ul_why_rc(u, rc, err);
		ul_fail(u);
		return;
	}
	a = calloc(1, sizeof *a);
	if (a == NULL || (a->host = strdup(u->host)) == NULL ||
	    (a->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		ul_set_why(u, "cannot start a connect: %s", strerror(errno));
		if (a) {
			free(a->host);
			free(a);
		}
		mosquitto_destroy(m);
		ul_fail(u);
		return;
	}
	pthread_mutex_init(&a->mu, NULL);
	a->refs = 2;
	a->mosq = m;
	a->port = u->port;
	a->keepalive_s = u->keepalive_s;
	mosquitto_user_data_set(m, a);
	mosquitto_log_callback_set(m, ul_attempt_log);

	/* the thread takes no signals: SIGTERM and SIGHUP are the core's, whose poll
	 * they must interrupt */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	atomic_fetch_add(&ul_attempts_live, 1);
	rc = pthread_create(&tid, &attr, ul_attempt_run, a);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		atomic_fetch_sub(&ul_attempts_live, 1);
		a->refs = 1;
		ul_attempt_release(a);
		ul_set_why(u, "cannot start a connect thread: %s", strerror(rc));
		ul_fail(u);
		return;
	}
	u->att = a;
}

/*
 * The attempt's thread is done: the handle becomes the session's, with the callbacks
 * that report into u, or the attempt failed. Returns false while it is still running.
 */
static bool ul_collect(struct uplink *u)
{
	struct ul_attempt *a = u->att;
	struct mosquitto *m;
	char lib_err[sizeof a->lib_err];
	uint64_t v;
	int rc, err, fd;

	pthread_mutex_lock(&a->mu);
	if (!a->done) {
		pthread_mutex_unlock(&a->mu);
		return false;
	}
	m = a->mosq;
	a->mosq = NULL;
	rc = a->rc;
	err = a->err;
	memcpy(lib_err, a->lib_err, sizeof lib_err);
	pthread_mutex_unlock(&a->mu);
	if (read(a->efd, &v, sizeof v) < 0) {
		/* already read: nothing to do */
	}
	ul_abandon(u);

	u->mosq = m;
	mosquitto_user_data_set(m, u);
	mosquitto_connect_v5_callback_set(m, ul_on_connect);
	mosquitto_disconnect_v5_callback_set(m, ul_on_disconnect);
	mosquitto_publish_v5_callback_set(m, ul_on_publish);
	mosquitto_message_v5_callback_set(m, ul_on_message);
	mosquitto_subscribe_v5_callback_set(m, ul_on_subscribe);
	mosquitto_log_callback_set(m, ul_on_log);
	memcpy(u->lib_err, lib_err, sizeof u->lib_err);
	/*
	 * An error here, such as a name that does not resolve, a refused loopback port or
	 * an unusable TLS file, ends the attempt at once.
	 */
	if (rc != MOSQ_ERR_SUCCESS) {
		if (rc == MOSQ_ERR_EAI)
			/* libmosquitto leaves getaddrinfo's code in errno */
			ul_set_why(u, "cannot resolve %s: %s", u->host, gai_strerror(err));
		else
			ul_why_rc(u, rc, err);
		ul_fail(u);
		return true;
	}
	fd = mosquitto_socket(m);
	if (fd >= 1024)
		/* fine: only poll() and the loop_read/write/misc calls ever touch it */
		log_debug("uplink: socket %d is past FD_SETSIZE", fd);
	return true;
}

/* ---------------------------------------------------------------------------------- */

static int ul_read_password(const char *path, char **out, char *err, size_t errlen)
{
	FILE *f;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int e;

	f = fopen(path, "re");
	if (f == NULL) {
		snprintf(err, errlen, "cannot read password file %s: %s", path,
			 strerror(errno));
		return -1;
	}
	/* unbuffered: no copy of the secret left behind in a stdio buffer */
	setvbuf(f, NULL, _IONBF, 0);
	errno = 0;
	n = getline(&line, &cap, f);
	e = errno;
	if (n < 0) {
		if (ferror(f))
			snprintf(err, errlen, "cannot read password file %s: %s", path,
				 strerror(e ? e : EIO));
		else
			snprintf(err, errlen, "password file %s is empty", path);
		fclose(f);
		free(line);
		return -1;
	}
	fclose(f);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	if (n == 0) {
		snprintf(err, errlen, "password file %s: the first line is empty", path);
		explicit_bzero(line, cap);
		free(line);
		return -1;
	}
	*out = line;
	return 0;
}

static void ul_free_fields(struct uplink *u)
{
	for (size_t i = 0; i < BROKERS_MAX; i++) {
		struct ul_broker *b = &u->brokers[i];
		if (b->password) {
			explicit_bzero(b->password, strlen(b->password));
			free(b->password);
		}
		free(b->host);
		free(b->client_id);
		free(b->username);
		free(b->ca_file);
		free(b->cert_file);
		free(b->key_file);
	}
	for (size_t i = 0; i < u->nmsgs; i++) {
		free(u->msgs[i].topic);
		free(u->msgs[i].payload);
	}
	free(u->subs);
	free(u->sub_mids);
	free(u->prefix);
	free(u->gateway_id);
	free(u->gateway_name);
	free(u->acks);
	free(u->refs);
	free(u->track);
	free(u->sent);
}

/* libmosquitto is left initialised while a connect thread may still be inside it
 * (its lookup outlived an abandoned attempt): only a process that exits frees it then. */
static void ul_lib_cleanup(void)
{
	if (atomic_load(&ul_attempts_live) == 0)
		mosquitto_lib_cleanup();
}

/* One broker's settings, copied; its password read. 0, or -1 with err. */
static int ul_broker_set(struct ul_broker *b, const struct config *cfg, const char *host,
			 uint16_t port, const char *client_id, const char *username,
			 const char *password_file, bool tls, const char *ca_file,
			 const char *cert_file, const char *key_file, char *err, size_t errlen)
{
	bool ok = true;

	if (host == NULL || host[0] == '\0') {
		snprintf(err, errlen, "no host given");
		return -1;
	}
	if (password_file && !username && cfg->uplink.protocol != MQTT_5) {
		snprintf(err, errlen, "a password needs a username with MQTT 3.1.1");
		return -1;
	}
	if (password_file && ul_read_password(password_file, &b->password, err, errlen) < 0)
		return -1;
	b->host = ul_strdup(host, &ok);
	b->port = port ? port : (tls ? 8883 : 1883);
	b->client_id = ul_strdup(client_id && client_id[0] ? client_id : cfg->gateway.id, &ok);
	b->username = ul_strdup(username, &ok);
	b->tls = tls;
	b->ca_file = ul_strdup(ca_file, &ok);
	b->cert_file = ul_strdup(cert_file, &ok);
	b->key_file = ul_strdup(key_file, &ok);
	if (!ok) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	snprintf(b->hostport, sizeof b->hostport, strchr(b->host, ':') ? "[%s]:%d" : "%s:%d",
		 b->host, b->port);
	return 0;
}

struct uplink *uplink_new(const struct config *cfg, const struct uplink_events *ev, char *err,
			  size_t errlen)
{
	const struct uplink_cfg *c = &cfg->uplink;
	struct uplink *u;
	bool ok = true;
	int64_t ka;
	int nsubs;

	if (cfg->gateway.id[0] == '\0') {
		snprintf(err, errlen, "the gateway has no id");
		return NULL;
	}
	if (c->format == FORMAT_SPARKPLUG && !c->sparkplug_group) {
		snprintf(err, errlen, "format sparkplug needs sparkplug.group");
		return NULL;
	}
	if (c->nfallback > UPLINK_FALLBACK_MAX) {
		snprintf(err, errlen, "more than %d fallback brokers", UPLINK_FALLBACK_MAX);
		return NULL;
	}
	if (mosquitto_lib_init() != MOSQ_ERR_SUCCESS) {
		snprintf(err, errlen, "cannot initialise libmosquitto");
		return NULL;
	}
	u = calloc(1, sizeof *u);
	if (u == NULL) {
		snprintf(err, errlen, "out of memory");
		mosquitto_lib_cleanup();
		return NULL;
	}
	if (ul_broker_set(&u->brokers[0], cfg, c->host, c->port, c->client_id, c->username,
			  c->password_file, c->tls, c->ca_file, c->cert_file, c->key_file, err,
			  errlen) < 0)
		goto fail;
	for (size_t i = 0; i < c->nfallback; i++) {
		const struct broker_cfg *b = &c->fallback[i];
		char why[256];

		if (ul_broker_set(&u->brokers[i + 1], cfg, b->host, b->port, b->client_id,
				  b->username, b->password_file, b->tls, b->ca_file, b->cert_file,
				  b->key_file, why, sizeof why) < 0) {
			snprintf(err, errlen, "fallback %zu: %s", i + 1, why);
			goto fail;
		}
	}
	u->nbrokers = 1 + c->nfallback;
	ul_use_broker(u, 0);
	u->protocol = c->protocol == MQTT_5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311;
	u->fmt = payload_format_find(uplink_format_name(c->format));
	if (!u->fmt) {
		snprintf(err, errlen, "format %s is not one sluiced speaks",
			 uplink_format_name(c->format));
		goto fail;
	}
	u->sparkplug = c->format == FORMAT_SPARKPLUG;
	u->prefix = ul_strdup(c->format == FORMAT_SPARKPLUG ? c->sparkplug_group
			      : c->format == FORMAT_THINGSBOARD ? ""
			      : c->topic_prefix && c->topic_prefix[0] ? c->topic_prefix
								       : "sluice", &ok);
	u->gateway_id = ul_strdup(cfg->gateway.id, &ok);
	u->gateway_name = ul_strdup(cfg->gateway.name, &ok);
	nsubs = command_subscriptions(cfg, NULL, 0);
	if (nsubs < 0) {
		snprintf(err, errlen, "a subscription's topic is longer than %d bytes",
			 UPLINK_TOPIC_MAX - 1);
		goto fail;
	}
	u->nsubs = (size_t)nsubs;
	u->subs = calloc(u->nsubs ? u->nsubs : 1, sizeof *u->subs);
	u->sub_mids = calloc(u->nsubs ? u->nsubs : 1, sizeof *u->sub_mids);
	if (u->subs && u->nsubs)
		command_subscriptions(cfg, u->subs, u->nsubs);
	u->fallback_check_ms = c->fallback_check_ms > 0 ? c->fallback_check_ms : 180000;
	u->track = calloc(MID_MAX, 1);
	u->inflight_max = c->inflight >= 1 && c->inflight <= 65535 ? (int)c->inflight : 64;
	u->sent_cap = (size_t)u->inflight_max + 16;
	u->sent = calloc(u->sent_cap, sizeof *u->sent);
	if (!ok || u->track == NULL || u->sent == NULL || !u->subs || !u->sub_mids) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	ka = c->keepalive_ms > 0 ? c->keepalive_ms : 30000;
	u->keepalive_s = (int)((ka + 999) / 1000);
	if (u->keepalive_s < 5)
		u->keepalive_s = 5;
	if (u->keepalive_s > 65535)
		u->keepalive_s = 65535;
	/* a broker that accepts TCP but never answers CONNECT is given up on */
	u->connack_wait_ms = 2 * (int64_t)u->keepalive_s * 1000;
	if (u->connack_wait_ms > CONNACK_WAIT_MAX_MS)
		u->connack_wait_ms = CONNACK_WAIT_MAX_MS;
	/* a broker that answers pings but leaves a message unacknowledged holds the
	 * window shut for as long as the session lives: this ends it */
	u->ack_timeout_ms = c->ack_timeout_ms > 0 ? c->ack_timeout_ms
						  : 2 * (int64_t)u->keepalive_s * 1000;
	u->stable_ms = (int64_t)u->keepalive_s * 1000;
	if (u->stable_ms > STABLE_MAX_MS)
		u->stable_ms = STABLE_MAX_MS;
	u->max_packet = c->max_packet_size;

	if (ev)
		u->ev = *ev;
	u->state = UL_IDLE;
	u->attempt_at = INT64_MIN;   /* the first tick connects */
	u->backoff_ms = BACKOFF_MIN_MS;
	u->soon_left = SOON_MAX;
	u->rng = (uint64_t)clock_real_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)u;
	for (const char *p = u->gateway_id; *p; p++)
		u->rng = u->rng * 131 + (unsigned char)*p;
	if (u->rng == 0)
		u->rng = 0x9E3779B97F4A7C15ull;
	return u;
fail:
	ul_free_fields(u);
	free(u);
	ul_lib_cleanup();
	return NULL;
}

void uplink_free(struct uplink *u)
{
	if (u == NULL)
		return;
	/* no DISCONNECT: the broker publishes the will (offline) for us */
	ul_abandon(u);
	ul_probe_abandon(u);
	if (u->mosq)
		mosquitto_destroy(u->mosq);
	ul_free_fields(u);
	free(u);
	ul_lib_cleanup();
}

int uplink_fd(struct uplink *u)
{
	if (u->att)
		return u->att->efd;
	if (u->mosq == NULL)
		return -1;
	return mosquitto_socket(u->mosq);
}

bool uplink_want_write(struct uplink *u)
{
	if (u->mosq == NULL)
		return false;
	/* a broken session wants attention now: POLLOUT (or POLLERR) wakes the loop */
	if (u->broken)
		return true;
	return mosquitto_want_write(u->mosq);
}

void uplink_reconnect_soon(struct uplink *u)
{
	if (u->state != UL_IDLE || !u->reschedule || u->soon_left <= 0)
		return;
	u->soon_left--;
	/* the schedule doubles it after use: put back what it was */
	u->attempt_at = clock_mono_ms() + ul_jitter(u, BACKOFF_MIN_MS);
	u->reschedule = false;
}

void uplink_set_stream(struct uplink *u, const char *stream)
{
	snprintf(u->stream, sizeof u->stream, "%s", stream ? stream : "");
}

bool uplink_connected(struct uplink *u)
{
	return u->mosq != NULL && u->state == UL_CONNECTED && !u->broken;
}

void uplink_io(struct uplink *u, short revents)
{
	int rc = MOSQ_ERR_SUCCESS, err = 0, fd;

	if (u->state == UL_SHUTDOWN)
		return;
	if (u->att) {
		if (revents)
			ul_collect(u);
		return;
	}
	if (u->mosq == NULL)
		return;
	ul_begin(u);
	fd = mosquitto_socket(u->mosq);
	if (fd < 0 || (revents & POLLNVAL)) {
		ul_set_why(u, "socket closed");
		u->cb_lost = true;
	} else if (revents & POLLERR) {
		/* a refused or reset connection: libmosquitto may not read while its
		 * connect is pending, so take the error from the socket */
		int e = 0;
		socklen_t l = sizeof e;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l) == 0 && e) {
			ul_set_why(u, "%s", strerror(e));
			u->cb_lost = true;
		}
	}
	if (!u->cb_lost && (revents & (POLLIN | POLLHUP | POLLERR))) {
		rc = mosquitto_loop_read(u->mosq, 1);
		err = errno;
	}
	if (!u->cb_lost && rc <= 0 && u->mosq && mosquitto_socket(u->mosq) >= 0 &&
	    (revents & (POLLOUT | POLLERR))) {
		rc = mosquitto_loop_write(u->mosq, 1);
		err = errno;
	}
	/* hung up with nothing left to read: whatever libmosquitto thinks, it is over */
	if (!u->cb_lost && rc <= 0 && (revents & POLLHUP) && !(revents & POLLIN)) {
		ul_set_why(u, "connection closed by the broker");
		u->cb_lost = true;
	}
	ul_settle(u, rc, err);
}

/* After a failure: the next attempt after the backoff, which then doubles. */
static void ul_schedule(struct uplink *u, int64_t now)
{
	if (!u->reschedule)
		return;
	u->attempt_at = now + ul_jitter(u, u->backoff_ms);
	u->backoff_ms = u->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : u->backoff_ms * 2;
	u->reschedule = false;
}

/* DISCONNECT, written at once when the socket has room (until deadline); libmosquitto
 * closes the socket after it. */
static void ul_disconnect(struct uplink *u, int64_t deadline)
{
	if (!u->mosq || mosquitto_socket(u->mosq) < 0)
		return;
	mosquitto_disconnect(u->mosq);
	while (u->mosq && mosquitto_socket(u->mosq) >= 0 && mosquitto_want_write(u->mosq) &&
	       clock_mono_ms() < deadline) {
		struct pollfd p = { .fd = mosquitto_socket(u->mosq), .events = POLLOUT };
		if (poll(&p, 1, 10) > 0 && mosquitto_loop_write(u->mosq, 1) > 0)
			break;
	}
}

/*
 * The first broker answers again: the session on the fallback ends cleanly (the status
 * or NDEATH first, so that no one reads it as online there), and the first broker is
 * tried at once. What was in flight is sent again on the new session, as after any
 * loss (the caller hears disconnected, ours).
 */
static void ul_switch_back(struct uplink *u)
{
	log_info("uplink: %s answers again: leaving %s for it", u->brokers[0].hostport,
		 u->hostport);
	ul_begin(u);
	/* first: the DISCONNECT's own callback must not give its reason instead */
	ul_set_why_ours(u, "going back to the first broker, %s", u->brokers[0].hostport);
	if (!u->broken) {
		ul_publish_status(u, false);
		ul_disconnect(u, clock_mono_ms() + SWITCH_WAIT_MS);
	}
	u->switching = true;
	ul_fail(u);
}

/* While on a fallback: probe the first broker every fallback_check_ms. */
static void ul_tick_probe(struct uplink *u, int64_t now)
{
	int r;

	if (!u->probe) {
		if (now >= u->probe_at && !ul_probe_start(u, now))
			u->probe_at = now + u->fallback_check_ms;   /* no thread now: later */
		return;
	}
	if ((r = ul_probe_result(u, now)) < 0)
		return;
	u->probe_at = now + u->fallback_check_ms;
	if (r == 1)
		ul_switch_back(u);
}

/* A connect under way on its thread: collected when done, abandoned past the wait. */
static void ul_tick_attempt(struct uplink *u, int64_t now)
{
	if (u->att == NULL || ul_collect(u))
		return;
	if (now - u->attempt_started < u->connack_wait_ms)
		return;
	/* the thread is inside getaddrinfo, which has no deadline of its own: it keeps
	 * running, and frees what it holds when the lookup ends */
	ul_begin(u);
	ul_set_why(u, "the name lookup of %s did not finish within %lld s", u->host,
		   (long long)(u->connack_wait_ms / 1000));
	ul_fail(u);
}

int64_t uplink_tick(struct uplink *u, int64_t now_ms)
{
	int64_t wait;

	if (u->state == UL_SHUTDOWN)
		return BACKOFF_MAX_MS;
	ul_tick_attempt(u, now_ms);
	if (u->mosq) {
		int64_t oldest;
		int rc, err;

		ul_begin(u);
		rc = mosquitto_loop_misc(u->mosq);   /* keepalive: PINGREQ, or give up */
		err = errno;
		if (rc == MOSQ_ERR_NO_CONN)
			rc = MOSQ_ERR_CONN_LOST;
		if (u->state == UL_CONNECTING && !u->cb_connack &&
		    now_ms - u->attempt_started >= u->connack_wait_ms) {
			ul_set_why(u, "no CONNACK within %lld s",
				   (long long)(u->connack_wait_ms / 1000));
			u->cb_lost = true;
		}
		if (u->state == UL_CONNECTED && (oldest = ul_sent_oldest(u)) > 0 &&
		    now_ms - oldest >= u->ack_timeout_ms) {
			/* the broker answers pings (or the keepalive would have ended this) but
			 * not this message: the window fills and stays full. Sent again, in
			 * order, on the next session. */
			ul_set_why_ours(u, "no acknowledgement of a message for %lld s "
					"(uplink.ack_timeout)", (long long)(now_ms - oldest) / 1000);
			u->cb_lost = true;
		}
		if (u->state == UL_CONNECTED && !u->stable && now_ms - u->up_since >= u->stable_ms) {
			/* the session lasted: the next loss starts the backoff afresh */
			u->stable = true;
			u->backoff_ms = BACKOFF_MIN_MS;
			u->soon_left = SOON_MAX;
		}
		ul_settle(u, rc, err);
	}
	if (u->mosq && u->state == UL_CONNECTED && u->bi > 0 && !u->closing && !u->broken)
		ul_tick_probe(u, now_ms);
	if (u->mosq == NULL && u->att == NULL) {
		ul_schedule(u, now_ms);
		if (now_ms >= u->attempt_at) {
			ul_attempt(u, now_ms);
			ul_schedule(u, now_ms);   /* when it failed on the spot */
		}
	}
	if (u->att) {
		int64_t left = u->attempt_started + u->connack_wait_ms - now_ms;
		return left > 0 ? left : 0;
	}
	if (u->mosq == NULL) {
		wait = u->attempt_at - now_ms;
		return wait > 0 ? wait : 0;
	}
	/* loop_misc keeps the keepalive in whole seconds: once a second is enough */
	wait = 1000;
	if (u->state == UL_CONNECTING) {
		int64_t left = u->attempt_started + u->connack_wait_ms - now_ms;
		if (left < wait)
			wait = left > 0 ? left : 0;
	}
	return wait;
}

/* The whole PUBLISH packet: fixed header, remaining length, topic, packet id, (MQTT 5)
 * an empty property list, payload. What brokers compare with their limit (mosquitto
 * counts a byte or two less: this errs on the side of refusing). */
static uint64_t ul_packet_size(const struct uplink *u, size_t topic_len, size_t len, int qos)
{
	uint64_t rl = 2 + (uint64_t)topic_len + (uint64_t)len + (qos > 0 ? 2 : 0) +
		      (u->protocol == MQTT_PROTOCOL_V5 ? 1 : 0);
	uint64_t n = 1 + rl;

	for (uint64_t v = rl;; v >>= 7) {
		n++;
		if (v < 128)
			break;
	}
	return n;
}

static int ul_refuse(struct uplink *u, const char *fmt, ...) PRINTF(2, 3);

static int ul_refuse(struct uplink *u, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(u->refusal, sizeof u->refusal, fmt, ap);
	va_end(ap);
	return UPLINK_REFUSED;
}

int uplink_publish(struct uplink *u, const char *topic, const void *payload, size_t len,
		   int qos, bool retain, int *mid)
{
	char full[TOPIC_MAX];
	uint64_t size;
	int m = 0, rc;

	if (!uplink_connected(u))
		return -1;
	if (qos < 0 || qos > 2)
		return ul_refuse(u, "QoS %d is not one of 0, 1, 2", qos);
	if (uplink_topic(u, topic, full, sizeof full) < 0)
		return ul_refuse(u, "the topic is longer than %d bytes", TOPIC_MAX - 1);
	size = ul_packet_size(u, strlen(full), len, qos);
	if (len > INT_MAX)
		return ul_refuse(u, "%zu bytes: larger than MQTT allows", len);
	if (u->max_packet > 0 && size > u->max_packet)
		return ul_refuse(u, "%" PRIu64 " bytes, more than uplink.max_packet_size (%" PRIu64
				 ")", size, u->max_packet);
	u->in_publish = true;
	u->written_mid = 0;
	rc = mosquitto_publish(u->mosq, &m, full, (int)len, payload, qos, retain);
	u->in_publish = false;
	if (rc != MOSQ_ERR_SUCCESS) {
		int err = errno;
		switch (rc) {
		case MOSQ_ERR_NOMEM:
			log_warnx("uplink: cannot publish to %s: %s", full, mosquitto_strerror(rc));
			return -1;
		case MOSQ_ERR_OVERSIZE_PACKET:
			return ul_refuse(u, "%" PRIu64 " bytes, more than the broker takes (%u, in its "
					 "CONNACK)", size, (unsigned)u->broker_max);
		case MOSQ_ERR_INVAL:
		case MOSQ_ERR_PAYLOAD_SIZE:
		case MOSQ_ERR_MALFORMED_UTF8:
		case MOSQ_ERR_QOS_NOT_SUPPORTED:
		case MOSQ_ERR_RETAIN_NOT_SUPPORTED:
			/* this message, as it is, will never go to this broker */
			return ul_refuse(u, "%s", mosquitto_strerror(rc));
		default:
			/* the socket failed under the write: end the session from the loop,
			 * where the core expects disconnected() */
			ul_why_rc(u, rc, err);
			u->broken = true;
			return -1;
		}
	}
	if (qos == 0 && u->written_mid == m && m > 0)
		ul_ack_push(u, m);   /* written already: delivered with the next loop call */
	else
		ul_track(u, m, qos > 0 ? TRACK_CALLER : TRACK_CALLER0);
	if (mid)
		*mid = m;
	return 0;
}

const char *uplink_refusal(const struct uplink *u)
{
	return u->refusal;
}

void uplink_shutdown(struct uplink *u, int64_t wait_ms)
{
	int64_t deadline = clock_mono_ms() + (wait_ms > 0 ? wait_ms : 0);
	unsigned left = 0;
	bool was_up = uplink_connected(u);

	if (u->state == UL_SHUTDOWN)
		return;
	u->closing = true;
	if (was_up) {
		/* a clean DISCONNECT does not fire the will: say offline ourselves */
		ul_publish_status(u, false);
		while (uplink_connected(u) && (u->inflight > 0 || uplink_want_write(u))) {
			int64_t now = clock_mono_ms();
			struct pollfd p;
			int n;

			if (now >= deadline)
				break;
			p.fd = uplink_fd(u);
			p.events = POLLIN | (uplink_want_write(u) ? POLLOUT : 0);
			p.revents = 0;
			n = poll(&p, 1, (int)(deadline - now < 100 ? deadline - now : 100));
			if (n < 0 && errno != EINTR)
				break;
			if (n > 0)
				uplink_io(u, p.revents);
			if (uplink_connected(u))
				uplink_tick(u, clock_mono_ms());
		}
		left = u->inflight;
		if (uplink_connected(u))
			ul_disconnect(u, deadline);
	}
	ul_drop_handle(u);
	u->state = UL_SHUTDOWN;
	if (was_up) {
		if (left)
			log_info("uplink: disconnected from %s, %u messages unacknowledged",
				 u->hostport, left);
		else
			log_info("uplink: disconnected from %s", u->hostport);
	}
}

int uplink_topic(const struct uplink *u, const char *rel, char *buf, size_t len)
{
	return u->fmt->topic(buf, len, u->prefix, u->gateway_id, rel);
}

void uplink_set_bdseq(struct uplink *u, uint64_t next)
{
	u->bdseq_next = next % 256;
}

uint64_t uplink_bdseq(const struct uplink *u)
{
	return u->bdseq;
}

size_t uplink_broker(const struct uplink *u, const char **hostport)
{
	if (hostport)
		*hostport = u->hostport;
	return u->bi;
}
