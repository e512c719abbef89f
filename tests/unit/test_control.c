/*
 * test_control: the control socket (daemon/control.c) with a config built here, the
 * daemon's status, and a fake poller that holds the probes handed to it until the test
 * gives them back. Asserts: requests read and refused with a code and a message that
 * names the member (control_parse); where the socket goes; hello, status and pipelined
 * requests; a probe routed to the bus its target names (host:port, a tty by path or by
 * its character device) or refused (another kind, another line setting, a bus of no
 * device, none at all, one in progress, a poller that is full or stopping, late or
 * stopped); and clients that misbehave: garbage, a line too long, one that stalls, one
 * too many, one that leaves with its probe in flight, one that shuts its side first.
 * The socket is served from this thread between the client's writes and reads, as the
 * core loop serves it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "control.h"
#include "jread.h"
#include "log.h"
#include "mberr.h"
#include "status.h"

/* ---- requests as text ------------------------------------------------------------- */

static int parse(const char *text, struct control_request *rq, const char **code, char *msg)
{
	return control_parse(text, strlen(text), rq, code, msg, 300);
}

static void test_parse_good(void **state)
{
	struct control_request *rq = malloc(sizeof *rq);
	const char *code;
	char msg[300];
	(void)state;

	assert_int_equal(parse("{\"v\":1,\"op\":\"hello\"}", rq, &code, msg), 0);
	assert_int_equal(rq->op, CTL_HELLO);
	assert_string_equal(rq->id, "");
	assert_int_equal(parse(" {\"op\":\"status\",\"v\":1,\"id\":\"a\\\"b\"} ", rq, &code, msg), 0);
	assert_int_equal(rq->op, CTL_STATUS);
	assert_string_equal(rq->id, "\"a\\\"b\"");
	assert_int_equal(parse("{\"v\":1,\"op\":\"probe\",\"id\":-42,\"target\":{\"kind\":\"rtu\","
			       "\"device\":\"/dev/ttyUSB0\",\"rdev\":1089,\"baud\":19200,\"parity\":"
			       "\"even\"},\"unit\":247,\"timeout_ms\":10000,\"stop_on_silence\":true,"
			       "\"reads\":[{\"table\":\"input\",\"address\":65411,\"count\":125},"
			       "{\"count\":1,\"table\":\"coil\",\"address\":0}]}", rq, &code, msg), 0);
	assert_int_equal(rq->op, CTL_PROBE);
	assert_string_equal(rq->id, "-42");
	assert_int_equal(rq->target.kind, BUS_RTU);
	assert_string_equal(rq->target.device, "/dev/ttyUSB0");
	assert_true(rq->target.has_rdev);
	assert_int_equal(rq->target.rdev, 1089);
	assert_true(rq->target.has_line);
	assert_int_equal(rq->target.baud, 19200);
	assert_int_equal(rq->target.parity, 'E');
	assert_int_equal(rq->target.data_bits, 0); /* not given: not compared */
	assert_int_equal(rq->unit, 247);
	assert_int_equal(rq->timeout_ms, 10000);
	assert_true(rq->stop_on_silence);
	assert_int_equal(rq->nreads, 2);
	assert_int_equal(rq->reads[0].table, MB_INPUT);
	assert_int_equal(rq->reads[0].address, 65411);
	assert_int_equal(rq->reads[0].count, 125);
	assert_int_equal(rq->reads[1].table, MB_COIL);
	assert_int_equal(parse("{\"v\":1,\"op\":\"probe\",\"target\":{\"kind\":\"rtu_over_tcp\","
			       "\"host\":\"::1\",\"port\":8899},\"unit\":0,\"reads\":[{\"table\":"
			       "\"holding\",\"address\":1,\"count\":1}]}", rq, &code, msg), 0);
	assert_int_equal(rq->target.kind, BUS_RTU_OVER_TCP);
	assert_string_equal(rq->target.host, "::1");
	assert_int_equal(rq->target.port, 8899);
	assert_false(rq->target.has_line);
	assert_false(rq->stop_on_silence);
	assert_int_equal(rq->timeout_ms, 0);
	free(rq);
}

