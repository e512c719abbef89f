/*
 * web_auth: owns the page's users, sessions and login throttle (daemon/web_auth.h). It
 * must never keep a password (only crypt's hashes, from the file), never compare a
 * secret in time that depends on where it differs, and never let one client's failures
 * lock out another's logins, nor many clients' failures take the box's CPU.
 */
#include "web_auth.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

/* A valid hash that matches no password anyone types: crypted for a user that is not
 * there, so that "no such user" costs what a wrong password costs. */
static const char decoy_hash[] =
	"$6$sluicedecoysalt$h.7OxVvVmDnKFDNuykeK9IYXzcsK1G6wgPiZCGu.iKP152RaerrkFMKaG9.6bUQjuc7H"
	"fwHH4bmqR16RdI50m.";

static const char b64[] = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* $6$[rounds=N$]SALT$HASH: salt 1..16 and hash 86 characters of crypt's base 64. */
static bool sha512_hash_form(const char *h)
{
	const char *p = h + 3, *d;
	size_t n;

	if (strncmp(h, "$6$", 3) != 0)
		return false;
	if (strncmp(p, "rounds=", 7) == 0) {
		p += 7;
		if (*p < '1' || *p > '9')
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
		if (*p++ != '$')
			return false;
	}
	d = strchr(p, '$');
	if (!d || d == p || d - p > 16 || strspn(p, b64) < (size_t)(d - p))
		return false;
	n = strlen(d + 1);
	return n == 86 && strspn(d + 1, b64) == 86;
}

int web_users_parse(const char *text, size_t len, struct web_users *out, char *err, size_t errlen)
{
	struct web_users u = { 0 };
	size_t line = 0, i = 0;

	if (len > WEB_PWFILE_MAX) {
		snprintf(err, errlen, "larger than %d bytes: not a password file", WEB_PWFILE_MAX);
		return -1;
	}
	u.u = calloc(WEB_USERS_MAX, sizeof *u.u);
	if (!u.u) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	while (i < len) {
		const char *s = text + i, *nl = memchr(s, '\n', len - i), *colon;
		size_t n = nl ? (size_t)(nl - s) : len - i, ulen, hlen;

		i += n + 1;
		line++;
		if (n > 0 && s[n - 1] == '\r')
			n--;
		if (n == 0 || s[0] == '#')
			continue;
		if (memchr(s, '\0', n)) {
			snprintf(err, errlen, "line %zu: a NUL byte: not a password file", line);
			goto fail;
		}
		colon = memchr(s, ':', n);
		if (!colon) {
			snprintf(err, errlen, "line %zu: expected user:HASH (the hash as `openssl "
				 "passwd -6` makes it)", line);
			goto fail;
		}
		ulen = (size_t)(colon - s);
		hlen = n - ulen - 1;
		if (ulen == 0 || ulen >= WEB_USER_MAX) {
			snprintf(err, errlen, "line %zu: a user name of 1..%d bytes before the ':'",
				 line, WEB_USER_MAX - 1);
			goto fail;
		}
		for (size_t k = 0; k < ulen; k++)
			if ((unsigned char)s[k] <= ' ' || s[k] == 0x7f) {
				snprintf(err, errlen, "line %zu: the user name has a space or a control "
					 "character", line);
				goto fail;
			}
		if (hlen >= WEB_HASH_MAX || hlen < 3) {
			snprintf(err, errlen, "line %zu: expected a SHA-512 crypt hash after the ':' "
				 "($6$..., as `openssl passwd -6` makes it)", line);
			goto fail;
		}
		if (u.n == WEB_USERS_MAX) {
			snprintf(err, errlen, "line %zu: more than %d users", line, WEB_USERS_MAX);
			goto fail;
		}
		memcpy(u.u[u.n].name, s, ulen);
		memcpy(u.u[u.n].hash, colon + 1, hlen);
		if (!sha512_hash_form(u.u[u.n].hash)) {
			snprintf(err, errlen, "line %zu: user %s: the hash is not a SHA-512 crypt hash "
				 "($6$SALT$ and 86 characters: make it with `openssl passwd -6`)", line,
				 u.u[u.n].name);
			goto fail;
		}
		for (size_t k = 0; k < u.n; k++)
			if (strcmp(u.u[k].name, u.u[u.n].name) == 0) {
				snprintf(err, errlen, "line %zu: user %s is there twice", line,
					 u.u[u.n].name);
				goto fail;
			}
		u.n++;
	}
	if (u.n == 0) {
		snprintf(err, errlen, "no user in it (lines user:HASH, the hash as `openssl passwd "
			 "-6` makes it)");
		goto fail;
	}
	*out = u;
	return 0;
fail:
	explicit_bzero(u.u, WEB_USERS_MAX * sizeof *u.u);
	free(u.u);
	return -1;
}

int web_users_load(const char *path, struct web_users *out, char *err, size_t errlen)
{
	char *buf = malloc(WEB_PWFILE_MAX + 1), why[200];
	size_t len = 0;
	ssize_t n;
	int fd, rc;

	if (!buf) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		free(buf);
		return -1;
	}
	while (len <= WEB_PWFILE_MAX &&
	       (n = read(fd, buf + len, WEB_PWFILE_MAX + 1 - len)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			close(fd);
			free(buf);
			return -1;
		}
		len += (size_t)n;
	}
	close(fd);
	rc = web_users_parse(buf, len, out, why, sizeof why);
	if (rc != 0)
		snprintf(err, errlen, "%s: %s", path, why);
	explicit_bzero(buf, len);
	free(buf);
	return rc;
}

