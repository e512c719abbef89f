/*
 * config_loader: the machinery every part of the config module reads with (its
 * interface and the way a file is read are described in config_int.h). Owns a load's
 * state (struct loader) and its messages, the texts made for them, the documents composed
 * from libyaml's events and their nodes (a file's bytes are config_text.c's), the index
 * of a long mapping's keys, the walk of a mapping against a key table with its checks of
 * duplicate, unknown, missing and malformed keys, the ids of a list, the "did you mean"
 * suggestions and their budget, and the shape checks (a mapping, a list, a single value).
 *
 * It must never: know a section or a key of the config (config_sections.c and
 * config_rules.c own those), open a socket or a database, log, exit, or keep state
 * between loads. A message is never cut short, except a value shown in one
 * (scope_quote), which says so with "...".
 */
#include "config_int.h"
#include "typo.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the loader ------------------------------------------------------------------- */

void loader_init(struct loader *loader, struct config *cfg)
{
	memset(loader, 0, sizeof *loader);
	loader->cfg = cfg;
}

void loader_free(struct loader *loader)
{
	profiles_free(loader);
	for (size_t i = 0; i < loader->nprofile_dirs; i++)
		free(loader->profile_dirs[i]);
	free(loader->profile_dirs);
	free(loader->profile_notes);
	free(loader->devices_dir);
	free(loader->config_dir);
	free(loader->bus_id_locs);
	free(loader->device_id_locs);
	free(loader->rule_id_locs);
	free(loader->device_incomplete);
	free(loader->bus_ids.slot);
	free(loader->bus_lines.slot);
	free(loader->device_ids.slot);
	free(loader->rule_ids.slot);
	free(loader->messages);
	loader_texts_release(loader, 0);
	free(loader->texts);
}

void *loader_calloc(struct loader *loader, size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		loader->oom = true;
	return p;
}

char *loader_strdup(struct loader *loader, const char *s)
{
	char *p = strdup(s);

	if (!p)
		loader->oom = true;
	return p;
}

void loader_set_string(struct loader *loader, char **dst, const char *s)
{
	free(*dst);
	*dst = loader_strdup(loader, s);
}

/* ---- texts for messages ------------------------------------------------------------ */

/* Take text (malloc'ed, may be NULL after a failed allocation) into the loader's texts. */
static const char *loader_keep_text(struct loader *loader, char *text)
{
	if (text && loader->ntexts == loader->text_cap) {
		size_t cap = loader->text_cap ? loader->text_cap * 2 : 64;
		char **texts = realloc(loader->texts, cap * sizeof *texts);
		if (!texts) {
			free(text);
			text = NULL;
		} else {
			loader->texts = texts;
			loader->text_cap = cap;
		}
	}
	if (!text) {
		loader->oom = true;
		return "";
	}
	loader->texts[loader->ntexts++] = text;
	return text;
}

const char *loader_text(struct loader *loader, const char *fmt, ...)
{
	char *text;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&text, fmt, ap) < 0)
		text = NULL;
	va_end(ap);
	return loader_keep_text(loader, text);
}

size_t loader_texts_mark(const struct loader *loader)
{
	return loader->ntexts;
}

void loader_texts_release(struct loader *loader, size_t mark)
{
	while (loader->ntexts > mark)
		free(loader->texts[--loader->ntexts]);
}

/* ---- messages ----------------------------------------------------------------------- */

static void loader_push_message(struct loader *loader, bool is_error, size_t file, int line,
				int col, char *text)
{
	if (is_error)
		loader->nerrors++;
	else
		loader->nwarnings++;
	if (!text) {
		loader->oom = true;
		return;
	}
	if (loader->nmessages == loader->message_cap) {
		size_t cap = loader->message_cap ? loader->message_cap * 2 : 16;
		struct message *messages = realloc(loader->messages, cap * sizeof *messages);
		if (!messages) {
			free(text);
			loader->oom = true;
			return;
		}
		loader->messages = messages;
		loader->message_cap = cap;
	}
	loader->messages[loader->nmessages] =
		(struct message){ text, is_error, file, line, col, loader->nmessages };
	loader->nmessages++;
}

/* "FILE:LINE:COL: [warning: ][WHERE: ]BODY", or "FILE: ..." without a position. */
static void loader_vemit(struct loader *loader, bool is_error, size_t file_index, int line,
			 int col, const char *where, const char *fmt, va_list ap)
{
	char *body = NULL, *text = NULL;
	/* no file (config_load_profile when nothing was found): the bare message */
	const char *file = file_index < loader->cfg->nfiles ? loader->cfg->files[file_index] : NULL;
	const char *sep = where && *where ? ": " : "";
	char pos[48] = ""; /* ":LINE:COL", two ints */

	if (vasprintf(&body, fmt, ap) < 0)
		body = NULL;
	if (line > 0)
		snprintf(pos, sizeof pos, ":%d:%d", line, col);
	if (body && asprintf(&text, "%s%s%s%s%s%s%s", file ? file : "", pos, file ? ": " : "",
			     is_error ? "" : "warning: ", where ? where : "", sep, body) < 0)
		text = NULL;
	free(body);
	loader_push_message(loader, is_error, file_index, line, col, text);
}

void loader_emit(struct loader *loader, bool is_error, size_t file_index, int line, int col,
		 const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	loader_vemit(loader, is_error, file_index, line, col, NULL, fmt, ap);
	va_end(ap);
}

static size_t loader_file_index(struct loader *loader, const char *file)
{
	for (size_t i = 0; i < loader->cfg->nfiles; i++)
		if (loader->cfg->files[i] == file)
			return i;
	return SIZE_MAX;
}

static void scope_message(struct scope *scope, bool is_error, ynode_t *node, const char *fmt,
			  va_list ap)
{
	int line = node ? (int)node->line + 1 : 0;
	int col = node ? (int)node->column + 1 : 0;

	loader_vemit(scope->loader, is_error, scope->doc->file_index, line, col, scope->where, fmt,
		     ap);
}

void scope_error(struct scope *scope, ynode_t *node, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	scope_message(scope, true, node, fmt, ap);
	va_end(ap);
}

void scope_warn(struct scope *scope, ynode_t *node, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	scope_message(scope, false, node, fmt, ap);
	va_end(ap);
}

