/*
 * log: one logging API. Lines go to stderr with a syslog priority prefix (<3> error,
 * <4> warning, <6> info, <7> debug) so journald keeps the levels. log_warn appends
 * strerror(errno), log_warnx does not; fatal never returns. errno is preserved.
 * Thread-safe: a line is written with one write(2).
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdarg.h>

#define PRINTF(a, b) __attribute__((format(printf, a, b)))

void log_init(int level, const char *ident);   /* level: 3..7 */
void log_set_level(int level);
int log_get_level(void);
void log_warn(const char *fmt, ...) PRINTF(1, 2);
void log_warnx(const char *fmt, ...) PRINTF(1, 2);
void log_err(const char *fmt, ...) PRINTF(1, 2);   /* <3>, with strerror(errno) */
void log_errx(const char *fmt, ...) PRINTF(1, 2);
void log_info(const char *fmt, ...) PRINTF(1, 2);
void log_debug(const char *fmt, ...) PRINTF(1, 2);
void fatal(const char *fmt, ...) PRINTF(1, 2) __attribute__((noreturn));
void fatalx(const char *fmt, ...) PRINTF(1, 2) __attribute__((noreturn));

#endif
