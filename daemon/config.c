/*
 * config: the one module that reads YAML (libyaml's document API), and this file its
 * front door: what config.h promises. It turns the gateway config and the device
 * profiles it names into the plain structs of config.h, checks everything the daemon
 * would refuse, and reports every mistake it finds as FILE:LINE:COL: message, sorted by
 * file and position, so that a technician fixes a file in one pass rather than one error
 * per run. This file owns the order of a load (defaults, the sections in dependency
 * order, the lists), where profiles are looked for, and freeing what a load built; the
 * other parts are listed in config_int.h.
 *
 * It must never: open a socket or a database, log, exit, or keep state between calls.
 * Files the config names (TLS, password, serial devices) are only stat()ed and opened
 * for reading to prove that they can be; their contents are not read here.
 */
#include "config_int.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef SLUICE_DATADIR
#define SLUICE_DATADIR "/usr/share/sluice"
#endif

/* ---- the whole file ------------------------------------------------------------------------- */

static const struct key root_keys[] = {
	{ .name = "gateway", .type = K_NODE, .flags = KF_REQ },
	{ .name = "uplink", .type = K_NODE, .flags = KF_REQ },
	{ .name = "buffer", .type = K_NODE },
	{ .name = "buses", .type = K_NODE },
	{ .name = "devices", .type = K_NODE },
	{ .name = "alerts", .type = K_NODE },
	{ .name = "web", .type = K_NODE },
	{ NULL },
};
KEY_TABLE_FITS(root_keys);

static void defaults(struct loader *loader)
{
	struct config *cfg = loader->cfg;

	cfg->gateway.timezone = loader_strdup(loader, "UTC");
	cfg->gateway.data_dir = loader_strdup(loader, CONFIG_DATA_DIR_DEFAULT);
	cfg->gateway.log_level = LOG_LVL_INFO;
	cfg->uplink.protocol = MQTT_311;
	cfg->uplink.topic_prefix = loader_strdup(loader, "sluice");
	cfg->uplink.qos = 1;
	cfg->uplink.keepalive_ms = 30 * SEC_MS;
	cfg->uplink.inflight = 64;
	cfg->uplink.health_interval_ms = 60 * SEC_MS;
	cfg->uplink.format = FORMAT_SLUICE;
	cfg->uplink.sparkplug_qos = 1;
	cfg->uplink.command_max_age_ms = 60 * SEC_MS;
	cfg->uplink.fallback_check_ms = 3 * MIN_MS;
	cfg->buffer.max_size = 256ull * MIB;
	cfg->buffer.durability = DURABILITY_NORMAL;
	cfg->buffer.keep_sent_ms = 7ll * DAY_MS;
}

/* A list section: allocate its array and parse each item. */
static void list_parse(struct scope *scope, ynode_t *list, const char *what, void **items,
		       size_t item_size, struct src_loc **id_locs,
		       void (*parse_item)(struct scope *, ynode_t *, size_t))
{
	size_t n;

	if (!list || !scope_expect_list(scope, list, what))
		return;
	n = node_list_len(list);
	*items = loader_calloc(scope->loader, n, item_size);
	*id_locs = loader_calloc(scope->loader, n, sizeof **id_locs);
	if (!*items || !*id_locs)
		return;
	for (size_t i = 0; i < n; i++) {
		size_t mark = loader_texts_mark(scope->loader);

		parse_item(scope, document_item(scope->doc, list, i), i);
		/* what the item's messages needed: a long list makes many */
		loader_texts_release(scope->loader, mark);
	}
}

/* devices_dir: "<dir>/devices" ("devices" for a bare file name); config_dir: dir, absolute. */
static void loader_set_config_dir(struct loader *loader, const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir, resolved[PATH_MAX];

	if (!slash)
		dir = loader_strdup(loader, ".");
	else if (slash == path)
		dir = loader_strdup(loader, "/");
	else
		dir = strndup(path, (size_t)(slash - path));
	if (!dir) {
		loader->oom = true;
		return;
	}
	if (!slash)
		loader->devices_dir = loader_strdup(loader, "devices");
	else if (asprintf(&loader->devices_dir, "%s/devices", strcmp(dir, "/") ? dir : "") < 0)
		loader->devices_dir = NULL, loader->oom = true;
	if (realpath(dir, resolved))
		loader->config_dir = loader_strdup(loader, resolved);
	free(dir);
}