/* Each refusal: its code, and words of its message naming what is wrong. */
static void test_parse_refused(void **state)
{
	static const struct {
		const char *text, *code, *words;
	} cases[] = {
		{ "", "bad_request", "not JSON" },
		{ "hello", "bad_request", "not JSON" },
		{ "[1]", "bad_request", "a JSON object" },
		{ "{\"op\":\"hello\"}", "bad_request", "no protocol version" },
		{ "{\"v\":\"1\",\"op\":\"hello\"}", "bad_request", "no protocol version" },
		{ "{\"v\":2,\"op\":\"hello\"}", "version", "version 1" },
		{ "{\"v\":1}", "bad_request", "no \"op\"" },
		{ "{\"v\":1,\"op\":\"reboot\"}", "unknown_op", "reboot" },
		{ "{\"v\":1,\"op\":\"status\",\"verbose\":1}", "bad_request", "\"verbose\"" },
		{ "{\"v\":1,\"op\":\"hello\",\"id\":[1]}", "bad_request", "id:" },
		{ "{\"v\":1,\"op\":\"hello\",\"id\":1.5}", "bad_request", "id:" },
		{ "{\"v\":1,\"op\":\"probe\",\"unit\":1,\"reads\":[]}", "bad_request", "\"target\"" },
		{ "{\"v\":1,\"op\":\"probe\",\"target\":{\"kind\":\"usb\"},\"unit\":1}", "bad_request",
		  "target.kind" },
		{ "{\"v\":1,\"op\":\"probe\",\"target\":{\"kind\":\"rtu\"},\"unit\":1}", "bad_request",
		  "target.device" },
		{ "{\"v\":1,\"op\":\"probe\",\"target\":{\"kind\":\"rtu\",\"device\":\"/dev/x\","
		  "\"baud\":0},\"unit\":1}", "bad_request", "target.baud" },
		{ "{\"v\":1,\"op\":\"probe\",\"target\":{\"kind\":\"rtu\",\"device\":\"/dev/x\","
		  "\"parity\":\"mark\"},\"unit\":1}", "bad_request", "target.parity" },
		{ "{\"v\":1,\"op\":\"probe\",\"target\":{\"kind\":\"rtu\",\"device\":\"/dev/x\","
		  "\"host\":\"h\"},\"unit\":1}", "bad_request", "\"host\"" },
		{ "{\"v\":1,\"op\":\"probe\",\"target\":{\"kind\":\"tcp\",\"host\":\"h\"},\"unit\":1}",
		  "bad_request", "target.port" },
		{ "{\"v\":1,\"op\":\"probe\",\"target\":{\"kind\":\"tcp\",\"host\":\"h\",\"port\":70000},"
		  "\"unit\":1}", "bad_request", "target.port" },
		{ "{\"v\":1,\"op\":\"probe\",\"target\":{\"kind\":\"tcp\",\"host\":\"\",\"port\":1},"
		  "\"unit\":1}", "bad_request", "target.host" },
		{ "{\"v\":1,\"op\":\"probe\",\"target\":{\"kind\":\"tcp\",\"host\":\"h\",\"port\":1},"
		  "\"reads\":[]}", "bad_request", "\"unit\"" },
		{ "{\"v\":1,\"op\":\"probe\",\"target\":{\"kind\":\"tcp\",\"host\":\"h\",\"port\":1},"
		  "\"unit\":256}", "bad_request", "unit" },
		{ "{\"v\":1,\"op\":\"probe\",\"target\":{\"kind\":\"tcp\",\"host\":\"h\",\"port\":1},"
		  "\"unit\":1,\"timeout_ms\":60000}", "bad_request", "timeout_ms" },
		{ "{\"v\":1,\"op\":\"probe\",\"target\":{\"kind\":\"tcp\",\"host\":\"h\",\"port\":1},"
		  "\"unit\":1,\"stop_on_silence\":1}", "bad_request", "stop_on_silence" },
		{ "{\"v\":1,\"op\":\"probe\",\"target\":{\"kind\":\"tcp\",\"host\":\"h\",\"port\":1},"
		  "\"unit\":1,\"reads\":[]}", "bad_request", "\"reads\"" },
		{ "{\"v\":1,\"op\":\"probe\",\"target\":{\"kind\":\"tcp\",\"host\":\"h\",\"port\":1},"
		  "\"unit\":1,\"reads\":[{\"table\":\"holdings\",\"address\":0,\"count\":1}]}",
		  "bad_request", "reads[0].table" },
		{ "{\"v\":1,\"op\":\"probe\",\"target\":{\"kind\":\"tcp\",\"host\":\"h\",\"port\":1},"
		  "\"unit\":1,\"reads\":[{\"table\":\"holding\",\"address\":0,\"count\":1},"
		  "{\"table\":\"holding\",\"address\":0,\"count\":126}]}", "bad_request",
		  "reads[1].count" },
		{ "{\"v\":1,\"op\":\"probe\",\"target\":{\"kind\":\"tcp\",\"host\":\"h\",\"port\":1},"
		  "\"unit\":1,\"reads\":[{\"table\":\"holding\",\"count\":1}]}", "bad_request",
		  "reads[0].address" },
		{ "{\"v\":1,\"op\":\"probe\",\"target\":{\"kind\":\"tcp\",\"host\":\"h\",\"port\":1},"
		  "\"unit\":1,\"reads\":[{\"table\":\"holding\",\"address\":65535,\"count\":2}]}",
		  "bad_request", "past 65535" },
		{ "{\"v\":1,\"op\":\"probe\",\"target\":{\"kind\":\"tcp\",\"host\":\"h\",\"port\":1},"
		  "\"unit\":1,\"reads\":[{\"table\":\"holding\",\"address\":1,\"count\":1,\"x\":0}]}",
		  "bad_request", "reads[0]: unknown member \"x\"" },
	};
	struct control_request *rq = malloc(sizeof *rq);
	(void)state;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *code = NULL;
		char msg[300];

		if (parse(cases[i].text, rq, &code, msg) != -1)
			fail_msg("accepted: %s", cases[i].text);
		assert_non_null(code);
		if (strcmp(code, cases[i].code) != 0 || !strstr(msg, cases[i].words))
			fail_msg("%s: %s: %s (wanted %s, \"%s\")", cases[i].text, code, msg,
				 cases[i].code, cases[i].words);
	}
	/* 129 reads: one too many */
	char *big = malloc(20000);
	size_t n = (size_t)sprintf(big, "{\"v\":1,\"op\":\"probe\",\"target\":{\"kind\":\"tcp\","
				   "\"host\":\"h\",\"port\":1},\"unit\":1,\"reads\":[");
	for (int i = 0; i < POLLER_PROBE_READS_MAX + 1; i++)
		n += (size_t)sprintf(big + n, "%s{\"table\":\"holding\",\"address\":%d,\"count\":1}",
				     i ? "," : "", i);
	strcpy(big + n, "]}");
	const char *code;
	char msg[300];
	assert_int_equal(parse(big, rq, &code, msg), -1);
	assert_non_null(strstr(msg, "1..128"));
	free(big);
	free(rq);
}

