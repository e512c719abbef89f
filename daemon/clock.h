/*
 * clock: the two clocks. Scheduling uses the monotonic clock, timestamps the real-time
 * clock; a step of the wall clock (NTP after a boot without RTC) must not move the
 * schedule. Tests may offset the real-time clock (clock_set_real_offset) to inject a
 * step.
 */
#ifndef SLUICE_CLOCK_H
#define SLUICE_CLOCK_H

#include <stdint.h>

int64_t clock_mono_ms(void);
int64_t clock_real_ms(void);
void clock_set_real_offset(int64_t ms);

#endif
