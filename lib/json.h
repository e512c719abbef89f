/*
 * json: a growable buffer that writes JSON text. Strings are escaped per RFC 8259 and
 * invalid UTF-8 is replaced by U+FFFD, so the output is valid for any name; NaN and
 * infinities are written as null; integers are exact; doubles use the shortest text
 * that reads back to the same double.
 */
#ifndef SLUICE_JSON_H
#define SLUICE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "point.h"

struct jbuf {
	char *p;
	size_t len, cap;
	bool oom;   /* an allocation failed: the text is incomplete */
};

void jb_init(struct jbuf *b);
void jb_free(struct jbuf *b);
void jb_reset(struct jbuf *b);
void jb_raw(struct jbuf *b, const char *s, size_t n);
void jb_cstr(struct jbuf *b, const char *s);          /* raw, NUL-terminated */
void jb_str(struct jbuf *b, const char *s);           /* quoted and escaped; NULL: null */
void jb_strn(struct jbuf *b, const char *s, size_t n);
/* s[0..n) as it is, but valid UTF-8 (bad bytes become U+FFFD as in jb_strn): not quoted,
 * not escaped. For text that goes into another format (Sparkplug's strings). */
void jb_utf8(struct jbuf *b, const char *s, size_t n);
void jb_double(struct jbuf *b, double v);
/* A value that came from a float32 register: the shortest text that reads back to the
 * same float (16.958353, not the widened double's 16.95835304260254). */
void jb_float32(struct jbuf *b, double v);
/* One point's value as JSON: exact integers, float32 as float32, null for a failed point. */
void jb_point_value(struct jbuf *b, const struct point_def *p, const struct value *v);
void jb_i64(struct jbuf *b, int64_t v);
void jb_u64(struct jbuf *b, uint64_t v);
void jb_bool(struct jbuf *b, bool v);
/* "key": — with a leading comma when *first is false; sets *first = false. */
void jb_key(struct jbuf *b, const char *key, bool *first);
/* NUL-terminated text (empty string on oom). */
const char *jb_cstr_get(struct jbuf *b);

#endif