static void test_socket_path(void **state)
{
	char p[200], l[200];
	(void)state;

	assert_int_equal(control_socket_path(NULL, "/var/lib/sluice", p, sizeof p, l, sizeof l), 0);
	assert_string_equal(p, "/var/lib/sluice/control");
	assert_string_equal(l, "");
	assert_int_equal(control_socket_path("", "/var/lib/sluice", p, sizeof p, l, sizeof l), 0);
	assert_string_equal(p, "/var/lib/sluice/control");
	assert_string_equal(l, "");
	assert_int_equal(control_socket_path("/run/sluice", "/var/lib/sluice", p, sizeof p, l,
					     sizeof l), 0);
	assert_string_equal(p, "/run/sluice/control");
	assert_string_equal(l, "/var/lib/sluice/control");
	assert_int_equal(control_socket_path("/run/sluice:/run/other", "/x", p, sizeof p, l,
					     sizeof l), 0);
	assert_string_equal(p, "/run/sluice/control");
	assert_string_equal(l, "/x/control");
	char longdir[150];
	memset(longdir, 'd', sizeof longdir - 1);
	longdir[0] = '/';
	longdir[sizeof longdir - 1] = '\0';
	assert_int_equal(control_socket_path(NULL, longdir, p, sizeof p, l, sizeof l), -1);
	/* the link is connected through: it must fit a socket address too */
	assert_int_equal(control_socket_path("/run/sluice", longdir, p, sizeof p, l, sizeof l), -1);
}

/* ---- a daemon's side, built here ---------------------------------------------------- */

#define HELD_MAX 8

struct fx {
	char dir[64];
	char path[128];
	struct config *cfg;
	struct status st;
	struct control *ctl;
	struct poller_probe *held[HELD_MAX];
	size_t nheld;
	size_t held_bus[HELD_MAX];
	int refuse;                  /* errno the fake poller refuses with, 0: takes */
};

static const struct config *fx_config(void *ctx)
{
	return ((struct fx *)ctx)->cfg;
}

static const struct status *fx_status(void *ctx)
{
	return &((struct fx *)ctx)->st;
}

static int fx_probe(void *ctx, size_t bus, struct poller_probe *p)
{
	struct fx *f = ctx;

	if (f->refuse) {
		errno = f->refuse;
		return -1;
	}
	assert_true(f->nheld < HELD_MAX);
	f->held_bus[f->nheld] = bus;
	f->held[f->nheld++] = p;
	return 0;
}

/* The oldest probe held, given back with status (its reads answered 1000*i + k, bits k&1,
 * but for read `silent`, which times out). */
