/*
 * control_req: the control protocol's requests read from text, and its error replies
 * written (daemon/control.h). Pure: no socket, no config, no clock. It must never trust a
 * request — any byte may come from any local program in group sluice, or from the
 * fuzzer (tests/fuzz/fuzz_control.c) — so every member is checked for its type and range
 * before it is used, and every refusal says which member and what was expected.
 */
#include "control.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "jread.h"
#include "json.h"

struct parse {
	const char **code;
	char *msg;
	size_t msglen;
};

static int refuse(struct parse *ps, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int refuse(struct parse *ps, const char *code, const char *fmt, ...)
{
	va_list ap;

	*ps->code = code;
	va_start(ap, fmt);
	vsnprintf(ps->msg, ps->msglen, fmt, ap);
	va_end(ap);
	return -1;
}

/* Only the members named in allowed (NULL-terminated): a misspelt one is said, not
 * ignored. */
static int members_known(struct parse *ps, const struct jval *obj, const char *where,
			 const char *const *allowed)
{
	for (size_t i = 0; i < obj->n; i++) {
		size_t k = 0;

		while (allowed[k] && strcmp(allowed[k], obj->keys[i]) != 0)
			k++;
		if (!allowed[k])
			return refuse(ps, "bad_request", "%s%sunknown member \"%.64s\"", where,
				      *where ? ": " : "", obj->keys[i]);
	}
	return 0;
}

/* An integer member in lo..hi: 1 and *out; 0 when absent; -1 (refused) when it is there
 * but is no such integer. */
static int int_member(struct parse *ps, const struct jval *obj, const char *key,
		      const char *where, int64_t lo, int64_t hi, int64_t *out)
{
	const struct jval *v = jread_get(obj, key);

	if (!v)
		return 0;
	if (v->type != J_NUM || v->num != floor(v->num) || v->num < (double)lo ||
	    v->num > (double)hi)
		return refuse(ps, "bad_request", "%s%s: expected an integer %lld..%lld", where, key,
			      (long long)lo, (long long)hi);
	*out = (int64_t)v->num;
	return 1;
}

/* A string member of 1..max-1 bytes with no NUL, into buf (max bytes): 1, 0 absent, -1. */
static int str_member(struct parse *ps, const struct jval *obj, const char *key,
		      const char *where, char *buf, size_t max)
{
	const struct jval *v = jread_get(obj, key);

	if (!v)
		return 0;
	if (v->type != J_STR || v->len == 0 || v->len >= max || memchr(v->str, '\0', v->len))
		return refuse(ps, "bad_request", "%s%s: expected a string of 1..%zu bytes", where,
			      key, max - 1);
	memcpy(buf, v->str, v->len);
	buf[v->len] = '\0';
	return 1;
}

static int parse_target(struct parse *ps, const struct jval *t, struct control_target *out)
{
	static const char *const rtu_keys[] = { "kind", "device", "rdev", "baud", "parity",
						"data_bits", "stop_bits", NULL };
	static const char *const tcp_keys[] = { "kind", "host", "port", NULL };
	const char *kind = jread_str(t, "kind"), *parity;
	int64_t v;
	int rc;

	if (!t || t->type != J_OBJ)
		return refuse(ps, "bad_request", "probe needs a \"target\" object");
	if (!kind || (strcmp(kind, "rtu") && strcmp(kind, "tcp") && strcmp(kind, "rtu_over_tcp")))
		return refuse(ps, "bad_request", "target.kind: expected \"rtu\", \"tcp\" or "
			      "\"rtu_over_tcp\"");
	if (strcmp(kind, "rtu") == 0) {
		out->kind = BUS_RTU;
		if (members_known(ps, t, "target", rtu_keys) != 0)
			return -1;
		if ((rc = str_member(ps, t, "device", "target.", out->device, sizeof out->device)) <= 0)
			return rc < 0 ? -1 : refuse(ps, "bad_request", "target.device: the serial "
						    "line's path is missing");
		if ((rc = int_member(ps, t, "rdev", "target.", 0, INT64_MAX, &v)) < 0)
			return -1;
		out->has_rdev = rc > 0;
		out->rdev = rc > 0 ? (uint64_t)v : 0;
		if ((rc = int_member(ps, t, "baud", "target.", 1, 4000000, &v)) < 0)
			return -1;
		out->baud = rc > 0 ? (unsigned)v : 0;
		if ((rc = int_member(ps, t, "data_bits", "target.", 7, 8, &v)) < 0)
			return -1;
		out->data_bits = rc > 0 ? (unsigned)v : 0;
		if ((rc = int_member(ps, t, "stop_bits", "target.", 1, 2, &v)) < 0)
			return -1;
		out->stop_bits = rc > 0 ? (unsigned)v : 0;
		out->parity = 0;
		if (jread_get(t, "parity")) {
			parity = jread_str(t, "parity");
			if (!parity || (strcmp(parity, "none") && strcmp(parity, "even") &&
					strcmp(parity, "odd")))
				return refuse(ps, "bad_request", "target.parity: expected \"none\", "
					      "\"even\" or \"odd\"");
			out->parity = parity[0] == 'n' ? 'N' : parity[0] == 'e' ? 'E' : 'O';
		}
		out->has_line = out->baud || out->data_bits || out->stop_bits || out->parity;
		return 0;
	}
	out->kind = strcmp(kind, "tcp") == 0 ? BUS_TCP : BUS_RTU_OVER_TCP;
	if (members_known(ps, t, "target", tcp_keys) != 0)
		return -1;
	if ((rc = str_member(ps, t, "host", "target.", out->host, sizeof out->host)) <= 0)
		return rc < 0 ? -1 : refuse(ps, "bad_request", "target.host is missing");
	if ((rc = int_member(ps, t, "port", "target.", 1, 65535, &v)) <= 0)
		return rc < 0 ? -1 : refuse(ps, "bad_request", "target.port is missing");
	out->port = (uint16_t)v;
	return 0;
}

static int parse_reads(struct parse *ps, const struct jval *a, struct control_request *rq)
{
	static const char *const keys[] = { "table", "address", "count", NULL };

	if (!a || a->type != J_ARR || a->n == 0 || a->n > POLLER_PROBE_READS_MAX)
		return refuse(ps, "bad_request", "probe needs \"reads\": an array of 1..%d reads, "
			      "each {\"table\":\"holding\",\"address\":A,\"count\":N}",
			      POLLER_PROBE_READS_MAX);
	for (size_t i = 0; i < a->n; i++) {
		const struct jval *r = a->items[i];
		char where[32];
		const char *table;
		int64_t addr, count;
		int t;

		snprintf(where, sizeof where, "reads[%zu]", i);
		if (r->type != J_OBJ)
			return refuse(ps, "bad_request", "%s: expected an object", where);
		if (members_known(ps, r, where, keys) != 0)
			return -1;
		table = jread_str(r, "table");
		if (!table || (t = codec_table_from_name(table)) < 0)
			return refuse(ps, "bad_request", "%s.table: expected \"holding\", \"input\", "
				      "\"coil\" or \"discrete\"", where);
		strcat(where, ".");
		if (int_member(ps, r, "address", where, 0, 65535, &addr) <= 0 ||
		    int_member(ps, r, "count", where, 1, POLLER_PROBE_COUNT_MAX, &count) <= 0) {
			if (*ps->code)
				return -1;
			return refuse(ps, "bad_request", "%saddress and %scount are needed", where,
				      where);
		}
		if (addr + count > 65536)
			return refuse(ps, "bad_request", "%s: %lld registers from %lld run past "
				      "65535", where, (long long)count, (long long)addr);
		rq->reads[i] = (struct control_read){ .table = (uint8_t)t, .address = (uint16_t)addr,
						      .count = (uint16_t)count };
	}
	rq->nreads = a->n;
	return 0;
}

static int parse_probe(struct parse *ps, const struct jval *root, struct control_request *rq)
{
	static const char *const keys[] = { "v", "id", "op", "target", "unit", "timeout_ms",
					    "stop_on_silence", "reads", NULL };
	const struct jval *sos = jread_get(root, "stop_on_silence");
	int64_t v;
	int rc;

	if (members_known(ps, root, "", keys) != 0 ||
	    parse_target(ps, jread_get(root, "target"), &rq->target) != 0)
		return -1;
	if ((rc = int_member(ps, root, "unit", "", 0, 255, &v)) <= 0)
		return rc < 0 ? -1 : refuse(ps, "bad_request", "probe needs \"unit\": 0..255");
	rq->unit = (uint8_t)v;
	if ((rc = int_member(ps, root, "timeout_ms", "", 1, POLLER_PROBE_TIMEOUT_MAX_MS, &v)) < 0)
		return -1;
	rq->timeout_ms = rc > 0 ? v : 0;
	if (sos && sos->type != J_BOOL)
		return refuse(ps, "bad_request", "stop_on_silence: expected true or false");
	rq->stop_on_silence = sos && sos->b;
	return parse_reads(ps, jread_get(root, "reads"), rq);
}

/* The "id" as JSON text: a string of at most 64 bytes or an integer; else refused. */
static int parse_id(struct parse *ps, const struct jval *root, struct control_request *rq)
{
	const struct jval *id = jread_get(root, "id");
	struct jbuf b;

	if (!id)
		return 0;
	if (!((id->type == J_STR && id->len <= 64) ||
	      (id->type == J_NUM && id->num == floor(id->num) && fabs(id->num) < 1e15)))
		return refuse(ps, "bad_request", "id: expected a string of at most 64 bytes or an "
			      "integer");
	jb_init(&b);
	jread_emit(&b, id);
	if (!b.oom && b.len < sizeof rq->id)
		memcpy(rq->id, b.p, b.len + 1);
	jb_free(&b);
	return rq->id[0] ? 0 : refuse(ps, "bad_request", "id: too long");
}

int control_parse(const char *text, size_t len, struct control_request *rq, const char **code,
		  char *msg, size_t msglen)
{
	static const char *const plain_keys[] = { "v", "id", "op", NULL };
	struct parse ps = { .code = code, .msg = msg, .msglen = msglen };
	const struct jval *v;
	struct jval *root;
	const char *op;
	char err[96];
	int rc = -1;

	memset(rq, 0, sizeof *rq);
	*code = NULL;
	if (msglen)
		msg[0] = '\0';
	root = jread_parse(text, len, err, sizeof err);
	if (!root)
		return refuse(&ps, "bad_request", "not JSON: %s", err);
	if (root->type != J_OBJ) {
		refuse(&ps, "bad_request", "a request is a JSON object, {\"v\":%d,\"op\":...}",
		       CONTROL_PROTOCOL);
		goto out;
	}
	if (parse_id(&ps, root, rq) != 0)
		goto out;
	v = jread_get(root, "v");
	if (!v || v->type != J_NUM) {
		refuse(&ps, "bad_request", "no protocol version: a request starts {\"v\":%d,",
		       CONTROL_PROTOCOL);
		goto out;
	}
	if (v->num != CONTROL_PROTOCOL) {
		refuse(&ps, "version", "this sluiced speaks version %d of the control protocol, "
		       "not %.16s", CONTROL_PROTOCOL, v->str ? v->str : "?");
		goto out;
	}
	op = jread_str(root, "op");
	if (!op) {
		refuse(&ps, "bad_request", "no \"op\": one of hello, status, probe");
		goto out;
	}
	if (strcmp(op, "hello") == 0 || strcmp(op, "status") == 0) {
		rq->op = op[0] == 'h' ? CTL_HELLO : CTL_STATUS;
		rc = members_known(&ps, root, "", plain_keys);
	} else if (strcmp(op, "probe") == 0) {
		rq->op = CTL_PROBE;
		rc = parse_probe(&ps, root, rq);
	} else {
		refuse(&ps, "unknown_op", "no op \"%.32s\" here: hello, status, probe", op);
	}
out:
	jread_free(root);
	return rc;
}

void control_error_reply(struct jbuf *b, const char *id, const char *code, const char *msg)
{
	bool first = true;

	jb_cstr(b, "{");
	jb_key(b, "v", &first);
	jb_i64(b, CONTROL_PROTOCOL);
	if (id && id[0]) {
		jb_key(b, "id", &first);
		jb_cstr(b, id);
	}
	jb_key(b, "ok", &first);
	jb_bool(b, false);
	jb_key(b, "error", &first);
	jb_str(b, code);
	jb_key(b, "message", &first);
	jb_str(b, msg);
	jb_cstr(b, "}\n");
}
