/*
 * csv: a strict reader of delimited text for `sluicectl replay` (and anything else that
 * takes recorded readings). RFC 4180 fields: separated by ',' or ';' (chosen from the
 * header line), optionally quoted with "" for a quote inside; CRLF or LF line ends; a
 * UTF-8 byte order mark before the header is skipped. Every row must have as many
 * fields as the header. Errors name the file and line (and the column when one is at
 * fault), so a bad row can be reported, skipped and counted.
 */
#ifndef SLUICE_CSV_H
#define SLUICE_CSV_H

#include <stddef.h>
#include <stdio.h>

#define CSV_LINE_MAX (16u << 20) /* a longer record is an error, not an allocation */

struct csv {
	FILE *f;
	char name[256];     /* for messages */
	char sep;           /* ',' or ';' */
	size_t line;        /* the line the current record began on, 1-based */
	size_t next_line;
	char **hdr;         /* header names */
	size_t nhdr;
	char *buf;          /* the current record's text, fields point into it */
	size_t cap;
	char **fld;
	size_t nfld, capf;
};

/* Read the header from f (not closed by csv_close). 0, or -1 with err ("NAME:LINE: ..."). */
int csv_open(struct csv *c, FILE *f, const char *name, char *err, size_t errlen);
/*
 * The next record: 1 (c->fld[0..c->nfld) hold its fields, valid until the next call),
 * 0 at the end, -1 for a bad record (err says where and why; the reader has moved past
 * it, so the caller may go on), -2 for an error reading the file or out of memory.
 */
int csv_next(struct csv *c, char *err, size_t errlen);
void csv_close(struct csv *c);

#endif