void scope_error_at(struct scope *scope, const struct src_loc *loc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	loader_vemit(scope->loader, true, loader_file_index(scope->loader, loc->file), loc->line,
		     loc->col, scope->where, fmt, ap);
	va_end(ap);
}

static int message_compare(const void *a, const void *b)
{
	const struct message *x = a, *y = b;

	if (x->file != y->file)
		return x->file < y->file ? -1 : 1;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	if (x->col != y->col)
		return x->col < y->col ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

void loader_finish(struct loader *loader, struct config_diag *diag)
{
	if (loader->oom)
		loader_emit(loader, true, 0, 0, 0, "out of memory while reading the configuration");
	if (loader->nmessages)
		qsort(loader->messages, loader->nmessages, sizeof *loader->messages,
		      message_compare);
	if (diag) {
		size_t n = loader->nmessages ? loader->nmessages : 1;
		diag->msgs = calloc(n, sizeof *diag->msgs);
		diag->is_error = calloc(n, sizeof *diag->is_error);
		diag->nerrors = loader->nerrors;
		diag->nwarnings = loader->nwarnings;
		if (diag->msgs && diag->is_error) {
			for (size_t i = 0; i < loader->nmessages; i++) {
				diag->msgs[i] = loader->messages[i].text;
				diag->is_error[i] = loader->messages[i].is_error;
				loader->messages[i].text = NULL;
			}
			diag->n = loader->nmessages;
		} else {
			free(diag->msgs);
			free(diag->is_error);
			diag->msgs = NULL;
			diag->is_error = NULL;
		}
	}
	for (size_t i = 0; i < loader->nmessages; i++)
		free(loader->messages[i].text);
	free(loader->messages);
	loader->messages = NULL;
	loader->nmessages = loader->message_cap = 0;
}

void config_diag_free(struct config_diag *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++)
		free(d->msgs[i]);
	free(d->msgs);
	free(d->is_error);
	memset(d, 0, sizeof *d);
}

/* ---- scopes ------------------------------------------------------------------------- */

void scope_top(struct scope *scope, struct loader *loader, struct document *doc)
{
	memset(scope, 0, sizeof *scope);
	scope->loader = loader;
	scope->doc = doc;
	scope->where = "";
	scope->prefix = "";
}

void scope_open(struct scope *scope, const struct scope *parent, const char *prefix,
		const char *where_fmt, ...)
{
	char *where;
	va_list ap;

	scope_top(scope, parent->loader, parent->doc);
	scope->prefix = prefix;
	va_start(ap, where_fmt);
	if (vasprintf(&where, where_fmt, ap) < 0)
		where = NULL;
	va_end(ap);
	scope->where = loader_keep_text(parent->loader, where);
}

void scope_nest(struct scope *scope, const struct scope *parent, const char *prefix)
{
	scope_top(scope, parent->loader, parent->doc);
	scope->where = parent->where;
	scope->prefix = prefix;
}

const char *scope_key(struct scope *scope, const char *name)
{
	return loader_text(scope->loader, "%s%s", scope->prefix ? scope->prefix : "", name);
}

const char *scope_quote(struct scope *scope, const char *value)
{
	return loader_quote(scope->loader, value);
}

const char *loader_quote(struct loader *loader, const char *value)
{
	char shown[QUOTE_MAX + sizeof "..."];
	const char *s = value;
	size_t n = 0;

	for (; *s && n < QUOTE_MAX; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch < 0x20 || ch == 0x7f) {
			if (n + 4 >= QUOTE_MAX)
				break;
			n += (size_t)snprintf(shown + n, 5, "\\x%02x", ch);
		} else {
			shown[n++] = (char)ch;
		}
	}
	if (*s) {
		/* *s is the first byte left out: never leave half a character */
		while (n > 0 && ((unsigned char)*s & 0xc0) == 0x80) {
			n--;
			s--;
		}
		memcpy(shown + n, "...", 4);
	} else {
		shown[n] = '\0';
	}
	return loader_text(loader, "%s", shown);
}

/* ---- list items --------------------------------------------------------------------- */

bool scope_open_item(struct scope *item, struct scope *root, ynode_t *map, const char *list,
		     size_t index)
{
	const char *id = document_peek_scalar(root->doc, map, "id");

	if (!scope_expect_map(root, map, loader_text(root->loader, "%s[%zu]", list, index)))
		return false;
	if (id)
		scope_open(item, root, "", "%s[%zu] (%s)", list, index, scope_quote(root, id));
	else
		scope_open(item, root, "", "%s[%zu]", list, index);
	return true;
}

void scope_unique_id(struct scope *item, ynode_t *value, const char *word, const char *id,
		     const void *items, size_t count, struct src_loc *id_locs, struct idset *set)
{
	long first;

	id_locs[count] = node_loc(item->doc, value);
	if ((first = idset_add(item->loader, set, items, count)) >= 0)
		scope_error(item, value, "duplicate %s id '%s' (first at line %d)", word,
			    scope_quote(item, id), id_locs[first].line);
}

/* ---- the ids of a list -------------------------------------------------------------- */

static uint64_t id_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325u; /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3u;
	return h;
}

/* The slot of name: where it is, or the empty slot where it would go. */
static size_t idset_slot(const struct idset *set, const void *items, const char *name)
{
	size_t mask = set->cap - 1, k = (size_t)id_hash(name) & mask;

	while (set->slot[k] && strcmp(set->name(items, set->slot[k] - 1), name) != 0)
		k = (k + 1) & mask;
	return k;
}

long idset_add(struct loader *loader, struct idset *set, const void *items, size_t index)
{
	const char *name = set->name(items, index);
	size_t k;

	if (2 * (set->n + 1) > set->cap) {
		/* half full at most: probes stay short */
		size_t cap = set->cap ? 2 * set->cap : 64, *old = set->slot, oldcap = set->cap;
		if (!(set->slot = calloc(cap, sizeof *set->slot))) {
			set->slot = old;
			loader->oom = true;
			return -1;
		}
		set->cap = cap;
		for (size_t i = 0; i < oldcap; i++)
			if (old[i])
				set->slot[idset_slot(set, items, set->name(items, old[i] - 1))] =
					old[i];
		free(old);
	}
	k = idset_slot(set, items, name);
	if (set->slot[k])
		return (long)(set->slot[k] - 1);
	set->slot[k] = index + 1;
	set->n++;
	return -1;
}

