/*
 * jread: reads a JSON document into a tree: for sluicectl, which reads back what the
 * daemon wrote (the status snapshot, outbox bodies, the control socket's replies), and
 * for the daemon's control socket, which reads requests (daemon/control.c). Numbers keep their text, so a
 * 64-bit integer is shown and re-emitted with all its digits.
 */
#ifndef SLUICE_JREAD_H
#define SLUICE_JREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json.h"

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jval {
	enum jtype type;
	bool b;             /* J_BOOL */
	double num;         /* J_NUM */
	char *str;          /* J_STR: the string (UTF-8, may hold NUL); J_NUM: its text */
	size_t len;         /* J_STR: bytes in str */
	size_t n;           /* J_ARR, J_OBJ: members */
	char **keys;        /* J_OBJ: member names */
	struct jval **items;
};

/*
 * Parse len bytes of text (one value, whitespace around it allowed). Returns the tree
 * (free with jread_free), or NULL with err saying what is wrong and at which byte
 * offset. Nesting deeper than 64 levels is refused.
 */
struct jval *jread_parse(const char *text, size_t len, char *err, size_t errlen);
void jread_free(struct jval *v);

/* The member named key of an object (the last one if repeated); NULL when v is not
 * an object or has no such member. */
const struct jval *jread_get(const struct jval *v, const char *key);
/* The member's string, or NULL when absent or not a string. */
const char *jread_str(const struct jval *v, const char *key);
/* The member's number as an integer (truncated), or def when absent or not a number. */
int64_t jread_i64(const struct jval *v, const char *key, int64_t def);
/* The member's boolean, or def. */
bool jread_bool(const struct jval *v, const char *key, bool def);

/* Write v back as JSON text (numbers as they were read). */
void jread_emit(struct jbuf *b, const struct jval *v);

#endif
