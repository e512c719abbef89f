/*
 * ctlclient: sluicectl's side of the daemon's control socket (daemon/control.h): finding
 * the sluiced of a data directory, and one request and its reply at a time, each within a
 * deadline. A daemon that cannot be asked is never taken for one that is not running:
 * the two are told apart, because a probe may open a serial line only when no daemon
 * holds it.
 */
#ifndef SLUICE_CTLCLIENT_H
#define SLUICE_CTLCLIENT_H

#include <stddef.h>

#include "jread.h"

/* How long sluicectl waits for the daemon to answer a hello or a status. */
#define CTLCLIENT_TIMEOUT_MS 5000

enum ctl_found {
	CTL_FOUND,        /* a sluiced of this data directory answers */
	CTL_NONE,         /* none listens: no socket, or one left by a daemon that is gone */
	CTL_UNREACHABLE,  /* a socket is there but cannot be used (permission, no answer in
			     time, a daemon too busy, another data directory's daemon): one
			     may be running */
};

struct ctlclient;

/*
 * Connect to data_dir/control and say hello: CTL_FOUND with *out (its hello reply in
 * ctlclient_hello), or CTL_NONE / CTL_UNREACHABLE with why in words.
 */
int ctlclient_open(const char *data_dir, struct ctlclient **out, char *why, size_t whylen);

/* The daemon's hello reply (its version, pid, gateway, data directory). */
const struct jval *ctlclient_hello(const struct ctlclient *c);
/* The socket's path, for messages. */
const char *ctlclient_path(const struct ctlclient *c);

/*
 * Send one request (a JSON object, no newline) and wait at most timeout_ms for its reply:
 * the reply parsed (free with jread_free) — an error reply too, with "ok": false — or NULL
 * with why (no answer in time, the daemon closed, not JSON). After a NULL the client is
 * of no more use.
 */
struct jval *ctlclient_call(struct ctlclient *c, const char *req, int timeout_ms, char *why,
			    size_t whylen);

void ctlclient_close(struct ctlclient *c);

#endif
