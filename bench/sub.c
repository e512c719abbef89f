/*
 * sub: the benchmark's MQTT subscriber. Counts what sluiced delivers, fast enough not
 * to be the bottleneck (tens of thousands of messages a second), and measures the
 * end-to-end latency of each telemetry message: receive time (CLOCK_REALTIME) minus
 * the payload's "ts" (when the poll began).
 *
 * Owns its libmosquitto handle and its output files. Never publishes, never judges:
 * it writes numbers, bench/bench.py decides what they mean.
 *
 *   sub -p PORT -t TOPIC -o STATS.json [-H HEALTH.jsonl] [-T TIMELINE] [-q QOS]
 *       [-m MARK_SEQ] [-c]
 *
 * -f FORMAT: sluiced's uplink.format — sluice (the default), thingsboard (telemetry on
 * v1/gateway/telemetry, its seq in "sluice_seq", its health on v1/devices/me/telemetry)
 * or sparkplug (DDATA, protobuf: not decoded here, so a reading counts -n values, the
 * workload's points, and has no latency or seq; health is not read). In every format
 * the window counts the bytes of each telemetry message, payload and topic (the topic
 * travels in every PUBLISH: MQTT 3.1.1 has no topic aliases).
 *
 * -c: the payloads are collectd's (its mqtt plugin, for the side-by-side comparison):
 * one value a message, "EPOCH:VALUE" with EPOCH in seconds to the millisecond (the time
 * collectd gave the value when its modbus plugin dispatched it, after the read), no seq.
 *
 * Signals: SIGUSR1 opens the measuring window (counters of the window reset),
 * SIGUSR2 closes it and writes STATS.json, SIGTERM/SIGINT write STATS.json again (the
 * window's counters as they were when it closed) and exit; SIGHUP writes STATS.json
 * and carries on (for following a drain). Counters that cover the whole run (seqs seen,
 * duplicates, the mark) are never reset.
 *
 * Health messages are appended to HEALTH.jsonl as "RECV_MS PAYLOAD" lines; TIMELINE
 * gets "RECV_MS TOTAL_MESSAGES" once a second, for rates over time.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>

/* latency histogram: 0.1 ms buckets up to 10 s, then 10 ms buckets up to 1000 s (a
 * drain's live readings wait behind the backlog for tens of seconds), then overflow */
#define LAT_STEP_US 100
#define LAT_FINE 100000                   /* buckets of LAT_STEP_US: 10 s */
#define LAT_COARSE_US 10000
#define LAT_BUCKETS (LAT_FINE + 99000)

struct window {
	uint64_t telemetry, values, with_errors, other, health;
	uint64_t payload_bytes, topic_bytes; /* of the telemetry messages */
	uint64_t lat[LAT_BUCKETS + 1];
	uint64_t lat_n, lat_neg;
	int64_t lat_max_us;
	int64_t first_us, last_us;        /* receive times of the first and last message */
};

struct state {
	pthread_mutex_t mu;
	struct window w;
	bool open, closed;

	/* the whole run */
	uint64_t total, dups, distinct, max_seq;
	uint8_t *seen;                    /* bitmap by seq */
	size_t seen_bytes;
	uint64_t mark_seq, mark_have;     /* distinct seqs <= mark_seq received */
	int64_t mark_first_us, mark_done_us, first_us;

	FILE *health, *timeline;
	const char *stats_path;
	bool collectd;                    /* -c */
	int format;                       /* -f: 0 sluice, 1 sparkplug, 2 thingsboard */
	uint64_t points;                  /* -n: values of a Sparkplug reading */
	int64_t next_tick_us;
};

static struct state S;

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* An unsigned integer after `"key":` in p[0..n), or -1. Payloads are sluiced's own
 * JSON: no spaces, keys never repeated at the top level before the one we want. */
static int64_t json_uint(const char *p, size_t n, const char *key)
{
	const char *k = memmem(p, n, key, strlen(key));
	int64_t v = 0;

	if (!k)
		return -1;
	k += strlen(key);
	if (k >= p + n || *k < '0' || *k > '9')
		return -1;
	while (k < p + n && *k >= '0' && *k <= '9')
		v = v * 10 + (*k++ - '0');
	return v;
}

/* Values in "values":{...}: one ':' per key (point names are ids, values numbers,
 * booleans, null or strings; a string value with a ':' would count twice — sluiced's
 * bench config has float32 points only). */
static uint64_t count_values(const char *p, size_t n)
{
	const char *v = memmem(p, n, "\"values\":{", 10);
	uint64_t c = 0;

	if (!v)
		return 0;
	for (v += 10; v < p + n && *v != '}'; v++)
		c += *v == ':';
	return c;
}

