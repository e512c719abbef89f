/*
 * web_http: owns the page's HTTP side (daemon/web.h): the libmicrohttpd daemon on its
 * own thread in its epoll mode (its select() mode fails past descriptor 1023, and
 * sluiced holds thousands), the routes, who may see them (sessions, the login throttle,
 * CSRF), the headers every response carries, and the files the page is made of.
 *
 * It must never touch what the core thread owns: what the page shows of the daemon is
 * asked of the core (web.c) with the connection suspended until it answers, never
 * waited for. It must never put a secret in a URL, serve a page script from anywhere but
 * its own files (the CSP forbids inline scripts and styles), or accept a POST that
 * another site could have made a browser send.
 */
#include "web_int.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "jread.h"
#include "log.h"

/* Connections at once, from one client at once (a phone's browser opens about six), a
 * connection's idle time, and what libmicrohttpd may allocate for one (its headers). */
#define WEB_CONNECTIONS_MAX 64
#define WEB_CONNECTIONS_PER_IP 16
#define WEB_IDLE_S 30
#define WEB_CONNECTION_MEMORY (32 * 1024)

static const char csp[] =
	"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

enum route {
	R_NONE,
	R_ASSET,       /* a file of the page: served to anyone (the login page needs them) */
	R_INDEX,       /* the page */
	R_LOGIN_PAGE,
	R_LOGIN,       /* POST: the form */
	R_LOGOUT,      /* POST */
	R_SESSION,     /* who is logged in, and the CSRF token */
	R_STATUS,
	R_DEVICE,
	R_ALERTS,
	R_PROBE,       /* POST */
};

bool web_http_tls(void)
{
	return MHD_is_feature_supported(MHD_FEATURE_TLS) == MHD_YES;
}

void web_http_resume(struct web_req *rq)
{
	MHD_resume_connection(rq->conn);
}

/* ---- responses -------------------------------------------------------------------------- */

struct reply {
	unsigned code;
	const char *type;
	const void *data;
	size_t len;
	enum MHD_ResponseMemoryMode mode;
	const char *cookie;        /* Set-Cookie */
	const char *location;
	const char *etag;
	long retry_after;          /* seconds, when > 0 */
	bool cache;                /* a file of the page: may be kept, asked again each time */
	bool login_challenge;      /* 401: WWW-Authenticate */
};

static enum MHD_Result send_reply(struct web *w, struct MHD_Connection *c, const struct reply *r)
{
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(r->len, (void *)r->data, r->mode);
	enum MHD_Result rc;
	char num[32];

	if (!resp) {
		/* handed over either way: a buffer to be freed is freed */
		if (r->mode == MHD_RESPMEM_MUST_FREE)
			free((void *)r->data);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->type);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_SECURITY_POLICY, csp);
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "X-Frame-Options", "DENY");
	MHD_add_response_header(resp, "Referrer-Policy", "same-origin");
	MHD_add_response_header(resp, "Cross-Origin-Opener-Policy", "same-origin");
	MHD_add_response_header(resp, "Cross-Origin-Resource-Policy", "same-origin");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
				r->cache ? "no-cache" : "no-store");
	if (r->etag)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, r->etag);
	if (r->cookie)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_SET_COOKIE, r->cookie);
	if (r->location)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, r->location);
	if (r->retry_after > 0) {
		snprintf(num, sizeof num, "%ld", r->retry_after);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, num);
	}
	/* a login form, not a browser's password box: the scheme says where it is
	 * (draft-broyer-http-cookie-auth) */
	if (r->login_challenge)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
					"Cookie realm=\"sluice\" form-action=\"/login\" "
					"cookie-name=\"" WEB_COOKIE "\"");
	(void)w;
	rc = MHD_queue_response(c, r->code, resp);
	MHD_destroy_response(resp);
	return rc;
}

