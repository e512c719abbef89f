/*
 * web_req: the page's requests read from text (daemon/web_req.h). It must never trust a
 * byte — anyone who reaches the port sends them, and the fuzzer (tests/fuzz/fuzz_web.c)
 * sends everything else — so nothing is read past a length, nothing is written past a
 * buffer, and a value that does not fit is refused rather than cut.
 */
#include "web_req.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "codec.h"
#include "config.h"
#include "jread.h"

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode s[0..n) (form encoding) into out: 0, or -1. */
static int form_decode(const char *s, size_t n, char *out, size_t outlen)
{
	size_t o = 0;

	if (outlen == 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)s[i];

		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			int hi, lo;

			if (i + 2 >= n || (hi = hexval(s[i + 1])) < 0 || (lo = hexval(s[i + 2])) < 0)
				return -1;
			c = hi << 4 | lo;
			i += 2;
		}
		if (c == 0 || o + 1 >= outlen)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return 0;
}

int web_form_field(const char *body, size_t len, const char *name, char *out, size_t outlen)
{
	size_t nlen = strlen(name), i = 0;

	while (i < len) {
		const char *pair = body + i, *amp = memchr(pair, '&', len - i);
		size_t plen = amp ? (size_t)(amp - pair) : len - i;
		const char *eq = memchr(pair, '=', plen);

		i += plen + 1;
		if (!eq || (size_t)(eq - pair) != nlen || memcmp(pair, name, nlen) != 0)
			continue;
		return form_decode(eq + 1, plen - nlen - 1, out, outlen) == 0 ? 1 : -1;
	}
	return 0;
}

int web_cookie(const char *header, const char *name, char *out, size_t outlen)
{
	size_t nlen = strlen(name);
	const char *p = header;

	while (p && *p) {
		const char *end = strchr(p, ';'), *v;
		size_t plen;

		while (*p == ' ' || *p == '\t')
			p++;
		plen = end ? (size_t)(end - p) : strlen(p);
		if (plen > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=') {
			v = p + nlen + 1;
			plen -= nlen + 1;
			while (plen > 0 && (v[plen - 1] == ' ' || v[plen - 1] == '\t'))
				plen--;
			if (plen + 1 > outlen)
				return -1;
			memcpy(out, v, plen);
			out[plen] = '\0';
			return 1;
		}
		p = end ? end + 1 : NULL;
	}
	return 0;
}

int web_path_device(const char *path, char id[ID_MAX])
{
	static const char prefix[] = "/api/devices/";
	const char *s;

	if (strncmp(path, prefix, sizeof prefix - 1) != 0)
		return -1;
	s = path + sizeof prefix - 1;
	if (!config_id_valid(s))
		return -1;
	snprintf(id, ID_MAX, "%s", s);
	return 0;
}

/* ---- the probe's JSON -------------------------------------------------------------- */

static int refuse(char *msg, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int refuse(char *msg, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, len, fmt, ap);
	va_end(ap);
	return -1;
}

/* An integer member in lo..hi: 1 with *out, 0 absent, -1 anything else. */
static int int_member(const struct jval *o, const char *key, int64_t lo, int64_t hi,
		      int64_t *out)
{
	const struct jval *v = jread_get(o, key);

	if (!v)
		return 0;
	if (v->type != J_NUM || v->num != floor(v->num) || v->num < (double)lo ||
	    v->num > (double)hi)
		return -1;
	*out = (int64_t)v->num;
	return 1;
}

static int id_member(const struct jval *o, const char *key, char id[ID_MAX])
{
	const struct jval *v = jread_get(o, key);

	if (!v)
		return 0;
	if (v->type != J_STR || v->len >= ID_MAX || memchr(v->str, '\0', v->len) ||
	    !config_id_valid(v->str))
		return -1;
	memcpy(id, v->str, v->len + 1);
	return 1;
}

static bool only_members(const struct jval *o, const char *const *allowed, const char **bad)
{
	for (size_t i = 0; i < o->n; i++) {
		size_t k = 0;

		while (allowed[k] && strcmp(allowed[k], o->keys[i]) != 0)
			k++;
		if (!allowed[k]) {
			*bad = o->keys[i];
			return false;
		}
	}
	return true;
}