static bool seen_set(uint64_t seq)
{
	size_t byte = seq / 8;
	uint8_t bit = (uint8_t)(1u << (seq % 8));

	if (byte >= S.seen_bytes) {
		size_t nb = S.seen_bytes ? S.seen_bytes : 1 << 20;
		uint8_t *p;

		while (nb <= byte)
			nb *= 2;
		p = realloc(S.seen, nb);
		if (!p) {
			fprintf(stderr, "sub: out of memory\n");
			exit(1);
		}
		memset(p + S.seen_bytes, 0, nb - S.seen_bytes);
		S.seen = p;
		S.seen_bytes = nb;
	}
	if (S.seen[byte] & bit)
		return false;
	S.seen[byte] |= bit;
	return true;
}

static size_t lat_bucket(int64_t us)
{
	size_t b;

	if (us < (int64_t)LAT_FINE * LAT_STEP_US)
		return (size_t)(us / LAT_STEP_US);
	b = LAT_FINE + (size_t)((us - (int64_t)LAT_FINE * LAT_STEP_US) / LAT_COARSE_US);
	return b < LAT_BUCKETS ? b : LAT_BUCKETS;
}

/* The upper bound of bucket b, in ms. */
static double lat_bucket_top_ms(size_t b)
{
	if (b < LAT_FINE)
		return (double)(b + 1) * LAT_STEP_US / 1000.0;
	return ((double)LAT_FINE * LAT_STEP_US + (double)(b - LAT_FINE + 1) * LAT_COARSE_US) / 1000.0;
}

/* "EPOCH:VALUE" (collectd's plain text protocol, one GAUGE value): EPOCH in
 * microseconds, or -1. */
static int64_t collectd_ts_us(const char *p, size_t n)
{
	char buf[64], *end;
	double t;

	if (n == 0 || n >= sizeof buf)
		return -1;
	memcpy(buf, p, n);
	buf[n] = 0;
	t = strtod(buf, &end);
	if (end == buf || *end != ':')
		return -1;
	return (int64_t)(t * 1e6 + 0.5);
}

/* One value of collectd's: counted as telemetry of one value, latency from its EPOCH. */
static void on_collectd(const struct mosquitto_message *msg, int64_t t)
{
	int64_t ts = collectd_ts_us(msg->payload, (size_t)msg->payloadlen);
	struct window *w = &S.w;

	pthread_mutex_lock(&S.mu);
	S.total++;
	if (!S.first_us)
		S.first_us = t;
	if (S.open && !S.closed) {
		if (!w->first_us)
			w->first_us = t;
		w->last_us = t;
		if (ts < 0) {
			w->other++;
		} else {
			int64_t lat = t - ts;
			w->telemetry++;
			w->values++;
			if (lat < 0) {
				w->lat_neg++;
				lat = 0;
			}
			if (lat > w->lat_max_us)
				w->lat_max_us = lat;
			w->lat[lat_bucket(lat)]++;
			w->lat_n++;
		}
	}
	if (S.timeline && t >= S.next_tick_us) {
		fprintf(S.timeline, "%" PRId64 " %" PRIu64 "\n", t / 1000, S.total);
		fflush(S.timeline);
		S.next_tick_us = t + 1000000;
	}
	pthread_mutex_unlock(&S.mu);
}

