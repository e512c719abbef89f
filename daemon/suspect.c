/*
 * suspect: the window and the strikes (suspect.h says why). Owns nothing but its
 * struct; never does I/O or reads a clock.
 */
#include "suspect.h"

void suspect_init(struct suspect *s, unsigned max)
{
	*s = (struct suspect){ .max = max ? max : 1 };
	s->window = s->max;
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

uint64_t suspect_dropped(struct suspect *s, const uint64_t *seqs, size_t n,
			 int64_t since_publish_ms, bool by_broker)
{
	bool among = false;
	uint64_t out;

	if (!by_broker || n == 0 || since_publish_ms > SUSPECT_MOMENT_MS)
		return 0;
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