/*
 * The shipped profiles of the source tree this program was built in, when it runs from
 * there uninstalled (build/sluiced, build/asan/sluicectl, build/asan/tests/test_config):
 * the tree is the first of the executable's directory and the three above it that holds
 * config/devices/ and daemon/config.c. Found from the executable, not baked in at build
 * time, so a moved tree still works and an installed binary never looks into the tree
 * it was built in. NULL when there is none.
 */
static char *build_tree_profiles(struct loader *loader)
{
	char exe[PATH_MAX], probe[PATH_MAX + 32];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	struct stat st;

	if (n <= 0)
		return NULL;
	exe[n] = '\0';
	for (int up = 0; up < 4; up++) {
		char *slash = strrchr(exe, '/');
		if (!slash || slash == exe)
			return NULL;
		*slash = '\0'; /* exe is now the directory one level up */
		snprintf(probe, sizeof probe, "%s/daemon/config.c", exe);
		if (stat(probe, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		snprintf(probe, sizeof probe, "%s/config/devices", exe);
		if (stat(probe, &st) == 0 && S_ISDIR(st.st_mode))
			return loader_strdup(loader, probe);
	}
	return NULL;
}

static void loader_add_profile_dir(struct loader *loader, char *dir, const char *note)
{
	char **dirs;
	const char **notes;

	if (!dir)
		return;
	dirs = realloc(loader->profile_dirs, (loader->nprofile_dirs + 1) * sizeof *dirs);
	if (dirs)
		loader->profile_dirs = dirs;
	notes = realloc(loader->profile_notes, (loader->nprofile_dirs + 1) * sizeof *notes);
	if (notes)
		loader->profile_notes = notes;
	if (!dirs || !notes) {
		free(dir);
		loader->oom = true;
		return;
	}
	dirs[loader->nprofile_dirs] = dir;
	notes[loader->nprofile_dirs] = note;
	loader->nprofile_dirs++;
}

/*
 * The directories searched after devices/ beside the config, in order: the ones given
 * (opts, else $SLUICE_PROFILE_PATH), or else this build's shipped profiles when the
 * program runs uninstalled, then the installed ones.
 */
static int loader_set_profile_dirs(struct loader *loader, const struct config_opts *opts)
{
	const char *path = opts ? opts->profile_path : NULL, *note = NULL;
	char *copy, *save = NULL;

	if (!path && (path = getenv("SLUICE_PROFILE_PATH")) && *path)
		note = "SLUICE_PROFILE_PATH";
	if (!path || !*path) {
		loader_add_profile_dir(loader, build_tree_profiles(loader), "this build's");
		loader_add_profile_dir(loader, loader_strdup(loader, SLUICE_DATADIR "/devices"),
				       "installed");
		return loader->oom ? -1 : 0;
	}
	if (!(copy = loader_strdup(loader, path)))
		return -1;
	for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save))
		loader_add_profile_dir(loader, loader_strdup(loader, dir), note);
	free(copy);
	return loader->oom ? -1 : 0;
}

/* The sections of the config's root mapping, in the order they depend on each other. */
static void load_sections(struct loader *loader, struct document *doc)
{
	struct config *cfg = loader->cfg;
	ynode_t *root = document_root(doc), *seen[KEYS_MAX], *value;
	struct scope scope;

	scope_top(&scope, loader, doc);
	if (!scope_expect_map(&scope, root, "the configuration"))
		return;
	keys_walk(&scope, root, root_keys, cfg, seen);
	if ((value = keys_seen(root_keys, seen, "gateway")))
		parse_gateway(&scope, value);
	if ((value = keys_seen(root_keys, seen, "uplink")))
		parse_uplink(&scope, value);
	if (!cfg->uplink.client_id && cfg->gateway.id[0])
		cfg->uplink.client_id = loader_strdup(loader, cfg->gateway.id);
	if ((value = keys_seen(root_keys, seen, "buffer")))
		parse_buffer(&scope, value);
	if ((value = keys_seen(root_keys, seen, "web")))
		parse_web(&scope, value);
	list_parse(&scope, keys_seen(root_keys, seen, "buses"), "buses", (void **)&cfg->buses,
		   sizeof *cfg->buses, &loader->bus_id_locs, parse_bus);
	if ((value = keys_seen(root_keys, seen, "devices")) && value->type == YAML_SEQUENCE_NODE &&
	    !(loader->device_incomplete = loader_calloc(loader, node_list_len(value),
							sizeof *loader->device_incomplete)))
		return;
	list_parse(&scope, value, "devices", (void **)&cfg->devices, sizeof *cfg->devices,
		   &loader->device_id_locs, parse_device);
	if (!cfg->ndevices && !loader->nerrors)
		scope_warn(&scope, root, "no devices are configured: nothing will be polled");
	list_parse(&scope, keys_seen(root_keys, seen, "alerts"), "alerts", (void **)&cfg->rules,
		   sizeof *cfg->rules, &loader->rule_id_locs, parse_rule);
	check_topics(&scope);
}