static void fx_give_back(struct fx *f, int status, size_t silent)
{
	struct poller_probe *p = f->held[0];

	assert_true(f->nheld > 0);
	memmove(f->held, f->held + 1, --f->nheld * sizeof *f->held);
	memmove(f->held_bus, f->held_bus + 1, f->nheld * sizeof *f->held_bus);
	for (size_t i = 0; i < p->nreads; i++) {
		p->reads[i].err = i == silent ? MBE_TIMEOUT : 0;
		for (uint16_t k = 0; k < p->reads[i].count; k++) {
			p->reads[i].regs[k] = (uint16_t)(1000 * i + k);
			p->reads[i].bits[k] = k & 1;
		}
	}
	if (status == PROBE_STOPPED)
		poller_probe_fail(p, 0, MBE_CLOSED);
	poller_probe_finish(p, status);
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	assert_non_null(d);
	return d;
}

/* Buses: plc (tcp 127.0.0.1:1502, a device at unit 3), line (rtu /dev/null at 9600 8N1,
 * a device at unit 5), dtu (rtu_over_tcp 10.0.0.9:8899, a device), spare (tcp
 * 127.0.0.1:1600, no device). */
static struct fx *fx_new(void)
{
	struct fx *f = calloc(1, sizeof *f);
	static const struct control_core core = { .config = fx_config, .status = fx_status,
						  .probe = fx_probe };
	struct control_core c = core;
	char err[256];
	struct config *cfg;

	assert_non_null(f);
	strcpy(f->dir, "/tmp/sluice-test-control-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	char link[8];
	assert_int_equal(control_socket_path(NULL, f->dir, f->path, sizeof f->path, link,
					     sizeof link), 0);
	cfg = f->cfg = calloc(1, sizeof *cfg);
	assert_non_null(cfg);
	strcpy(cfg->gateway.id, "gw-test");
	cfg->gateway.data_dir = xstrdup(f->dir);
	cfg->uplink.host = xstrdup("127.0.0.1");
	cfg->nbuses = 4;
	cfg->buses = calloc(4, sizeof *cfg->buses);
	const char *ids[] = { "plc", "line", "dtu", "spare" };
	for (int i = 0; i < 4; i++) {
		snprintf(cfg->buses[i].id, sizeof cfg->buses[i].id, "%s", ids[i]);
		cfg->buses[i].timeout_ms = 700;
	}
	cfg->buses[0].kind = BUS_TCP;
	cfg->buses[0].host = xstrdup("127.0.0.1");
	cfg->buses[0].port = 1502;
	cfg->buses[1].kind = BUS_RTU;
	cfg->buses[1].device = xstrdup("/dev/null");
	cfg->buses[1].baud = 9600;
	cfg->buses[1].parity = 'N';
	cfg->buses[1].data_bits = 8;
	cfg->buses[1].stop_bits = 1;
	cfg->buses[2].kind = BUS_RTU_OVER_TCP;
	cfg->buses[2].host = xstrdup("10.0.0.9");
	cfg->buses[2].port = 8899;
	cfg->buses[3].kind = BUS_TCP;
	cfg->buses[3].host = xstrdup("127.0.0.1");
	cfg->buses[3].port = 1600;
	cfg->ndevices = 3;
	cfg->devices = calloc(3, sizeof *cfg->devices);
	const char *dids[] = { "pump", "meter", "gauge" };
	const uint8_t units[] = { 3, 5, 1 };
	for (int i = 0; i < 3; i++) {
		snprintf(cfg->devices[i].id, sizeof cfg->devices[i].id, "%s", dids[i]);
		cfg->devices[i].bus = (size_t)i;
		cfg->devices[i].unit_id = units[i];
	}
	assert_int_equal(status_init(&f->st, 3, clock_real_ms(), clock_mono_ms()), 0);
	f->st.dev[1].published = 0; /* the meter is offline */
	f->st.dev[1].last_err = MBE_TIMEOUT;
	f->st.dev[1].last_poll_ms = clock_real_ms();
	c.ctx = f;
	f->ctl = control_open(f->path, "", &c, err, sizeof err);
	if (!f->ctl)
		fail_msg("control_open: %s", err);
	return f;
}

static void fx_free(struct fx *f)
{
	struct stat st;

	while (f->nheld)
		fx_give_back(f, PROBE_STOPPED, SIZE_MAX); /* the pollers stop first */
	control_close(f->ctl);
	assert_int_equal(lstat(f->path, &st), -1); /* the socket is removed */
	status_free(&f->st);
	config_free(f->cfg);
	assert_int_equal(rmdir(f->dir), 0);
	free(f);
}

/* Serve the socket for ms, as the core loop does (now: the clock given to control_io). */
static void serve_at(struct fx *f, int ms, int64_t now_shift)
{
	int64_t end = clock_mono_ms() + ms;

	do {
		struct pollfd pfd[CONTROL_POLLFDS_MAX];
		size_t n = control_pollfds(f->ctl, pfd, CONTROL_POLLFDS_MAX);
		int64_t left = end - clock_mono_ms();

		assert_true(poll(pfd, n, left > 10 ? 10 : left < 0 ? 0 : (int)left) >= 0);
		control_io(f->ctl, pfd, n, clock_mono_ms() + now_shift);
	} while (clock_mono_ms() < end);
}

static void serve(struct fx *f, int ms)
{
	serve_at(f, ms, 0);
}

static int connect_to(struct fx *f)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	strcpy(sa.sun_path, f->path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	return fd;
}

static void send_all(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
		assert_true(w > 0);
		s += w;
		n -= (size_t)w;
	}
}

