/*
 * config_int: what the files of the config module share. Private to config*.c
 * (tests/check-layers); with them, the only code that includes <yaml.h>.
 *
 * The module, by file:
 *   config.c           config.h's entry points: a whole config file in dependency order,
 *                      one profile by name, config_free and the lookups
 *   config_loader.c    the loader: a load's state and messages, composing libyaml's events
 *                      into documents and their nodes, the key tables and the walk of a mapping against one
 *                      (duplicate and unknown keys, "did you mean"), the shape checks
 *   config_text.c      a file's text as bytes: input-method slips, the nesting depth, the
 *                      messages for libyaml's syntax errors
 *   config_value.c     the value syntaxes (config_value.h, public): durations, sizes, ...
 *   config_sections.c  gateway, uplink, buffer, buses, devices, their points, profiles
 *   config_rules.c     alerts: each rule kind's keys and checks, and actions
 *
 * How a file is read: libyaml parses it into events, which document_load composes into a
 * compact node tree with line/column marks (ynode_t: libyaml's own document costs four
 * times the memory, and kept it as the daemon's high-water mark); each mapping is walked
 * against a table of the keys it may hold (struct key). The walk reports
 * duplicate keys (libyaml keeps them silently), unknown keys (with the closest known
 * one), values of the wrong shape and values out of range, and keeps going. Sections
 * are processed in dependency order (buses, devices, then alerts), whatever their order
 * in the file, and messages are sorted at the end. To add a key: add a row to its table;
 * when it needs more than a range check, give it a K_FN handler or check it after the
 * walk (a key of kind K_NODE is handed back to the caller in seen[]).
 */
#ifndef SLUICE_CONFIG_INT_H
#define SLUICE_CONFIG_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <yaml.h>

#include "config.h"

#define FILE_MAX (16u << 20) /* a config or profile bigger than this is not one */
#define SEC_MS 1000
#define MIN_MS (60 * SEC_MS)
#define HOUR_MS (60 * MIN_MS)
#define DAY_MS (24 * HOUR_MS)
#define MIB (1024 * 1024)

/*
 * A node of a composed file. The loader composes libyaml's events itself (document_load)
 * into these rather than into libyaml's document: a yaml_node_t takes 96 bytes and a tag
 * string of its own, and libyaml's node stack doubles, so a config of a thousand devices
 * with their points written out (86,000 nodes) took 20 MB of heap to load and kept it as
 * the daemon's high-water mark. A node here is 24 bytes, the children of every list and
 * mapping lie in two shared arrays, and every scalar's bytes in one. type is libyaml's
 * YAML_SCALAR_NODE, YAML_SEQUENCE_NODE or YAML_MAPPING_NODE; a child is a node id, as in
 * libyaml's document (1-based: id k is nodes[k - 1]; the root is id 1); line and column
 * are 0-based.
 */
typedef struct {
	int key, value;
} ynode_pair_t;
typedef int ynode_item_t;

typedef struct {
	union {
		char *text;           /* a scalar's bytes, NUL-terminated (NULs may come before n) */
		ynode_item_t *items;  /* a list's n items */
		ynode_pair_t *pairs;  /* a mapping's n pairs */
	} v;
	uint32_t n;               /* a scalar's length in bytes, a list's or mapping's children */
	uint32_t line, column;    /* where it starts */
	uint8_t type;             /* yaml_node_type_t */
	uint8_t style;            /* a scalar's yaml_scalar_style_t */
} ynode_t;

/* ---- the state of one load -------------------------------------------------------- */

struct message {
	char *text;
	bool is_error;
	size_t file; /* index into cfg->files: messages are sorted by file, line, column */
	int line, col;
	size_t seq;  /* order of discovery, the last sort key */
};

/* A profile file, read once however many devices name it. */
struct profile {
	char *name;
	bool found;          /* a file was found (and read, well or not) */
	bool ok;             /* it had no errors */
	char *display;       /* its name: line */
	struct point_def *points;
	struct src_loc *locs;
	bool *valid;
	size_t npoints;
	bool shared;         /* points and locs were given to the config (cfg->shared_*) */
	bool has_max_registers, has_max_gap;
	unsigned max_registers, max_gap;
};

/*
 * The names of one list's items (the ids of buses, devices, rules; the serial lines of
 * buses), to find an item by name and a repeated name without comparing it with every
 * item before it. The set keeps indexes; name(items, i) is the i-th item's name.
 */