long idset_find(const struct idset *set, const void *items, const char *name)
{
	size_t k;

	if (!set->cap)
		return -1;
	k = idset_slot(set, items, name);
	return set->slot[k] ? (long)(set->slot[k] - 1) : -1;
}

/* ---- "did you mean" ----------------------------------------------------------------- */

/* The distance is lib/typo.c's; what is offered, and the budget, are the loader's. */

void suggest_init(struct suggestion *suggestion, struct loader *loader, const char *word)
{
	suggestion->loader = loader;
	suggestion->word = word;
	suggestion->best[0] = '\0';
	suggestion->distance = SIZE_MAX;
}

bool suggest_more(const struct suggestion *suggestion)
{
	return suggestion->loader->suggest_cells <= SUGGEST_CELLS_MAX;
}

void suggest_try(struct suggestion *suggestion, const char *candidate)
{
	size_t lw = strlen(suggestion->word), limit = lw <= 4 ? 1 : lw <= 10 ? 2 : 3;
	size_t distance, lc;

	if (!candidate || !*candidate || strcmp(candidate, suggestion->word) == 0 ||
	    (lc = strlen(candidate)) >= sizeof suggestion->best)
		return;
	/* the distance is at least the difference in length: not worth computing */
	if (!suggest_more(suggestion))
		return;
	suggestion->loader->suggest_cells++;
	if ((lc > lw ? lc - lw : lw - lc) > limit)
		return;
	suggestion->loader->suggest_cells += (uint64_t)(lw + 1) * (lc + 1);
	distance = typo_distance(suggestion->word, candidate);
	if (distance <= limit && distance < strlen(candidate) && distance < suggestion->distance) {
		suggestion->distance = distance;
		strcpy(suggestion->best, candidate);
	}
}

const char *suggest_text(struct scope *scope, const struct suggestion *suggestion,
			 const char *prefix)
{
	if (!suggestion->best[0])
		return "";
	return loader_text(scope->loader, " (did you mean '%s%s'?)", prefix ? prefix : "",
			   suggestion->best);
}

void suggest_dir(struct suggestion *suggestion, const char *dir, const char *suffix,
		 const char *prefix)
{
	DIR *dp = opendir(dir);
	struct dirent *e;
	char name[SUGGEST_WORD_MAX];

	if (!dp)
		return;
	while (suggest_more(suggestion) && (e = readdir(dp))) {
		size_t n = strlen(e->d_name), ls = suffix ? strlen(suffix) : 0;
		if (e->d_name[0] == '.' || n <= ls || n >= sizeof name)
			continue;
		if (suffix && strcmp(e->d_name + n - ls, suffix) != 0)
			continue;
		/* a name too long to compare is not offered */
		if (snprintf(name, sizeof name, "%s%.*s", prefix, (int)(n - ls), e->d_name) >=
		    (int)sizeof name)
			continue;
		suggest_try(suggestion, name);
	}
	closedir(dp);
}

/* ---- names -------------------------------------------------------------------------- */

const char *enum_name(const struct enumval *names, int val)
{
	for (; names->name; names++)
		if (names->val == val)
			return names->name;
	return NULL;
}

int enum_find(const struct enumval *names, const char *s, int *val)
{
	for (; names->name; names++)
		if (strcasecmp(names->name, s) == 0) {
			*val = names->val;
			return 0;
		}
	return -1;
}

const char *enum_list(struct scope *scope, const struct enumval *names)
{
	size_t len = 1, n = 0;
	char *list;

	for (const struct enumval *e = names; e->name; e++)
		len += strlen(e->name) + 2;
	if (!(list = malloc(len)))
		return loader_keep_text(scope->loader, NULL);
	list[0] = '\0';
	for (; names->name; names++)
		n += (size_t)snprintf(list + n, len - n, "%s%s", n ? ", " : "", names->name);
	return loader_keep_text(scope->loader, list);
}

/* ---- YAML documents ----------------------------------------------------------------- */

static size_t loader_add_file(struct loader *loader, const char *path)
{
	struct config *cfg = loader->cfg;
	char **files = realloc(cfg->files, (cfg->nfiles + 1) * sizeof *files);

	if (!files) {
		loader->oom = true;
		return SIZE_MAX;
	}
	cfg->files = files;
	if (!(files[cfg->nfiles] = loader_strdup(loader, path)))
		return SIZE_MAX;
	return cfg->nfiles++;
}