/* One reply line from fd, serving meanwhile (NULL: the connection closed, or none in
 * ms). Caller frees. */
static char *read_line(struct fx *f, int fd, int ms)
{
	static char buf[1 << 20];
	size_t len = 0;
	int64_t end = clock_mono_ms() + ms;

	while (clock_mono_ms() < end) {
		ssize_t n = recv(fd, buf + len, 1, 0);
		if (n == 1) {
			if (buf[len] == '\n') {
				buf[len] = '\0';
				return strdup(buf);
			}
			assert_true(++len < sizeof buf);
			continue;
		}
		if (n == 0)
			return NULL;
		if (errno != EAGAIN)
			fail_msg("recv: %s (after %zu bytes)", strerror(errno), len);
		serve(f, 5);
	}
	return NULL;
}

/* Ask and read the reply, parsed. */
static struct jval *ask(struct fx *f, int fd, const char *req)
{
	char err[96], *line;
	struct jval *v;

	send_all(fd, req, strlen(req));
	line = read_line(f, fd, 3000);
	if (!line)
		fail_msg("no reply to %s", req);
	v = jread_parse(line, strlen(line), err, sizeof err);
	if (!v)
		fail_msg("reply is not JSON (%s): %s", err, line);
	free(line);
	return v;
}

static void assert_error(const struct jval *v, const char *code, const char *words)
{
	const char *c = jread_str(v, "error"), *m = jread_str(v, "message");

	assert_false(jread_bool(v, "ok", true));
	assert_int_equal(jread_i64(v, "v", 0), 1);
	if (!c || strcmp(c, code) != 0 || !m || !strstr(m, words))
		fail_msg("error %s: %s (wanted %s, \"%s\")", c ? c : "-", m ? m : "-", code, words);
}

/* ---- the socket --------------------------------------------------------------------- */

/* hello and status in one write: both answered, in order, each with its id; the socket
 * is 0660; the status is the daemon's live one. */
