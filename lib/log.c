/*
 * log: stderr with syslog priority prefixes, one write(2) per line so lines from the
 * poller threads never interleave. Never allocates.
 */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int log_level = 6;

void log_init(int level, const char *ident)
{
	(void)ident;
	log_set_level(level);
}

void log_set_level(int level)
{
	if (level < 3)
		level = 3;
	if (level > 7)
		level = 7;
	log_level = level;
}

int log_get_level(void)
{
	return log_level;
}

static void vlog(int prio, int with_errno, const char *fmt, va_list ap)
{
	char line[1024];
	int saved = errno;
	int n;
	size_t len;

	if (prio > log_level)
		return;
	n = snprintf(line, sizeof line, "<%d>", prio);
	len = (size_t)n;
	n = vsnprintf(line + len, sizeof line - len, fmt, ap);
	if (n < 0)
		n = 0;
	len += (size_t)n;
	if (len > sizeof line - 2)
		len = sizeof line - 2;
	if (with_errno) {
		n = snprintf(line + len, sizeof line - len, ": %s", strerror(saved));
		if (n > 0)
			len += (size_t)n;
		if (len > sizeof line - 2)
			len = sizeof line - 2;
	}
	/* one line, one record: a newline inside a message would split it in journald */
	for (size_t i = 3; i < len; i++)
		if (line[i] == '\n')
			line[i] = ' ';
	line[len++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w;
	errno = saved;
}

#define LOGFN(name, prio, e)                  \
	void name(const char *fmt, ...)       \
	{                                     \
		va_list ap;                   \
		va_start(ap, fmt);            \
		vlog(prio, e, fmt, ap);       \
		va_end(ap);                   \
	}

LOGFN(log_warn, 4, 1)
LOGFN(log_warnx, 4, 0)
LOGFN(log_err, 3, 1)
LOGFN(log_errx, 3, 0)
LOGFN(log_info, 6, 0)
LOGFN(log_debug, 7, 0)

void fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(2, 1, fmt, ap);
	va_end(ap);
	exit(1);
}

void fatalx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(2, 0, fmt, ap);
	va_end(ap);
	exit(1);
}
