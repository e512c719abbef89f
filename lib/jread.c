/*
 * jread: owns reading JSON text into values (sluicectl; the daemon's control socket).
 * Strict RFC 8259 (no comments, no trailing commas, no NaN), bounded nesting, every
 * allocation checked. It must never trust its input: a database may be damaged or
 * written by another version, a request on the control socket may be anything, and a
 * bad document is an error value, not a crash.
 */
#include "jread.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JREAD_DEPTH 64

struct jp {
	const char *s;
	size_t n, i;
	char *err;
	size_t errlen;
	bool failed;
};

static void jp_fail(struct jp *p, const char *what)
{
	if (!p->failed)
		snprintf(p->err, p->errlen, "%s at byte %zu", what, p->i);
	p->failed = true;
}

static void jp_ws(struct jp *p)
{
	while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' ||
			       p->s[p->i] == '\r'))
		p->i++;
}

static bool jp_lit(struct jp *p, const char *lit)
{
	size_t l = strlen(lit);

	if (p->n - p->i < l || memcmp(p->s + p->i, lit, l) != 0)
		return false;
	p->i += l;
	return true;
}

static int jp_hex4(struct jp *p, uint32_t *out)
{
	uint32_t v = 0;

	if (p->n - p->i < 4)
		return -1;
	for (int k = 0; k < 4; k++) {
		char c = p->s[p->i + (size_t)k];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (uint32_t)(c - 'A' + 10);
		else
			return -1;
	}
	p->i += 4;
	*out = v;
	return 0;
}

static size_t jp_utf8(uint32_t cp, char *o)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xC0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | cp >> 12);
		o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (char)(0xF0 | cp >> 18);
	o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
	o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
	o[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* At the opening quote. The decoded string is never longer than its source text. */
static char *jp_string(struct jp *p, size_t *lenp)
{
	size_t start = ++p->i, o = 0;
	char *out;

	while (p->i < p->n && p->s[p->i] != '"') {
		if (p->s[p->i] == '\\')
			p->i++;
		p->i++;
	}
	if (p->i >= p->n) {
		jp_fail(p, "unterminated string");
		return NULL;
	}
	out = malloc(p->i - start + 1);
	if (!out) {
		jp_fail(p, "out of memory");
		return NULL;
	}
	p->i = start;
	while (p->s[p->i] != '"') {
		unsigned char c = (unsigned char)p->s[p->i];
		uint32_t cp, lo;

		if (c < 0x20) {
			jp_fail(p, "control character in a string");
			goto fail;
		}
		if (c != '\\') {
			out[o++] = (char)c;
			p->i++;
			continue;
		}
		p->i++;
		switch (p->s[p->i++]) {
		case '"': out[o++] = '"'; break;
		case '\\': out[o++] = '\\'; break;
		case '/': out[o++] = '/'; break;
		case 'b': out[o++] = '\b'; break;
		case 'f': out[o++] = '\f'; break;
		case 'n': out[o++] = '\n'; break;
		case 'r': out[o++] = '\r'; break;
		case 't': out[o++] = '\t'; break;
		case 'u':
			if (jp_hex4(p, &cp) < 0) {
				jp_fail(p, "bad \\u escape");
				goto fail;
			}
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				size_t at = p->i;
				if (jp_lit(p, "\\u") && jp_hex4(p, &lo) == 0 && lo >= 0xDC00 &&
				    lo <= 0xDFFF)
					cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
				else
					p->i = at;
			}
			if (cp >= 0xD800 && cp <= 0xDFFF)
				cp = 0xFFFD; /* a lone surrogate: keep the text valid UTF-8 */
			/* \uXXXX is 6 source bytes, at most 4 out (a pair: 12 for 4) */
			o += jp_utf8(cp, out + o);
			break;
		default:
			p->i--;
			jp_fail(p, "bad escape");
			goto fail;
		}
	}
	p->i++;
	out[o] = '\0';
	*lenp = o;
	return out;
fail:
	free(out);
	return NULL;
}

static bool jp_digits(struct jp *p)
{
	size_t s = p->i;

	while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
		p->i++;
	return p->i > s;
}

static int jp_number(struct jp *p, struct jval *v)
{
	size_t s = p->i;

	if (p->i < p->n && p->s[p->i] == '-')
		p->i++;
	if (p->i < p->n && p->s[p->i] == '0')
		p->i++;
	else if (!jp_digits(p))
		goto bad;
	if (p->i < p->n && p->s[p->i] == '.') {
		p->i++;
		if (!jp_digits(p))
			goto bad;
	}
	if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
		p->i++;
		if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-'))
			p->i++;
		if (!jp_digits(p))
			goto bad;
	}
	v->type = J_NUM;
	v->len = p->i - s;
	v->str = strndup(p->s + s, v->len);
	if (!v->str) {
		jp_fail(p, "out of memory");
		return -1;
	}
	v->num = strtod(v->str, NULL);
	return 0;
bad:
	jp_fail(p, "bad number");
	return -1;
}

static struct jval *jp_value(struct jp *p, int depth);

static int jp_push(struct jp *p, struct jval *v, size_t *cap, char *key, struct jval *item)
{
	if (v->n == *cap) {
		size_t nc = *cap ? *cap * 2 : 4;
		struct jval **ni = realloc(v->items, nc * sizeof *ni);
		if (!ni)
			goto oom;
		v->items = ni;
		if (v->type == J_OBJ) {
			char **nk = realloc(v->keys, nc * sizeof *nk);
			if (!nk)
				goto oom;
			v->keys = nk;
		}
		*cap = nc;
	}
	if (v->type == J_OBJ)
		v->keys[v->n] = key;
	v->items[v->n++] = item;
	return 0;
oom:
	jp_fail(p, "out of memory");
	free(key);
	jread_free(item);
	return -1;
}

