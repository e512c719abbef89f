/*
 * fuzz_command: commands from the platform (daemon/command.c) as the network may send
 * them. The first byte picks the format and the topic (a command topic of each format,
 * Sparkplug's NCMD and its host's STATE), the second which devices are online, the rest
 * is the message. Whatever it is, a write must name a writable point of a device that
 * is online with a finite value inside the point's min and max, a refusal must carry a
 * reason and no write, a reply must be valid JSON, and deduplication must answer a
 * repeat with the first answer.
 */
#include <math.h>
#include <string.h>

#include "command.h"
#include "fuzz.h"
#include "jread.h"

static const char yaml[] =
	"gateway: { id: gw }\n"
	"uplink: { host: h, commands: true, format: %s, sparkplug: { group: cq, primary_host: s1 } }\n"
	"buses: [ { id: b, tcp: { host: 127.0.0.1 } } ]\n"
	"devices:\n"
	"  - id: pump\n"
	"    bus: b\n"
	"    points:\n"
	"      speed: { table: holding, address: 0, type: uint16, writable: true, min: 0, max: 1450 }\n"
	"      run: { table: coil, address: 0, type: bool, writable: true }\n"
	"      temp: { table: input, address: 0, type: int16 }\n"
	"      setp: { table: holding, address: 1, type: int16, writable: true, scale: 0.1 }\n"
	"      label: { table: holding, address: 2, type: string, length: 2, writable: true }\n"
	"      big: { table: holding, address: 4, type: int64, writable: true }\n"
	"  - id: meter\n"
	"    bus: b\n"
	"    points:\n"
	"      flow: { table: holding, address: 0, type: float32, writable: true, min: -5 }\n";

static struct config *cfgs[3];
static unsigned online_mask;

static bool is_online(void *ctx, size_t device)
{
	(void)ctx;
	return online_mask & (1u << device);
}

static struct config *cfg_for(int format)
{
	static const char *const names[] = { "sluice", "sparkplug", "thingsboard" };
	char text[sizeof yaml + 32];

	if (!cfgs[format]) {
		snprintf(text, sizeof text, yaml, names[format]);
		cfgs[format] = config_load_buffer("fuzz.yaml", text, strlen(text), NULL, NULL);
		if (!cfgs[format])
			fuzz_fail("the fuzz config does not load");
	}
	return cfgs[format];
}

static const struct {
	int format;
	const char *topic;
} topics[] = {
	{ FORMAT_SLUICE, "sluice/gw/command/write" },
	{ FORMAT_SPARKPLUG, "spBv1.0/cq/DCMD/gw/pump" },
	{ FORMAT_SPARKPLUG, "spBv1.0/cq/DCMD/gw/meter" },
	{ FORMAT_SPARKPLUG, "spBv1.0/cq/NCMD/gw" },
	{ FORMAT_SPARKPLUG, "spBv1.0/STATE/s1" },
	{ FORMAT_THINGSBOARD, "v1/gateway/rpc" },
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	size_t t = fuzz_u8(&in) % (sizeof topics / sizeof topics[0]);
	const struct config *cfg = cfg_for(topics[t].format);
	struct command_env env = { .cfg = cfg, .online = is_online, .now_ms = 1795708228039ll };
	struct command c;
	struct payload_msg m;
	int what, rc;

	online_mask = fuzz_u8(&in);
	what = command_parse(&env, topics[t].topic, in.p, in.n, &c);
	fuzz_check(what == c.what);
	switch (what) {
	case COMMAND_WRITE:
		fuzz_check(c.nwrites >= 1 && c.nwrites <= COMMAND_WRITES_MAX);
		for (size_t i = 0; i < c.nwrites; i++) {
			const struct command_write *w = &c.writes[i];
			const struct point_def *p;
			fuzz_check(w->device < cfg->ndevices);
			fuzz_check(w->point < cfg->devices[w->device].npoints);
			fuzz_check(is_online(NULL, w->device));
			p = &cfg->devices[w->device].points[w->point];
			fuzz_check(p->writable && p->type != PT_STRING);
			fuzz_check(isfinite(w->value));
			fuzz_check(!p->has_min || w->value >= p->min);
			fuzz_check(!p->has_max || w->value <= p->max);
			fuzz_check(p->type != PT_BOOL || w->value == 0 || w->value == 1);
		}
		break;
	case COMMAND_REFUSED:
		fuzz_check(c.nwrites == 0 && c.reason[0] != '\0');
		break;
	case COMMAND_REBIRTH:
	case COMMAND_HOST:
		fuzz_check(topics[t].format == FORMAT_SPARKPLUG && c.nwrites == 0);
		break;
	default:
		fuzz_fail("command_parse returned %d on a command topic", what);
	}
	fuzz_check(memchr(c.id, '\0', sizeof c.id) && memchr(c.device, '\0', sizeof c.device));
	fuzz_check(memchr(c.reason, '\0', sizeof c.reason) != NULL);

	/* the reply, in either outcome, is JSON */
	payload_msg_init(&m);
	for (int ok = 0; ok < 2; ok++) {
		rc = command_reply(&m, &c, ok, c.reason);
		fuzz_check(rc == 0 || rc == 1);
		if (rc == 0) {
			char err[120];
			struct jval *v = jread_parse(m.body.p, m.body.len, err, sizeof err);
			if (!v)
				fuzz_fail("reply is not JSON: %s: %s", err, jb_cstr_get(&m.body));
			jread_free(v);
		}
	}
	payload_msg_free(&m);

	if (c.key && (what == COMMAND_WRITE || what == COMMAND_REFUSED)) {
		struct command_dedup *d = malloc(sizeof *d);
		const struct command_seen *e;

		if (!d)
			abort();
		command_dedup_init(d);
		fuzz_check(command_dedup(d, &c, env.now_ms) == NULL);
		e = command_dedup(d, &c, env.now_ms + 1);
		fuzz_check(e != NULL);
		fuzz_check(e->state == (what == COMMAND_WRITE ? COMMAND_SEEN_PENDING
							      : COMMAND_SEEN_FAILED));
		free(d);
	}
	return 0;
}
