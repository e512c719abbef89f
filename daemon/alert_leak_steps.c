/*
 * alert_leak_steps: a zone's pump steps, found in its own flow. Owns the zone's last few
 * samples, their noise level, the sizes of the large steps seen and the pump switches
 * found, for the night check (alert_leak_night.c) to take the pump's flow out of each
 * night.
 *
 * It must never do I/O or read a clock (see alert.c).
 *
 * Why from the flow: a booster pump that fills a tank at night adds its whole flow to the
 * zone's inflow while it runs, a two-level signal larger than most leaks. Seen from the
 * inlet meters alone, each switch is a single-sample jump of the pump's size, up or down,
 * on top of a night flow that otherwise changes by a few m3/h from one sample to the
 * next. So a step is a jump of at least STEP_K times the usual one-sample change (the
 * median of the last STEP_NOISE), that holds: the median of the jump sample and the two
 * after it, less the median of the three before, is within STEP_HOLD of the jump (a
 * spike that falls back is no step). It is searched for only in the quiet hours the zone
 * names (the night window and the hour before it), where demand does not jump like that.
 * A size that steps on at least STEP_RECUR different nights of the last 14 days share,
 * within STEP_TOL, recurs: that is the pump, and every step of that size is a switch of it, in
 * those hours and in the hour after the window (a pump that stops at dawn ran all night;
 * there only a fall teaches a size: dawn's demand rises in jumps of its own). A
 * leak's own onset is one jump that never recurs, and a leak that grows slowly has no
 * jump at all: neither is taken for the pump.
 */
#include "alert_leak_int.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STEP_K 6.0
#define STEP_HOLD 0.3
#define STEP_TOL 0.25
#define STEP_RECUR 5
#define STEP_WINDOW_MS (14 * 86400000LL)
#define STEP_NIGHT_MS (12 * 3600000LL)  /* steps further apart are of different nights */
#define STEP_GAP_MS (20 * 60 * 1000LL) /* samples further apart are no one-sample jump */

static double med3(double a, double b, double c)
{
	if (a > b) {
		double t = a;
		a = b;
		b = t;
	}
	return c < a ? a : c > b ? b : c;
}

static double median_of(const double *v, int n)
{
	double s[STEP_SIZES > STEP_NOISE ? STEP_SIZES : STEP_NOISE];

	memcpy(s, v, (size_t)n * sizeof *s);
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && s[j - 1] > s[j]; j--) {
			double t = s[j];
			s[j] = s[j - 1];
			s[j - 1] = t;
		}
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static void noise_add(struct steps *s, double d)
{
	if (s->nn == STEP_NOISE) {
		memmove(s->noise, s->noise + 1, (STEP_NOISE - 1) * sizeof *s->noise);
		s->nn--;
	}
	s->noise[s->nn++] = d;
}

/* The size that steps on at least STEP_RECUR different nights of the last 14 days share,
 * or 0. A pump switches night after night; the odd large jump of a night's demand, or a
 * burst of them around one event, does not. */
static double recurring(const struct steps *s, int64_t now)
{
	double v[STEP_SIZES], best[STEP_SIZES];
	int64_t at[STEP_SIZES];
	int n = 0, nbest = 0;

	for (int k = 0; k < s->ns; k++) {
		int i = (s->sh - s->ns + k + STEP_SIZES) % STEP_SIZES; /* oldest first */
		if (s->at[i] >= now - STEP_WINDOW_MS) {
			at[n] = s->at[i];
			v[n++] = s->size[i];
		}
	}
	for (int i = 0; i < n; i++) {
		double m[STEP_SIZES];
		int k = 0, nights = 0, last = -1;
		for (int j = 0; j < n; j++)
			if (fabs(v[j] - v[i]) <= STEP_TOL * v[i]) {
				m[k++] = v[j];
				if (last < 0 || at[j] - at[last] > STEP_NIGHT_MS)
					nights++;
				last = j;
			}
		if (nights >= STEP_RECUR && k > nbest) {
			nbest = k;
			memcpy(best, m, (size_t)k * sizeof *m);
		}
	}
	return nbest ? median_of(best, nbest) : 0;
}

