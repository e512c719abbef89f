/*
 * notify: the systemd notification protocol (sd_notify(3)) spoken directly on
 * $NOTIFY_SOCKET, so the daemon needs no libsystemd at run time. Silent no-op when
 * not started by systemd.
 */
#ifndef SLUICE_NOTIFY_H
#define SLUICE_NOTIFY_H

#include <stdint.h>

/* Send one state string ("READY=1", "STATUS=...", ...), never waiting for the reader.
 * Returns 1 sent, 0 no socket, -1 error (a full queue included). */
int notify_send(const char *state);
/* WATCHDOG_USEC in ms for this process, or 0 when no watchdog is asked for. */
int64_t notify_watchdog_ms(void);

#endif