static enum MHD_Result send_json(struct web *w, struct MHD_Connection *c, unsigned code,
				 const char *text, size_t len, enum MHD_ResponseMemoryMode mode)
{
	struct reply r = { .code = code, .type = "application/json; charset=utf-8", .data = text,
			   .len = len, .mode = mode, .login_challenge = code == 401 };

	return send_reply(w, c, &r);
}

/* {"error":CODE,"message":TEXT} */
static enum MHD_Result send_error(struct web *w, struct MHD_Connection *c, unsigned code,
				  const char *error, const char *msg, long retry_after)
{
	struct jbuf b;
	struct reply r = { .code = code, .type = "application/json; charset=utf-8",
			   .mode = MHD_RESPMEM_MUST_COPY, .retry_after = retry_after,
			   .login_challenge = code == 401 };
	enum MHD_Result rc;

	jb_init(&b);
	jb_cstr(&b, "{\"error\":");
	jb_str(&b, error);
	jb_cstr(&b, ",\"message\":");
	jb_str(&b, msg);
	jb_cstr(&b, "}");
	if (b.oom) {
		jb_free(&b);
		return MHD_NO;
	}
	r.data = b.p;
	r.len = b.len;
	rc = send_reply(w, c, &r);
	jb_free(&b);
	return rc;
}

static const struct web_asset *asset_find(const char *path)
{
	for (const struct web_asset *a = web_assets; a->path; a++)
		if (strcmp(a->path, path) == 0)
			return a;
	return NULL;
}

/* A file's validator: FNV-1a of its bytes, quoted (computed once; the files are fixed). */
static const char *asset_etag(const struct web_asset *a)
{
	static char tags[32][20];
	size_t i = (size_t)(a - web_assets);
	uint64_t h = 1469598103934665603ull;

	if (i >= 32)
		return NULL;
	if (!tags[i][0]) {
		for (size_t k = 0; k < a->len; k++)
			h = (h ^ a->data[k]) * 1099511628211ull;
		snprintf(tags[i], sizeof tags[i], "\"%016llx\"", (unsigned long long)h);
	}
	return tags[i];
}

static enum MHD_Result send_asset(struct web *w, struct MHD_Connection *c, const char *path,
				  unsigned code)
{
	const struct web_asset *a = asset_find(path);
	const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
	struct reply r = { .code = code, .mode = MHD_RESPMEM_PERSISTENT, .cache = code == 200,
			   .login_challenge = code == 401 };

	if (!a)
		return send_error(w, c, 404, "not_found", "no such page", 0);
	r.type = a->type;
	r.data = a->data;
	r.len = a->len;
	r.etag = code == 200 ? asset_etag(a) : NULL;
	if (r.etag && inm && strcmp(inm, r.etag) == 0) {
		r.code = 304;
		r.len = 0;
	}
	return send_reply(w, c, &r);
}

static enum MHD_Result send_redirect(struct web *w, struct MHD_Connection *c, const char *to,
				     const char *cookie)
{
	struct reply r = { .code = 303, .type = "text/plain; charset=utf-8", .data = "",
			   .mode = MHD_RESPMEM_PERSISTENT, .location = to, .cookie = cookie };

	return send_reply(w, c, &r);
}

/* ---- who asks --------------------------------------------------------------------------- */