int steps_sample(struct steps *s, int64_t ts, double q, int hours)
{
	int i = STEP_RING - 3, found = 0;
	double d, nu, sh;

	if (s->n && ts - s->t[s->n - 1] > STEP_GAP_MS)
		s->n = 0; /* a gap: nothing before it compares with what follows */
	if (s->n == STEP_RING) {
		memmove(s->t, s->t + 1, (STEP_RING - 1) * sizeof *s->t);
		memmove(s->q, s->q + 1, (STEP_RING - 1) * sizeof *s->q);
		memmove(s->hours, s->hours + 1, (STEP_RING - 1) * sizeof *s->hours);
		s->n--;
	}
	s->t[s->n] = ts;
	s->q[s->n] = q;
	s->hours[s->n++] = (unsigned char)hours;
	if (s->n < STEP_RING)
		return 0;
	/* the sample with three before it and two after: a step there, or noise */
	d = s->q[i] - s->q[i - 1];
	nu = s->nn >= STEP_NOISE / 2 ? median_of(s->noise, s->nn) : NAN;
	if (s->hours[i] != STEP_OFF && isfinite(nu) && fabs(d) >= STEP_K * nu && fabs(d) > 0 &&
	    s->t[i] - s->t[i - 1] <= STEP_GAP_MS) {
		sh = med3(s->q[i], s->q[i + 1], s->q[i + 2]) - med3(s->q[i - 3], s->q[i - 2], s->q[i - 1]);
		if (fabs(sh - d) <= STEP_HOLD * fabs(d) && fabs(sh) >= 0.8 * STEP_K * nu) {
			bool had = s->S > 0;
			double r;
			/* at dawn demand rises in jumps of its own, night after night: a rise
			 * then may be a known pump's switch, but never teaches a size */
			if (s->hours[i] == STEP_LEARN || sh < 0) {
				s->at[s->sh] = s->t[i];
				s->size[s->sh] = fabs(sh);
				s->sh = (s->sh + 1) % STEP_SIZES;
				if (s->ns < STEP_SIZES)
					s->ns++;
				if ((r = recurring(s, s->t[i])) > 0)
					s->S = r;
			}
			if (s->S > 0 && fabs(fabs(sh) - s->S) <= STEP_TOL * s->S) {
				struct pump_event *ev = &s->ev[s->evh];
				ev->t = s->t[i - 1] + (s->t[i] - s->t[i - 1]) / 2;
				ev->sign = sh > 0 ? 1 : -1;
				s->evh = (s->evh + 1) % STEP_EVENTS;
				if (s->nev < STEP_EVENTS)
					s->nev++;
			}
			found = !had && s->S > 0;
			/* the step is no measure of the noise: it counts as a usual change */
			noise_add(s, nu);
			return found;
		}
	}
	noise_add(s, fabs(d));
	return 0;
}

int steps_events(const struct steps *s, int64_t lo, int64_t hi, struct pump_event *ev, int max)
{
	int n = 0;

	/* oldest first: the ring's next slot holds the oldest once it is full */
	for (int k = 0; k < s->nev && n < max; k++) {
		const struct pump_event *x = &s->ev[(s->evh - s->nev + k + STEP_EVENTS) % STEP_EVENTS];
		if (x->t >= lo && x->t < hi)
			ev[n++] = *x;
	}
	return n;
}

void steps_clock_step(struct alert_engine *e, struct steps *s, int64_t delta)
{
	for (int i = 0; i < s->n; i++)
		if (engine_live(e, s->t[i]))
			s->t[i] += delta;
	for (int i = 0; i < s->ns; i++)
		if (engine_live(e, s->at[i]))
			s->at[i] += delta;
	for (int i = 0; i < s->nev; i++)
		if (engine_live(e, s->ev[i].t))
			s->ev[i].t += delta;
}

