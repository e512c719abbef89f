/*
 * clock: monotonic for schedules, real time (with an injectable offset) for stamps; the
 * watch that tells a step of the wall clock, and the test hook that injects one.
 */
#include "clock.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int64_t real_offset_ms;

static int64_t ts_ms(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_mono_ms(void)
{
	return ts_ms(CLOCK_MONOTONIC);
}

int64_t clock_real_ms(void)
{
	return ts_ms(CLOCK_REALTIME) + atomic_load(&real_offset_ms);
}

void clock_set_real_offset(int64_t ms)
{
	atomic_store(&real_offset_ms, ms);
}

/* real - mono, read back to back */
static int64_t skew_now(void)
{
	int64_t mono = clock_mono_ms();
	return clock_real_ms() - mono;
}

int clock_watch_init(struct clock_watch *w, const char *test_file, char *msg, size_t len)
{
	int rc;

	memset(w, 0, sizeof *w);
	w->test_file = test_file && *test_file ? test_file : NULL;
	rc = clock_watch_test_file(w, msg, len);
	w->skew = skew_now(); /* after the hook's offset: a start is not a step */
	return rc;
}

/* "-3600000\n": a signed integer of milliseconds, blanks around it allowed */
static bool parse_ms(const char *s, int64_t *ms)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s)
		return false;
	while (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')
		end++;
	if (*end)
		return false;
	*ms = v;
	return true;
}

int clock_watch_test_file(struct clock_watch *w, char *msg, size_t len)
{
	char buf[sizeof w->test_text];
	ssize_t n = 0;
	int64_t ms = 0;
	int fd, state;

	if (!w->test_file)
		return 0;
	fd = open(w->test_file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0) {
		n = read(fd, buf, sizeof buf - 1);
		close(fd);
	}
	if (fd < 0 || n < 0) {
		buf[0] = '\0';
		state = 0; /* no file (or none we can read): no offset */
	} else {
		buf[n] = '\0';
		/* a longer file is no number of milliseconds */
		state = (size_t)n < sizeof buf - 1 && parse_ms(buf, &ms) ? 1 : -1;
	}
	if (state == w->test_state && (state == 0 || strcmp(buf, w->test_text) == 0))
		return 0;
	w->test_state = state;
	snprintf(w->test_text, sizeof w->test_text, "%s", buf);
	if (state < 0) {
		buf[strcspn(buf, "\r\n")] = '\0';
		snprintf(msg, len, "SLUICE_TEST_CLOCK_FILE %s: '%.40s' is not a number of "
			 "milliseconds; the offset stays %+" PRId64 " ms", w->test_file, buf,
			 w->test_ms);
		return -1;
	}
	if (ms == w->test_ms)
		return 0;
	w->test_ms = ms;
	clock_set_real_offset(ms);
	snprintf(msg, len, "SLUICE_TEST_CLOCK_FILE %s: the real-time clock is offset by %+" PRId64
		 " ms (a test hook)", w->test_file, ms);
	return 1;
}

bool clock_watch_stepped(struct clock_watch *w, int64_t *delta_ms)
{
	int64_t now = skew_now(), d = now - w->skew;

	/* follow small moves, so that a slew never adds up to a step */
	w->skew = now;
	if (d > -CLOCK_STEP_MS && d < CLOCK_STEP_MS)
		return false;
	*delta_ms = d;
	return true;
}