static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg)
{
	const char *p = msg->payload;
	size_t n = (size_t)msg->payloadlen;
	int64_t t = now_us();
	bool telemetry, health;
	int64_t seq = -1, ts = -1;

	(void)m;
	(void)ud;
	if (S.collectd) {
		on_collectd(msg, t);
		return;
	}
	if (S.format == 1) {
		telemetry = strstr(msg->topic, "/DDATA/") != NULL;
		health = false;
	} else if (S.format == 2) {
		telemetry = strcmp(msg->topic, "v1/gateway/telemetry") == 0;
		/* the gateway's own telemetry: health, or an alert (which has no polls_ok) */
		health = strcmp(msg->topic, "v1/devices/me/telemetry") == 0 &&
			 memmem(p, n, "\"polls_ok\":", 11);
		/* a row's seq: readings, device states (attributes), alerts */
		seq = json_uint(p, n, "\"sluice_seq\":");
		if (telemetry)
			ts = json_uint(p, n, "\"ts\":");
	} else {
		telemetry = strstr(msg->topic, "/telemetry/") != NULL;
		health = !telemetry && strlen(msg->topic) >= 7 &&
			 strcmp(msg->topic + strlen(msg->topic) - 7, "/health") == 0;
		if (telemetry || !health) {
			seq = json_uint(p, n, "{\"seq\":");
			if (telemetry)
				ts = json_uint(p, n, ",\"ts\":");
		}
	}
	pthread_mutex_lock(&S.mu);
	S.total++;
	if (!S.first_us)
		S.first_us = t;
	if (seq > 0) {
		if (seen_set((uint64_t)seq)) {
			S.distinct++;
			if ((uint64_t)seq > S.max_seq)
				S.max_seq = (uint64_t)seq;
			if (S.mark_seq && (uint64_t)seq <= S.mark_seq) {
				if (!S.mark_first_us)
					S.mark_first_us = t;
				if (++S.mark_have == S.mark_seq)
					S.mark_done_us = t;
			}
		} else {
			S.dups++;
		}
	}
	if (S.open && !S.closed) {
		struct window *w = &S.w;

		if (!w->first_us)
			w->first_us = t;
		w->last_us = t;
		if (telemetry) {
			w->telemetry++;
			w->payload_bytes += n;
			w->topic_bytes += strlen(msg->topic);
			if (S.format == 1)
				w->values += S.points;
			else if (S.format == 2)
				w->values += count_values(p, n) - 1;   /* not sluice_seq */
			else
				w->values += count_values(p, n);
			if (memmem(p, n, "\"errors\":", 9))
				w->with_errors++;
			/* with a mark, only live readings (past the prefilled seqs) count
			 * for latency: the backlog's age is not a latency */
			if (ts > 0 && (uint64_t)seq > S.mark_seq) {
				int64_t lat = t - ts * 1000;
				if (lat < 0) {
					w->lat_neg++;
					lat = 0;
				}
				if (lat > w->lat_max_us)
					w->lat_max_us = lat;
				w->lat[lat_bucket(lat)]++;
				w->lat_n++;
			}
		} else if (health) {
			w->health++;
		} else {
			w->other++;
		}
	}
	if (health && S.health) {
		fprintf(S.health, "%" PRId64 " %.*s\n", t / 1000, (int)n, p);
		fflush(S.health);
	}
	if (S.timeline && t >= S.next_tick_us) {
		fprintf(S.timeline, "%" PRId64 " %" PRIu64 "\n", t / 1000, S.total);
		fflush(S.timeline);
		S.next_tick_us = t + 1000000;
	}
	pthread_mutex_unlock(&S.mu);
}

static void on_connect(struct mosquitto *m, void *ud, int rc)
{
	const char **sub = ud;

	if (rc != 0) {
		fprintf(stderr, "sub: connection refused: %s\n", mosquitto_connack_string(rc));
		return;
	}
	if (mosquitto_subscribe(m, NULL, sub[0], atoi(sub[1])) != MOSQ_ERR_SUCCESS)
		fprintf(stderr, "sub: subscribe failed\n");
}

static void on_subscribe(struct mosquitto *m, void *ud, int mid, int n, const int *granted)
{
	(void)m;
	(void)ud;
	(void)mid;
	/* bench.py waits for this line before it starts sluiced */
	printf("subscribed qos %d\n", n > 0 ? granted[0] : -1);
	fflush(stdout);
}

/* The upper bound, in ms, of the bucket holding quantile q. */
static double lat_quantile(const struct window *w, double q)
{
	uint64_t want = (uint64_t)(q * (double)w->lat_n), seen = 0;

	if (w->lat_n == 0)
		return -1;
	for (size_t b = 0; b <= LAT_BUCKETS; b++) {
		seen += w->lat[b];
		if (seen > want)
			return b < LAT_BUCKETS ? lat_bucket_top_ms(b) : (double)w->lat_max_us / 1000.0;
	}
	return (double)w->lat_max_us / 1000.0;
}

static void write_stats(void)
{
	const struct window *w = &S.w;
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof tmp, "%s.tmp", S.stats_path);
	f = fopen(tmp, "w");
	if (!f) {
		fprintf(stderr, "sub: %s: %s\n", tmp, strerror(errno));
		return;
	}
	fprintf(f, "{\"window\":{\"telemetry\":%" PRIu64 ",\"values\":%" PRIu64
		",\"with_errors\":%" PRIu64 ",\"health\":%" PRIu64 ",\"other\":%" PRIu64
		",\"payload_bytes\":%" PRIu64 ",\"topic_bytes\":%" PRIu64
		",\"first_ms\":%.3f,\"last_ms\":%.3f"
		",\"latency_ms\":{\"n\":%" PRIu64 ",\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f"
		",\"p999\":%.1f,\"max\":%.1f,\"negative\":%" PRIu64 "}},",
		w->telemetry, w->values, w->with_errors, w->health, w->other, w->payload_bytes,
		w->topic_bytes,
		w->first_us / 1000.0, w->last_us / 1000.0, w->lat_n, lat_quantile(w, 0.5),
		lat_quantile(w, 0.9), lat_quantile(w, 0.99), lat_quantile(w, 0.999),
		w->lat_max_us / 1000.0, w->lat_neg);
	fprintf(f, "\"run\":{\"messages\":%" PRIu64 ",\"distinct_seq\":%" PRIu64
		",\"duplicates\":%" PRIu64 ",\"max_seq\":%" PRIu64 ",\"first_ms\":%.3f"
		",\"mark_seq\":%" PRIu64 ",\"mark_have\":%" PRIu64 ",\"mark_first_ms\":%.3f"
		",\"mark_done_ms\":%.3f}}\n",
		S.total, S.distinct, S.dups, S.max_seq, S.first_us / 1000.0, S.mark_seq,
		S.mark_have, S.mark_first_us / 1000.0, S.mark_done_us / 1000.0);
	if (fclose(f) != 0 || rename(tmp, S.stats_path) != 0)
		fprintf(stderr, "sub: %s: %s\n", S.stats_path, strerror(errno));
}