void web_users_free(struct web_users *u)
{
	if (u->u) {
		explicit_bzero(u->u, WEB_USERS_MAX * sizeof *u->u);
		free(u->u);
	}
	u->u = NULL;
	u->n = 0;
}

bool web_secret_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char d = la != lb;

	for (size_t i = 0; i < la && i < lb; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

bool web_users_verify(const struct web_users *u, const char *user, const char *password, void *data)
{
	const char *hash = decoy_hash, *got;
	bool found = false;

	for (size_t i = 0; i < u->n; i++)
		if (strcmp(u->u[i].name, user) == 0) {
			hash = u->u[i].hash;
			found = true;
		}
	memset(data, 0, sizeof(struct crypt_data));
	got = crypt_r(password, hash, data);
	return found && got && got[0] == '$' && web_secret_eq(got, hash);
}

/* ---- sessions ------------------------------------------------------------------------ */

int web_token(char out[WEB_TOKEN_HEX + 1])
{
	unsigned char r[WEB_TOKEN_HEX / 2];
	size_t got = 0;

	while (got < sizeof r) {
		ssize_t n = getrandom(r + got, sizeof r - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		got += (size_t)n;
	}
	for (size_t i = 0; i < sizeof r; i++)
		snprintf(out + 2 * i, 3, "%02x", r[i]);
	explicit_bzero(r, sizeof r);
	return 0;
}

const struct web_session *web_session_new(struct web_sessions *s, const char *user, int64_t now)
{
	struct web_session *slot = &s->s[0];

	for (size_t i = 0; i < WEB_SESSIONS_MAX; i++) {
		struct web_session *x = &s->s[i];

		if (!x->token[0] || x->expires <= now) {
			slot = x;
			break;
		}
		if (x->started < slot->started)
			slot = x;
	}
	memset(slot, 0, sizeof *slot);
	if (web_token(slot->token) != 0 || web_token(slot->csrf) != 0) {
		memset(slot, 0, sizeof *slot);
		return NULL;
	}
	snprintf(slot->user, sizeof slot->user, "%s", user);
	slot->started = now;
	slot->expires = now + WEB_SESSION_MS;
	return slot;
}

const struct web_session *web_session_find(struct web_sessions *s, const char *token, int64_t now)
{
	const struct web_session *found = NULL;

	if (strlen(token) != WEB_TOKEN_HEX)
		return NULL;
	for (size_t i = 0; i < WEB_SESSIONS_MAX; i++) {
		struct web_session *x = &s->s[i];

		if (x->token[0] && web_secret_eq(x->token, token)) {
			if (x->expires > now)
				found = x;
			else
				memset(x, 0, sizeof *x);
		}
	}
	return found;
}

void web_session_end(struct web_sessions *s, const char *token)
{
	for (size_t i = 0; i < WEB_SESSIONS_MAX; i++)
		if (s->s[i].token[0] && web_secret_eq(s->s[i].token, token))
			memset(&s->s[i], 0, sizeof s->s[i]);
}

/* ---- failed logins --------------------------------------------------------------------- */

void web_throttle_key(const void *sockaddr, unsigned char key[16])
{
	const struct sockaddr *sa = sockaddr;

	memset(key, 0, 16);
	if (sa && sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = sockaddr;
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &in->sin_addr, 4);
	} else if (sa && sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = sockaddr;
		static const unsigned char v4mapped[12] = { [10] = 0xff, [11] = 0xff };

		memcpy(key, &in6->sin6_addr, 16);
		/* one client may hold a whole /64; a v4-mapped address is a v4 client */
		if (memcmp(key, v4mapped, 12) != 0)
			memset(key + 8, 0, 8);
	}
}

static struct web_throttle_client *throttle_find(struct web_throttle *t, const unsigned char key[16],
						 int64_t now, bool add)
{
	struct web_throttle_client *oldest = NULL;

	for (size_t i = 0; i < WEB_THROTTLE_CLIENTS; i++) {
		struct web_throttle_client *c = &t->c[i];

		if (c->used && now - c->last > WEB_THROTTLE_FORGET_MS && now >= c->until)
			c->used = false;
		if (c->used && memcmp(c->addr, key, 16) == 0)
			return c;
		if (!oldest || !c->used || (oldest->used && c->last < oldest->last))
			oldest = c;
	}
	if (!add)
		return NULL;
	*oldest = (struct web_throttle_client){ .used = true, .last = now };
	memcpy(oldest->addr, key, 16);
	return oldest;
}

int64_t web_throttle_wait(struct web_throttle *t, const unsigned char key[16], int64_t now)
{
	struct web_throttle_client *c = throttle_find(t, key, now, false);

	if (c && now < c->until)
		return c->until - now;
	if (now / 1000 != t->second) {
		t->second = now / 1000;
		t->count = 0;
	}
	if (t->count >= WEB_LOGINS_PER_S)
		return 1000 - now % 1000;
	t->count++;
	return 0;
}

void web_throttle_failed(struct web_throttle *t, const unsigned char key[16], int64_t now)
{
	struct web_throttle_client *c = throttle_find(t, key, now, true);
	int64_t wait = 1000;

	c->fails++;
	c->last = now;
	for (unsigned i = 1; i < c->fails && wait < WEB_THROTTLE_MAX_MS; i++)
		wait *= 2;
	c->until = now + (wait < WEB_THROTTLE_MAX_MS ? wait : WEB_THROTTLE_MAX_MS);
}

void web_throttle_passed(struct web_throttle *t, const unsigned char key[16])
{
	struct web_throttle_client *c = throttle_find(t, key, 0, false);

	if (c)
		c->used = false;
}
