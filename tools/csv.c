/*
 * csv: the strict delimited-text reader (see csv.h). It parses outside input, so it
 * never trusts a length, never reads past what it was given, and bounds every record
 * (CSV_LINE_MAX). It owns only its buffers; it never closes the FILE it was given.
 */
#include "csv.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static int push_field(struct csv *c, char *s)
{
	if (c->nfld == c->capf) {
		size_t nc = c->capf ? c->capf * 2 : 16;
		char **nf = realloc(c->fld, nc * sizeof *nf);
		if (!nf)
			return -1;
		c->fld = nf;
		c->capf = nc;
	}
	c->fld[c->nfld++] = s;
	return 0;
}

/*
 * Read one record (which may span lines inside quotes) into c->buf, splitting fields
 * in place: 1, 0 at EOF, -1 bad (err set, the rest of the record consumed), -2 fatal.
 */
static int read_record(struct csv *c, char *err, size_t errlen)
{
	size_t len = 0, fstart = 0;
	bool quoted = false, was_quoted = false, after_quote = false, any = false;
	const char *bad = NULL;
	int ch;

	c->nfld = 0;
	c->line = c->next_line;
	for (;;) {
		ch = getc(c->f);
		if (ch == EOF) {
			if (ferror(c->f)) {
				snprintf(err, errlen, "%s:%zu: %s", c->name, c->line, strerror(errno));
				return -2;
			}
			if (!any)
				return 0;
			if (quoted && !bad)
				bad = "a quoted field is not closed before the end of the file";
			break;
		}
		any = true;
		if (len + 2 > c->cap) {
			size_t nc = c->cap ? c->cap * 2 : 4096;
			char *nb;
			if (nc > CSV_LINE_MAX) {
				if (!bad)
					bad = "the record is too long";
				len = fstart = 0; /* keep reading to its end, keep nothing */
				continue;
			}
			if (!(nb = realloc(c->buf, nc))) {
				snprintf(err, errlen, "%s:%zu: out of memory", c->name, c->line);
				return -2;
			}
			c->buf = nb;
			c->cap = nc;
		}
		if (quoted) {
			if (ch == '"') {
				int n = getc(c->f);
				if (n == '"') {
					c->buf[len++] = '"';
					continue;
				}
				if (n != EOF)
					ungetc(n, c->f);
				quoted = false;
				after_quote = true;
				continue;
			}
			if (ch == '\n')
				c->next_line++;
			c->buf[len++] = (char)ch;
			continue;
		}
		if (ch == '\n') {
			c->next_line++;
			break;
		}
		if (ch == '\r') {
			int n = getc(c->f);
			if (n != '\n' && n != EOF)
				ungetc(n, c->f);
			c->next_line++;
			break;
		}
		if (ch == c->sep) {
			c->buf[len++] = '\0';
			fstart = len;
			was_quoted = after_quote = false;
			continue;
		}
		if (ch == '"' && len == fstart && !was_quoted) {
			quoted = was_quoted = true;
			continue;
		}
		if ((after_quote || ch == '"') && !bad)
			bad = after_quote ? "text after the closing quote of a field"
					  : "a quote inside an unquoted field";
		c->buf[len++] = (char)ch;
	}
	c->buf[len] = '\0';
	if (bad) {
		snprintf(err, errlen, "%s:%zu: %s", c->name, c->line, bad);
		return -1;
	}
	/* split: the NULs written at each separator end the fields */
	for (size_t i = 0; i <= len;) {
		if (push_field(c, c->buf + i) < 0) {
			snprintf(err, errlen, "%s:%zu: out of memory", c->name, c->line);
			return -2;
		}
		i += strlen(c->buf + i) + 1;
		if (i > len)
			break;
	}
	return 1;
}

int csv_open(struct csv *c, FILE *f, const char *name, char *err, size_t errlen)
{
	int ch, r;

	memset(c, 0, sizeof *c);
	c->f = f;
	c->next_line = 1;
	snprintf(c->name, sizeof c->name, "%s", name);
	/* a byte order mark, then the separator: the first ',' or ';' outside quotes */
	if ((ch = getc(f)) == 0xEF) {
		if (getc(f) != 0xBB || getc(f) != 0xBF) {
			snprintf(err, errlen, "%s:1: not UTF-8 text", name);
			return -1;
		}
	} else if (ch != EOF) {
		ungetc(ch, f);
	}
	c->sep = ',';
	{
		long pos = ftell(f);
		bool q = false;
		if (pos >= 0) {
			while ((ch = getc(f)) != EOF && (q || (ch != '\n' && ch != '\r'))) {
				if (ch == '"')
					q = !q;
				else if (!q && (ch == ',' || ch == ';')) {
					c->sep = (char)ch;
					break;
				}
			}
			fseek(f, pos, SEEK_SET);
		}
	}
	r = read_record(c, err, errlen);
	if (r == 0)
		snprintf(err, errlen, "%s: empty file (expected a header line)", name);
	if (r <= 0) {
		csv_close(c);
		return -1;
	}
	if (!(c->hdr = calloc(c->nfld, sizeof *c->hdr))) {
		snprintf(err, errlen, "%s: out of memory", name);
		csv_close(c);
		return -1;
	}
	c->nhdr = c->nfld;
	for (size_t i = 0; i < c->nfld; i++) {
		if (!(c->hdr[i] = strdup(c->fld[i]))) {
			snprintf(err, errlen, "%s: out of memory", name);
			csv_close(c);
			return -1;
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(c->hdr[j], c->hdr[i]) == 0) {
				snprintf(err, errlen, "%s:1: column '%s' appears twice (columns %zu "
					 "and %zu)", name, c->hdr[i], j + 1, i + 1);
				csv_close(c);
				return -1;
			}
	}
	return 0;
}

int csv_next(struct csv *c, char *err, size_t errlen)
{
	int r;

	do
		r = read_record(c, err, errlen);
	while (r == 1 && c->nfld == 1 && c->fld[0][0] == '\0'); /* blank lines */
	if (r == 1 && c->nfld != c->nhdr) {
		snprintf(err, errlen, "%s:%zu: %zu fields, the header has %zu", c->name, c->line,
			 c->nfld, c->nhdr);
		return -1;
	}
	return r;
}

void csv_close(struct csv *c)
{
	for (size_t i = 0; i < c->nhdr; i++)
		free(c->hdr[i]);
	free(c->hdr);
	free(c->buf);
	free(c->fld);
	c->hdr = NULL;
	c->buf = NULL;
	c->fld = NULL;
	c->nhdr = c->nfld = c->cap = c->capf = 0;
}