static void usage(void)
{
	fprintf(stderr, "usage: sub -p PORT -t TOPIC -o STATS.json [-H HEALTH.jsonl] "
		"[-T TIMELINE] [-q QOS] [-m MARK_SEQ] [-f FORMAT] [-n POINTS] [-c]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *topic = NULL, *qos = "1", *hpath = NULL, *tpath = NULL;
	const char *sub[2];
	struct mosquitto *m;
	sigset_t set;
	int port = 0, opt, sig, rc;
	char id[64];

	while ((opt = getopt(argc, argv, "p:t:o:H:T:q:m:f:n:c")) != -1) {
		switch (opt) {
		case 'p': port = atoi(optarg); break;
		case 't': topic = optarg; break;
		case 'o': S.stats_path = optarg; break;
		case 'H': hpath = optarg; break;
		case 'T': tpath = optarg; break;
		case 'q': qos = optarg; break;
		case 'm': S.mark_seq = strtoull(optarg, NULL, 10); break;
		case 'c': S.collectd = true; break;
		case 'f':
			S.format = strcmp(optarg, "sparkplug") == 0     ? 1
				   : strcmp(optarg, "thingsboard") == 0 ? 2
				   : strcmp(optarg, "sluice") == 0      ? 0
									: -1;
			if (S.format < 0)
				usage();
			break;
		case 'n': S.points = strtoull(optarg, NULL, 10); break;
		default: usage();
		}
	}
	if (!port || !topic || !S.stats_path)
		usage();
	if (hpath && !(S.health = fopen(hpath, "a"))) {
		fprintf(stderr, "sub: %s: %s\n", hpath, strerror(errno));
		return 1;
	}
	if (tpath && !(S.timeline = fopen(tpath, "a"))) {
		fprintf(stderr, "sub: %s: %s\n", tpath, strerror(errno));
		return 1;
	}
	pthread_mutex_init(&S.mu, NULL);

	/* every thread, the network thread too, leaves these signals to sigwait below */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	mosquitto_lib_init();
	snprintf(id, sizeof id, "sluice-bench-sub-%ld", (long)getpid());
	sub[0] = topic;
	sub[1] = qos;
	m = mosquitto_new(id, true, sub);
	if (!m) {
		fprintf(stderr, "sub: mosquitto_new failed\n");
		return 1;
	}
	mosquitto_connect_callback_set(m, on_connect);
	mosquitto_subscribe_callback_set(m, on_subscribe);
	mosquitto_message_callback_set(m, on_message);
	/* no limit of ours on QoS 1 messages in flight towards us */
	mosquitto_int_option(m, MOSQ_OPT_RECEIVE_MAXIMUM, 65535);
	/* our PUBACKs must not wait for Nagle: they would hold up the broker's next
	 * segment (delayed ACK) and add ~40 ms to what we measure */
	mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
	rc = mosquitto_connect(m, "127.0.0.1", port, 30);
	if (rc != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "sub: connect to 127.0.0.1:%d: %s\n", port, mosquitto_strerror(rc));
		return 1;
	}
	if (mosquitto_loop_start(m) != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "sub: cannot start the network thread\n");
		return 1;
	}
	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		pthread_mutex_lock(&S.mu);
		if (sig == SIGUSR1) {
			memset(&S.w, 0, sizeof S.w);
			S.open = true;
			S.closed = false;
		} else if (sig == SIGUSR2) {
			S.closed = true;
			write_stats();
		} else if (sig == SIGHUP) {
			write_stats();
		} else {
			write_stats();
			pthread_mutex_unlock(&S.mu);
			break;
		}
		pthread_mutex_unlock(&S.mu);
	}
	mosquitto_disconnect(m);
	mosquitto_loop_stop(m, true);
	mosquitto_destroy(m);
	mosquitto_lib_cleanup();
	free(S.seen);
	if (S.health)
		fclose(S.health);
	if (S.timeline)
		fclose(S.timeline);
	return 0;
}