static const char *header(struct MHD_Connection *c, const char *name)
{
	return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

/* The session the request's cookie names, or NULL. */
static const struct web_session *session_of(struct web *w, struct MHD_Connection *c)
{
	const char *cookies = header(c, MHD_HTTP_HEADER_COOKIE);
	char token[WEB_TOKEN_HEX + 2];

	if (!cookies || web_cookie(cookies, WEB_COOKIE, token, sizeof token) != 1)
		return NULL;
	return web_session_find(&w->sessions, token, clock_mono_ms());
}

/*
 * Could another site have made the browser send this POST? The session cookie is
 * SameSite=Strict; on top, a POST must carry the session's CSRF token in a header (which
 * a form on another site cannot set, and a script there cannot read), and its Origin,
 * when the browser says it, must be the page's own.
 */
static bool post_ok(struct web *w, struct MHD_Connection *c, const struct web_session *s,
		    bool token_needed)
{
	const char *origin = header(c, "Origin"), *site = header(c, "Sec-Fetch-Site");
	const char *token = header(c, "X-Sluice-CSRF");
	const char *want = s ? s->csrf : w->open_csrf;

	if (origin && !web_origin_ok(origin, header(c, MHD_HTTP_HEADER_HOST), w->https))
		return false;
	if (site && strcmp(site, "same-origin") != 0 && strcmp(site, "none") != 0)
		return false;
	return !token_needed || (token && web_secret_eq(token, want));
}

static void client_key(struct MHD_Connection *c, unsigned char key[16])
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);

	web_throttle_key(ci ? ci->client_addr : NULL, key);
}

static void client_text(struct MHD_Connection *c, char *buf, size_t len)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;

	snprintf(buf, len, "?");
	if (sa && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, buf,
			  (socklen_t)len);
	else if (sa && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, buf,
			  (socklen_t)len);
}

/*
 * The login page, with what became of the last try: "failed", or "wait" (wait_s seconds)
 * said in both languages where the page has <!--MSG--> (login.js keeps one of them).
 */
static enum MHD_Result send_login(struct web *w, struct MHD_Connection *c, unsigned code,
				  const char *why, long wait_s)
{
	const struct web_asset *a = asset_find("/login.html");
	const char *at = a ? strstr((const char *)a->data, "<!--MSG-->") : NULL;
	struct reply r = { .code = code, .type = a ? a->type : "", .mode = MHD_RESPMEM_MUST_COPY,
			   .retry_after = wait_s, .login_challenge = code == 401 };
	struct jbuf b;
	char msg[300];
	enum MHD_Result rc;

	if (!a || !at)
		return send_error(w, c, 500, "internal", "the login page is missing", 0);
	if (!why)
		return send_asset(w, c, "/login.html", code);
	if (strcmp(why, "wait") == 0)
		snprintf(msg, sizeof msg, "<p id=\"msg\" class=\"msg\" data-msg=\"wait\" "
			 "data-wait=\"%ld\">登录失败太多次：请 %ld 秒后再试 · Too many failed "
			 "logins: try again in %ld s</p>", wait_s, wait_s, wait_s);
	else
		snprintf(msg, sizeof msg, "<p id=\"msg\" class=\"msg\" data-msg=\"failed\">"
			 "用户名或密码不对 · Wrong user name or password</p>");
	jb_init(&b);
	jb_raw(&b, (const char *)a->data, (size_t)(at - (const char *)a->data));
	jb_cstr(&b, msg);
	jb_raw(&b, at + 10, a->len - (size_t)(at + 10 - (const char *)a->data));
	if (b.oom) {
		jb_free(&b);
		return MHD_NO;
	}
	r.data = b.p;
	r.len = b.len;
	rc = send_reply(w, c, &r);
	jb_free(&b);
	return rc;
}

/* POST /login: the form's user and password against the password file. A browser gets
 * the page back (303 to it, or the login page saying why not); the status says it to
 * any other client: 303, 401, 429. */
static enum MHD_Result do_login(struct web *w, struct web_req *rq)
{
	struct MHD_Connection *c = rq->conn;
	char user[WEB_USER_MAX], password[256], cookie[256], who[64];
	unsigned char key[16];
	const struct web_session *s;
	int64_t now = clock_mono_ms(), wait;
	bool ok;

