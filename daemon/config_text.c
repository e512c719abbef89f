/*
 * config_text: a file's text before and beside libyaml's reading of it. Owns what is
 * found in the bytes themselves: the slips of a Chinese input method in place of YAML's
 * punctuation (text_slips), the nesting depth, checked on libyaml's events before its
 * composer runs (text_depth), and the messages for libyaml's syntax errors, in plain
 * words where the text shows what went wrong (text_syntax_error).
 *
 * It must never: know a section or a key of the config, or keep state between calls.
 * Positions are lines and columns as libyaml counts them: a column is a character, not
 * a byte.
 */
#include "config_int.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libyaml's reader reports a byte offset, not a mark: count lines and characters. */
static void offset_position(const unsigned char *buf, size_t len, size_t off, int *line, int *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off && i < len; i++) {
		if (buf[i] == '\n') {
			(*line)++;
			*col = 1;
		} else if ((buf[i] & 0xc0) != 0x80) {
			(*col)++;
		}
	}
}

#define UTF8_BOM "\xef\xbb\xbf"

/*
 * The byte a libyaml mark is at. A mark's index counts characters, not bytes (CR LF
 * counts two, a byte order mark none: the reader drops it), so in a file with Chinese
 * text it is not an offset into buf.
 */
static size_t mark_byte(const unsigned char *buf, size_t len, size_t index)
{
	size_t i = len >= 3 && memcmp(buf, UTF8_BOM, 3) == 0 ? 3 : 0;

	for (; i < len && index > 0; index--)
		for (i++; i < len && (buf[i] & 0xc0) == 0x80; i++)
			;
	return i;
}

static bool key_char(unsigned char c)
{
	return isalnum(c) || c == '_' || c == '-';
}

/*
 * "name: 一号泵站: 进水口": libyaml says "mapping values are not allowed in this context"
 * at the second ': '. When the line it points at is key: value with a ': ' in the
 * value, say that and show the value quoted. NULL when the line is not that.
 */
static const char *colon_in_value(struct loader *loader, const unsigned char *buf, size_t len,
				  size_t at)
{
	size_t bol = at, eol = at, k, colon;
	char *quoted;
	const char *text;
	size_t n = 0, vlen;

	while (bol > 0 && buf[bol - 1] != '\n')
		bol--;
	while (eol < len && buf[eol] != '\n' && buf[eol] != '\r')
		eol++;
	k = bol;
	while (k < eol && (buf[k] == ' ' || buf[k] == '-'))
		k++;
	for (colon = k; colon < eol && key_char(buf[colon]); colon++)
		;
	if (colon == k || colon + 1 >= at || buf[colon] != ':' || buf[colon + 1] != ' ')
		return NULL;
	/* the value: from after ': ' to the end of the line, less a comment and spaces */
	size_t v = colon + 2, vend = eol;
	while (v < vend && buf[v] == ' ')
		v++;
	for (size_t i = v; i + 1 < vend; i++)
		if (buf[i] == ' ' && buf[i + 1] == '#') {
			vend = i;
			break;
		}
	while (vend > v && buf[vend - 1] == ' ')
		vend--;
	if (v >= vend || buf[v] == '"' || buf[v] == '\'')
		return NULL;
	vlen = vend - v;
	if (!(quoted = malloc(2 * vlen + 1))) {
		loader->oom = true;
		return NULL;
	}
	for (size_t i = v; i < vend; i++) {
		if (buf[i] == '"' || buf[i] == '\\')
			quoted[n++] = '\\';
		quoted[n++] = (char)buf[i];
	}
	quoted[n] = '\0';
	text = loader_text(loader, "a ': ' inside the value of '%.*s' reads as the start of "
			   "another key: quote the value (%.*s: \"%s\")", (int)(colon - k),
			   (const char *)buf + k, (int)(colon - k), (const char *)buf + k,
			   loader_quote(loader, quoted));
	free(quoted);
	return text;
}

void text_syntax_error(struct loader *loader, struct document *doc, const yaml_parser_t *parser,
		       const unsigned char *buf, size_t len)
{
	const char *problem = parser->problem ? parser->problem : "cannot be parsed";
	const char *hint = "", *plain;
	size_t at;
	int line, col;

	if (parser->error == YAML_MEMORY_ERROR) {
		loader->oom = true;
		return;
	}
	if (parser->error == YAML_READER_ERROR) {
		offset_position(buf, len, parser->problem_offset, &line, &col);
		loader_emit(loader, true, doc->file_index, line, col,
			    "YAML syntax error: %s (the file must be UTF-8 text)", problem);
		return;
	}
	line = (int)parser->problem_mark.line + 1;
	col = (int)parser->problem_mark.column + 1;
	at = mark_byte(buf, len, parser->problem_mark.index);
	if (strcmp(problem, "mapping values are not allowed in this context") == 0 &&
	    at < len && buf[at] == ':' && (plain = colon_in_value(loader, buf, len, at))) {
		loader_emit(loader, true, doc->file_index, line, col, "%s", plain);
		return;
	}
	if (at < len && buf[at] == '\t')
		hint = "; YAML does not allow tabs for indentation: use spaces";
	if (parser->context)
		loader_emit(loader, true, doc->file_index, line, col,
			    "YAML syntax error: %s (%s at line %d column %d)%s", problem,
			    parser->context, (int)parser->context_mark.line + 1,
			    (int)parser->context_mark.column + 1, hint);
	else
		loader_emit(loader, true, doc->file_index, line, col, "YAML syntax error: %s%s",
			    problem, hint);
}

