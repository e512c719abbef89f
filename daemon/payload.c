/*
 * payload: the list of northbound formats and what every format's messages share. It
 * owns no format's bytes (each is in its payload_<name>.c) and must never do I/O.
 */
#include "payload.h"

#include <string.h>

#include "payload_int.h"

static const struct payload_format *const payload_formats[] = {
	&payload_sluice,
	&payload_sparkplug,
	&payload_thingsboard,
};

const struct payload_format *payload_format_find(const char *name)
{
	for (size_t i = 0; i < sizeof payload_formats / sizeof payload_formats[0]; i++)
		if (strcmp(payload_formats[i]->name, name) == 0)
			return payload_formats[i];
	return NULL;
}

void payload_msg_init(struct payload_msg *m)
{
	m->topic[0] = '\0';
	m->retain = false;
	jb_init(&m->body);
}

void payload_msg_free(struct payload_msg *m)
{
	jb_free(&m->body);
	payload_msg_init(m);
}

void payload_health_counters(struct jbuf *b, const struct health *h, bool *first)
{
	jb_key(b, "uptime_s", first);
	jb_i64(b, h->uptime_s);
	jb_key(b, "polls_ok", first);
	jb_u64(b, h->polls_ok);
	jb_key(b, "polls_failed", first);
	jb_u64(b, h->polls_failed);
	jb_key(b, "backlog_rows", first);
	jb_u64(b, h->backlog_rows);
	jb_key(b, "backlog_age_s", first);
	jb_i64(b, h->backlog_age_s);
	jb_key(b, "dropped", first);
	jb_u64(b, h->dropped);
	jb_key(b, "set_aside_rows", first);
	jb_u64(b, h->set_aside);
	jb_key(b, "not_stored", first);
	jb_u64(b, h->not_stored);
	if (h->store_error) {
		jb_key(b, "store_error", first);
		jb_str(b, h->store_error);
	}
	jb_key(b, "held_rows", first);
	jb_u64(b, h->held_rows);
	jb_key(b, "lost_at_stop", first);
	jb_u64(b, h->lost_at_stop);
	jb_key(b, "db_bytes", first);
	jb_u64(b, h->db_bytes);
	jb_key(b, "last_seq", first);
	jb_u64(b, h->last_seq);
}