static int probe_reads(const struct jval *a, struct web_probe *p, char *msg, size_t msglen)
{
	static const char *const keys[] = { "table", "address", "count", NULL };

	if (!a || a->type != J_ARR || a->n == 0 || a->n > WEB_PROBE_READS_MAX)
		return refuse(msg, msglen, "reads: expected an array of 1..%d reads, each "
			      "{\"table\":\"holding\",\"address\":A,\"count\":N}", WEB_PROBE_READS_MAX);
	for (size_t i = 0; i < a->n; i++) {
		const struct jval *r = a->items[i];
		const char *table, *bad;
		int64_t addr, count;
		int t;

		if (r->type != J_OBJ)
			return refuse(msg, msglen, "reads[%zu]: expected an object", i);
		if (!only_members(r, keys, &bad))
			return refuse(msg, msglen, "reads[%zu]: unknown member \"%.64s\"", i, bad);
		table = jread_str(r, "table");
		if (!table || (t = codec_table_from_name(table)) < 0)
			return refuse(msg, msglen, "reads[%zu].table: expected \"holding\", \"input\", "
				      "\"coil\" or \"discrete\"", i);
		if (int_member(r, "address", 0, 65535, &addr) <= 0)
			return refuse(msg, msglen, "reads[%zu].address: expected an integer 0..65535", i);
		if (int_member(r, "count", 1, POLLER_PROBE_COUNT_MAX, &count) <= 0)
			return refuse(msg, msglen, "reads[%zu].count: expected an integer 1..%d", i,
				      POLLER_PROBE_COUNT_MAX);
		if (addr + count > 65536)
			return refuse(msg, msglen, "reads[%zu]: %lld registers from %lld run past 65535",
				      i, (long long)count, (long long)addr);
		p->reads[i] = (struct control_read){ .table = (uint8_t)t, .address = (uint16_t)addr,
						     .count = (uint16_t)count };
	}
	p->nreads = a->n;
	return 0;
}

int web_probe_parse(const char *text, size_t len, struct web_probe *p, char *msg, size_t msglen)
{
	static const char *const dev_keys[] = { "device", NULL };
	static const char *const bus_keys[] = { "bus", "unit", "reads", "timeout_ms", NULL };
	struct jval *root;
	const char *bad;
	char err[96];
	int64_t v;
	int rc = -1, got;

	memset(p, 0, sizeof *p);
	if (msglen)
		msg[0] = '\0';
	root = jread_parse(text, len, err, sizeof err);
	if (!root)
		return refuse(msg, msglen, "not JSON: %s", err);
	if (root->type != J_OBJ) {
		refuse(msg, msglen, "a probe is a JSON object: {\"bus\":...} or {\"device\":...}");
		goto out;
	}
	if (jread_get(root, "device")) {
		if (!only_members(root, dev_keys, &bad))
			refuse(msg, msglen, "unknown member \"%.64s\" (a device's probe takes only "
			       "\"device\")", bad);
		else if (id_member(root, "device", p->device) <= 0)
			refuse(msg, msglen, "device: expected a device id");
		else
			rc = 0;
		goto out;
	}
	if (!only_members(root, bus_keys, &bad)) {
		refuse(msg, msglen, "unknown member \"%.64s\"", bad);
		goto out;
	}
	if (id_member(root, "bus", p->bus) <= 0) {
		refuse(msg, msglen, "bus: expected a bus id (or \"device\": a device id)");
		goto out;
	}
	if (int_member(root, "unit", 0, 255, &v) <= 0) {
		refuse(msg, msglen, "unit: expected an integer 0..255");
		goto out;
	}
	p->unit = (uint8_t)v;
	got = int_member(root, "timeout_ms", 1, POLLER_PROBE_TIMEOUT_MAX_MS, &v);
	if (got < 0) {
		refuse(msg, msglen, "timeout_ms: expected an integer 1..%d", POLLER_PROBE_TIMEOUT_MAX_MS);
		goto out;
	}
	p->timeout_ms = got > 0 ? v : 0;
	rc = probe_reads(jread_get(root, "reads"), p, msg, msglen);
out:
	jread_free(root);
	return rc;
}

/* ---- where a request comes from ------------------------------------------------------- */

/* host without its port: [::1]:8080 -> ::1, 127.0.0.1:8080 -> 127.0.0.1 */
static bool host_name(const char *host, char *out, size_t outlen)
{
	const char *end;
	size_t n;

	if (host[0] == '[') {
		end = strchr(host, ']');
		if (!end || (end[1] && end[1] != ':'))
			return false;
		host++;
	} else {
		end = strchr(host, ':');
		if (!end)
			end = host + strlen(host);
	}
	n = (size_t)(end - host);
	if (n == 0 || n >= outlen)
		return false;
	memcpy(out, host, n);
	out[n] = '\0';
	return true;
}

bool web_host_loopback(const char *host)
{
	struct config_listen l;
	char name[80], probe[100];

	if (!host || !host_name(host, name, sizeof name))
		return false;
	if (strcasecmp(name, "localhost") == 0)
		return true;
	/* an address: parsed as the config's listen is, with a port to please it */
	snprintf(probe, sizeof probe, strchr(name, ':') ? "[%s]:1" : "%s:1", name);
	return config_parse_listen(probe, &l) == 0 && l.loopback;
}

bool web_origin_ok(const char *origin, const char *host, bool https)
{
	const char *scheme = https ? "https://" : "http://";
	size_t n = strlen(scheme);

	return origin && host && host[0] && strncasecmp(origin, scheme, n) == 0 &&
	       strcasecmp(origin + n, host) == 0;
}