static void test_hello_status(void **state)
{
	struct fx *f = fx_new();
	struct stat st;
	(void)state;

	assert_int_equal(stat(f->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0660);
	int fd = connect_to(f);
	const char *two = "{\"v\":1,\"op\":\"hello\",\"id\":1}\n{\"v\":1,\"op\":\"status\","
			  "\"id\":\"s\"}\r\n";
	struct jval *v = ask(f, fd, two);
	assert_true(jread_bool(v, "ok", false));
	assert_int_equal(jread_i64(v, "id", 0), 1);
	assert_int_equal(jread_i64(v, "protocol", 0), 1);
	assert_int_equal(jread_i64(v, "pid", 0), getpid());
	assert_string_equal(jread_str(v, "gateway"), "gw-test");
	assert_string_equal(jread_str(v, "data_dir"), f->dir);
	jread_free(v);
	char *line = read_line(f, fd, 3000);
	assert_non_null(line);
	v = jread_parse(line, strlen(line), NULL, 0);
	free(line);
	assert_non_null(v);
	assert_string_equal(jread_str(v, "id"), "s");
	const struct jval *s = jread_get(v, "status");
	assert_non_null(s);
	assert_true(jread_bool(s, "running", false));
	assert_string_equal(jread_str(s, "gateway"), "gw-test");
	const struct jval *devs = jread_get(s, "devices");
	assert_int_equal(devs->n, 3);
	assert_string_equal(jread_str(devs->items[1], "state"), "offline");
	jread_free(v);

	/* live: a change shows in the next status (after the short cache) */
	f->st.dev[1].published = 1;
	serve(f, CONTROL_STATUS_EVERY_MS + 20);
	v = ask(f, fd, "{\"v\":1,\"op\":\"status\"}\n");
	devs = jread_get(jread_get(v, "status"), "devices");
	assert_string_equal(jread_str(devs->items[1], "state"), "online");
	jread_free(v);
	close(fd);
	serve(f, 20);
	fx_free(f);
}

/* Probes routed by target, answered through the poller; each refusal its own code. */
static void test_probe_routing(void **state)
{
	struct fx *f = fx_new();
	struct jval *v;
	struct stat null_st;
	char req[600];
	(void)state;

	int fd = connect_to(f);
	/* host:port, the host in other case: bus plc; the reply carries the registers */
	send_all(fd, req, (size_t)sprintf(req, "{\"v\":1,\"op\":\"probe\",\"id\":9,\"target\":"
		 "{\"kind\":\"tcp\",\"host\":\"127.0.0.1\",\"port\":1502},\"unit\":3,\"timeout_ms\""
		 ":250,\"reads\":[{\"table\":\"holding\",\"address\":10,\"count\":2},{\"table\":"
		 "\"coil\",\"address\":0,\"count\":3}]}\n"));
	serve(f, 50);
	assert_int_equal(f->nheld, 1);
	assert_int_equal(f->held_bus[0], 0);
	assert_int_equal(f->held[0]->unit, 3);
	assert_int_equal(f->held[0]->timeout_ms, 250);
	assert_int_equal(f->held[0]->nreads, 2);
	assert_true(f->held[0]->start_by > clock_mono_ms());

	/* the same bus again, from another client, while that one is in flight: busy */
	int fd2 = connect_to(f);
	v = ask(f, fd2, req);
	assert_error(v, "busy", "another probe is in progress on bus plc");
	jread_free(v);

	fx_give_back(f, PROBE_DONE, SIZE_MAX);
	char *line = read_line(f, fd, 3000);
	assert_non_null(line);
	v = jread_parse(line, strlen(line), NULL, 0);
	free(line);
	assert_true(jread_bool(v, "ok", false));
	assert_int_equal(jread_i64(v, "id", 0), 9);
	assert_string_equal(jread_str(v, "via"), "sluiced");
	assert_string_equal(jread_str(v, "bus"), "plc");
	assert_int_equal(jread_i64(v, "timeout_ms", 0), 250);
	assert_string_equal(jread_str(jread_get(v, "device"), "id"), "pump");
	const struct jval *reads = jread_get(v, "reads");
	assert_int_equal(reads->n, 2);
	const struct jval *regs = jread_get(reads->items[0], "registers");
	assert_int_equal(regs->n, 2);
	assert_int_equal((int)regs->items[1]->num, 1);
	const struct jval *bits = jread_get(reads->items[1], "bits");
	assert_int_equal(bits->n, 3);
	assert_int_equal((int)bits->items[1]->num, 1);
	jread_free(v);

	/* a tty by another name of the same character device: bus line; its device is
	 * offline in the daemon, and the reply says so with the silent read's error */
	assert_int_equal(stat("/dev/null", &null_st), 0);
	sprintf(req, "{\"v\":1,\"op\":\"probe\",\"target\":{\"kind\":\"rtu\",\"device\":"
		"\"/dev/ttyOTHERNAME\",\"rdev\":%llu,\"baud\":9600},\"unit\":5,\"stop_on_silence\":"
		"true,\"reads\":[{\"table\":\"input\",\"address\":0,\"count\":1}]}\n",
		(unsigned long long)null_st.st_rdev);
	send_all(fd2, req, strlen(req));
	serve(f, 50);
	assert_int_equal(f->nheld, 1);
	assert_int_equal(f->held_bus[0], 1);
	assert_true(f->held[0]->stop_on_silence);
	fx_give_back(f, PROBE_DONE, 0);
	line = read_line(f, fd2, 3000);
	v = jread_parse(line, strlen(line), NULL, 0);
	free(line);
	assert_string_equal(jread_str(v, "bus"), "line");
	assert_int_equal(jread_i64(v, "timeout_ms", 0), 700); /* the bus's */
	const struct jval *dev = jread_get(v, "device");
	assert_string_equal(jread_str(dev, "id"), "meter");
	assert_string_equal(jread_str(dev, "state"), "offline");
	assert_string_equal(jread_str(dev, "last_error"), "timeout");
	reads = jread_get(v, "reads");
	assert_string_equal(jread_str(reads->items[0], "error"), "timeout");
	assert_int_equal(jread_i64(reads->items[0], "code", 0), MBE_TIMEOUT);
	jread_free(v);

	/* refusals */
	static const struct {
		const char *target, *code, *words;
	} no[] = {
		{ "{\"kind\":\"rtu\",\"device\":\"/dev/null\",\"baud\":19200}", "mismatch",
		  "9600 baud, 8N1 (bus line)" },
		{ "{\"kind\":\"rtu\",\"device\":\"/dev/null\",\"parity\":\"even\"}", "mismatch",
		  "leave out --baud" },
		{ "{\"kind\":\"rtu\",\"device\":\"/dev/ttyNOPE\"}", "not_owned", "no bus at "
		  "/dev/ttyNOPE" },
		{ "{\"kind\":\"tcp\",\"host\":\"10.0.0.9\",\"port\":8899}", "mismatch",
		  "rtu_over_tcp in sluiced's configuration: probe it with --rtu-tcp" },
		{ "{\"kind\":\"rtu_over_tcp\",\"host\":\"127.0.0.1\",\"port\":1502}", "mismatch",
		  "with --tcp" },
		{ "{\"kind\":\"tcp\",\"host\":\"127.0.0.1\",\"port\":1600}", "not_owned",
		  "bus spare (127.0.0.1:1600) has no device" },
		{ "{\"kind\":\"tcp\",\"host\":\"127.0.0.2\",\"port\":1502}", "not_owned",
		  "no bus at 127.0.0.2:1502" },
	};
	for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
		sprintf(req, "{\"v\":1,\"op\":\"probe\",\"target\":%s,\"unit\":1,\"reads\":[{\"table\":"
			"\"holding\",\"address\":0,\"count\":1}]}\n", no[i].target);
		v = ask(f, fd, req);
		assert_error(v, no[i].code, no[i].words);
		jread_free(v);
	}
	assert_int_equal(f->nheld, 0);

	/* the poller refuses: full, or stopping */
	const char *dtu = "{\"v\":1,\"op\":\"probe\",\"target\":{\"kind\":\"rtu_over_tcp\",\"host\":"
			  "\"10.0.0.9\",\"port\":8899},\"unit\":1,\"reads\":[{\"table\":\"holding\","
			  "\"address\":0,\"count\":1}]}\n";
	f->refuse = ENOBUFS;
	v = ask(f, fd, dtu);
	assert_error(v, "busy", "too many probes");
	jread_free(v);
	f->refuse = ESHUTDOWN;
	v = ask(f, fd, dtu);
	assert_error(v, "stopped", "does not take probes");
	jread_free(v);
	f->refuse = 0;

	/* given back late (the line was busy), or stopped (a reload) */
	send_all(fd, dtu, strlen(dtu));
	serve(f, 50);
	fx_give_back(f, PROBE_LATE, SIZE_MAX);
	line = read_line(f, fd, 3000);
	v = jread_parse(line, strlen(line), NULL, 0);
	free(line);
	assert_error(v, "busy", "bus dtu was busy with sluiced's polls");
	jread_free(v);
	send_all(fd, dtu, strlen(dtu));
	serve(f, 50);
	fx_give_back(f, PROBE_STOPPED, SIZE_MAX);
	line = read_line(f, fd, 3000);
	v = jread_parse(line, strlen(line), NULL, 0);
	free(line);
	assert_error(v, "stopped", "try again");
	jread_free(v);
	close(fd);
	close(fd2);
	serve(f, 20);
	fx_free(f);
}