	if (!post_ok(w, c, NULL, false))
		return send_error(w, c, 403, "forbidden", "a login from another site", 0);
	client_key(c, key);
	client_text(c, who, sizeof who);
	wait = web_throttle_wait(&w->throttle, key, now);
	/* refused without looking at the password: the client waits, no thread does */
	if (wait > 0)
		return send_login(w, c, 429, "wait", (long)((wait + 999) / 1000));
	if (!rq->body || web_form_field(rq->body, rq->blen, "user", user, sizeof user) != 1 ||
	    web_form_field(rq->body, rq->blen, "password", password, sizeof password) != 1) {
		web_throttle_failed(&w->throttle, key, now);
		return send_login(w, c, 401, "failed", 0);
	}
	/* no lock: the users change only while the page is not served, and a crypt must
	 * never hold the mutex the core takes */
	ok = web_users_verify(&w->users, user, password, w->crypt);
	explicit_bzero(password, sizeof password);
	if (!ok) {
		/* the wait runs from the answer: a slow crypt does not use it up */
		web_throttle_failed(&w->throttle, key, clock_mono_ms());
		log_warnx("web: failed login as %.64s from %s", user, who);
		return send_login(w, c, 401, "failed", 0);
	}
	web_throttle_passed(&w->throttle, key);
	s = web_session_new(&w->sessions, user, now);
	if (!s)
		return send_error(w, c, 500, "internal", "no random session token", 0);
	log_info("web: %s logged in from %s", s->user, who);
	snprintf(cookie, sizeof cookie, "%s=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%lld%s",
		 WEB_COOKIE, s->token, (long long)(WEB_SESSION_MS / 1000),
		 w->https ? "; Secure" : "");
	return send_redirect(w, c, "/", cookie);
}

static enum MHD_Result do_session(struct web *w, struct MHD_Connection *c,
				  const struct web_session *s)
{
	struct jbuf b;
	bool first = true;
	enum MHD_Result rc;

	jb_init(&b);
	jb_cstr(&b, "{");
	jb_key(&b, "login", &first);
	jb_bool(&b, w->login);
	jb_key(&b, "user", &first);
	jb_str(&b, s ? s->user : NULL);
	jb_key(&b, "csrf", &first);
	jb_str(&b, s ? s->csrf : w->open_csrf);
	jb_key(&b, "https", &first);
	jb_bool(&b, w->https);
	jb_cstr(&b, "}");
	rc = b.oom ? MHD_NO : send_json(w, c, 200, b.p, b.len, MHD_RESPMEM_MUST_COPY);
	jb_free(&b);
	return rc;
}

/* ---- asking the core --------------------------------------------------------------------- */

/* Queue rq for the core with its connection suspended until web.c answers. */
static enum MHD_Result ask_core(struct web *w, struct web_req *rq, int ask)
{
	uint64_t one = 1;

	rq->ask = ask;
	pthread_mutex_lock(&w->mu);
	if (w->closing) {
		pthread_mutex_unlock(&w->mu);
		return send_error(w, rq->conn, 503, "stopping", "sluiced is stopping or reloading: "
				  "try again", 1);
	}
	/* suspended before the core can see it: it resumes only a suspended connection */
	MHD_suspend_connection(rq->conn);
	rq->queued = true;
	*w->queue_tail = rq;
	w->queue_tail = &rq->next;
	pthread_mutex_unlock(&w->mu);
	if (write(w->efd, &one, sizeof one) < 0) {
		/* the counter is saturated: the core is awake anyway */
	}
	return MHD_YES;
}

/* The control reply's verdict as an HTTP status: the page shows the message either way. */
static unsigned probe_code(const char *text, size_t len)
{
	char err[64];
	struct jval *v = jread_parse(text, len, err, sizeof err);
	const struct jval *p = jread_get(v, "probe");
	const char *code = jread_str(p, "error");
	unsigned http = 502;

	if (p && jread_bool(p, "ok", false))
		http = 200;
	else if (code && strcmp(code, "bad_request") == 0)
		http = 400;
	else if (code && (strcmp(code, "not_owned") == 0 || strcmp(code, "mismatch") == 0))
		http = 409;
	else if (code && (strcmp(code, "busy") == 0 || strcmp(code, "stopped") == 0))
		http = 503;
	jread_free(v);
	return http;
}

/* The core answered rq: what goes back, with what only this thread adds (the store's
 * history and recent transitions). */
