/*
 * polldev: a device as every poller (tcpoll, serpoll) holds it: which devices a poller
 * takes, the device's read plan, the string room of its readings, where its first poll
 * falls, its circuit breaker and schedule (drivers/breaker.h), the reading a poll fills
 * and the verdict on it. The pollers own the threads, the I/O and the locks around it.
 */
#ifndef SLUICE_POLLDEV_H
#define SLUICE_POLLDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "breaker.h"
#include "plan.h"
#include "reading.h"
#include "site.h"

/* A bus kind as a bit of the mask polldev_selected takes. */
#define POLLDEV_BUS(kind) (1u << (unsigned)(kind))

struct polldev {
	const struct device_cfg *cfg;
	const struct bus_cfg *bus;
	uint32_t index;              /* into the site's devices */
	struct read_plan plan;
	size_t strbytes;             /* string room a reading of this device needs */
	struct dev_breaker brk;      /* its interval, online state and retry pace */
};

/*
 * Check every device of s (a bus index out of range, more points than a reading holds)
 * and count those on a bus of one of the kinds (POLLDEV_BUS bits) that have points to
 * poll. 0 with *n, or -1 with err naming the first bad device.
 */
int polldev_count(const struct site *s, unsigned kinds, size_t *n, char *err, size_t errlen);
/* True when d is on a bus of one of the kinds and has points to poll: a sunspec device
 * has them once discovery filled them in. */
bool polldev_selected(const struct site *s, const struct device_cfg *d, unsigned kinds);
/* True when bus `bus` of s is of one of the kinds and some device is on it, polled or
 * waiting for its points (a sunspec device before discovery, which reaches its device
 * through the bus's poller): a poller owns such a bus, and no other program may open it
 * while the daemon runs. */
bool polldev_bus_owned(const struct site *s, size_t bus, unsigned kinds);

/* Set pd up for device index of s (already counted in): its plan, string room and
 * breaker. 0, or -1 with err (out of memory, a point past address 65535). */
int polldev_init(struct polldev *pd, const struct site *s, uint32_t index, char *err,
		 size_t errlen);
void polldev_fini(struct polldev *pd);

/* Where device `index`'s first poll falls in its first interval. */
int64_t polldev_phase(uint32_t index, int64_t interval);
/* When pd's first poll is due, its pollers starting at now. */
int64_t polldev_first_due(const struct polldev *pd, int64_t now);

/* A fresh reading for the poll of pd due at `due` and begun at now, stamped; NULL (and
 * logged) when out of memory: that poll is skipped. */
struct reading *polldev_reading(const struct polldev *pd, uint32_t generation, int64_t due,
				int64_t now);
/* The poll that filled r is over: some request answered (reply_is_answer) or not, err
 * the first failure's MBE_* code. Runs pd's breaker, logs what it calls for, and writes
 * its state into r (online, last_err). Returns the breaker's event. */
enum breaker_event polldev_judge(struct polldev *pd, const struct breaker_pace *pace,
				 struct reading *r, bool answered, int err, int64_t now);

/* A write of value to point `point` of pd is over with err (0 or an MBE_* code): a
 * failure is logged as a warning (writes are alert actions: few, and each one matters),
 * a success at debug (the core says it at info). */
void polldev_log_write(const struct polldev *pd, uint16_t point, double value, int err);

#endif