typedef const char *idset_name_fn(const void *items, size_t i);

struct idset {
	size_t *slot; /* index + 1 of an item; 0: empty */
	size_t cap, n;
	idset_name_fn *name;
};

struct loader {
	struct config *cfg;        /* files[] lives here, also for config_load_profile */
	char *devices_dir;         /* "<config dir>/devices" or "devices"; NULL: none */
	char *config_dir;          /* the config's directory, absolute; for relative paths */
	char **profile_dirs;       /* the other profile directories, in search order */
	const char **profile_notes;/* what each is, for messages ("installed"); may be NULL */
	size_t nprofile_dirs;
	struct message *messages;
	size_t nmessages, message_cap;
	size_t nerrors, nwarnings;
	bool oom;
	struct profile *profiles;
	size_t nprofiles;
	/* per bus, device, rule: where its id was given, for "first at line N" */
	struct src_loc *bus_id_locs, *device_id_locs, *rule_id_locs;
	bool *device_incomplete;   /* its points could not all be read: no "no such point" */
	size_t npoints;            /* the devices' points so far (CONFIG_POINTS_MAX) */
	uint64_t suggest_cells;    /* spent on suggestions (SUGGEST_CELLS_MAX) */
	struct idset bus_ids, bus_lines, device_ids, rule_ids;
	bool skip_secret_files;    /* config_opts.skip_secret_files */
	/* config_load_buffer: the config's text is here, not in the file named; profiles
	 * and the other files it names are still read from disk */
	const unsigned char *text;
	size_t text_len;
	/* uplink.topic_prefix's value while the config's document is loaded: where a topic
	 * too long or too deep is reported (NULL: not given) */
	ynode_t *topic_prefix_node, *uplink_node;
	/* uplink.sparkplug.group's value, where a Sparkplug topic too long is reported */
	ynode_t *sparkplug_group_node;
	/* texts made for messages (loader_text), freed by loader_free or released to a mark */
	char **texts;
	size_t ntexts, text_cap;
};

void loader_init(struct loader *loader, struct config *cfg);
void loader_free(struct loader *loader);
/* calloc and strdup that note a failure in loader->oom, which fails the load */
void *loader_calloc(struct loader *loader, size_t n, size_t size);
char *loader_strdup(struct loader *loader, const char *s);
void loader_set_string(struct loader *loader, char **dst, const char *s);

/*
 * A message about a whole file (line 0) or a place in it: "FILE:LINE:COL: message".
 * file_index SIZE_MAX: no file (config_load_profile when nothing was found), the bare
 * message.
 */
