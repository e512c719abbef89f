/*
 * clock: the two clocks. Scheduling uses the monotonic clock, timestamps the real-time
 * clock; a step of the wall clock (NTP after a boot without RTC) must not move the
 * schedule. Tests may offset the real-time clock (clock_set_real_offset) to inject a
 * step, in a running sluiced through the file named by SLUICE_TEST_CLOCK_FILE.
 */
#ifndef SLUICE_CLOCK_H
#define SLUICE_CLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int64_t clock_mono_ms(void);
int64_t clock_real_ms(void);
void clock_set_real_offset(int64_t ms);

/* real - mono moving by more than this between two looks is a step of the wall clock */
#define CLOCK_STEP_MS 2000

/* Watches the wall clock for steps, and the test hook's file. */
struct clock_watch {
	int64_t skew;           /* real - mono at the last look */
	const char *test_file;  /* SLUICE_TEST_CLOCK_FILE, or NULL */
	int64_t test_ms;        /* the offset in force from it */
	char test_text[64];     /* the file's last content, to act on changes only */
	int test_state;         /* 0 no file, 1 a number, -1 bad content */
};

/*
 * Start watching. With test_file (the test hook), its offset is applied now, so that
 * nothing is stamped before it (returns as clock_watch_test_file); then it is read
 * again by clock_watch_test_file.
 */
int clock_watch_init(struct clock_watch *w, const char *test_file, char *msg, size_t len);

/*
 * The test hook: read the file again and apply its offset when it changed (a signed
 * integer of milliseconds; no file is 0). Returns 1 with msg when the offset changed,
 * -1 with msg when the content is bad (the offset in force is kept; said once per
 * content), else 0. Write the file with a rename: a half-written number is a number.
 */
int clock_watch_test_file(struct clock_watch *w, char *msg, size_t len);

/* Has the wall clock stepped since the last look? Then true, with the step in *delta_ms
 * (positive: forward). Slewing (NTP's gentle corrections) never adds up to a step. */
bool clock_watch_stepped(struct clock_watch *w, int64_t *delta_ms);

#endif