/* ---- what a Chinese input method puts in place of YAML's punctuation -------------------- */

/*
 * With a Chinese input method on, the colon after a key comes out full width (U+FF1A
 * '：'), the space after it or in the indentation as an ideographic space (U+3000), a
 * comma in { } full width (U+FF0C '，'). YAML takes none of them for syntax: libyaml
 * reads the key and its value as one piece of text and complains a line later, about
 * something else. This scan finds them where they are, before libyaml reads the file.
 *
 * Only places where YAML syntax must be are looked at — after a key (an ASCII word at
 * the start of a line, after '- ', or after '{' or ',' inside { } or [ ]), and the
 * indentation — never text in quotes, in comments or in block scalars (| and >): a
 * full-width colon inside a Chinese name is the name's own.
 */
#define FW_COLON "\xef\xbc\x9a"
#define FW_COMMA "\xef\xbc\x8c"
#define FW_SPACE "\xe3\x80\x80"
#define SLIPS_MAX 20 /* reported one by one; then one message says how many more */

struct slips {
	struct loader *loader;
	size_t file_index;
	const unsigned char *bol, *eol; /* the current line */
	int line;
	size_t found;
};

static bool has(const unsigned char *p, const unsigned char *end, const char *s)
{
	size_t n = strlen(s);

	return (size_t)(end - p) >= n && memcmp(p, s, n) == 0;
}