void loader_emit(struct loader *loader, bool is_error, size_t file_index, int line, int col,
		 const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* Sort the messages and hand them to diag (or drop them). */
void loader_finish(struct loader *loader, struct config_diag *diag);

/*
 * Text for a message — a key's path, a value as shown, a place in the file — formatted
 * like printf and owned by the loader, which frees it in loader_free. A walk that makes
 * many (one per key, one per point) gives them back once it is done with them:
 * loader_texts_release(loader, mark) frees every text made since mark =
 * loader_texts_mark(loader). Never NULL: "" when memory runs out (the load then fails
 * with "out of memory").
 */
const char *loader_text(struct loader *loader, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
size_t loader_texts_mark(const struct loader *loader);
void loader_texts_release(struct loader *loader, size_t mark);

/* ---- YAML documents and their nodes ---------------------------------------------- */

struct document {
	ynode_t *nodes;
	size_t nnodes;
	ynode_pair_t *pairs;    /* every mapping's pairs, each mapping's together */
	size_t npairs;
	ynode_item_t *items;    /* every list's items, each list's together */
	size_t nitems;
	char *text;             /* every scalar's bytes, each followed by a NUL */
	size_t ntext;
	bool loaded;
	const char *file;       /* owned by cfg->files */
	size_t file_index;
	/* for the pairs of each mapping of more than KEY_INDEX_MIN pairs (by pair index, NULL
	 * when there is none): first_key[pair] is the position in its mapping of the first
	 * pair whose key equals this pair's key, so that a duplicate is found without
	 * comparing every key with every earlier one */
	uint32_t *first_key;
};

/* A mapping this long or shorter compares its keys pair by pair. */
#define KEY_INDEX_MIN 16

/*
 * What a hostile file may cost. Lists and mappings nested deeper than DEPTH_MAX are
 * refused before libyaml composes the document: its composer's cost grows with the
 * square of the depth (400 KB of '[' took minutes), and a real config nests six deep.
 * A device (its profile's points and its own) or a profile has at most
 * DEVICE_POINTS_MAX points: the largest published register maps have a few hundred to
 * two thousand worth reading, and the checks of a device's points grow with the square
 * of their number. A config has at most CONFIG_POINTS_MAX points in all (a profile's
 * counted once for each device that names it): 100 for each of 5,000 devices.
 */
#define DEPTH_MAX 32
#define DEVICE_POINTS_MAX 5000
#define CONFIG_POINTS_MAX 500000

/*
 * Read and compose one file (the config's text from memory when the loader has one and
 * the file is the first). 0: doc has a root node. -1: an error was reported;
 * document_free is still to be called.
 */
int document_load(struct loader *loader, const char *path, struct document *doc);
void document_free(struct document *doc);
/* ---- a file's text (config_text.c) ---------------------------------------------- */

/* The slips of a Chinese input method in buf, each an error; their number. */
size_t text_slips(struct loader *loader, size_t file_index, const unsigned char *buf, size_t len);
/* Lists and mappings nested more than DEPTH_MAX deep: -1 after an error; else 0 (a syntax
 * error is left to the composer, which reports it). */
int text_depth(struct loader *loader, size_t file_index, const unsigned char *buf, size_t len);
/* The message for a failed parse of buf, in plain words where it can. */
void text_syntax_error(struct loader *loader, struct document *doc, const yaml_parser_t *parser,
		       const unsigned char *buf, size_t len);

/* The value of a key in a mapping, without checks (for the texts that name a place). */
ynode_t *document_peek(struct document *doc, const ynode_t *map, const char *key);
/* The same when it is a scalar other than null; else NULL. */
const char *document_peek_scalar(struct document *doc, const ynode_t *map, const char *key);

static inline ynode_t *document_node(const struct document *doc, int id)
{
	return id >= 1 && (size_t)id <= doc->nnodes ? &doc->nodes[id - 1] : NULL;
}

static inline ynode_t *document_root(const struct document *doc)
{
	return document_node(doc, 1);
}

static inline const char *node_text(const ynode_t *node)
{
	return (const char *)node->v.text;
}

static inline size_t node_map_len(const ynode_t *map)
{
	return map->n;
}

static inline size_t node_list_len(const ynode_t *list)
{
	return list->n;
}

static inline ynode_t *document_item(struct document *doc, const ynode_t *list, size_t i)
{
	return document_node(doc, list->v.items[i]);
}

/* ~, null, Null, NULL or nothing, unquoted */
bool node_is_null(const ynode_t *node);

static inline struct src_loc node_loc(const struct document *doc, const ynode_t *node)
{
	return (struct src_loc){ doc->file, (int)node->line + 1,
				 (int)node->column + 1 };
}

/* ---- where the walk is, and what it says there ----------------------------------- */

struct scope {
	struct loader *loader;
	struct document *doc;
	const char *where;      /* "devices[2] (booster-pump)"; "" at the top level */
	const char *prefix;     /* key path inside where: "rtu.", "on_fire[0]." */
	/* rules: a key of another kind gets a better message than "unknown key" */
	bool (*foreign)(struct scope *scope, ynode_t *key);
	int kind;
};

/* The top of a document: no where, no prefix. */
void scope_top(struct scope *scope, struct loader *loader, struct document *doc);
/* A part of parent's document that messages name by where (printf-like). */
void scope_open(struct scope *scope, const struct scope *parent, const char *prefix,
		const char *where_fmt, ...) __attribute__((format(printf, 4, 5)));
/* A block inside parent's place (rtu:, night:): the same where, keys under prefix. */
void scope_nest(struct scope *scope, const struct scope *parent, const char *prefix);

/* "FILE:LINE:COL: WHERE: message" at node (NULL: no position). */
void scope_error(struct scope *scope, ynode_t *node, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void scope_warn(struct scope *scope, ynode_t *node, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* An error at a src_loc (a point defined elsewhere, perhaps in a profile file). */
void scope_error_at(struct scope *scope, const struct src_loc *loc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A key's name with its path: "rtu.baud". A loader text. */
const char *scope_key(struct scope *scope, const char *name);
/*
 * A value as shown in a message: control characters escaped, text longer than
 * QUOTE_MAX bytes cut at a character boundary and ended with "...", so that one bad
 * line cannot make a message unreadable. A loader text.
 */
#define QUOTE_MAX 120
const char *scope_quote(struct scope *scope, const char *value);
const char *loader_quote(struct loader *loader, const char *value);

#define EXPECT_MAP "a mapping (key: value lines)"
#define EXPECT_LIST "a list (lines starting with '- ')"

/* "WHAT must be EXPECT, not ..." */
void scope_wrong_shape(struct scope *scope, ynode_t *node, const char *what,
		       const char *expect);
/* Is node a mapping (a list)? If not, say so. An empty value is an empty list, quietly. */
bool scope_expect_map(struct scope *scope, ynode_t *node, const char *what);
bool scope_expect_list(struct scope *scope, ynode_t *node, const char *what);
/* The text of a scalar value, or NULL after saying what is wrong with it. */
const char *scope_expect_scalar(struct scope *scope, ynode_t *node, const char *what);

/* ---- list items (buses, devices, alerts) ----------------------------------------- */

/*
 * Item index of the list section list ("buses"): when it is a mapping, open item, a
 * scope that messages name "buses[3] (its id)" ("buses[3]" without an id), and return
 * true; else say what it is instead and return false.
 */
bool scope_open_item(struct scope *item, struct scope *root, ynode_t *map, const char *list,
		     size_t index);
/*
 * An item's id, given at value, must differ from those of the count items before it in
 * items (found through set); word names them in the message ("bus"). id_locs[count]
 * keeps where it was given, for a later repeat.
 */
void scope_unique_id(struct scope *item, ynode_t *value, const char *word, const char *id,
		     const void *items, size_t count, struct src_loc *id_locs, struct idset *set);
/* Add the index-th item's name: -1, or the index of an earlier item with the same name
 * (then it is not added). set->name must be set. */
long idset_add(struct loader *loader, struct idset *set, const void *items, size_t index);
/* The index of the first item named name, or -1. */
long idset_find(const struct idset *set, const void *items, const char *name);

/* ---- "did you mean" --------------------------------------------------------------- */

/* Words this long are not compared: no key, id or file name offered is that long. */
#define SUGGEST_WORD_MAX 128

struct suggestion {
	const char *word;
	char best[SUGGEST_WORD_MAX];
	size_t distance;
	struct loader *loader;  /* whose budget the comparisons spend */
};

/*
 * The comparisons a load may spend on suggestions, in cells of the edit-distance table:
 * each bad reference is compared with every candidate (all the buses, all the devices),
 * so a file of many bad references to many items would cost their product. About a
 * second; once spent, messages come without a suggestion.
 */
#define SUGGEST_CELLS_MAX 100000000u

void suggest_init(struct suggestion *suggestion, struct loader *loader, const char *word);
/* Whether the budget allows more: a loop over many candidates stops when it does not. */
bool suggest_more(const struct suggestion *suggestion);
/* Keep candidate if it is the closest yet, and close enough to be a likely typo. */
void suggest_try(struct suggestion *suggestion, const char *candidate);
/* Offer the names in a directory: PREFIX + NAME for each NAME.suffix file (every entry
 * when suffix is NULL). */
void suggest_dir(struct suggestion *suggestion, const char *dir, const char *suffix,
		 const char *prefix);
/* " (did you mean 'PREFIXbest'?)", or "" when nothing was close. A loader text. */
const char *suggest_text(struct scope *scope, const struct suggestion *suggestion,
			 const char *prefix);

/* ---- names ------------------------------------------------------------------------ */

/* The words a key of kind K_ENUM takes, and what each stands for; ends with { NULL }. */
struct enumval {
	const char *name;
	int val;
};

const char *enum_name(const struct enumval *names, int val); /* NULL when absent */
int enum_find(const struct enumval *names, const char *s, int *val);
/* "a, b, c": a loader text */
const char *enum_list(struct scope *scope, const struct enumval *names);

/* ---- key tables ------------------------------------------------------------------- */

enum key_type {
	K_NODE,  /* handed back in seen[] for the caller */
	K_FN,    /* key->fn(scope, key, value, obj) */
	K_STR,   /* char *, strdup'ed; not empty */
	K_TEXT,  /* any single value, not kept (description, source) */
	K_ID,    /* char[ID_MAX], [A-Za-z0-9_-]+ */
	K_CHARS, /* char[size] */
	K_BOOL,
	K_INT,   /* min..max (no upper bound when max is 0); stored in size bytes */
	K_NUM,   /* double; bounds by KF_ flags */
	K_DUR,   /* int64_t ms; min..max as for K_INT */
	K_SIZE,  /* uint64_t bytes; min..max as for K_INT */
	K_ENUM,  /* names, stored in size bytes */
};

enum {
	KF_REQ = 1 << 0,
	KF_MIN = 1 << 1,     /* K_NUM: >= min */
	KF_MAX = 1 << 2,     /* K_NUM: <= max */
	KF_XMIN = 1 << 3,    /* K_NUM: > min */
	KF_XMAX = 1 << 4,    /* K_NUM: < max */
	KF_NONZERO = 1 << 5, /* K_NUM: not 0 */
};

struct key;
typedef void key_fn(struct scope *scope, const struct key *key, ynode_t *value, void *obj);

/* One row of a key table: a key a mapping may hold, and where its value goes. */
struct key {
	const char *name;
	enum key_type type;
	size_t off, size;        /* the field in the object the table fills */
	double min, max;
	const struct enumval *names;
	key_fn *fn;
	unsigned flags;
	size_t has;              /* HAS(): 1 + offset of a bool set when the key is given */
};

#define OFF(t, f) offsetof(t, f), .size = sizeof(((t *)0)->f)
#define HAS(t, f) (offsetof(t, f) + 1)

/* Rows in the largest key table: the length of every seen[] array. */
#define KEYS_MAX 32
/* After each table: a table longer than seen[] does not compile. */
#define KEY_TABLE_FITS(table)                                                              \
	_Static_assert(sizeof(table) / sizeof((table)[0]) <= KEYS_MAX + 1,                 \
		       #table " has more rows than KEYS_MAX")

/*
 * Walk map (already known to be a mapping) against keys, filling obj; seen[i] is the
 * value given for keys[i], or NULL. Reports duplicate, unknown and missing required
 * keys, and every value a row can check.
 */
void keys_walk(struct scope *scope, ynode_t *map, const struct key *keys, void *obj,
	       ynode_t **seen);
/* The value walked for the key called name, or NULL. */
ynode_t *keys_seen(const struct key *keys, ynode_t **seen, const char *name);
/* The field a row fills. */
void *key_field(void *obj, const struct key *key);
/*
 * Check a pair: its key is a single value and not a repeat of an earlier key of the
 * same mapping (libyaml keeps both silently; the second would win unseen). word names
 * what the keys are in the message ("key", "point").
 */
bool map_pair(struct scope *scope, ynode_t *map, size_t i, const char *word,
	      ynode_t **key, ynode_t **value);

/* ---- the sections (config_sections.c) --------------------------------------------- */

void parse_gateway(struct scope *root, ynode_t *map);
void parse_uplink(struct scope *root, ynode_t *map);
void parse_buffer(struct scope *root, ynode_t *map);
void parse_web(struct scope *root, ynode_t *map);
/* One item of buses: (devices:), appended to cfg->buses (cfg->devices), which have room. */
void parse_bus(struct scope *root, ynode_t *map, size_t index);
void parse_device(struct scope *root, ynode_t *map, size_t index);

/* The first device with id, during a load (config_find_device's answer, by hash). */
long loader_find_device(const struct loader *loader, const char *id);

/* The profile called name, read on first use; NULL when no file has that name. */
struct profile *profile_get(struct loader *loader, const char *name);
/* "profile 'x' not found: no file x.yaml in DIRS (did you mean ...)" at value (or NULL). */
void profile_not_found(struct scope *scope, ynode_t *value, const char *name);
void profiles_free(struct loader *loader);

/* After every section: the topics the config makes fit the uplink and a broker. */
void check_topics(struct scope *root);

/* ---- the rules (config_rules.c) --------------------------------------------------- */

/* One item of alerts:, appended to cfg->rules, which has room. */
void parse_rule(struct scope *root, ynode_t *map, size_t index);
/* The longest check name a rule of kind publishes (alert/<rule>/<check>). */
const char *rule_longest_check(int kind);

#endif
