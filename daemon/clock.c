/* clock: monotonic for schedules, real time (with an injectable offset) for stamps. */
#include "clock.h"

#include <stdatomic.h>
#include <time.h>

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
