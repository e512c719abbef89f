/*
 * suspect: the window and the strikes (suspect.h says why). Owns nothing but its
 * struct; never does I/O or reads a clock.
 */
#include "suspect.h"

#include <stdlib.h>
#include <string.h>

void suspect_init(struct suspect *s, unsigned max)
{
	*s = (struct suspect){ .max = max ? max : 1 };
	s->window = s->max;
}

void suspect_free(struct suspect *s)
{
	for (size_t i = 0; i < s->nlearnt; i++)
		free(s->learnt[i].topic);
	free(s->learnt);
	s->learnt = NULL;
	s->nlearnt = 0;
}

unsigned suspect_window(const struct suspect *s)
{
	return s->window;
}

void suspect_answered(struct suspect *s, uint64_t seq)
{
	if (seq != 0 && seq == s->seq) {
		/* it went through: whatever ended those sessions, it was not this row */
		s->seq = 0;
		s->strikes = 0;
	}
	if (s->narrow_left > 0) {
		s->narrow_left--;
		return;
	}
	/* past the place where sessions died: open up again, as fast as TCP's slow start */
	if (s->window < s->max)
		s->window = s->window > s->max / 2 ? s->max : s->window * 2;
}

bool suspect_searching(const struct suspect *s)
{
	return s->window < s->max || s->narrow_left > 0 || s->strikes > 0;
}

int64_t suspect_hold_ms(const struct suspect *s)
{
	return suspect_searching(s) ? SUSPECT_HOLD_MS : 0;
}

uint64_t suspect_dropped(struct suspect *s, const uint64_t *seqs, size_t n,
			 int64_t since_publish_ms, bool by_broker, bool *telling)
{
	bool among = false;
	uint64_t out;

	*telling = false;
	if (!by_broker || n == 0 || since_publish_ms > SUSPECT_MOMENT_MS)
		return 0;
	*telling = true;
	s->window = 1;
	s->narrow_left = n > 0xffffu ? 0xffffu : (unsigned)n;
	for (size_t i = 0; i < n && !among; i++)
		among = seqs[i] == s->seq;
	if (n > 1) {
		/* not alone: no strike, but one that was not even in flight clears them */
		if (!among) {
			s->seq = 0;
			s->strikes = 0;
		}
		return 0;
	}
	if (!among) {
		s->seq = seqs[0];
		s->strikes = 0;
	}
	if (++s->strikes < SUSPECT_STRIKES)
		return 0;
	out = s->seq;
	s->seq = 0;
	s->strikes = 0;
	/* what was in flight is settled: the rows behind it go one at a time until one is
	 * acknowledged */
	s->narrow_left = 0;
	return out;
}

static struct suspect_topic *suspect_find(const struct suspect *s, const char *topic)
{
	for (size_t i = 0; i < s->nlearnt; i++)
		if (strcmp(s->learnt[i].topic, topic) == 0)
			return &s->learnt[i];
	return NULL;
}

int suspect_learn(struct suspect *s, const char *topic, size_t bytes, uint64_t seq)
{
	struct suspect_topic *t = suspect_find(s, topic), *n;
	char *copy;

	if (t) {
		if (bytes < t->bytes) {
			t->bytes = bytes;
			t->seq = seq;
		}
		return 0;
	}
	/* one entry per topic that ever ended sessions: as many as the site has topics */
	copy = strdup(topic);
	n = copy ? realloc(s->learnt, (s->nlearnt + 1) * sizeof *n) : NULL;
	if (!n) {
		free(copy);
		return -1;
	}
	s->learnt = n;
	s->learnt[s->nlearnt++] = (struct suspect_topic){ .topic = copy, .bytes = bytes,
							  .seq = seq };
	return 0;
}

uint64_t suspect_refuses(const struct suspect *s, const char *topic, size_t bytes,
			 size_t *learnt_bytes)
{
	const struct suspect_topic *t = suspect_find(s, topic);

	if (!t || bytes < t->bytes)
		return 0;
	if (learnt_bytes)
		*learnt_bytes = t->bytes;
	return t->seq;
}

void suspect_delivered(struct suspect *s, const char *topic, size_t bytes)
{
	struct suspect_topic *t = suspect_find(s, topic);

	if (!t || bytes < t->bytes)
		return;
	free(t->topic);
	*t = s->learnt[--s->nlearnt];
}