/* Clients that misbehave: the daemon answers what it can and lets them go. */
static void test_bad_clients(void **state)
{
	struct fx *f = fx_new();
	struct jval *v;
	int fds[CONTROL_CLIENTS_MAX];
	(void)state;

	/* garbage: refused, and the connection still serves */
	int fd = connect_to(f);
	v = ask(f, fd, "\x01\x02garbage\n");
	assert_error(v, "bad_request", "not JSON");
	jread_free(v);
	v = ask(f, fd, "{\"v\":1,\"op\":\"hello\"}\n");
	assert_true(jread_bool(v, "ok", false));
	jread_free(v);

	/* a line longer than a request may be: said, then let go */
	char *big = malloc(CONTROL_REQUEST_MAX + 10);
	memset(big, 'x', CONTROL_REQUEST_MAX + 10);
	send_all(fd, big, CONTROL_REQUEST_MAX + 10);
	free(big);
	char *line = read_line(f, fd, 3000);
	assert_non_null(line);
	v = jread_parse(line, strlen(line), NULL, 0);
	free(line);
	assert_error(v, "too_large", "at most 16384 bytes");
	jread_free(v);
	assert_null(read_line(f, fd, 1000)); /* closed */
	close(fd);

	/* one that stalls in the middle of a request: let go at its deadline, told why */
	fd = connect_to(f);
	send_all(fd, "{\"v\":1,\"op\":", 12);
	serve(f, 50);
	assert_int_equal(control_deadline(f->ctl) <= clock_mono_ms() + CONTROL_IDLE_MS, 1);
	serve_at(f, 20, CONTROL_IDLE_MS + 1);
	line = read_line(f, fd, 1000);
	assert_non_null(line);
	assert_non_null(strstr(line, "\"error\":\"timeout\""));
	free(line);
	assert_null(read_line(f, fd, 500));
	close(fd);

	/* one too many: told so, at once */
	for (int i = 0; i < CONTROL_CLIENTS_MAX; i++)
		fds[i] = connect_to(f);
	serve(f, 50);
	fd = connect_to(f);
	line = read_line(f, fd, 2000);
	assert_non_null(line);
	assert_non_null(strstr(line, "\"error\":\"busy\""));
	free(line);
	close(fd);
	v = ask(f, fds[CONTROL_CLIENTS_MAX - 1], "{\"v\":1,\"op\":\"hello\"}\n");
	assert_true(jread_bool(v, "ok", false)); /* those in still served */
	jread_free(v);
	for (int i = 0; i < CONTROL_CLIENTS_MAX; i++)
		close(fds[i]);
	serve(f, 50);

	/* one that leaves while its probe is in flight: the answer is dropped */
	const char *plc = "{\"v\":1,\"op\":\"probe\",\"target\":{\"kind\":\"tcp\",\"host\":"
			  "\"127.0.0.1\",\"port\":1502},\"unit\":3,\"reads\":[{\"table\":\"holding\","
			  "\"address\":0,\"count\":1}]}\n";
	fd = connect_to(f);
	send_all(fd, plc, strlen(plc));
	serve(f, 50);
	assert_int_equal(f->nheld, 1);
	close(fd);
	serve(f, 50);
	fx_give_back(f, PROBE_DONE, SIZE_MAX);
	serve(f, 50);

	/* one that shuts its side after its request: answered, then closed */
	fd = connect_to(f);
	send_all(fd, "{\"v\":1,\"op\":\"hello\"}", 20); /* the last line needs no newline */
	shutdown(fd, SHUT_WR);
	line = read_line(f, fd, 3000);
	assert_non_null(line);
	assert_non_null(strstr(line, "\"ok\":true"));
	free(line);
	assert_null(read_line(f, fd, 1000));
	close(fd);

	/* an idle one: let go at its deadline without a word */
	fd = connect_to(f);
	serve(f, 20);
	serve_at(f, 20, CONTROL_IDLE_MS + 1);
	assert_null(read_line(f, fd, 500));
	close(fd);
	assert_int_equal(control_deadline(f->ctl), INT64_MAX);
	fx_free(f);
}

