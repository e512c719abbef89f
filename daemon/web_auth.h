/*
 * web_auth: who may read the technicians' page — the password file's users (lines
 * user:HASH, crypt SHA-512 as `openssl passwd -6` makes them), the sessions of those who
 * logged in, and the slowing down of those who keep failing.
 *
 * Not thread-safe: the sessions and the throttle belong to the page's HTTP thread; a
 * user table is read-only once parsed (a reload builds a new one).
 */
#ifndef SLUICE_WEB_AUTH_H
#define SLUICE_WEB_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "web_req.h"

#define WEB_USER_MAX 65          /* a user name: 1..64 bytes */
#define WEB_HASH_MAX 128         /* $6$rounds=N$salt$hash */
#define WEB_USERS_MAX 64
#define WEB_PWFILE_MAX 65536     /* a password file larger than this is not one */

struct web_user {
	char name[WEB_USER_MAX];
	char hash[WEB_HASH_MAX];
};

struct web_users {
	struct web_user *u;
	size_t n;
};

/*
 * Read a password file's text: one user:HASH a line, blank lines and lines starting with
 * '#' aside. Only SHA-512 crypt hashes ($6$): older ones are quick to crack. 0, or -1
 * with err naming the line ("line 3: ..."); nothing to free on failure. Pure.
 */
int web_users_parse(const char *text, size_t len, struct web_users *out, char *err,
		    size_t errlen);
/* The same from a file: "PATH: line 3: ..." on failure. */
int web_users_load(const char *path, struct web_users *out, char *err, size_t errlen);
void web_users_free(struct web_users *u);

/*
 * Does password open user's account? Always one crypt(3) of the password, also for a
 * user that is not there, so that the time taken does not tell names apart. data is
 * crypt_r's scratch (struct crypt_data: ~32 KiB, the caller's to keep).
 */
bool web_users_verify(const struct web_users *u, const char *user, const char *password,
		      void *data);

/* a == b, in time that depends only on their lengths: for tokens and hashes. */
bool web_secret_eq(const char *a, const char *b);

/* ---- sessions ---------------------------------------------------------------------- */

#define WEB_SESSIONS_MAX 32
#define WEB_SESSION_MS (12 * 3600 * 1000LL)   /* a working day at the station */

struct web_session {
	char token[WEB_TOKEN_HEX + 1];   /* the cookie's value; "" for a free slot */
	char csrf[WEB_TOKEN_HEX + 1];    /* sent back in a header with every POST */
	char user[WEB_USER_MAX];
	int64_t started, expires;        /* monotonic ms */
};

struct web_sessions {
	struct web_session s[WEB_SESSIONS_MAX];
};

/* 32 random bytes as hex into out (WEB_TOKEN_HEX + 1 bytes): 0, or -1 when the kernel's
 * random source fails. */
int web_token(char out[WEB_TOKEN_HEX + 1]);

/* A new session for user; the oldest goes when every slot is taken. NULL when no random
 * token could be had. */
const struct web_session *web_session_new(struct web_sessions *s, const char *user, int64_t now);
/* The live session of this token, or NULL (compared in constant time). */
const struct web_session *web_session_find(struct web_sessions *s, const char *token, int64_t now);
void web_session_end(struct web_sessions *s, const char *token);

/* ---- failed logins ----------------------------------------------------------------- */

#define WEB_THROTTLE_CLIENTS 256
#define WEB_THROTTLE_MAX_MS (5 * 60 * 1000LL)
#define WEB_THROTTLE_FORGET_MS (60 * 60 * 1000LL)
/* Password checks per second from everyone together: each is a SHA-512 crypt (about
 * 5,000 rounds), and the box's CPU is for its devices. */
#define WEB_LOGINS_PER_S 10

struct web_throttle_client {
	unsigned char addr[16];          /* IPv4 mapped to IPv6; an IPv6 client by its /64 */
	unsigned fails;
	int64_t until, last;             /* monotonic ms */
	bool used;
};

struct web_throttle {
	struct web_throttle_client c[WEB_THROTTLE_CLIENTS];
	int64_t second;                  /* the second the count is of */
	unsigned count;
};

/* A client's address as the throttle keys it, from a sockaddr (AF_INET or AF_INET6). */
void web_throttle_key(const void *sockaddr, unsigned char key[16]);
/*
 * May this client try a password now? 0 yes (and it is counted), else the ms to wait.
 * After n failures in a row a client waits 2^(n-1) s (at most 5 minutes) before the
 * next try; a failure forgotten after an hour without one.
 */
int64_t web_throttle_wait(struct web_throttle *t, const unsigned char key[16], int64_t now);
void web_throttle_failed(struct web_throttle *t, const unsigned char key[16], int64_t now);
void web_throttle_passed(struct web_throttle *t, const unsigned char key[16]);

#endif