/* The whole of file path into *buf (malloc'ed, one byte to spare); -1 after saying why. */
static int read_file(struct loader *loader, const char *path, size_t file_index,
		     unsigned char **buf, size_t *len)
{
	struct stat st;
	/* O_NONBLOCK: a FIFO named like a config must not hang the open; for a regular file
	 * it changes nothing, and anything else is refused below */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	size_t n = 0;

	*buf = NULL;
	if (fd < 0) {
		loader_emit(loader, true, file_index, 0, 0, "cannot be opened for reading: %s",
			    strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		loader_emit(loader, true, file_index, 0, 0, "is not a regular file");
		close(fd);
		return -1;
	}
	if ((uint64_t)st.st_size > FILE_MAX) {
		loader_emit(loader, true, file_index, 0, 0, "is larger than %u MiB: not a "
			    "configuration file", FILE_MAX >> 20);
		close(fd);
		return -1;
	}
	if (!(*buf = malloc((size_t)st.st_size + 1))) {
		loader_emit(loader, true, file_index, 0, 0, "out of memory");
		close(fd);
		return -1;
	}
	for (;;) {
		ssize_t r = read(fd, *buf + n, (size_t)st.st_size - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			loader_emit(loader, true, file_index, 0, 0, "cannot be read: %s",
				    strerror(errno));
			free(*buf);
			*buf = NULL;
			close(fd);
			return -1;
		}
		if (r == 0 || (n += (size_t)r) == (size_t)st.st_size)
			break;
	}
	close(fd);
	*len = n;
	return 0;
}

/* Order pairs by key (scalars by their bytes, the rest after them), then by position. */
static int key_order(const void *a, const void *b, void *ctx)
{
	const struct document *doc = ctx;
	const ynode_pair_t *pa = *(const ynode_pair_t *const *)a;
	const ynode_pair_t *pb = *(const ynode_pair_t *const *)b;
	const ynode_t *ka = document_node(doc, pa->key);
	const ynode_t *kb = document_node(doc, pb->key);
	bool sa = ka && ka->type == YAML_SCALAR_NODE, sb = kb && kb->type == YAML_SCALAR_NODE;

	if (sa != sb)
		return sa ? -1 : 1;
	if (sa && ka->n != kb->n)
		return ka->n < kb->n ? -1 : 1;
	if (sa) {
		int c = memcmp(ka->v.text, kb->v.text, ka->n);
		if (c)
			return c;
	}
	return pa < pb ? -1 : pa > pb;
}

static bool keys_equal(const struct document *doc, const ynode_pair_t *a, const ynode_pair_t *b)
{
	const ynode_t *ka = document_node(doc, a->key);
	const ynode_t *kb = document_node(doc, b->key);

	return ka && kb && ka->type == YAML_SCALAR_NODE && kb->type == YAML_SCALAR_NODE &&
	       ka->n == kb->n &&
	       memcmp(ka->v.text, kb->v.text, ka->n) == 0;
}

/* doc->first_key for every long mapping: one sort each, instead of n^2/2 comparisons. */
static void document_index_keys(struct loader *loader, struct document *doc)
{
	ynode_pair_t **order = NULL;
	size_t cap = 0;

	for (size_t n = 0; n < doc->nnodes; n++) {
		const ynode_t *map = &doc->nodes[n];
		const ynode_pair_t *pairs;
		uint32_t *first;
		size_t len;

		if (map->type != YAML_MAPPING_NODE || (len = node_map_len(map)) <= KEY_INDEX_MIN)
			continue;
		if (!doc->first_key &&
		    !(doc->first_key = loader_calloc(loader, doc->npairs, sizeof *doc->first_key)))
			break;
		if (len > cap) {
			ynode_pair_t **o = realloc(order, len * sizeof *order);
			if (!o) {
				loader->oom = true;
				break;
			}
			order = o;
			cap = len;
		}
		pairs = map->v.pairs;
		first = &doc->first_key[pairs - doc->pairs];
		for (size_t i = 0; i < len; i++)
			order[i] = &map->v.pairs[i];
		qsort_r(order, len, sizeof *order, key_order, doc);
		for (size_t i = 0, head = 0; i < len; i++) {
			/* equal keys sort together, the first in the file first; a key that is
			 * not a scalar equals none (it is reported as such, not as a repeat) */
			if (i == 0 || !keys_equal(doc, order[i - 1], order[i]))
				head = i;
			first[order[i] - pairs] = (uint32_t)(order[head] - pairs);
		}
	}
	free(order);
}

/* ---- composing ------------------------------------------------------------------------ */

/*
 * The composer: libyaml's events into doc's arrays, as libyaml's own composer
 * (yaml_parser_load) would make its document: a node's id is given when it starts, so a
 * list or mapping comes before what it holds and the root is id 1; an alias is the node
 * its anchor named; an undefined alias or an anchor given twice is libyaml's composer
 * error, with libyaml's words and marks, reported as any syntax error. Nothing else of
 * libyaml's document is kept: no tags, no end marks.
 *
 * While composing, the arrays grow (and move), so a node holds offsets into them; they
 * become pointers when the document is complete (compose_finish).
 */
struct open_node {
	int id;
	size_t first;   /* its children's start in the pending stack */
};

struct anchor {
	char *name;
	int id;
	yaml_mark_t mark;
};

struct composer {
	struct loader *loader;
	struct document *doc;
	yaml_parser_t *parser;
	size_t cap_nodes, cap_pairs, cap_items, cap_text;
	int *pending;           /* the children of the open lists and mappings, in order */
	size_t npending, cap_pending;
	struct open_node *open;
	size_t nopen, cap_open;
	struct anchor *anchors;
	size_t nanchors, cap_anchors;
};

/* Room for one more of size in *p (holding n, with room for *cap); false when out of
 * memory. Doubling: the big arrays are mmap()ed by malloc and grow by mremap(), and
 * only the pages written count in the resident size. */
static bool compose_room(struct composer *c, void **p, size_t n, size_t *cap, size_t size,
			 size_t want)
{
	size_t nc;
	void *np;

	if (n + want <= *cap)
		return true;
	nc = *cap ? *cap : 64;
	while (nc < n + want)
		nc *= 2;
	if (!(np = realloc(*p, nc * size))) {
		c->loader->oom = true;
		c->parser->error = YAML_MEMORY_ERROR;
		return false;
	}
	*p = np;
	*cap = nc;
	return true;
}

/* A new node of type at mark; its id, or 0 when out of memory. */
static int compose_node(struct composer *c, int type, yaml_mark_t mark)
{
	struct document *doc = c->doc;
	ynode_t *node;

	if (doc->nnodes >= INT32_MAX - 1 ||
	    !compose_room(c, (void **)&doc->nodes, doc->nnodes, &c->cap_nodes, sizeof *doc->nodes, 1))
		return 0;
	node = &doc->nodes[doc->nnodes++];
	memset(node, 0, sizeof *node);
	node->type = (uint8_t)type;
	node->line = mark.line > UINT32_MAX ? UINT32_MAX : (uint32_t)mark.line;
	node->column = mark.column > UINT32_MAX ? UINT32_MAX : (uint32_t)mark.column;
	return (int)doc->nnodes;
}

/* The child id goes to the innermost open list or mapping (none: it is the root). */
static bool compose_child(struct composer *c, int id)
{
	if (!c->nopen)
		return true;
	if (!compose_room(c, (void **)&c->pending, c->npending, &c->cap_pending,
			  sizeof *c->pending, 1))
		return false;
	c->pending[c->npending++] = id;
	return true;
}

/* libyaml's composer error, in its words, for text_syntax_error. */
static bool compose_error(struct composer *c, const char *context, yaml_mark_t context_mark,
			  const char *problem, yaml_mark_t problem_mark)
{
	c->parser->error = YAML_COMPOSER_ERROR;
	c->parser->context = context;
	c->parser->context_mark = context_mark;
	c->parser->problem = problem;
	c->parser->problem_mark = problem_mark;
	return false;
}

static bool compose_anchor(struct composer *c, yaml_char_t *anchor, int id, yaml_mark_t mark)
{
	char *name;

	if (!anchor)
		return true;
	for (size_t i = 0; i < c->nanchors; i++)
		if (strcmp(c->anchors[i].name, (const char *)anchor) == 0)
			return compose_error(c, "found duplicate anchor; first occurrence",
					     c->anchors[i].mark, "second occurrence", mark);
	if (!compose_room(c, (void **)&c->anchors, c->nanchors, &c->cap_anchors,
			  sizeof *c->anchors, 1))
		return false;
	if (!(name = strdup((const char *)anchor))) {
		c->loader->oom = true;
		c->parser->error = YAML_MEMORY_ERROR;
		return false;
	}
	c->anchors[c->nanchors++] = (struct anchor){ name, id, mark };
	return true;
}

static bool compose_scalar(struct composer *c, const yaml_event_t *ev)
{
	struct document *doc = c->doc;
	size_t len = ev->data.scalar.length;
	ynode_t *node;
	int id;

	if (len > UINT32_MAX - 1 || !(id = compose_node(c, YAML_SCALAR_NODE, ev->start_mark)) ||
	    !compose_room(c, (void **)&doc->text, doc->ntext, &c->cap_text, 1, len + 1))
		return false;
	node = &doc->nodes[id - 1];
	node->v.text = (char *)(uintptr_t)doc->ntext;
	node->n = (uint32_t)len;
	node->style = (uint8_t)ev->data.scalar.style;
	if (len)
		memcpy(doc->text + doc->ntext, ev->data.scalar.value, len);
	doc->text[doc->ntext + len] = '\0';
	doc->ntext += len + 1;
	return compose_anchor(c, ev->data.scalar.anchor, id, ev->start_mark) && compose_child(c, id);
}

static bool compose_open(struct composer *c, int type, yaml_char_t *anchor, yaml_mark_t mark)
{
	int id = compose_node(c, type, mark);

	if (!id || !compose_anchor(c, anchor, id, mark) || !compose_child(c, id) ||
	    !compose_room(c, (void **)&c->open, c->nopen, &c->cap_open, sizeof *c->open, 1))
		return false;
	c->open[c->nopen++] = (struct open_node){ id, c->npending };
	return true;
}

/* The innermost list or mapping ends: its children move from the pending stack to the
 * document's items or pairs, together. */
static bool compose_close(struct composer *c)
{
	struct document *doc = c->doc;
	struct open_node o = c->open[--c->nopen];
	ynode_t *node = &doc->nodes[o.id - 1];
	size_t n = c->npending - o.first;
	const int *kids = n ? &c->pending[o.first] : NULL;

	if (node->type == YAML_SEQUENCE_NODE) {
		if (!compose_room(c, (void **)&doc->items, doc->nitems, &c->cap_items,
				  sizeof *doc->items, n))
			return false;
		if (n)
			memcpy(&doc->items[doc->nitems], kids, n * sizeof *kids);
		node->v.items = (ynode_item_t *)(uintptr_t)doc->nitems;
		node->n = (uint32_t)n;
		doc->nitems += n;
	} else {
		/* a mapping's events come as key, value, key, value... */
		if (!compose_room(c, (void **)&doc->pairs, doc->npairs, &c->cap_pairs,
				  sizeof *doc->pairs, n / 2))
			return false;
		for (size_t i = 0; i + 1 < n; i += 2)
			doc->pairs[doc->npairs + i / 2] = (ynode_pair_t){ kids[i], kids[i + 1] };
		node->v.pairs = (ynode_pair_t *)(uintptr_t)doc->npairs;
		node->n = (uint32_t)(n / 2);
		doc->npairs += n / 2;
	}
	c->npending = o.first;
	return true;
}

/* The offsets become pointers, and the arrays lose their spare room. */
static void compose_finish(struct composer *c)
{
	struct document *doc = c->doc;
	void *p;

	if (doc->nnodes && (p = realloc(doc->nodes, doc->nnodes * sizeof *doc->nodes)))
		doc->nodes = p;
	if (doc->npairs && (p = realloc(doc->pairs, doc->npairs * sizeof *doc->pairs)))
		doc->pairs = p;
	if (doc->nitems && (p = realloc(doc->items, doc->nitems * sizeof *doc->items)))
		doc->items = p;
	if (doc->ntext && (p = realloc(doc->text, doc->ntext)))
		doc->text = p;
	for (size_t i = 0; i < doc->nnodes; i++) {
		ynode_t *node = &doc->nodes[i];

		if (node->type == YAML_SCALAR_NODE)
			node->v.text = doc->text + (uintptr_t)node->v.text;
		else if (!node->n)
			node->v.items = NULL; /* an empty list or mapping points nowhere */
		else if (node->type == YAML_SEQUENCE_NODE)
			node->v.items = doc->items + (uintptr_t)node->v.items;
		else
			node->v.pairs = doc->pairs + (uintptr_t)node->v.pairs;
	}
}

/*
 * The events of one document into doc; the parser has read STREAM-START. 1: composed,
 * with a root; 0: no document in the stream (the file is empty); -1: an error, in
 * parser's fields (text_syntax_error says it).
 */
static int compose(struct loader *loader, yaml_parser_t *parser, struct document *doc)
{
	struct composer c = { .loader = loader, .doc = doc, .parser = parser };
	yaml_event_t ev;
	int rc = -1;

	for (;;) {
		bool ok = true, done = false;

		if (!yaml_parser_parse(parser, &ev))
			break;
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			rc = 0;
			done = true;
			break;
		case YAML_DOCUMENT_END_EVENT:
			rc = 1;
			done = true;
			break;
		case YAML_ALIAS_EVENT: {
			size_t i = 0;
			while (i < c.nanchors &&
			       strcmp(c.anchors[i].name, (const char *)ev.data.alias.anchor) != 0)
				i++;
			ok = i < c.nanchors ? compose_child(&c, c.anchors[i].id)
					    : compose_error(&c, NULL, ev.start_mark,
							    "found undefined alias", ev.start_mark);
			break;
		}
		case YAML_SCALAR_EVENT:
			ok = compose_scalar(&c, &ev);
			break;
		case YAML_SEQUENCE_START_EVENT:
			ok = compose_open(&c, YAML_SEQUENCE_NODE, ev.data.sequence_start.anchor,
					  ev.start_mark);
			break;
		case YAML_MAPPING_START_EVENT:
			ok = compose_open(&c, YAML_MAPPING_NODE, ev.data.mapping_start.anchor,
					  ev.start_mark);
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			ok = c.nopen > 0 && compose_close(&c);
			break;
		default: /* STREAM-START, DOCUMENT-START, NO-EVENT */
			break;
		}
		yaml_event_delete(&ev);
		if (!ok || done)
			break;
	}
	if (rc == 1 && doc->nnodes)
		compose_finish(&c);
	else if (rc == 1)
		rc = 0;
	for (size_t i = 0; i < c.nanchors; i++)
		free(c.anchors[i].name);
	free(c.anchors);
	free(c.pending);
	free(c.open);
	return rc;
}