/* A config from file path, or from text[0..len) standing for it when text is not NULL. */
static struct config *config_load_text(const char *path, const unsigned char *text, size_t len,
				       const struct config_opts *opts, struct config_diag *diag)
{
	struct config *cfg = calloc(1, sizeof *cfg);
	struct loader loader;
	struct document doc;

	if (diag)
		memset(diag, 0, sizeof *diag);
	if (!cfg) {
		if (diag) {
			diag->msgs = calloc(1, sizeof *diag->msgs);
			diag->is_error = calloc(1, sizeof *diag->is_error);
			if (diag->msgs && diag->is_error &&
			    asprintf(&diag->msgs[0], "%s: out of memory", path) >= 0) {
				diag->is_error[0] = true;
				diag->n = 1;
			}
			diag->nerrors = 1;
		}
		return NULL;
	}
	loader_init(&loader, cfg);
	memset(&doc, 0, sizeof doc);
	cfg->path = loader_strdup(&loader, path);
	defaults(&loader);
	loader_set_config_dir(&loader, path);
	loader_set_profile_dirs(&loader, opts);
	loader.skip_secret_files = opts && opts->skip_secret_files;
	loader.text = text;
	loader.text_len = len;
	if (!loader.oom && document_load(&loader, path, &doc) == 0)
		load_sections(&loader, &doc);
	document_free(&doc);
	loader_finish(&loader, diag);
	if (loader.nerrors || loader.oom) {
		loader_free(&loader);
		config_free(cfg);
		return NULL;
	}
	loader_free(&loader);
	return cfg;
}

struct config *config_load(const char *path, const struct config_opts *opts,
			   struct config_diag *diag)
{
	return config_load_text(path, NULL, 0, opts, diag);
}

/* For the fuzzer (tests/fuzz/fuzz_config.c) and tests: no file to write first. */
struct config *config_load_buffer(const char *name, const void *text, size_t len,
				  const struct config_opts *opts, struct config_diag *diag)
{
	/* a non-NULL pointer marks "from memory", also for an empty text */
	static const unsigned char empty[1];

	return config_load_text(name, text ? text : empty, text ? len : 0, opts, diag);
}

int config_load_profile(const char *name, const char *config_dir, const struct config_opts *opts,
			struct point_def **points, size_t *npoints, char **display_name,
			struct config_diag *diag)
{
	struct config files = { 0 }; /* the files[] the messages name */
	struct profile *profile = NULL;
	struct loader loader;
	int rc = -1;

	*points = NULL;
	*npoints = 0;
	*display_name = NULL;
	if (diag)
		memset(diag, 0, sizeof *diag);
	loader_init(&loader, &files);
	if (config_dir && asprintf(&loader.devices_dir, "%s/devices", config_dir) < 0) {
		loader.devices_dir = NULL;
		loader.oom = true;
	}
	loader_set_profile_dirs(&loader, opts);
	if (loader.oom)
		goto out;
	if (strcmp(name, "sunspec") == 0) {
		*display_name = loader_strdup(&loader, "SunSpec (points discovered at run time)");
		rc = loader.oom ? -1 : 0;
		goto out;
	}
	if (!config_id_valid(name)) {
		loader_emit(&loader, true, SIZE_MAX, 0, 0, "'%s' is not a valid profile name "
			    "(letters, digits, '-' and '_')", name);
		goto out;
	}
	if (!(profile = profile_get(&loader, name))) {
		if (!loader.oom) {
			struct document none = { .file_index = SIZE_MAX };
			struct scope scope;
			scope_top(&scope, &loader, &none);
			profile_not_found(&scope, NULL, name);
		}
		goto out;
	}
	if (!profile->ok)
		goto out;
	*points = profile->points;
	*npoints = profile->npoints;
	*display_name = profile->display;
	profile->points = NULL;
	profile->display = NULL;
	rc = 0;
out:
	loader_finish(&loader, diag);
	if (loader.nerrors && rc == 0) {
		free(*points);
		free(*display_name);
		*points = NULL;
		*display_name = NULL;
		*npoints = 0;
		rc = -1;
	}
	loader_free(&loader);
	for (size_t i = 0; i < files.nfiles; i++)
		free(files.files[i]);
	free(files.files);
	return rc;
}

