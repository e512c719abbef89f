/*
 * fuzz_web: what the page reads from whoever reaches its port (daemon/web_req.c) and
 * the password file it reads at start (daemon/web_auth.c), on arbitrary bytes. The first
 * byte picks the reader: a probe's JSON, a login form's field, the Cookie header, a
 * device's path, the Host and Origin headers, a password file. Each either refuses with
 * a message or gives back values in range, NUL-terminated in their buffers.
 */
#include <string.h>
#include <strings.h>

#include "config.h"
#include "fuzz.h"
#include "web_auth.h"
#include "web_req.h"

/* data[0..size) as a C string (cut at a NUL, as a header would be) */
static char *cstr(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

static void probe(const uint8_t *data, size_t size)
{
	struct web_probe p;
	char msg[200];

	if (web_probe_parse((const char *)data, size, &p, msg, sizeof msg) != 0) {
		fuzz_check(msg[0] != '\0');
		return;
	}
	if (p.device[0]) {
		fuzz_check(config_id_valid(p.device) && !p.bus[0] && p.nreads == 0);
		return;
	}
	fuzz_check(config_id_valid(p.bus));
	fuzz_check(p.nreads >= 1 && p.nreads <= WEB_PROBE_READS_MAX);
	fuzz_check(p.timeout_ms >= 0 && p.timeout_ms <= POLLER_PROBE_TIMEOUT_MAX_MS);
	for (size_t i = 0; i < p.nreads; i++) {
		fuzz_check(p.reads[i].table <= MB_HOLDING);
		fuzz_check(p.reads[i].count >= 1 && p.reads[i].count <= POLLER_PROBE_COUNT_MAX);
		fuzz_check((uint32_t)p.reads[i].address + p.reads[i].count <= 65536);
	}
}

static void form(const uint8_t *data, size_t size)
{
	char out[64];
	static const char *const names[] = { "user", "password", "" };

	for (size_t i = 0; i < 3; i++) {
		int rc = web_form_field((const char *)data, size, names[i], out, sizeof out);
		fuzz_check(rc >= -1 && rc <= 1);
		if (rc == 1)
			fuzz_check(strlen(out) < sizeof out);
	}
	/* a buffer of one byte holds only the empty value */
	if (web_form_field((const char *)data, size, "user", out, 1) == 1)
		fuzz_check(out[0] == '\0');
}

static void cookie(const uint8_t *data, size_t size)
{
	char *s = cstr(data, size), out[WEB_TOKEN_HEX + 2];
	int rc = web_cookie(s, WEB_COOKIE, out, sizeof out);

	fuzz_check(rc >= -1 && rc <= 1);
	if (rc == 1)
		fuzz_check(strlen(out) < sizeof out && !strchr(out, ';'));
	free(s);
}

static void path(const uint8_t *data, size_t size)
{
	char *s = cstr(data, size), id[ID_MAX];

	if (web_path_device(s, id) == 0)
		fuzz_check(config_id_valid(id) && strstr(s, id) != NULL);
	free(s);
}

/* "ORIGIN\nHOST" */
static void host(const uint8_t *data, size_t size)
{
	char *s = cstr(data, size), *nl = strchr(s, '\n');
	const char *h = nl ? nl + 1 : s;

	if (nl)
		*nl = '\0';
	(void)web_host_loopback(h);
	if (web_origin_ok(s, h, size & 1))
		fuzz_check(strncasecmp(s, "http", 4) == 0 && h[0] != '\0');
	free(s);
}

static void users(const uint8_t *data, size_t size)
{
	struct web_users u;
	char err[200];

	if (web_users_parse((const char *)data, size, &u, err, sizeof err) != 0) {
		fuzz_check(err[0] != '\0');
		return;
	}
	fuzz_check(u.n >= 1 && u.n <= WEB_USERS_MAX);
	for (size_t i = 0; i < u.n; i++) {
		fuzz_check(u.u[i].name[0] && !strchr(u.u[i].name, ':'));
		fuzz_check(strncmp(u.u[i].hash, "$6$", 3) == 0);
	}
	web_users_free(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static void (*const readers[])(const uint8_t *, size_t) = { probe, form, cookie, path,
								     host, users };

	if (size == 0)
		return 0;
	readers[data[0] % (sizeof readers / sizeof readers[0])](data + 1, size - 1);
	return 0;
}