/* What follows the first document: -1 after a syntax error in the next one (reported),
 * 1 when a second document starts (reported), 0 when the stream ends. */
static void compose_rest(struct loader *loader, struct document *doc, yaml_parser_t *parser,
			 const unsigned char *buf, size_t len)
{
	yaml_event_t ev;

	/* as libyaml's composer reads a second document: to its end, so that a syntax
	 * error in it is reported rather than the document */
	bool second = false;
	yaml_mark_t start = { 0 };

	for (;;) {
		yaml_event_type_t type;

		if (!yaml_parser_parse(parser, &ev)) {
			text_syntax_error(loader, doc, parser, buf, len);
			return;
		}
		type = ev.type;
		if (type == YAML_DOCUMENT_START_EVENT && !second) {
			second = true;
			start = ev.start_mark;
		}
		yaml_event_delete(&ev);
		if (type == YAML_STREAM_END_EVENT || type == YAML_DOCUMENT_END_EVENT)
			break;
	}
	if (second)
		loader_emit(loader, true, doc->file_index, (int)start.line + 1, (int)start.column + 1,
			    "a second YAML document starts here: the file must hold one document");
}

int document_load(struct loader *loader, const char *path, struct document *doc)
{
	yaml_parser_t parser;
	unsigned char *buf;
	size_t len = 0;
	int rc;

	memset(doc, 0, sizeof *doc);
	if ((doc->file_index = loader_add_file(loader, path)) == SIZE_MAX)
		return -1;
	doc->file = loader->cfg->files[doc->file_index];
	if (loader->text && doc->file_index == 0) {
		/* a copy, so that the buffer is freed like one read from a file */
		if (loader->text_len > FILE_MAX) {
			loader_emit(loader, true, doc->file_index, 0, 0, "is larger than %u MiB: not a "
				    "configuration file", FILE_MAX >> 20);
			return -1;
		}
		if (!(buf = malloc(loader->text_len + 1))) {
			loader->oom = true;
			return -1;
		}
		if (loader->text_len)
			memcpy(buf, loader->text, loader->text_len);
		len = loader->text_len;
	} else if (read_file(loader, path, doc->file_index, &buf, &len) < 0) {
		return -1;
	}
	if (text_slips(loader, doc->file_index, buf, len) > 0) {
		/* what libyaml would say about the same lines only misleads */
		free(buf);
		return -1;
	}
	if (text_depth(loader, doc->file_index, buf, len) < 0) {
		free(buf);
		return -1;
	}
	if (!yaml_parser_initialize(&parser)) {
		free(buf);
		loader->oom = true;
		return -1;
	}
	yaml_parser_set_input_string(&parser, buf, len);
	doc->loaded = true; /* document_free frees what was composed, whatever happens */
	rc = compose(loader, &parser, doc);
	if (rc < 0) {
		text_syntax_error(loader, doc, &parser, buf, len);
		yaml_parser_delete(&parser);
		free(buf);
		return -1;
	}
	document_index_keys(loader, doc);
	if (rc == 0) {
		loader_emit(loader, true, doc->file_index, 0, 0, "the file is empty");
		yaml_parser_delete(&parser);
		free(buf);
		return -1;
	}
	/* One file, one document: a second one would be silently ignored otherwise. */
	compose_rest(loader, doc, &parser, buf, len);
	yaml_parser_delete(&parser);
	free(buf);
	return 0;
}