static void slip(struct slips *sl, const unsigned char *at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void slip(struct slips *sl, const unsigned char *at, const char *fmt, ...)
{
	char *text;
	int col = 1;
	va_list ap;

	if (sl->found++ >= SLIPS_MAX)
		return;
	for (const unsigned char *q = sl->bol; q < at; q++)
		col += (*q & 0xc0) != 0x80;
	va_start(ap, fmt);
	if (vasprintf(&text, fmt, ap) < 0)
		text = NULL;
	va_end(ap);
	if (!text) {
		sl->loader->oom = true;
		return;
	}
	loader_emit(sl->loader, true, sl->file_index, sl->line, col, "%s", text);
	free(text);
}

/* A key at s: its word, then what follows it. Returns where the scan goes on. */
static const unsigned char *slip_key(struct slips *sl, const unsigned char *s, bool *tokstart)
{
	const unsigned char *k = s, *after;
	int klen;

	while (s < sl->eol && key_char(*s))
		s++;
	klen = (int)(s - k);
	after = s;
	while (after < sl->eol && *after == ' ')
		after++;
	if (has(after, sl->eol, FW_COLON)) {
		slip(sl, after, "full-width colon '：' after '%.*s': YAML needs an ASCII ':' and a "
		     "space (%.*s: ...); switch the input method to English punctuation", klen,
		     (const char *)k, klen, (const char *)k);
		*tokstart = true;
		return after + 3;
	}
	if (after < sl->eol && *after == ':' && has(after + 1, sl->eol, FW_SPACE)) {
		slip(sl, after + 1, "full-width space (U+3000) after '%.*s:': YAML needs an ASCII "
		     "space after the colon", klen, (const char *)k);
		*tokstart = true;
		return after + 4;
	}
	if (after < sl->eol && *after == ':' &&
	    (after + 1 == sl->eol || after[1] == ' ' || after[1] == '\r')) {
		*tokstart = true; /* the value begins */
		return after + 1;
	}
	*tokstart = false;
	return s;
}

/*
 * One line. *quote: inside a quoted scalar that goes on to the next line; *flow: the
 * depth of { } and [ ]; *block: the indentation of the line that began a block scalar,
 * or -1.
 */
static void slip_line(struct slips *sl, char *quote, int *flow, int *block)
{
	const unsigned char *s = sl->bol;
	bool keypos = !*quote, tokstart = !*quote, indent = !*quote, told = false;
	int spaces = 0;

	while (s + spaces < sl->eol && s[spaces] == ' ')
		spaces++;
	if (*block >= 0) {
		if (s + spaces == sl->eol || s[spaces] == '\r' || spaces > *block)
			return;
		*block = -1;
	}
	while (s < sl->eol) {
		if (*quote) {
			if (*quote == '"' && *s == '\\' && s + 1 < sl->eol)
				s++;
			else if (*s == (unsigned char)*quote && *quote == '\'' && s + 1 < sl->eol &&
				 s[1] == '\'')
				s++;
			else if (*s == (unsigned char)*quote)
				*quote = 0;
			s++;
			continue;
		}
		if (*s == ' ' || *s == '\t' || *s == '\r') {
			s++;
			continue;
		}
		if (has(s, sl->eol, FW_SPACE)) {
			if (indent && !told)
				slip(sl, s, "full-width space (U+3000) in the indentation: indent with "
				     "ASCII spaces");
			told |= indent;
			s += 3;
			continue;
		}
		indent = false;
		if (*s == '#' && (s == sl->bol || s[-1] == ' ' || s[-1] == '\t'))
			return;
		if (tokstart && *s == '-' && (s + 1 == sl->eol || s[1] == ' ')) {
			s++;
			keypos = true;
			continue;
		}
		if (tokstart && (*s == '"' || *s == '\'')) {
			*quote = (char)*s++;
			keypos = tokstart = false;
			continue;
		}
		if (tokstart && !keypos && !*flow && (*s == '|' || *s == '>')) {
			const unsigned char *r = s + 1;
			while (r < sl->eol && (isdigit(*r) || *r == '+' || *r == '-'))
				r++;
			while (r < sl->eol && (*r == ' ' || *r == '\r'))
				r++;
			if (r == sl->eol || *r == '#') {
				*block = spaces;
				return;
			}
		}
		if (*s == '{' || *s == '[') {
			++*flow;
			s++;
			keypos = tokstart = true;
			continue;
		}
		if (*flow && (*s == '}' || *s == ']')) {
			--*flow;
			s++;
			keypos = tokstart = false;
			continue;
		}
		if (*flow && *s == ',') {
			s++;
			keypos = tokstart = true;
			continue;
		}
		if (*flow && has(s, sl->eol, FW_COMMA)) {
			const unsigned char *r = s + 3;
			while (r < sl->eol && *r == ' ')
				r++;
			if (r < sl->eol && key_char(*r)) {
				const unsigned char *w = r;
				while (w < sl->eol && key_char(*w))
					w++;
				if (w < sl->eol && (*w == ':' || has(w, sl->eol, FW_COLON))) {
					slip(sl, s, "full-width comma '，' between the items of { }: YAML "
					     "needs an ASCII ','");
					s += 3;
					keypos = tokstart = true;
					continue;
				}
			}
		}
		if (keypos && key_char(*s)) {
			s = slip_key(sl, s, &tokstart);
			keypos = false;
			continue;
		}
		keypos = tokstart = false;
		s++;
	}
}

size_t text_slips(struct loader *loader, size_t file_index, const unsigned char *buf, size_t len)
{
	struct slips sl = { .loader = loader, .file_index = file_index };
	const unsigned char *p = buf, *end = buf + len;
	char quote = 0;
	int flow = 0, block = -1;

	if (has(p, end, UTF8_BOM))
		p += 3;
	for (sl.line = 1; p < end; sl.line++) {
		const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
		sl.bol = p;
		sl.eol = nl ? nl : end;
		slip_line(&sl, &quote, &flow, &block);
		p = nl ? nl + 1 : end;
	}
	if (sl.found > SLIPS_MAX)
		loader_emit(loader, true, file_index, 0, 0, "%zu more full-width characters in "
			    "place of YAML punctuation after the %d above", sl.found - SLIPS_MAX,
			    SLIPS_MAX);
	return sl.found;
}

/*
 * Refuse lists and mappings nested deeper than DEPTH_MAX, reading libyaml's events:
 * the scan stops at the first level too deep, so its own cost stays bounded, and the
 * composer (whose cost is what grows) never sees such a file. 0: not too deep, or a
 * syntax error the composer will report; -1: reported.
 */
int text_depth(struct loader *loader, size_t file_index, const unsigned char *buf, size_t len)
{
	yaml_parser_t parser;
	yaml_event_t event;
	int depth = 0, rc = 0;

	if (!yaml_parser_initialize(&parser)) {
		loader->oom = true;
		return -1;
	}
	yaml_parser_set_input_string(&parser, buf, len);
	while (yaml_parser_parse(&parser, &event)) {
		yaml_event_type_t type = event.type;
		if (type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT) {
			if (++depth > DEPTH_MAX) {
				loader_emit(loader, true, file_index, (int)event.start_mark.line + 1,
					    (int)event.start_mark.column + 1, "lists and mappings are "
					    "nested more than %d deep here: a configuration needs fewer "
					    "than ten levels (look for an unclosed '[' or '{')", DEPTH_MAX);
				rc = -1;
			}
		} else if (type == YAML_SEQUENCE_END_EVENT || type == YAML_MAPPING_END_EVENT) {
			depth--;
		}
		yaml_event_delete(&event);
		if (rc < 0 || type == YAML_STREAM_END_EVENT)
			break;
	}
	if (parser.error == YAML_MEMORY_ERROR) {
		loader->oom = true;
		rc = -1;
	}
	yaml_parser_delete(&parser);
	return rc;
}