/* A socket left by a daemon that did not stop cleanly is replaced; a path in a directory
 * that is not there is an error naming it. */
static void test_open(void **state)
{
	struct fx *f = fx_new();
	static const struct control_core core = { .config = fx_config, .status = fx_status,
						  .probe = fx_probe };
	char err[256];
	(void)state;

	/* a second control on the same path: the first one's socket is replaced */
	struct control_core c = core;
	c.ctx = f;
	struct control *other = control_open(f->path, NULL, &c, err, sizeof err);
	assert_non_null(other);
	control_close(other);
	struct stat st;
	assert_int_equal(stat(f->path, &st), -1); /* it removed its own */
	assert_null(control_open("/nonexistent-dir/control", NULL, &c, err, sizeof err));
	assert_non_null(strstr(err, "/nonexistent-dir/control"));

	/* under systemd: the socket in the runtime directory, a link to it in data_dir, where
	 * a client finds it; a stale socket at the link's place is replaced; both go at close */
	char run[96], sock[128], link[128], target[128];
	snprintf(run, sizeof run, "%s/run", f->dir);
	assert_int_equal(mkdir(run, 0750), 0);
	assert_int_equal(control_socket_path(run, f->dir, sock, sizeof sock, link, sizeof link), 0);
	assert_string_equal(link, f->path);
	other = control_open(sock, link, &c, err, sizeof err);
	if (!other)
		fail_msg("control_open: %s", err);
	assert_int_equal(lstat(link, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	ssize_t n = readlink(link, target, sizeof target - 1);
	assert_true(n > 0);
	target[n] = '\0';
	assert_string_equal(target, sock);
	struct control *keep = f->ctl;
	f->ctl = other;
	int fd = connect_to(f); /* through the link */
	struct jval *v = ask(f, fd, "{\"v\":1,\"op\":\"hello\"}\n");
	assert_true(jread_bool(v, "ok", false));
	jread_free(v);
	close(fd);
	serve(f, 20);
	f->ctl = keep;
	control_close(other);
	assert_int_equal(lstat(link, &st), -1);
	assert_int_equal(lstat(sock, &st), -1);
	assert_int_equal(rmdir(run), 0);
	fx_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_parse_refused),
		cmocka_unit_test(test_socket_path),
		cmocka_unit_test(test_hello_status),
		cmocka_unit_test(test_probe_routing),
		cmocka_unit_test(test_bad_clients),
		cmocka_unit_test(test_open),
	};

	log_init(getenv("SLUICE_TEST_DEBUG") ? 7 : 3, "test_control");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