void document_free(struct document *doc)
{
	free(doc->first_key);
	doc->first_key = NULL;
	if (doc->loaded) {
		free(doc->nodes);
		free(doc->pairs);
		free(doc->items);
		free(doc->text);
		doc->nodes = NULL;
		doc->pairs = NULL;
		doc->items = NULL;
		doc->text = NULL;
		doc->nnodes = doc->npairs = doc->nitems = doc->ntext = 0;
	}
	doc->loaded = false;
}

bool node_is_null(const ynode_t *node)
{
	const char *s;

	if (node->type != YAML_SCALAR_NODE || node->style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	s = node_text(node);
	return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
	       !strcmp(s, "NULL");
}

ynode_t *document_peek(struct document *doc, const ynode_t *map, const char *key)
{
	if (map->type != YAML_MAPPING_NODE)
		return NULL;
	for (size_t i = 0; i < node_map_len(map); i++) {
		ynode_t *k = document_node(doc, map->v.pairs[i].key);
		ynode_t *v = document_node(doc, map->v.pairs[i].value);
		if (k && v && k->type == YAML_SCALAR_NODE && strcmp(node_text(k), key) == 0)
			return v;
	}
	return NULL;
}

const char *document_peek_scalar(struct document *doc, const ynode_t *map, const char *key)
{
	ynode_t *value = document_peek(doc, map, key);

	return value && value->type == YAML_SCALAR_NODE && !node_is_null(value) ? node_text(value)
										 : NULL;
}

/* ---- shapes --------------------------------------------------------------------------- */

void scope_wrong_shape(struct scope *scope, ynode_t *node, const char *what,
		       const char *expect)
{
	switch (node->type) {
	case YAML_SCALAR_NODE:
		if (node_is_null(node))
			scope_error(scope, node, "%s has no value (expected %s)", what, expect);
		else
			scope_error(scope, node, "%s must be %s, not the value '%s'", what, expect,
				    scope_quote(scope, node_text(node)));
		break;
	case YAML_SEQUENCE_NODE:
		scope_error(scope, node, "%s must be %s, not a list", what, expect);
		break;
	case YAML_MAPPING_NODE:
		scope_error(scope, node, "%s must be %s, not a mapping (key: value lines)", what,
			    expect);
		break;
	default:
		scope_error(scope, node, "%s must be %s", what, expect);
		break;
	}
}

bool scope_expect_map(struct scope *scope, ynode_t *node, const char *what)
{
	if (node->type == YAML_MAPPING_NODE)
		return true;
	scope_wrong_shape(scope, node, what, EXPECT_MAP);
	return false;
}

bool scope_expect_list(struct scope *scope, ynode_t *node, const char *what)
{
	if (node->type == YAML_SEQUENCE_NODE)
		return true;
	/* "buses:" with nothing under it is an empty list, not a mistake */
	if (node_is_null(node))
		return false;
	scope_wrong_shape(scope, node, what, EXPECT_LIST);
	return false;
}

const char *scope_expect_scalar(struct scope *scope, ynode_t *node, const char *what)
{
	if (node->type != YAML_SCALAR_NODE || node_is_null(node)) {
		scope_wrong_shape(scope, node, what, "a single value");
		return NULL;
	}
	if (strlen(node_text(node)) != node->n) {
		scope_error(scope, node, "%s contains a NUL character", what);
		return NULL;
	}
	return node_text(node);
}

/* ---- key tables ------------------------------------------------------------------------ */

void *key_field(void *obj, const struct key *key)
{
	return (char *)obj + key->off;
}

static void store_unsigned(void *p, size_t size, uint64_t v)
{
	switch (size) {
	case 1: {
		uint8_t x = (uint8_t)v;
		memcpy(p, &x, 1);
		break;
	}
	case 2: {
		uint16_t x = (uint16_t)v;
		memcpy(p, &x, 2);
		break;
	}
	case 4: {
		uint32_t x = (uint32_t)v;
		memcpy(p, &x, 4);
		break;
	}
	default:
		memcpy(p, &v, 8);
		break;
	}
}

/* "0..1", "at least 0", "more than 0 and less than 1": a K_NUM row's bounds. */
static const char *key_range_text(struct scope *scope, const struct key *key)
{
	const char *low = key->flags & KF_XMIN ? "more than" : "at least";
	const char *high = key->flags & KF_XMAX ? "less than" : "at most";
	bool has_min = key->flags & (KF_MIN | KF_XMIN), has_max = key->flags & (KF_MAX | KF_XMAX);

	if (has_min && has_max && !(key->flags & (KF_XMIN | KF_XMAX)))
		return loader_text(scope->loader, "%g..%g", key->min, key->max);
	if (has_min && has_max)
		return loader_text(scope->loader, "%s %g and %s %g", low, key->min, high, key->max);
	if (has_min)
		return loader_text(scope->loader, "%s %g", low, key->min);
	return loader_text(scope->loader, "%s %g", high, key->max);
}

static void key_enum(struct scope *scope, const struct key *key, ynode_t *value,
		     const char *s, void *p)
{
	struct suggestion suggestion;
	int val;

	if (enum_find(key->names, s, &val) == 0) {
		store_unsigned(p, key->size, (uint64_t)(int64_t)val);
		return;
	}
	suggest_init(&suggestion, scope->loader, s);
	for (const struct enumval *e = key->names; e->name; e++)
		suggest_try(&suggestion, e->name);
	scope_error(scope, value, "%s '%s' is not one of %s%s", scope_key(scope, key->name),
		    scope_quote(scope, s), enum_list(scope, key->names),
		    suggest_text(scope, &suggestion, NULL));
}

static void key_apply(struct scope *scope, const struct key *key, ynode_t *value, void *obj)
{
	void *p = key_field(obj, key);
	char low[CONFIG_VALUE_TEXT_MAX], high[CONFIG_VALUE_TEXT_MAX];
	const char *name, *s;
	int64_t iv;
	double dv;
	uint64_t uv;
	bool bv;

	if (key->type == K_NODE)
		return;
	if (key->type == K_FN) {
		key->fn(scope, key, value, obj);
		return;
	}
	name = scope_key(scope, key->name);
	if (!(s = scope_expect_scalar(scope, value, name)))
		return;
	switch (key->type) {
	case K_NODE:
	case K_FN:
		break;
	case K_STR:
		if (!*s)
			scope_error(scope, value, "%s is empty", name);
		else
			loader_set_string(scope->loader, p, s);
		break;
	case K_TEXT:
		break;
	case K_ID:
		if (!config_id_valid(s))
			scope_error(scope, value, "%s '%s' is not a valid id: use only letters, digits, "
				    "'-' and '_' (at most %d bytes)", name, scope_quote(scope, s),
				    ID_MAX - 1);
		/* kept when it fits, valid or not, so references to it still resolve */
		if (strlen(s) < ID_MAX)
			memcpy(p, s, strlen(s) + 1);
		break;
	case K_CHARS:
		if (strlen(s) >= key->size)
			scope_error(scope, value, "%s '%s' is too long (at most %zu bytes)", name,
				    scope_quote(scope, s), key->size - 1);
		else
			memcpy(p, s, strlen(s) + 1);
		break;
	case K_BOOL:
		if (config_parse_bool(s, &bv) < 0)
			scope_error(scope, value, "%s '%s' is not true or false", name,
				    scope_quote(scope, s));
		else
			*(bool *)p = bv;
		break;
	case K_INT:
		if (config_parse_int(s, &iv) < 0)
			scope_error(scope, value, "%s '%s' is not a whole number", name,
				    scope_quote(scope, s));
		else if (iv < (int64_t)key->min || (key->max > 0 && iv > (int64_t)key->max))
			scope_error(scope, value, "%s %s is out of range (expected %s%.0f%s%.0f)", name,
				    scope_quote(scope, s), key->max > 0 ? "" : "at least ", key->min,
				    key->max > 0 ? ".." : "", key->max > 0 ? key->max : 0);
		else
			store_unsigned(p, key->size, (uint64_t)iv);
		break;
	case K_NUM:
		if (config_parse_number(s, &dv) < 0) {
			scope_error(scope, value, "%s '%s' is not a number", name, scope_quote(scope, s));
		} else if ((key->flags & KF_NONZERO) && dv == 0) {
			scope_error(scope, value, "%s must not be 0", name);
		} else if (((key->flags & KF_MIN) && dv < key->min) ||
			   ((key->flags & KF_XMIN) && dv <= key->min) ||
			   ((key->flags & KF_MAX) && dv > key->max) ||
			   ((key->flags & KF_XMAX) && dv >= key->max)) {
			scope_error(scope, value, "%s %s is out of range (expected %s)", name,
				    scope_quote(scope, s), key_range_text(scope, key));
		} else {
			*(double *)p = dv;
		}
		break;
	case K_DUR:
		if (config_parse_duration(s, &iv) < 0)
			scope_error(scope, value, "%s '%s' is not a duration (expected a number and a "
				    "unit: 500ms, 10s, 5m, 2h, 1d)", name, scope_quote(scope, s));
		else if (iv < (int64_t)key->min || (key->max > 0 && iv > (int64_t)key->max)) {
			if (key->max > 0)
				scope_error(scope, value, "%s %s is out of range (expected %s..%s)", name,
					    scope_quote(scope, s),
					    config_format_duration((int64_t)key->min, low, sizeof low),
					    config_format_duration((int64_t)key->max, high,
								   sizeof high));
			else
				scope_error(scope, value, "%s %s is too short (expected at least %s)",
					    name, scope_quote(scope, s),
					    config_format_duration((int64_t)key->min, low, sizeof low));
		} else
			*(int64_t *)p = iv;
		break;
	case K_SIZE:
		if (config_parse_size(s, &uv) < 0)
			scope_error(scope, value, "%s '%s' is not a size (expected a number and a unit: "
				    "64KiB, 512MiB, 2GiB)", name, scope_quote(scope, s));
		else if (uv < (uint64_t)key->min || (key->max > 0 && uv > (uint64_t)key->max)) {
			if (key->max > 0)
				scope_error(scope, value, "%s %s is out of range (expected %s..%s)", name,
					    scope_quote(scope, s),
					    config_format_size((uint64_t)key->min, low, sizeof low),
					    config_format_size((uint64_t)key->max, high, sizeof high));
			else
				scope_error(scope, value, "%s %s is too small (expected at least %s)",
					    name, scope_quote(scope, s),
					    config_format_size((uint64_t)key->min, low, sizeof low));
		} else
			*(uint64_t *)p = uv;
		break;
	case K_ENUM:
		key_enum(scope, key, value, s, p);
		break;
	}
}

bool map_pair(struct scope *scope, ynode_t *map, size_t i, const char *word,
	      ynode_t **key, ynode_t **value)
{
	ynode_pair_t *pairs = map->v.pairs;
	ynode_t *k = document_node(scope->doc, pairs[i].key);
	ynode_t *v = document_node(scope->doc, pairs[i].value);

	if (!k || !v)
		return false;
	if (k->type != YAML_SCALAR_NODE) {
		scope_error(scope, k, "a key must be a single word, not a %s",
			    k->type == YAML_SEQUENCE_NODE ? "list" : "mapping");
		return false;
	}
	if (scope->doc->first_key && node_map_len(map) > KEY_INDEX_MIN) {
		/* a long mapping: its index names the first pair with this key */
		size_t j = scope->doc->first_key[(pairs - scope->doc->pairs) + i];
		if (j != i) {
			scope_error(scope, k, "duplicate %s '%s' (first at line %d)", word,
				    scope_quote(scope, scope_key(scope, node_text(k))),
				    (int)document_node(scope->doc, pairs[j].key)->line + 1);
			return false;
		}
		*key = k;
		*value = v;
		return true;
	}
	for (size_t j = 0; j < i; j++) {
		ynode_t *earlier = document_node(scope->doc, pairs[j].key);
		if (earlier && earlier->type == YAML_SCALAR_NODE &&
		    earlier->n == k->n &&
		    memcmp(earlier->v.text, k->v.text,
			   k->n) == 0) {
			scope_error(scope, k, "duplicate %s '%s' (first at line %d)", word,
				    scope_quote(scope, scope_key(scope, node_text(k))),
				    (int)earlier->line + 1);
			return false;
		}
	}
	*key = k;
	*value = v;
	return true;
}

static size_t keys_count(const struct key *keys)
{
	size_t n = 0;

	while (keys[n].name)
		n++;
	return n;
}

ynode_t *keys_seen(const struct key *keys, ynode_t **seen, const char *name)
{
	for (size_t i = 0; keys[i].name; i++)
		if (strcmp(keys[i].name, name) == 0)
			return seen[i];
	return NULL;
}

static void key_unknown(struct scope *scope, ynode_t *key, const struct key *keys)
{
	struct suggestion suggestion;

	if (scope->foreign && scope->foreign(scope, key))
		return;
	if (strcmp(node_text(key), "<<") == 0) {
		scope_error(scope, key, "YAML merge keys (<<) are not supported: write the keys out");
		return;
	}
	suggest_init(&suggestion, scope->loader, node_text(key));
	for (size_t i = 0; keys[i].name; i++)
		suggest_try(&suggestion, keys[i].name);
	scope_error(scope, key, "unknown key '%s'%s",
		    scope_quote(scope, scope_key(scope, node_text(key))),
		    suggest_text(scope, &suggestion, scope->prefix));
}

/* One pair of a walked mapping: check its key, find its row, apply it. */
static void keys_walk_pair(struct scope *scope, ynode_t *map, size_t i, const struct key *keys,
			   size_t nkeys, void *obj, ynode_t **seen)
{
	ynode_t *key, *value;
	size_t row;

	if (!map_pair(scope, map, i, "key", &key, &value))
		return;
	for (row = 0; row < nkeys && strcmp(keys[row].name, node_text(key)) != 0; row++)
		;
	if (row == nkeys) {
		key_unknown(scope, key, keys);
		return;
	}
	seen[row] = value;
	if (keys[row].has)
		*(bool *)((char *)obj + keys[row].has - 1) = true;
	key_apply(scope, &keys[row], value, obj);
}

void keys_walk(struct scope *scope, ynode_t *map, const struct key *keys, void *obj,
	       ynode_t **seen)
{
	size_t nkeys = keys_count(keys);

	memset(seen, 0, nkeys * sizeof *seen);
	for (size_t i = 0; i < node_map_len(map); i++) {
		size_t mark = loader_texts_mark(scope->loader);

		keys_walk_pair(scope, map, i, keys, nkeys, obj, seen);
		/* the texts made for this pair's messages: a long mapping makes many */
		loader_texts_release(scope->loader, mark);
	}
	for (size_t row = 0; row < nkeys; row++)
		if ((keys[row].flags & KF_REQ) && !seen[row])
			scope_error(scope, map, "missing required key '%s'",
				    scope_key(scope, keys[row].name));
}
