/*
 * fuzz_control: the control socket's request reader (daemon/control_req.c) on arbitrary
 * bytes, as a client in group sluice may send them. Every input is either a request
 * whose members are all in range, or a refusal with a known code and a message; either
 * way the reply written for it must be one line of JSON that reads back.
 */
#include <string.h>

#include "control.h"
#include "fuzz.h"
#include "jread.h"
#include "json.h"

static const char *const codes[] = { "bad_request", "version", "unknown_op" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct control_request *rq = malloc(sizeof *rq);
	const char *code = NULL;
	char msg[300];
	struct jbuf b;
	struct jval *v;
	char err[96];
	int rc;

	if (!rq)
		abort();
	rc = control_parse((const char *)data, size, rq, &code, msg, sizeof msg);
	if (rc == 0) {
		fuzz_check(code == NULL);
		fuzz_check(rq->op == CTL_HELLO || rq->op == CTL_STATUS || rq->op == CTL_PROBE);
		if (rq->op == CTL_PROBE) {
			const struct control_target *t = &rq->target;
			fuzz_check(rq->nreads >= 1 && rq->nreads <= POLLER_PROBE_READS_MAX);
			fuzz_check(rq->timeout_ms >= 0 &&
				   rq->timeout_ms <= POLLER_PROBE_TIMEOUT_MAX_MS);
			for (size_t i = 0; i < rq->nreads; i++) {
				fuzz_check(rq->reads[i].table <= MB_HOLDING);
				fuzz_check(rq->reads[i].count >= 1 &&
					   rq->reads[i].count <= POLLER_PROBE_COUNT_MAX);
				fuzz_check((uint32_t)rq->reads[i].address + rq->reads[i].count <=
					   65536);
			}
			if (t->kind == BUS_RTU)
				fuzz_check(t->device[0] && strlen(t->device) < sizeof t->device);
			else
				fuzz_check((t->kind == BUS_TCP || t->kind == BUS_RTU_OVER_TCP) &&
					   t->host[0] && t->port >= 1);
		}
		code = "bad_request"; /* the reply below is written as for a refusal */
		snprintf(msg, sizeof msg, "ok");
	} else {
		size_t k = 0;
		fuzz_check(rc == -1 && code != NULL && msg[0] != '\0');
		while (k < sizeof codes / sizeof codes[0] && strcmp(codes[k], code) != 0)
			k++;
		fuzz_check(k < sizeof codes / sizeof codes[0]);
	}
	/* the id it read goes back as JSON text: the reply must read back, on one line */
	jb_init(&b);
	control_error_reply(&b, rq->id, code, msg);
	fuzz_check(!b.oom && b.len > 0 && b.p[b.len - 1] == '\n');
	fuzz_check(memchr(b.p, '\n', b.len - 1) == NULL);
	v = jread_parse(b.p, b.len - 1, err, sizeof err);
	if (!v)
		fuzz_fail("reply does not read back (%s): %s", err, b.p);
	fuzz_check(v->type == J_OBJ && jread_str(v, "error") != NULL);
	jread_free(v);
	jb_free(&b);
	free(rq);
	return 0;
}
