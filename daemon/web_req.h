/*
 * web_req: what a request to the technicians' page carries, read from its text — a login
 * form's fields, the session cookie, a device id in a path, a probe's JSON, the Host and
 * Origin headers — for daemon/web_http.c and the fuzzer (tests/fuzz/fuzz_web.c).
 *
 * Pure: no socket, no config, no clock, no allocation that outlives a call. Every byte
 * comes from whoever reaches the port, so every length is bounded and every refusal
 * says what was expected.
 */
#ifndef SLUICE_WEB_REQ_H
#define SLUICE_WEB_REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "control.h"
#include "site.h"

/* The session cookie's name, and its value: 32 random bytes in hex. */
#define WEB_COOKIE "sluice_session"
#define WEB_TOKEN_HEX 64
/* Reads in one probe from the page (a person's question, not a device's whole map). */
#define WEB_PROBE_READS_MAX 8

/*
 * The field called name of a form body (application/x-www-form-urlencoded: name=value
 * pairs joined by '&', '+' for a space, %XX for a byte), decoded into out (outlen bytes
 * with its NUL). 1 found, 0 absent, -1 malformed: a bad %XX, a NUL byte, or a value
 * that does not fit.
 */
int web_form_field(const char *body, size_t len, const char *name, char *out, size_t outlen);

/* The value of cookie name in a Cookie header ("a=1; name=v"), into out: 1 found, 0
 * absent, -1 when it does not fit. The first one of that name counts. */
int web_cookie(const char *header, const char *name, char *out, size_t outlen);

/* The device id of "/api/devices/<id>" (an id as the config writes them,
 * [A-Za-z0-9_-]+), into id (ID_MAX bytes): 0, or -1 when path is no such path. */
int web_path_device(const char *path, char id[ID_MAX]);

/* What the page's probe asks: the reads of a bus and unit, or the registers of every
 * point of a device (device set, the rest empty). */
struct web_probe {
	char bus[ID_MAX];
	char device[ID_MAX];
	uint8_t unit;
	int64_t timeout_ms;             /* 0: the bus's */
	struct control_read reads[WEB_PROBE_READS_MAX];
	size_t nreads;
};

/*
 * Read a probe's JSON body: {"bus":ID,"unit":0..255,"reads":[{"table","address",
 * "count"}...],"timeout_ms":N} or {"device":ID}. 0, or -1 with msg saying which member
 * and what was expected.
 */
int web_probe_parse(const char *text, size_t len, struct web_probe *p, char *msg, size_t msglen);

/*
 * Is this Host header a loopback name or address ("127.0.0.1:8080", "[::1]:8080",
 * "localhost:8080")? A page without a password answers only to those: a web site that
 * points a name of its own at 127.0.0.1 (DNS rebinding) must not read it.
 */
bool web_host_loopback(const char *host);

/* Is the Origin header the page's own ("http://" or "https://" and the Host)? A POST
 * from another origin is refused (CSRF). */
bool web_origin_ok(const char *origin, const char *host, bool https);

#endif