/* ---- persistence -------------------------------------------------------------------- */

void steps_save(const struct steps *s, const char *rule, struct jbuf *b)
{
	char buf[4096];
	size_t u = 0;

	save_line(b, rule, "lps\t%.17g", s->S);
	for (int i = 0; i < s->n; i++)
		u += (size_t)snprintf(buf + u, sizeof buf - u, "\t%" PRId64 "\t%.17g\t%d", s->t[i],
				      s->q[i], s->hours[i]);
	save_line(b, rule, "lpr%s", s->n ? buf : "");
	u = 0;
	buf[0] = '\0';
	for (int i = 0; i < s->nn; i++)
		u += (size_t)snprintf(buf + u, sizeof buf - u, "\t%.17g", s->noise[i]);
	save_line(b, rule, "lpn%s", buf);
	u = 0;
	buf[0] = '\0';
	for (int k = 0; k < s->ns; k++) {
		int i = (s->sh - s->ns + k + STEP_SIZES) % STEP_SIZES;
		u += (size_t)snprintf(buf + u, sizeof buf - u, "\t%" PRId64 "\t%.17g", s->at[i],
				      s->size[i]);
	}
	save_line(b, rule, "lpz%s", buf);
	u = 0;
	buf[0] = '\0';
	for (int k = 0; k < s->nev; k++) {
		const struct pump_event *x = &s->ev[(s->evh - s->nev + k + STEP_EVENTS) % STEP_EVENTS];
		u += (size_t)snprintf(buf + u, sizeof buf - u, "\t%" PRId64 "\t%d", x->t, x->sign);
	}
	save_line(b, rule, "lpe%s", buf);
}

bool steps_restore(struct steps *s, char **f, size_t nf)
{
	if (!strcmp(f[0], "lps") && nf >= 2) {
		double S = field_num(f[1]);
		if (S >= 0 && isfinite(S))
			s->S = S;
	} else if (!strcmp(f[0], "lpr")) {
		size_t n = (nf - 1) / 3;
		if (n > STEP_RING || (nf - 1) % 3)
			return true;
		for (size_t i = 0; i < n; i++) {
			s->t[i] = field_i64(f[1 + 3 * i]);
			s->q[i] = field_num(f[2 + 3 * i]);
			int h = atoi(f[3 + 3 * i]);
			s->hours[i] = (unsigned char)(h == STEP_LEARN || h == STEP_MATCH ? h : STEP_OFF);
		}
		s->n = (int)n;
	} else if (!strcmp(f[0], "lpn")) {
		size_t n = nf - 1;
		if (n > STEP_NOISE)
			return true;
		for (size_t i = 0; i < n; i++)
			if (!((s->noise[i] = field_num(f[1 + i])) >= 0) || !isfinite(s->noise[i]))
				return true;
		s->nn = (int)n;
	} else if (!strcmp(f[0], "lpz")) {
		size_t n = (nf - 1) / 2;
		if (n > STEP_SIZES || (nf - 1) % 2)
			return true;
		for (size_t i = 0; i < n; i++) {
			s->at[i] = field_i64(f[1 + 2 * i]);
			s->size[i] = field_num(f[2 + 2 * i]);
			if (!(s->size[i] > 0) || !isfinite(s->size[i]))
				return true;
		}
		s->ns = (int)n;
		s->sh = (int)(n % STEP_SIZES);
	} else if (!strcmp(f[0], "lpe")) {
		size_t n = (nf - 1) / 2;
		if (n > STEP_EVENTS || (nf - 1) % 2)
			return true;
		for (size_t i = 0; i < n; i++) {
			s->ev[i].t = field_i64(f[1 + 2 * i]);
			s->ev[i].sign = atoi(f[2 + 2 * i]) > 0 ? 1 : -1;
		}
		s->nev = (int)n;
		s->evh = (int)(n % STEP_EVENTS);
	} else {
		return false;
	}
	return true;
}