static int jp_container(struct jp *p, struct jval *v, int depth)
{
	char close = v->type == J_OBJ ? '}' : ']';
	size_t cap = 0;

	p->i++;
	jp_ws(p);
	if (p->i < p->n && p->s[p->i] == close) {
		p->i++;
		return 0;
	}
	for (;;) {
		char *key = NULL;
		struct jval *item;
		size_t klen;

		jp_ws(p);
		if (v->type == J_OBJ) {
			if (p->i >= p->n || p->s[p->i] != '"') {
				jp_fail(p, "expected a member name");
				return -1;
			}
			if (!(key = jp_string(p, &klen)))
				return -1;
			jp_ws(p);
			if (p->i >= p->n || p->s[p->i] != ':') {
				free(key);
				jp_fail(p, "expected ':'");
				return -1;
			}
			p->i++;
		}
		if (!(item = jp_value(p, depth + 1))) {
			free(key);
			return -1;
		}
		if (jp_push(p, v, &cap, key, item) < 0)
			return -1;
		jp_ws(p);
		if (p->i < p->n && p->s[p->i] == ',') {
			p->i++;
			continue;
		}
		if (p->i < p->n && p->s[p->i] == close) {
			p->i++;
			return 0;
		}
		jp_fail(p, v->type == J_OBJ ? "expected ',' or '}'" : "expected ',' or ']'");
		return -1;
	}
}

static struct jval *jp_value(struct jp *p, int depth)
{
	struct jval *v;
	int rc = 0;

	if (depth > JREAD_DEPTH) {
		jp_fail(p, "nested too deeply");
		return NULL;
	}
	jp_ws(p);
	if (p->i >= p->n) {
		jp_fail(p, "unexpected end");
		return NULL;
	}
	v = calloc(1, sizeof *v);
	if (!v) {
		jp_fail(p, "out of memory");
		return NULL;
	}
	switch (p->s[p->i]) {
	case '{':
		v->type = J_OBJ;
		rc = jp_container(p, v, depth);
		break;
	case '[':
		v->type = J_ARR;
		rc = jp_container(p, v, depth);
		break;
	case '"':
		v->type = J_STR;
		v->str = jp_string(p, &v->len);
		rc = v->str ? 0 : -1;
		break;
	case 't':
	case 'f':
	case 'n':
		if (jp_lit(p, "true")) {
			v->type = J_BOOL, v->b = true;
		} else if (jp_lit(p, "false")) {
			v->type = J_BOOL;
		} else if (jp_lit(p, "null")) {
			v->type = J_NULL;
		} else {
			jp_fail(p, "unexpected character");
			rc = -1;
		}
		break;
	default:
		rc = jp_number(p, v);
		break;
	}
	if (rc < 0) {
		jread_free(v);
		return NULL;
	}
	return v;
}

struct jval *jread_parse(const char *text, size_t len, char *err, size_t errlen)
{
	struct jp p = { .s = text, .n = len, .err = err, .errlen = errlen };
	struct jval *v;

	if (errlen)
		err[0] = '\0';
	v = jp_value(&p, 0);
	if (!v)
		return NULL;
	jp_ws(&p);
	if (p.i != p.n) {
		jp_fail(&p, "text after the value");
		jread_free(v);
		return NULL;
	}
	return v;
}

void jread_free(struct jval *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->n; i++) {
		if (v->keys)
			free(v->keys[i]);
		jread_free(v->items[i]);
	}
	free(v->keys);
	free(v->items);
	free(v->str);
	free(v);
}

const struct jval *jread_get(const struct jval *v, const char *key)
{
	if (!v || v->type != J_OBJ)
		return NULL;
	for (size_t i = v->n; i-- > 0;)
		if (strcmp(v->keys[i], key) == 0)
			return v->items[i];
	return NULL;
}

const char *jread_str(const struct jval *v, const char *key)
{
	const struct jval *m = jread_get(v, key);
	return m && m->type == J_STR ? m->str : NULL;
}

int64_t jread_i64(const struct jval *v, const char *key, int64_t def)
{
	const struct jval *m = jread_get(v, key);

	if (!m || m->type != J_NUM)
		return def;
	/* strtoll keeps integers past 2^53 exact; a fraction or exponent goes through
	 * the double */
	if (!strpbrk(m->str, ".eE"))
		return strtoll(m->str, NULL, 10);
	if (!(m->num > -9.2e18 && m->num < 9.2e18))
		return def;
	return (int64_t)m->num;
}

bool jread_bool(const struct jval *v, const char *key, bool def)
{
	const struct jval *m = jread_get(v, key);
	return m && m->type == J_BOOL ? m->b : def;
}

void jread_emit(struct jbuf *b, const struct jval *v)
{
	switch (v->type) {
	case J_NULL:
		jb_cstr(b, "null");
		break;
	case J_BOOL:
		jb_bool(b, v->b);
		break;
	case J_NUM:
		jb_cstr(b, v->str);
		break;
	case J_STR:
		jb_strn(b, v->str, v->len);
		break;
	case J_ARR:
	case J_OBJ:
		jb_cstr(b, v->type == J_OBJ ? "{" : "[");
		for (size_t i = 0; i < v->n; i++) {
			if (i)
				jb_cstr(b, ",");
			if (v->type == J_OBJ) {
				jb_str(b, v->keys[i]);
				jb_cstr(b, ":");
			}
			jread_emit(b, v->items[i]);
		}
		jb_cstr(b, v->type == J_OBJ ? "}" : "]");
		break;
	}
}