static enum MHD_Result finish(struct web *w, struct web_req *rq)
{
	struct MHD_Connection *c = rq->conn;
	struct jbuf b;
	char err[300];
	enum MHD_Result rc;
	bool answered;

	pthread_mutex_lock(&w->mu);
	answered = rq->answered;
	pthread_mutex_unlock(&w->mu);
	if (!answered || !rq->text)
		return send_error(w, c, 500, "internal", "no answer from the daemon", 0);
	if (rq->code != 200)
		return send_json(w, c, rq->code, rq->text, rq->len, MHD_RESPMEM_MUST_COPY);
	if (rq->ask == WEB_ASK_STATUS) {
		/* the overview is the largest answer (about 750 bytes a device): not copied */
		char *text = rq->text;

		rq->text = NULL;
		return send_json(w, c, 200, text, rq->len, MHD_RESPMEM_MUST_FREE);
	}
	switch (rq->ask) {
	case WEB_ASK_DEVICE:
	case WEB_ASK_ALERTS:
		jb_init(&b);
		jb_cstr(&b, rq->ask == WEB_ASK_DEVICE ? "{\"device\":" : "{\"active\":");
		jb_raw(&b, rq->text, rq->len);
		jb_cstr(&b, rq->ask == WEB_ASK_DEVICE ? ",\"history\":" : ",\"recent\":");
		if ((rq->ask == WEB_ASK_DEVICE
			     ? web_hist_device(w->data_dir, rq->device, clock_real_ms(), &b, err,
					       sizeof err)
			     : web_hist_alerts(w->data_dir, WEB_RECENT_ALERTS, &b, err, sizeof err)) !=
		    0) {
			/* the page still shows what the core said */
			jb_cstr(&b, "null,\"history_error\":");
			jb_str(&b, err);
		}
		jb_cstr(&b, "}");
		rc = b.oom ? send_error(w, c, 500, "internal", "out of memory", 0)
			   : send_json(w, c, 200, b.p, b.len, MHD_RESPMEM_MUST_COPY);
		jb_free(&b);
		return rc;
	case WEB_ASK_PROBE:
		return send_json(w, c, probe_code(rq->text, rq->len), rq->text, rq->len,
				 MHD_RESPMEM_MUST_COPY);
	default:
		return send_json(w, c, 200, rq->text, rq->len, MHD_RESPMEM_MUST_COPY);
	}
}

/* ---- routes ----------------------------------------------------------------------------------- */

static int route_of(const char *url, const char *method, char device[ID_MAX], bool *post)
{
	*post = strcmp(method, "POST") == 0;
	if (asset_find(url) && strcmp(url, "/index.html") != 0 && strcmp(url, "/login.html") != 0)
		return R_ASSET;
	if (strcmp(url, "/") == 0 || strcmp(url, "/index.html") == 0)
		return R_INDEX;
	if (strcmp(url, "/login") == 0)
		return *post ? R_LOGIN : R_LOGIN_PAGE;
	if (strcmp(url, "/logout") == 0)
		return R_LOGOUT;
	if (strcmp(url, "/api/session") == 0)
		return R_SESSION;
	if (strcmp(url, "/api/status") == 0)
		return R_STATUS;
	if (strcmp(url, "/api/alerts") == 0)
		return R_ALERTS;
	if (strcmp(url, "/api/probe") == 0)
		return R_PROBE;
	if (web_path_device(url, device) == 0)
		return R_DEVICE;
	return R_NONE;
}

static bool route_posts(int route)
{
	return route == R_LOGIN || route == R_LOGOUT || route == R_PROBE;
}

