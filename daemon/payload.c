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
