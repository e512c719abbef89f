/*
 * control: the daemon's control socket, and the requests it answers for `sluicectl` (and,
 * later, the web page): hello, status (the live status, as the stored snapshot has it),
 * probe (reads through the poller that owns a bus, slotted between its polls).
 *
 * The protocol (docs/operations.md, "The control socket"): one JSON object per line each
 * way, a request then its reply, in order. A request is {"v":1,"op":...} with the op's
 * members and, if it likes, an "id" (a string or an integer) that its reply carries back;
 * a reply is {"v":1,"ok":true,...} or {"v":1,"ok":false,"error":CODE,"message":TEXT}.
 *
 * Threads. Everything here runs on the core thread, from the core loop: the socket and
 * its clients are non-blocking descriptors in the loop's poll(), with a deadline each in
 * the loop's deadline table (control_deadline), so a client that sends garbage or stalls
 * costs the loop one bounded read or write, never a wait. A probe crosses to the owning
 * poller thread as a message (drivers/poller.h) and comes back through a list under one
 * mutex and an eventfd in the same poll(): no other thread ever touches a client.
 *
 * The entry points the socket's clients use (control_handle) take a request's text and
 * answer through a callback, so that another front end (issue 19's web page) can call
 * them without a socket.
 */
#ifndef SLUICE_CONTROL_H
#define SLUICE_CONTROL_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "poller.h"
#include "status.h"

#define CONTROL_PROTOCOL 1
#define CONTROL_SOCKET_NAME "control"
/* A request line, its newline included, is at most this long. */
#define CONTROL_REQUEST_MAX 16384
/* Clients at once; one more is told so and let go. */
#define CONTROL_CLIENTS_MAX 8
/* A client has this long to send a whole request after it connected or after its last
 * reply went out, and this long to read a reply; then it is let go. */
#define CONTROL_IDLE_MS 10000
#define CONTROL_WRITE_MS 5000
/* A probe waits at most this long for its line to be free between two polls. */
#define CONTROL_PROBE_WAIT_MS 5000
/* The live status is built at most this often; requests in between share it. */
#define CONTROL_STATUS_EVERY_MS 200
/* Descriptors control_pollfds fills at most: the socket, the probes' eventfd, clients. */
#define CONTROL_POLLFDS_MAX (2 + CONTROL_CLIENTS_MAX)

/* ---- requests, as text: pure, for the socket and the fuzzer ------------------------- */

enum control_op { CTL_HELLO, CTL_STATUS, CTL_PROBE };

/* Where a probe is to go: a serial line (its path, and the character device it is, as
 * the asker found it: a daemon never looks at a path a client gives it), or a
 * host:port. */
struct control_target {
	int kind;              /* enum bus_kind */
	char device[256];      /* BUS_RTU */
	bool has_rdev;
	uint64_t rdev;
	bool has_line;         /* the asker gave the line's settings: they must be the bus's */
	unsigned baud;
	char parity;           /* 'N', 'E', 'O' */
	unsigned data_bits, stop_bits;
	char host[256];        /* BUS_TCP, BUS_RTU_OVER_TCP */
	uint16_t port;
};

struct control_read {
	uint8_t table;         /* enum mb_table */
	uint16_t address, count;
};

struct control_request {
	int op;                /* enum control_op */
	char id[80];           /* the "id" member as JSON text ("" when none) */
	/* probe */
	struct control_target target;
	uint8_t unit;
	int64_t timeout_ms;    /* 0: the bus's */
	bool stop_on_silence;
	struct control_read reads[POLLER_PROBE_READS_MAX];
	size_t nreads;
};

/*
 * Parse one request (len bytes, no newline) into rq. 0, or -1 with *code (a reply's
 * "error": "bad_request", "version", "unknown_op") and a message for the asker in msg;
 * rq->id is filled as far as it could be read, so that even an error reply carries it.
 */
int control_parse(const char *text, size_t len, struct control_request *rq, const char **code,
		  char *msg, size_t msglen);

/* An error reply (one line, its newline included) into b. */
void control_error_reply(struct jbuf *b, const char *id, const char *code, const char *msg);

/* ---- the socket --------------------------------------------------------------------- */

/*
 * Where the socket is: `control` in runtime_dir (systemd's $RUNTIME_DIRECTORY, the unit's
 * RuntimeDirectory=sluice: /run/sluice) when it is set and not empty — the first of
 * several colon-separated directories — and then data_dir/control is a symbolic link to
 * it (into link); else data_dir/control itself (link ""). Either way a client finds the
 * daemon of a data directory at data_dir/control. 0, or -1 when a path does not fit a
 * socket address (108 bytes) or its buffer.
 */
int control_socket_path(const char *runtime_dir, const char *data_dir, char *sock, size_t len,
			char *link, size_t linklen);

/* What control asks of the core, on the core thread. */
struct control_core {
	void *ctx;
	const struct config *(*config)(void *ctx);  /* the config in force */
	const struct status *(*status)(void *ctx);  /* the daemon's counters, for its config */
	/* Hand p to the poller that owns bus (index into the config's buses): 0, or -1 with
	 * errno as serpoll_probe and tcpoll_probe give it. */
	int (*probe)(void *ctx, size_t bus, struct poller_probe *p);
};

struct control;

/*
 * Listen at path: a Unix stream socket, mode 0660 (the group is the daemon's: `sluice`
 * under the unit), replacing a socket left by a daemon that did not stop cleanly (the
 * caller holds the data directory's lock, so none runs); with link not empty, make link a
 * symbolic link to it, replacing whatever is there. NULL with err when it cannot.
 */
struct control *control_open(const char *path, const char *link,
			     const struct control_core *core, char *err, size_t errlen);
/*
 * Close every client, free what waits, remove the socket and its link. The pollers must be gone (freed)
 * first: a probe they held comes back through control, which must still be there.
 */
void control_close(struct control *ctl);

/* The descriptors to watch now (at most CONTROL_POLLFDS_MAX, at pfd), their count. */
size_t control_pollfds(struct control *ctl, struct pollfd *pfd, size_t max);
/* After poll(): the same n entries, with their revents. Accepts, reads, answers, writes,
 * takes back the probes that are over; never waits. */
void control_io(struct control *ctl, const struct pollfd *pfd, size_t n, int64_t now);
/* The earliest client deadline (monotonic ms), INT64_MAX when none: at it, control_io
 * (with no event) lets the late clients go. */
int64_t control_deadline(const struct control *ctl);

/* ---- the entry points --------------------------------------------------------------- */

/* Where a reply goes: one line, its newline included. Called from control_handle, or
 * later from control_io for a probe. */
typedef void (*control_answer_fn)(void *actx, const char *line, size_t len);

/*
 * Answer request text (len bytes, no newline): through answer(actx, ...) exactly once,
 * now or, for a probe, when the poller gives it back — unless control_forget(ctl, actx)
 * is called first.
 */
void control_handle(struct control *ctl, const char *text, size_t len, control_answer_fn answer,
		    void *actx);
/* The asker actx is gone: a reply still to come is dropped. */
void control_forget(struct control *ctl, void *actx);

#endif