static enum MHD_Result handle(struct web *w, struct web_req *rq, const char *url,
			      const char *method)
{
	struct MHD_Connection *c = rq->conn;
	const struct web_session *s = NULL;
	char msg[300];
	bool post;
	int route = route_of(url, method, rq->device, &post);

	if (!post && strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return send_error(w, c, 405, "method", "GET, HEAD or POST", 0);
	if (route != R_NONE && post != route_posts(route))
		return send_error(w, c, 405, "method", post ? "this is read with GET"
							    : "this takes a POST", 0);
	if (rq->too_large)
		return send_error(w, c, 413, "too_large", "a request body is at most 4096 bytes", 0);
	/* without a password, only for this box's own browser: another site whose name
	 * points at 127.0.0.1 must not read the page (DNS rebinding) */
	if (!w->login && !web_host_loopback(header(c, MHD_HTTP_HEADER_HOST)))
		return send_error(w, c, 403, "forbidden", "this page has no password and answers "
				  "only to localhost, 127.0.0.1 or [::1]", 0);
	if (route == R_ASSET)
		return send_asset(w, c, url, 200);
	if (w->login)
		s = session_of(w, c);
	if (route == R_LOGIN_PAGE)
		return s || !w->login ? send_redirect(w, c, "/", NULL)
				      : send_login(w, c, 200, NULL, 0);
	if (route == R_LOGIN)
		return w->login ? do_login(w, rq) : send_redirect(w, c, "/", NULL);
	if (w->login && !s) {
		if (strncmp(url, "/api/", 5) == 0 || route == R_LOGOUT)
			return send_error(w, c, 401, "login", "log in first: POST /login", 0);
		return send_login(w, c, 401, NULL, 0);
	}
	if (post && !post_ok(w, c, s, true))
		return send_error(w, c, 403, "forbidden", "a POST needs the page's X-Sluice-CSRF "
				  "token (GET /api/session) and no other site's Origin", 0);
	switch (route) {
	case R_INDEX:
		return send_asset(w, c, "/index.html", 200);
	case R_LOGOUT: {
		char cookie[128];
		const char *cookies = header(c, MHD_HTTP_HEADER_COOKIE);
		char token[WEB_TOKEN_HEX + 2];

		if (s && cookies && web_cookie(cookies, WEB_COOKIE, token, sizeof token) == 1)
			web_session_end(&w->sessions, token);
		snprintf(cookie, sizeof cookie, "%s=; Path=/; HttpOnly; SameSite=Strict; "
			 "Max-Age=0%s", WEB_COOKIE, w->https ? "; Secure" : "");
		return send_redirect(w, c, "/login", cookie);
	}
	case R_SESSION:
		return do_session(w, c, s);
	case R_STATUS:
		return ask_core(w, rq, WEB_ASK_STATUS);
	case R_DEVICE:
		return ask_core(w, rq, WEB_ASK_DEVICE);
	case R_ALERTS:
		return ask_core(w, rq, WEB_ASK_ALERTS);
	case R_PROBE:
		if (!rq->body ||
		    web_probe_parse(rq->body, rq->blen, &rq->probe, msg, sizeof msg) != 0)
			return send_error(w, c, 400, "bad_request", rq->body ? msg : "no body: the "
					  "probe's JSON", 0);
		return ask_core(w, rq, WEB_ASK_PROBE);
	default:
		return send_error(w, c, 404, "not_found", "no such page", 0);
	}
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct web *w = cls;
	struct web_req *rq = *con_cls;

	(void)version;
	if (!rq) {
		/* the headers are in; a body may follow */
		const char *cl = header(c, MHD_HTTP_HEADER_CONTENT_LENGTH);

		rq = calloc(1, sizeof *rq);
		if (!rq)
			return MHD_NO;
		rq->w = w;
		rq->conn = c;
		*con_cls = rq;
		/* a body said to be too large is refused before it is read */
		if (cl && strtoull(cl, NULL, 10) > WEB_BODY_MAX)
			return send_error(w, c, 413, "too_large", "a request body is at most 4096 "
					  "bytes", 0);
		return MHD_YES;
	}
	if (*upload_size) {
		if (rq->blen + *upload_size > WEB_BODY_MAX) {
			/* chunked, with no length said: not read on to its end */
			if (!header(c, MHD_HTTP_HEADER_CONTENT_LENGTH))
				return MHD_NO;
			rq->too_large = true;
		} else {
			char *nb = realloc(rq->body, rq->blen + *upload_size + 1);
			if (!nb)
				return MHD_NO;
			rq->body = nb;
			memcpy(rq->body + rq->blen, upload, *upload_size);
			rq->blen += *upload_size;
			rq->body[rq->blen] = '\0';
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (rq->queued)
		return finish(w, rq);
	return handle(w, rq, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode why)
{
	struct web_req *rq = *con_cls;

	(void)cls;
	(void)c;
	(void)why;
	if (!rq)
		return;
	if (rq->body) {
		explicit_bzero(rq->body, rq->blen); /* a login form's password */
		free(rq->body);
	}
	free(rq->text);
	free(rq);
	*con_cls = NULL;
}

static void on_log(void *cls, const char *fmt, va_list ap)
{
	struct web *w = cls;
	char line[256];
	size_t n;

	vsnprintf(line, sizeof line, fmt, ap);
	n = strlen(line);
	while (n > 0 && line[n - 1] == '\n')
		line[--n] = '\0';
	if (w->starting && pthread_equal(pthread_self(), w->starter))
		snprintf(w->start_err, sizeof w->start_err, "%s", line);
	else
		log_warnx("web: %s", line);
}

int web_http_start(struct web *w, char *err, size_t errlen)
{
	struct sockaddr_storage ss = { 0 };
	struct MHD_OptionItem tls[] = {
		{ MHD_OPTION_HTTPS_MEM_KEY, 0, w->tls_key },
		{ MHD_OPTION_HTTPS_MEM_CERT, 0, w->tls_cert },
		{ MHD_OPTION_END, 0, NULL },
	};
	unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;

	if (MHD_is_feature_supported(MHD_FEATURE_EPOLL) != MHD_YES) {
		snprintf(err, errlen, "libmicrohttpd was built without epoll, and its select() "
			 "cannot serve descriptors past 1023");
		return -1;
	}
	if (w->https && !web_http_tls()) {
		snprintf(err, errlen, "libmicrohttpd was built without TLS: no HTTPS");
		return -1;
	}
	if (w->addr.family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(w->addr.port);
		memcpy(&a->sin6_addr, w->addr.addr, 16);
		/* [::] takes IPv4 too */
		flags |= w->addr.any ? MHD_USE_DUAL_STACK : MHD_USE_IPv6;
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons(w->addr.port);
		memcpy(&a->sin_addr, w->addr.addr, 4);
	}
	if (w->https)
		flags |= MHD_USE_TLS;
	w->starter = pthread_self();
	w->start_err[0] = '\0';
	w->starting = true;
	w->mhd = MHD_start_daemon(flags, w->addr.port, NULL, NULL, on_request, w,
				  MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				  MHD_OPTION_CONNECTION_LIMIT, (unsigned)WEB_CONNECTIONS_MAX,
				  MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)WEB_CONNECTIONS_PER_IP,
				  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)WEB_IDLE_S,
				  MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)WEB_CONNECTION_MEMORY,
				  MHD_OPTION_NOTIFY_COMPLETED, on_completed, w,
				  MHD_OPTION_EXTERNAL_LOGGER, on_log, w,
				  MHD_OPTION_STRICT_FOR_CLIENT, (int)1,
				  MHD_OPTION_ARRAY, w->https ? tls : tls + 2,
				  MHD_OPTION_END);
	w->starting = false;
	if (!w->mhd) {
		snprintf(err, errlen, "cannot serve the page at %s: %s", w->listen,
			 w->start_err[0] ? w->start_err : "libmicrohttpd would not start");
		return -1;
	}
	return 0;
}

void web_http_stop(struct web *w)
{
	if (!w->mhd)
		return;
	MHD_stop_daemon(w->mhd);
	w->mhd = NULL;
}