/* ---- the rest of the interface -------------------------------------------------------- */

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	free(cfg->path);
	for (size_t i = 0; i < cfg->nfiles; i++)
		free(cfg->files[i]);
	free(cfg->files);
	free(cfg->gateway.name);
	free(cfg->gateway.timezone);
	free(cfg->gateway.data_dir);
	free(cfg->uplink.host);
	free(cfg->uplink.client_id);
	free(cfg->uplink.username);
	free(cfg->uplink.password_file);
	free(cfg->uplink.ca_file);
	free(cfg->uplink.cert_file);
	free(cfg->uplink.key_file);
	free(cfg->uplink.topic_prefix);
	free(cfg->uplink.sparkplug_group);
	free(cfg->uplink.sparkplug_primary_host);
	for (size_t i = 0; i < cfg->uplink.nfallback; i++) {
		struct broker_cfg *b = &cfg->uplink.fallback[i];
		free(b->host);
		free(b->client_id);
		free(b->username);
		free(b->password_file);
		free(b->ca_file);
		free(b->cert_file);
		free(b->key_file);
	}
	free(cfg->uplink.fallback);
	free(cfg->web.listen);
	free(cfg->web.password_file);
	free(cfg->web.cert_file);
	free(cfg->web.key_file);
	for (size_t i = 0; i < cfg->nbuses; i++) {
		free(cfg->buses[i].host);
		free(cfg->buses[i].device);
	}
	free(cfg->buses);
	for (size_t i = 0; i < cfg->ndevices; i++) {
		free(cfg->devices[i].name);
		free(cfg->devices[i].profile);
		if (!cfg->devices[i].points_shared) {
			free(cfg->devices[i].points);
			free(cfg->devices[i].point_locs);
		}
	}
	free(cfg->devices);
	for (size_t i = 0; i < cfg->nshared; i++) {
		free(cfg->shared_points[i]);
		free(cfg->shared_locs[i]);
	}
	free(cfg->shared_points);
	free(cfg->shared_locs);
	for (size_t i = 0; i < cfg->nrules; i++) {
		free(cfg->rules[i].name);
		free(cfg->rules[i].inflow);
		free(cfg->rules[i].outflow);
		free(cfg->rules[i].night_exclude);
		free(cfg->rules[i].on_fire);
		free(cfg->rules[i].on_resolve);
	}
	free(cfg->rules);
	free(cfg);
}

void config_summary(const struct config *cfg, char *buf, size_t len)
{
	size_t npoints = 0, nsunspec = 0;
	char sun[40] = "";

	for (size_t i = 0; i < cfg->ndevices; i++) {
		npoints += cfg->devices[i].npoints;
		nsunspec += cfg->devices[i].sunspec;
	}
	if (nsunspec)
		snprintf(sun, sizeof sun, " (%zu SunSpec)", nsunspec);
	snprintf(buf, len, "%zu bus%s, %zu device%s%s, %zu point%s, %zu rule%s", cfg->nbuses,
		 cfg->nbuses == 1 ? "" : "es", cfg->ndevices, cfg->ndevices == 1 ? "" : "s", sun,
		 npoints, npoints == 1 ? "" : "s", cfg->nrules, cfg->nrules == 1 ? "" : "s");
}

struct site config_site(const struct config *cfg)
{
	struct site s = {
		.buses = cfg->buses,
		.nbuses = cfg->nbuses,
		.devices = cfg->devices,
		.ndevices = cfg->ndevices,
	};

	return s;
}

long config_find_device(const struct config *cfg, const char *id)
{
	for (size_t i = 0; i < cfg->ndevices; i++)
		if (strcmp(cfg->devices[i].id, id) == 0)
			return (long)i;
	return -1;
}

long config_find_point(const struct device_cfg *d, const char *name)
{
	for (size_t i = 0; i < d->npoints; i++)
		if (strcmp(d->points[i].name, name) == 0)
			return (long)i;
	return -1;
}
