/*
 * config_sections: every section of a config but alerts — gateway, uplink, buffer, buses,
 * devices with their points — and the device profiles the devices name. Owns their key
 * tables, their defaults where a key's absence depends on another (the port with tls,
 * a serial bus's guard, a device's register limits from its profile), the checks across
 * their keys, and the checks of the files and devices they name.
 *
 * It must never: read a file's contents other than a profile's (TLS and password files
 * are only stat()ed and opened, to prove that they can be), open a socket or a serial
 * line, or reach into the rules (config_rules.c resolves its references to devices and
 * points after these sections are read).
 *
 * Ranges, chosen for what real equipment and the daemon can do:
 *   uplink.port, tcp.port         1..65535
 *   uplink.keepalive              5s..65535s (MQTT's field is 16 bits of seconds)
 *   uplink.inflight               1..65535 (MQTT packet ids are 16 bits)
 *   uplink.health_interval        1s..1d
 *   uplink.ack_timeout            1s..1d (longer than any broker's pause worth waiting for)
 *   uplink.max_packet_size        at least 512B (the status message must fit)
 *   uplink.qos                    1 or 2: the outbox deletes a row on the broker's ack
 *   uplink.sparkplug.qos          0 or 1 (Sparkplug's hosts expect 0; 1 by default, so that a
 *                                 reading counts as delivered when the broker has it)
 *   uplink.command_max_age        1s..1d
 *   uplink.fallback_check         10s..1d (a probe of the first broker each time)
 *   uplink.fallback               at most UPLINK_FALLBACK_MAX entries
 *   sparkplug group, primary_host not empty, no '/', '+' or '#' (Sparkplug's ids are
 *                                 topic levels)
 *   buffer.max_size               at least 1 MiB (below that SQLite's own pages dominate)
 *   buffer.keep_sent              0..3650d
 *   bus timeout                   10ms..60s;  guard 0..10s
 *   rtu.baud                      1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200,
 *                                 230400, 460800, 921600
 *   rtu.data_bits 7|8, rtu.stop_bits 1|2, rtu.parity none|even|odd
 *   device unit_id                0..255 on tcp (gateways route by it; 255 is common),
 *                                 1..247 on serial lines (Modbus serial addressing)
 *   device interval               100ms..1d;  offline_after 1..1000
 *   device max_registers          1..125 (the Modbus limit for one read);  max_gap 0..125
 *   point address                 0..65535, and address + width <= 65536
 *   point bit                     0..15, only for bool in input/holding registers
 *   point length                  1..64 registers, only for string (and required there)
 *   point scale                   finite, not 0;  offset finite
 *   point min, max                finite, min <= max, only on numbers (not bool, string)
 *   point order                   a form of the point's width (order_forms), or
 *                                 byte_order/word_order big|little, not both
 *   points                        at most DEVICE_POINTS_MAX a device or profile,
 *                                 CONFIG_POINTS_MAX in a config (config_int.h)
 */
#include "config_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "uplink.h"

#define ZONEINFO "/usr/share/zoneinfo"

static const struct enumval log_levels[] = {
	{ "error", LOG_LVL_ERROR }, { "warning", LOG_LVL_WARNING }, { "info", LOG_LVL_INFO },
	{ "debug", LOG_LVL_DEBUG }, { NULL, 0 },
};

static const struct enumval protocols[] = {
	{ "mqtt311", MQTT_311 }, { "mqtt5", MQTT_5 }, { NULL, 0 },
};

static const struct enumval formats[] = {
	{ "sluice", FORMAT_SLUICE }, { "sparkplug", FORMAT_SPARKPLUG },
	{ "thingsboard", FORMAT_THINGSBOARD }, { NULL, 0 },
};

const char *uplink_format_name(int format)
{
	const char *name = enum_name(formats, format);

	return name ? name : "unknown";
}

static const struct enumval durabilities[] = {
	{ "normal", DURABILITY_NORMAL }, { "full", DURABILITY_FULL }, { NULL, 0 },
};

static const struct enumval parities[] = {
	{ "none", 'N' }, { "even", 'E' }, { "odd", 'O' }, { NULL, 0 },
};

static const struct enumval orders[] = {
	{ "big", ORDER_BIG }, { "little", ORDER_LITTLE }, { NULL, 0 },
};

/*
 * order: as manuals write it, a letter a byte of the value, A the most significant, in
 * the order the bytes travel on the wire. Each form is one setting of the two flags the
 * codec has (drivers/codec.c): byte_order little swaps the two bytes of every register
 * (ABCD -> BADC), word_order little reverses the registers (ABCD -> CDAB; for 64 bits
 * AB CD EF GH -> GH EF CD AB). The other permutations (CDABGHEF, ...) are not something
 * those two flags express, nor a device seen in the field.
 */
struct order_form {
	const char *name;
	unsigned regs;
	uint8_t byte_order, word_order;
};

static const struct order_form order_forms[] = {
	{ "AB", 1, ORDER_BIG, ORDER_BIG },
	{ "BA", 1, ORDER_LITTLE, ORDER_BIG },
	{ "ABCD", 2, ORDER_BIG, ORDER_BIG },
	{ "CDAB", 2, ORDER_BIG, ORDER_LITTLE },
	{ "BADC", 2, ORDER_LITTLE, ORDER_BIG },
	{ "DCBA", 2, ORDER_LITTLE, ORDER_LITTLE },
	{ "ABCDEFGH", 4, ORDER_BIG, ORDER_BIG },
	{ "GHEFCDAB", 4, ORDER_BIG, ORDER_LITTLE },
	{ "BADCFEHG", 4, ORDER_LITTLE, ORDER_BIG },
	{ "HGFEDCBA", 4, ORDER_LITTLE, ORDER_LITTLE },
};
#define NORDER_FORMS (sizeof order_forms / sizeof order_forms[0])

static const struct order_form *order_form_find(const char *s)
{
	for (size_t i = 0; i < NORDER_FORMS; i++)
		if (strcasecmp(order_forms[i].name, s) == 0)
			return &order_forms[i];
	return NULL;
}

int config_order_flags(const char *name, unsigned regs, uint8_t *byte_order,
		       uint8_t *word_order)
{
	const struct order_form *form = order_form_find(name);

	if (!form || form->regs != regs)
		return -1;
	*byte_order = form->byte_order;
	*word_order = form->word_order;
	return 0;
}

/* "ABCD, CDAB, BADC or DCBA": the forms of a value of regs registers. */
static const char *order_forms_text(struct scope *scope, unsigned regs)
{
	const char *text = "";
	size_t n = 0, k = 0;

	for (size_t i = 0; i < NORDER_FORMS; i++)
		n += order_forms[i].regs == regs;
	for (size_t i = 0; i < NORDER_FORMS; i++)
		if (order_forms[i].regs == regs) {
			k++;
			text = loader_text(scope->loader, "%s%s%s", text,
					   k == 1 ? "" : k == n ? " or " : ", ", order_forms[i].name);
		}
	return text;
}

/* byte_order, word_order: big or little; a manual's ABCD form gets pointed to order:. */
static void order_flag_fn(struct scope *scope, const struct key *key, ynode_t *value,
			  void *obj)
{
	const char *name = scope_key(scope, key->name), *s = scope_expect_scalar(scope, value, name);
	struct suggestion suggestion;
	int val;

	if (!s)
		return;
	if (enum_find(orders, s, &val) == 0) {
		*(uint8_t *)key_field(obj, key) = (uint8_t)val;
		return;
	}
	if (order_form_find(s)) {
		scope_error(scope, value, "%s '%s' is not one of big, little (did you mean 'order: "
			    "%s'?)", name, scope_quote(scope, s), order_form_find(s)->name);
		return;
	}
	suggest_init(&suggestion, scope->loader, s);
	suggest_try(&suggestion, "big");
	suggest_try(&suggestion, "little");
	scope_error(scope, value, "%s '%s' is not one of big, little%s", name,
		    scope_quote(scope, s), suggest_text(scope, &suggestion, NULL));
}

static const struct enumval tables[] = {
	{ "coil", MB_COIL }, { "discrete", MB_DISCRETE }, { "input", MB_INPUT },
	{ "holding", MB_HOLDING }, { NULL, 0 },
};

static const struct enumval types[] = {
	{ "bool", PT_BOOL }, { "int16", PT_INT16 }, { "uint16", PT_UINT16 },
	{ "int32", PT_INT32 }, { "uint32", PT_UINT32 }, { "int64", PT_INT64 },
	{ "uint64", PT_UINT64 }, { "float32", PT_FLOAT32 }, { "float64", PT_FLOAT64 },
	{ "string", PT_STRING }, { NULL, 0 },
};

const char *point_type_name(int type)
{
	return enum_name(types, type);
}

/* "holding registers" / "coils": the table as a technician's manual names it. */
static const char *table_words(enum mb_table t)
{
	switch (t) {
	case MB_COIL:
		return "coils";
	case MB_DISCRETE:
		return "discrete inputs";
	case MB_INPUT:
		return "input registers";
	case MB_HOLDING:
		return "holding registers";
	}
	return "registers";
}

static const char *table_word(enum mb_table t)
{
	switch (t) {
	case MB_COIL:
		return "coil";
	case MB_DISCRETE:
		return "discrete input";
	case MB_INPUT:
		return "input register";
	case MB_HOLDING:
		return "holding register";
	}
	return "register";
}

/* ---- paths and files named by the config ---------------------------------------------- */

static char *path_join(struct loader *loader, const char *dir, const char *name)
{
	char *path;

	if (!dir || !*dir || name[0] == '/')
		return loader_strdup(loader, name);
	while (name[0] == '.' && name[1] == '/')
		name += 2;
	if (asprintf(&path, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", name) < 0) {
		loader->oom = true;
		return NULL;
	}
	return path;
}

/* A relative path in the config means: relative to the config file's directory. */
static void path_resolve(struct loader *loader, char **path)
{
	char *resolved;

	if (!*path || (*path)[0] == '/' || !loader->config_dir)
		return;
	if ((resolved = path_join(loader, loader->config_dir, *path))) {
		free(*path);
		*path = resolved;
	}
}

/*
 * A file the daemon will read: TLS material, the password. It must exist and open for
 * reading; a secret must not be readable by others nor writable by anyone but its
 * owner (the expected layout is root:sluice 0640).
 */
static void check_file(struct scope *scope, ynode_t *value, const char *key, char **path,
		       bool secret)
{
	struct stat st;
	int fd;

	if (!*path || !value)
		return;
	path_resolve(scope->loader, path);
	if (scope->loader->skip_secret_files)
		return;
	if (stat(*path, &st) < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			scope_error(scope, value, "%s '%s' does not exist", key,
				    scope_quote(scope, *path));
		else
			scope_error(scope, value, "%s '%s' cannot be checked: %s", key,
				    scope_quote(scope, *path), strerror(errno));
		return;
	}
	if (S_ISDIR(st.st_mode)) {
		scope_error(scope, value, "%s '%s' is a directory, not a file", key,
			    scope_quote(scope, *path));
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		scope_error(scope, value, "%s '%s' is not a regular file", key,
			    scope_quote(scope, *path));
		return;
	}
	if ((fd = open(*path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) < 0) {
		scope_error(scope, value, "%s '%s' cannot be opened for reading: %s", key,
			    scope_quote(scope, *path), strerror(errno));
		return;
	}
	close(fd);
	if (!secret)
		return;
	if (st.st_mode & 0004)
		scope_error(scope, value, "%s '%s' can be read by every user (mode %04o): it holds a "
			    "secret; make it owner root, group sluice, mode 0640", key,
			    scope_quote(scope, *path), (unsigned)(st.st_mode & 07777));
	if (st.st_mode & 0022)
		scope_error(scope, value, "%s '%s' can be written by users other than its owner "
			    "(mode %04o); make it owner root, group sluice, mode 0640", key,
			    scope_quote(scope, *path), (unsigned)(st.st_mode & 07777));
}

/* A host name or address; the port goes in port:, IPv6 without brackets. */
static void check_host(struct scope *scope, ynode_t *value, const char *key, const char *host)
{
	const char *colon;

	if (!value || !host)
		return;
	colon = strchr(host, ':');
	if (strpbrk(host, " \t/"))
		scope_error(scope, value, "%s '%s' is not a host name or address", key,
			    scope_quote(scope, host));
	else if (host[0] == '[')
		scope_error(scope, value, "%s '%s': write an IPv6 address without brackets, in "
			    "quotes (\"2001:db8::1\")", key, scope_quote(scope, host));
	else if (colon && !strchr(colon + 1, ':'))
		scope_error(scope, value, "%s '%s' includes a port: give the port in port:", key,
			    scope_quote(scope, host));
}

/* ---- gateway ------------------------------------------------------------------------------ */

static const struct key gateway_keys[] = {
	{ .name = "id", .type = K_ID, .off = OFF(struct gateway_cfg, id), .flags = KF_REQ },
	{ .name = "name", .type = K_STR, .off = OFF(struct gateway_cfg, name) },
	{ .name = "timezone", .type = K_STR, .off = OFF(struct gateway_cfg, timezone) },
	{ .name = "data_dir", .type = K_STR, .off = OFF(struct gateway_cfg, data_dir) },
	{ .name = "log_level", .type = K_ENUM, .off = OFF(struct gateway_cfg, log_level),
	  .names = log_levels },
	{ .name = "description", .type = K_TEXT },
	{ NULL },
};
KEY_TABLE_FITS(gateway_keys);

/* Only checked where the zone database is installed: a bare box may lack it. */
static void check_timezone(struct scope *scope, ynode_t *value, const char *tz)
{
	struct loader *loader = scope->loader;
	struct suggestion suggestion;
	const char *slash;
	struct stat st;

	if (strcmp(tz, "UTC") == 0 || stat(ZONEINFO, &st) < 0 || !S_ISDIR(st.st_mode))
		return;
	if (tz[0] != '/' && !strstr(tz, "..") &&
	    stat(loader_text(loader, "%s/%s", ZONEINFO, tz), &st) == 0 && S_ISREG(st.st_mode))
		return;
	suggest_init(&suggestion, scope->loader, tz);
	if ((slash = strrchr(tz, '/')) && !strstr(tz, "..") && tz[0] != '/') {
		/* "Asia/Shangai": the names of that region */
		const char *region = loader_text(loader, "%.*s", (int)(slash - tz + 1), tz);
		suggest_dir(&suggestion, loader_text(loader, "%s/%s", ZONEINFO, region), NULL,
			    region);
	} else {
		suggest_dir(&suggestion, ZONEINFO, NULL, "");
	}
	if (suggestion.best[0])
		scope_error(scope, value, "timezone '%s' is not a known time zone%s",
			    scope_quote(scope, tz), suggest_text(scope, &suggestion, NULL));
	else
		scope_error(scope, value, "timezone '%s' is not a known time zone (expected a name "
			    "from the zone database, such as Asia/Shanghai)", scope_quote(scope, tz));
}

void parse_gateway(struct scope *root, ynode_t *map)
{
	struct loader *loader = root->loader;
	struct gateway_cfg *gateway = &loader->cfg->gateway;
	ynode_t *seen[KEYS_MAX], *value;
	struct scope scope;

	if (!scope_expect_map(root, map, "gateway"))
		return;
	scope_open(&scope, root, "", "gateway");
	keys_walk(&scope, map, gateway_keys, gateway, seen);
	if ((value = keys_seen(gateway_keys, seen, "timezone")) && gateway->timezone)
		check_timezone(&scope, value, gateway->timezone);
	path_resolve(loader, &gateway->data_dir);
}

/* ---- uplink --------------------------------------------------------------------------------- */

static void qos_fn(struct scope *scope, const struct key *key, ynode_t *value, void *obj)
{
	struct uplink_cfg *uplink = obj;
	const char *name = scope_key(scope, key->name), *s = scope_expect_scalar(scope, value, name);
	int64_t n;

	if (!s)
		return;
	if (config_parse_int(s, &n) < 0)
		scope_error(scope, value, "%s '%s' is not a whole number (expected 1 or 2)", name,
			    scope_quote(scope, s));
	else if (n == 0)
		scope_error(scope, value, "%s 0 is not allowed: the outbox deletes a reading only when "
			    "the broker acknowledges it, and QoS 0 has no acknowledgement (use 1 or "
			    "2)", name);
	else if (n != 1 && n != 2)
		scope_error(scope, value, "%s %s is out of range (expected 1 or 2)", name,
			    scope_quote(scope, s));
	else
		uplink->qos = (int)n;
}

static const struct key uplink_keys[] = {
	{ .name = "host", .type = K_STR, .off = OFF(struct uplink_cfg, host), .flags = KF_REQ },
	{ .name = "port", .type = K_INT, .off = OFF(struct uplink_cfg, port), .min = 1,
	  .max = 65535 },
	{ .name = "protocol", .type = K_ENUM, .off = OFF(struct uplink_cfg, protocol),
	  .names = protocols },
	{ .name = "client_id", .type = K_STR, .off = OFF(struct uplink_cfg, client_id) },
	{ .name = "username", .type = K_STR, .off = OFF(struct uplink_cfg, username) },
	{ .name = "password_file", .type = K_STR, .off = OFF(struct uplink_cfg, password_file) },
	{ .name = "tls", .type = K_NODE },
	{ .name = "topic_prefix", .type = K_STR, .off = OFF(struct uplink_cfg, topic_prefix) },
	{ .name = "qos", .type = K_FN, .fn = qos_fn },
	{ .name = "keepalive", .type = K_DUR, .off = OFF(struct uplink_cfg, keepalive_ms),
	  .min = 5 * SEC_MS, .max = 65535.0 * SEC_MS },
	{ .name = "inflight", .type = K_INT, .off = OFF(struct uplink_cfg, inflight), .min = 1,
	  .max = 65535 },
	{ .name = "health_interval", .type = K_DUR,
	  .off = OFF(struct uplink_cfg, health_interval_ms), .min = SEC_MS, .max = DAY_MS },
	{ .name = "ack_timeout", .type = K_DUR, .off = OFF(struct uplink_cfg, ack_timeout_ms),
	  .min = SEC_MS, .max = DAY_MS },
	{ .name = "max_packet_size", .type = K_SIZE,
	  .off = OFF(struct uplink_cfg, max_packet_size), .min = 512 },
	{ .name = "format", .type = K_ENUM, .off = OFF(struct uplink_cfg, format), .names = formats },
	{ .name = "sparkplug", .type = K_NODE },
	{ .name = "commands", .type = K_BOOL, .off = OFF(struct uplink_cfg, commands) },
	{ .name = "command_max_age", .type = K_DUR,
	  .off = OFF(struct uplink_cfg, command_max_age_ms), .min = SEC_MS, .max = DAY_MS },
	{ .name = "fallback", .type = K_NODE },
	{ .name = "fallback_check", .type = K_DUR, .off = OFF(struct uplink_cfg, fallback_check_ms),
	  .min = 10 * SEC_MS, .max = DAY_MS },
	{ NULL },
};
KEY_TABLE_FITS(uplink_keys);

static const struct key sparkplug_keys[] = {
	{ .name = "group", .type = K_STR, .off = OFF(struct uplink_cfg, sparkplug_group) },
	{ .name = "primary_host", .type = K_STR,
	  .off = OFF(struct uplink_cfg, sparkplug_primary_host) },
	{ .name = "qos", .type = K_INT, .off = OFF(struct uplink_cfg, sparkplug_qos), .min = 0,
	  .max = 1 },
	{ NULL },
};
KEY_TABLE_FITS(sparkplug_keys);

/* A fallback entry is read into a struct uplink_cfg of its own (so tls: is read as the
 * first broker's is), then moved into its struct broker_cfg. */
static const struct key fallback_keys[] = {
	{ .name = "host", .type = K_STR, .off = OFF(struct uplink_cfg, host), .flags = KF_REQ },
	{ .name = "port", .type = K_INT, .off = OFF(struct uplink_cfg, port), .min = 1,
	  .max = 65535 },
	{ .name = "client_id", .type = K_STR, .off = OFF(struct uplink_cfg, client_id) },
	{ .name = "username", .type = K_STR, .off = OFF(struct uplink_cfg, username) },
	{ .name = "password_file", .type = K_STR, .off = OFF(struct uplink_cfg, password_file) },
	{ .name = "tls", .type = K_NODE },
	{ NULL },
};
KEY_TABLE_FITS(fallback_keys);

static const struct key tls_keys[] = {
	{ .name = "ca_file", .type = K_STR, .off = OFF(struct uplink_cfg, ca_file) },
	{ .name = "cert_file", .type = K_STR, .off = OFF(struct uplink_cfg, cert_file) },
	{ .name = "key_file", .type = K_STR, .off = OFF(struct uplink_cfg, key_file) },
	{ NULL },
};
KEY_TABLE_FITS(tls_keys);

static void check_topic_prefix(struct scope *scope, ynode_t *value, const char *topic)
{
	size_t n = strlen(topic);

	if (strpbrk(topic, "+#"))
		scope_error(scope, value, "topic_prefix '%s' must not contain the MQTT wildcards + "
			    "or #", scope_quote(scope, topic));
	else if (topic[0] == '/' || topic[n - 1] == '/')
		scope_error(scope, value, "topic_prefix '%s' must not begin or end with '/'",
			    scope_quote(scope, topic));
	else if (strstr(topic, "//"))
		scope_error(scope, value, "topic_prefix '%s' has an empty level ('//')",
			    scope_quote(scope, topic));
	else if (topic[0] == '$')
		scope_error(scope, value, "topic_prefix '%s' must not begin with '$' (topics "
			    "beginning with $ belong to the broker)", scope_quote(scope, topic));
}

/*
 * The longest topic and the deepest: <prefix>/<gateway>/ and then status, health,
 * telemetry/<device>, device/<device>, alert/<rule>/<check>, and every device's
 * alert/comms-<device>/offline (docs/mqtt.md). uplink_publish builds none longer than
 * UPLINK_TOPIC_MAX - 1 bytes: a longer prefix would leave a daemon that runs and
 * publishes nothing. mosquitto refuses a topic with more than MQTT_SLASHES_MAX '/'
 * (TOPIC_HIERARCHY_LIMIT, its default and not configurable). Ids are at most 63 bytes,
 * so only the prefix can make either too big: the error is at topic_prefix.
 */
#define MQTT_SLASHES_MAX 200

/*
 * Sparkplug's topics: spBv1.0/<group>/<NBIRTH|DBIRTH|...>/<gateway id>[/<device id>], and
 * the host's spBv1.0/STATE/<primary_host>. Ids are at most 63 bytes: only the group and
 * the host id can make one too long. None has a '/' of its own (check_sparkplug_id).
 */
static void check_sparkplug_topics(struct scope *root)
{
	struct loader *loader = root->loader;
	const struct config *cfg = loader->cfg;
	const char *group = cfg->uplink.sparkplug_group, *host = cfg->uplink.sparkplug_primary_host;
	ynode_t *at = loader->sparkplug_group_node ? loader->sparkplug_group_node
						       : loader->uplink_node;
	size_t longest = 0, n;
	const char *dev = "";
	struct scope scope;

	if (!group || !cfg->gateway.id[0])
		return;
	for (size_t i = 0; i < cfg->ndevices; i++)
		if (strlen(cfg->devices[i].id) > longest)
			longest = strlen(cfg->devices[i].id), dev = cfg->devices[i].id;
	n = strlen("spBv1.0/") + strlen(group) + strlen("/DBIRTH/") + strlen(cfg->gateway.id) +
	    (longest ? 1 + longest : 0);
	scope_open(&scope, root, "", "uplink");
	if (n > UPLINK_TOPIC_MAX - 1)
		scope_error(&scope, at, "sparkplug.group is too long: the topic spBv1.0/%s/DBIRTH/"
			    "%s%s%s would be %zu bytes, and sluiced publishes topics of at most %d "
			    "bytes", scope_quote(&scope, group), cfg->gateway.id, longest ? "/" : "",
			    dev, n, UPLINK_TOPIC_MAX - 1);
	if (host && strlen("spBv1.0/STATE/") + strlen(host) > UPLINK_TOPIC_MAX - 1)
		scope_error(&scope, loader->uplink_node, "sparkplug.primary_host is too long: its "
			    "STATE topic would be longer than %d bytes", UPLINK_TOPIC_MAX - 1);
}

void check_topics(struct scope *root)
{
	struct loader *loader = root->loader;
	const struct config *cfg = loader->cfg;
	const char *prefix = cfg->uplink.topic_prefix, *what = "status";
	size_t fixed, longest = strlen("status"), comms = strlen("comms-"), slashes = 0, deepest;
	ynode_t *at = loader->topic_prefix_node ? loader->topic_prefix_node : loader->uplink_node;
	struct scope scope;

	if (cfg->uplink.format == FORMAT_SPARKPLUG) {
		check_sparkplug_topics(root);
		return;
	}
	/* ThingsBoard's are v1/gateway/... and v1/devices/me/...: fixed and short */
	if (cfg->uplink.format != FORMAT_SLUICE || !prefix || !cfg->gateway.id[0])
		return;
	for (const char *p = prefix; *p; p++)
		slashes += *p == '/';
	fixed = strlen(prefix) + 1 + strlen(cfg->gateway.id) + 1;
	deepest = slashes + 2;
	if (cfg->uplink.commands) {
		longest = strlen("command/reply"), what = "command/reply";
		deepest = slashes + 3;
	}
	for (size_t i = 0; i < cfg->ndevices; i++) {
		const char *id = cfg->devices[i].id;
		/* telemetry/<id>; alert/comms-<id>/offline, its rule id cut to ID_MAX - 1 bytes */
		size_t t = strlen("telemetry/") + strlen(id);
		size_t c = strlen("alert/") + (comms + strlen(id) < ID_MAX ? comms + strlen(id)
									  : ID_MAX - 1) +
			   strlen("/offline");
		if (t > longest)
			longest = t, what = loader_text(loader, "telemetry/%s", id);
		if (c > longest)
			longest = c, what = loader_text(loader, "alert/comms-%.*s/offline",
							(int)(ID_MAX - 1 - comms), id);
		deepest = slashes + 4;
	}
	for (size_t i = 0; i < cfg->nrules; i++) {
		const char *check = rule_longest_check(cfg->rules[i].kind);
		size_t a = strlen("alert/") + strlen(cfg->rules[i].id) + 1 + strlen(check);
		if (a > longest)
			longest = a, what = loader_text(loader, "alert/%s/%s", cfg->rules[i].id, check);
		deepest = slashes + 4;
	}
	scope_open(&scope, root, "", "uplink");
	if (fixed + longest > UPLINK_TOPIC_MAX - 1)
		scope_error(&scope, at, "topic_prefix is too long: the topic %s/%s/%s would be %zu "
			    "bytes, and sluiced publishes topics of at most %d bytes (shorten "
			    "topic_prefix by %zu bytes)", scope_quote(&scope, prefix),
			    cfg->gateway.id, what, fixed + longest, UPLINK_TOPIC_MAX - 1,
			    fixed + longest - (UPLINK_TOPIC_MAX - 1));
	if (deepest > MQTT_SLASHES_MAX)
		scope_error(&scope, at, "topic_prefix has %zu levels: with it the %s topics have %zu "
			    "'/' and brokers refuse more than %d (mosquitto's limit): use at most %zu "
			    "levels", slashes + 1,
			    deepest == slashes + 4   ? "alert"
			    : deepest == slashes + 3 ? "command"
						     : "status",
			    deepest, MQTT_SLASHES_MAX, slashes + 1 - (deepest - MQTT_SLASHES_MAX));
}

/* tls: true (the system's CAs), or a block naming the files */
static void parse_tls(struct scope *uplink_scope, ynode_t *value, struct uplink_cfg *uplink)
{
	ynode_t *seen[KEYS_MAX];
	struct scope scope;
	bool on;

	if (value->type == YAML_SCALAR_NODE && !node_is_null(value) &&
	    config_parse_bool(node_text(value), &on) == 0) {
		uplink->tls = on;
		return;
	}
	if (!scope_expect_map(uplink_scope, value, "tls"))
		return;
	uplink->tls = true;
	scope_nest(&scope, uplink_scope, "tls.");
	keys_walk(&scope, value, tls_keys, uplink, seen);
	check_file(&scope, keys_seen(tls_keys, seen, "ca_file"), "tls.ca_file", &uplink->ca_file,
		   false);
	check_file(&scope, keys_seen(tls_keys, seen, "cert_file"), "tls.cert_file",
		   &uplink->cert_file, false);
	/* the client key is as secret as the password */
	check_file(&scope, keys_seen(tls_keys, seen, "key_file"), "tls.key_file",
		   &uplink->key_file, true);
	if (!uplink->cert_file != !uplink->key_file)
		scope_error(uplink_scope, value, "tls.cert_file and tls.key_file go together (a "
			    "client certificate needs its key)");
}

/* A Sparkplug id (group, host id): one level of Sparkplug's topics. */
static void check_sparkplug_id(struct scope *scope, ynode_t *value, const char *key,
			       const char *id)
{
	if (value && id && strpbrk(id, "/+#"))
		scope_error(scope, value, "%s '%s' must not contain '/', '+' or '#' (it is one level "
			    "of Sparkplug's topics)", key, scope_quote(scope, id));
}

static void parse_sparkplug(struct scope *uplink_scope, ynode_t *value,
			    struct uplink_cfg *uplink)
{
	ynode_t *seen[KEYS_MAX];
	struct scope scope;

	if (!scope_expect_map(uplink_scope, value, "sparkplug"))
		return;
	scope_nest(&scope, uplink_scope, "sparkplug.");
	keys_walk(&scope, value, sparkplug_keys, uplink, seen);
	uplink_scope->loader->sparkplug_group_node = keys_seen(sparkplug_keys, seen, "group");
	check_sparkplug_id(&scope, keys_seen(sparkplug_keys, seen, "group"), "sparkplug.group",
			   uplink->sparkplug_group);
	check_sparkplug_id(&scope, keys_seen(sparkplug_keys, seen, "primary_host"),
			   "sparkplug.primary_host", uplink->sparkplug_primary_host);
}

static char *copy_or_null(struct loader *loader, const char *s)
{
	return s ? loader_strdup(loader, s) : NULL;
}

/*
 * fallback: brokers tried in order when the first cannot be reached. Each is read as
 * the first broker's keys are; what it does not give is copied from the first broker,
 * already read: TLS as a whole, the credentials as a pair, the client id.
 */
static void parse_fallback(struct scope *uplink_scope, ynode_t *list,
			   struct uplink_cfg *uplink)
{
	struct loader *loader = uplink_scope->loader;
	size_t n;

	if (!scope_expect_list(uplink_scope, list, "fallback"))
		return;
	n = node_list_len(list);
	if (n > UPLINK_FALLBACK_MAX) {
		scope_error(uplink_scope, list, "fallback has %zu brokers; at most %d are tried", n,
			    UPLINK_FALLBACK_MAX);
		return;
	}
	if (!n || !(uplink->fallback = loader_calloc(loader, n, sizeof *uplink->fallback)))
		return;
	for (size_t i = 0; i < n; i++) {
		ynode_t *item = document_item(uplink_scope->doc, list, i), *seen[KEYS_MAX], *v;
		struct uplink_cfg e = { 0 };
		struct scope scope;

		scope_open(&scope, uplink_scope, "", "uplink.fallback[%zu]", i);
		if (!scope_expect_map(uplink_scope, item, loader_text(loader, "fallback[%zu]", i)))
			continue;
		keys_walk(&scope, item, fallback_keys, &e, seen);
		check_host(&scope, keys_seen(fallback_keys, seen, "host"), "host", e.host);
		check_file(&scope, keys_seen(fallback_keys, seen, "password_file"), "password_file",
			   &e.password_file, true);
		if ((v = keys_seen(fallback_keys, seen, "tls"))) {
			parse_tls(&scope, v, &e);
		} else {
			e.tls = uplink->tls;
			e.ca_file = copy_or_null(loader, uplink->ca_file);
			e.cert_file = copy_or_null(loader, uplink->cert_file);
			e.key_file = copy_or_null(loader, uplink->key_file);
		}
		if (!keys_seen(fallback_keys, seen, "username") &&
		    !keys_seen(fallback_keys, seen, "password_file")) {
			e.username = copy_or_null(loader, uplink->username);
			e.password_file = copy_or_null(loader, uplink->password_file);
		} else if ((v = keys_seen(fallback_keys, seen, "password_file")) && !e.username) {
			scope_error(&scope, v, "password_file needs a username (MQTT sends a password "
				    "only with a user name)");
		}
		if (!keys_seen(fallback_keys, seen, "client_id"))
			e.client_id = copy_or_null(loader, uplink->client_id);
		if (!keys_seen(fallback_keys, seen, "port"))
			e.port = e.tls ? 8883 : 1883;
		uplink->fallback[uplink->nfallback++] = (struct broker_cfg){
			.host = e.host, .port = e.port, .client_id = e.client_id,
			.username = e.username, .password_file = e.password_file, .tls = e.tls,
			.ca_file = e.ca_file, .cert_file = e.cert_file, .key_file = e.key_file,
			.loc = node_loc(uplink_scope->doc, item) };
		if (e.host && uplink->host && strcmp(e.host, uplink->host) == 0 &&
		    e.port == uplink->port)
			scope_warn(&scope, item, "this is the first broker again (%s, port %u): a "
				   "fallback that is the same broker does not help when it is down",
				   scope_quote(&scope, e.host), (unsigned)e.port);
	}
}

/* What the format makes of the other keys: what it needs, and what does not apply. */
static void check_format(struct scope *scope, ynode_t *map, ynode_t **seen,
			 struct uplink_cfg *uplink)
{
	ynode_t *format = keys_seen(uplink_keys, seen, "format"), *v;
	const char *name = uplink_format_name(uplink->format), *s;
	int val;

	/* a format that is not one was reported: what it would need is unknown */
	if (format && (!(s = document_peek_scalar(scope->doc, map, "format")) ||
		       enum_find(formats, s, &val) != 0))
		return;
	if (uplink->format == FORMAT_SPARKPLUG && !uplink->sparkplug_group &&
	    !keys_seen(uplink_keys, seen, "sparkplug"))
		scope_error(scope, format ? format : map, "format sparkplug needs sparkplug.group "
			    "(the Sparkplug group id of the gateway's edge node): add sparkplug: "
			    "{ group: NAME }");
	else if (uplink->format == FORMAT_SPARKPLUG && !uplink->sparkplug_group)
		scope_error(scope, keys_seen(uplink_keys, seen, "sparkplug"), "format sparkplug "
			    "needs sparkplug.group (the Sparkplug group id of the gateway's edge "
			    "node)");
	if (uplink->format != FORMAT_SPARKPLUG && (v = keys_seen(uplink_keys, seen, "sparkplug")))
		scope_warn(scope, v, "sparkplug: applies to format sparkplug only; the format is "
			   "%s", name);
	if (uplink->format != FORMAT_SLUICE && (v = keys_seen(uplink_keys, seen, "topic_prefix")))
		scope_warn(scope, v, "topic_prefix applies to the sluice format only: the %s "
			   "format's topics are fixed by its standard", name);
	if (uplink->format == FORMAT_SPARKPLUG && (v = keys_seen(uplink_keys, seen, "qos")))
		scope_warn(scope, v, "qos applies to the sluice and thingsboard formats; "
			   "Sparkplug's is sparkplug.qos (0 or 1, default 1)");
	if (uplink->format == FORMAT_THINGSBOARD && uplink->qos == 2)
		scope_warn(scope, keys_seen(uplink_keys, seen, "qos"), "qos 2: ThingsBoard's MQTT "
			   "transport takes QoS 0 and 1 (use 1)");
	if (!uplink->nfallback && (v = keys_seen(uplink_keys, seen, "fallback_check")))
		scope_warn(scope, v, "fallback_check applies only with fallback: brokers");
	if (!uplink->commands && (v = keys_seen(uplink_keys, seen, "command_max_age")))
		scope_warn(scope, v, "command_max_age applies only with commands: true");
}

void parse_uplink(struct scope *root, ynode_t *map)
{
	struct loader *loader = root->loader;
	struct uplink_cfg *uplink = &loader->cfg->uplink;
	ynode_t *seen[KEYS_MAX], *value;
	struct scope scope;

	if (!scope_expect_map(root, map, "uplink"))
		return;
	uplink->loc = node_loc(root->doc, map);
	scope_open(&scope, root, "", "uplink");
	keys_walk(&scope, map, uplink_keys, uplink, seen);
	loader->uplink_node = map;
	loader->topic_prefix_node = keys_seen(uplink_keys, seen, "topic_prefix");
	check_host(&scope, keys_seen(uplink_keys, seen, "host"), "host", uplink->host);
	if ((value = keys_seen(uplink_keys, seen, "topic_prefix")) && uplink->topic_prefix)
		check_topic_prefix(&scope, value, uplink->topic_prefix);
	check_file(&scope, keys_seen(uplink_keys, seen, "password_file"), "password_file",
		   &uplink->password_file, true);
	if ((value = keys_seen(uplink_keys, seen, "tls")))
		parse_tls(&scope, value, uplink);
	if ((value = keys_seen(uplink_keys, seen, "password_file")) && !uplink->username)
		scope_error(&scope, value, "password_file needs a username (MQTT sends a password "
			    "only with a user name)");
	if (!keys_seen(uplink_keys, seen, "port"))
		uplink->port = uplink->tls ? 8883 : 1883;
	if ((value = keys_seen(uplink_keys, seen, "sparkplug")))
		parse_sparkplug(&scope, value, uplink);
	if ((value = keys_seen(uplink_keys, seen, "fallback")))
		parse_fallback(&scope, value, uplink);
	check_format(&scope, map, seen, uplink);
}

/* ---- buffer ----------------------------------------------------------------------------- */

static const struct key buffer_keys[] = {
	{ .name = "max_size", .type = K_SIZE, .off = OFF(struct buffer_cfg, max_size), .min = MIB },
	{ .name = "durability", .type = K_ENUM, .off = OFF(struct buffer_cfg, durability),
	  .names = durabilities },
	{ .name = "keep_sent", .type = K_DUR, .off = OFF(struct buffer_cfg, keep_sent_ms),
	  .max = 3650.0 * DAY_MS },
	{ NULL },
};
KEY_TABLE_FITS(buffer_keys);

void parse_buffer(struct scope *root, ynode_t *map)
{
	ynode_t *seen[KEYS_MAX];
	struct scope scope;

	if (!scope_expect_map(root, map, "buffer"))
		return;
	scope_open(&scope, root, "", "buffer");
	keys_walk(&scope, map, buffer_keys, &root->loader->cfg->buffer, seen);
}

/* ---- web ----------------------------------------------------------------------------------- */

static const struct key web_keys[] = {
	{ .name = "listen", .type = K_STR, .off = OFF(struct web_cfg, listen), .flags = KF_REQ },
	{ .name = "password_file", .type = K_STR, .off = OFF(struct web_cfg, password_file) },
	{ .name = "cert_file", .type = K_STR, .off = OFF(struct web_cfg, cert_file) },
	{ .name = "key_file", .type = K_STR, .off = OFF(struct web_cfg, key_file) },
	{ NULL },
};
KEY_TABLE_FITS(web_keys);

/*
 * The page reads every device and probes any bus: on an address others can reach, it
 * must ask for a password. Only numeric addresses: sluiced never waits on a resolver to
 * open it. A port below 1024 needs CAP_NET_BIND_SERVICE, which the unit does not grant.
 */
void parse_web(struct scope *root, ynode_t *map)
{
	struct web_cfg *web = &root->loader->cfg->web;
	ynode_t *seen[KEYS_MAX], *value;
	struct config_listen l;
	struct scope scope;

	if (!scope_expect_map(root, map, "web"))
		return;
	web->loc = node_loc(root->doc, map);
	scope_open(&scope, root, "", "web");
	keys_walk(&scope, map, web_keys, web, seen);
	check_file(&scope, keys_seen(web_keys, seen, "password_file"), "password_file",
		   &web->password_file, true);
	check_file(&scope, keys_seen(web_keys, seen, "cert_file"), "cert_file", &web->cert_file,
		   false);
	/* the key is as secret as the passwords */
	check_file(&scope, keys_seen(web_keys, seen, "key_file"), "key_file", &web->key_file, true);
	if (!web->cert_file != !web->key_file)
		scope_error(&scope, map, "cert_file and key_file go together (HTTPS needs the "
			    "certificate and its key)");
	if (!(value = keys_seen(web_keys, seen, "listen")) || !web->listen)
		return;
	if (config_parse_listen(web->listen, &l) != 0) {
		scope_error(&scope, value, "listen '%s' is not an address and port: expected a "
			    "numeric IPv4 address and port (\"0.0.0.0:8080\") or an IPv6 address in "
			    "brackets (\"[::]:8080\"); names are not looked up",
			    scope_quote(&scope, web->listen));
		return;
	}
	if (!l.loopback && !web->password_file)
		scope_error(&scope, value, "listen '%s' is not a loopback address: password_file is "
			    "required (lines user:HASH, as `openssl passwd -6` makes them), or anyone "
			    "who reaches the box reads every device and probes its buses",
			    scope_quote(&scope, web->listen));
	if (l.port < 1024)
		scope_warn(&scope, value, "listen port %u is below 1024: sluiced's unit does not "
			   "grant the capability to bind it (CAP_NET_BIND_SERVICE); use 8080",
			   (unsigned)l.port);
}

/* ---- buses ------------------------------------------------------------------------------- */

static void baud_fn(struct scope *scope, const struct key *key, ynode_t *value, void *obj)
{
	static const unsigned rates[] = { 1200, 2400, 4800, 9600, 19200, 38400, 57600,
					  115200, 230400, 460800, 921600 };
	struct bus_cfg *bus = obj;
	const char *name = scope_key(scope, key->name), *s = scope_expect_scalar(scope, value, name);
	int64_t n;

	if (!s)
		return;
	if (config_parse_int(s, &n) < 0) {
		scope_error(scope, value, "%s '%s' is not a whole number", name,
			    scope_quote(scope, s));
		return;
	}
	for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++)
		if (n == rates[i]) {
			bus->baud = rates[i];
			return;
		}
	scope_error(scope, value, "%s %s is not a standard rate (expected 1200, 2400, 4800, 9600, "
		    "19200, 38400, 57600, 115200, 230400, 460800 or 921600)", name,
		    scope_quote(scope, s));
}

static const struct key bus_keys[] = {
	{ .name = "id", .type = K_ID, .off = OFF(struct bus_cfg, id), .flags = KF_REQ },
	{ .name = "tcp", .type = K_NODE },
	{ .name = "rtu", .type = K_NODE },
	{ .name = "rtu_over_tcp", .type = K_NODE },
	{ .name = "timeout", .type = K_DUR, .off = OFF(struct bus_cfg, timeout_ms), .min = 10,
	  .max = 60 * SEC_MS },
	{ .name = "guard", .type = K_DUR, .off = OFF(struct bus_cfg, guard_ms), .min = 0,
	  .max = 10 * SEC_MS },
	{ .name = "description", .type = K_TEXT },
	{ NULL },
};
KEY_TABLE_FITS(bus_keys);

static const struct key tcp_keys[] = {
	{ .name = "host", .type = K_STR, .off = OFF(struct bus_cfg, host), .flags = KF_REQ },
	{ .name = "port", .type = K_INT, .off = OFF(struct bus_cfg, port), .min = 1, .max = 65535 },
	{ NULL },
};
KEY_TABLE_FITS(tcp_keys);

static const struct key rtu_keys[] = {
	{ .name = "device", .type = K_STR, .off = OFF(struct bus_cfg, device), .flags = KF_REQ },
	{ .name = "baud", .type = K_FN, .fn = baud_fn },
	{ .name = "parity", .type = K_ENUM, .off = OFF(struct bus_cfg, parity), .names = parities },
	{ .name = "data_bits", .type = K_INT, .off = OFF(struct bus_cfg, data_bits), .min = 7,
	  .max = 8 },
	{ .name = "stop_bits", .type = K_INT, .off = OFF(struct bus_cfg, stop_bits), .min = 1,
	  .max = 2 },
	{ .name = "rs485", .type = K_BOOL, .off = OFF(struct bus_cfg, rs485) },
	{ NULL },
};
KEY_TABLE_FITS(rtu_keys);

/* indexed by enum bus_kind */
static const char *const transports[] = { "tcp", "rtu", "rtu_over_tcp" };

/* The serial device may be a USB adapter not plugged in yet: a warning, not an error. */
static void check_serial(struct scope *scope, ynode_t *value, const char *device)
{
	struct stat st;

	if (!value || !device)
		return;
	if (stat(device, &st) < 0)
		scope_warn(scope, value, "rtu.device '%s' does not exist (yet); sluiced will keep "
			   "trying to open it", scope_quote(scope, device));
	else if (!S_ISCHR(st.st_mode))
		scope_warn(scope, value, "rtu.device '%s' is not a serial device (character device)",
			   scope_quote(scope, device));
}

/* The block of the bus's transport (rtu:, tcp: or rtu_over_tcp:). */
static void parse_transport(struct scope *bus_scope, ynode_t *map, struct bus_cfg *bus)
{
	const struct config *cfg = bus_scope->loader->cfg;
	ynode_t *seen[KEYS_MAX], *device;
	struct scope scope;
	long other;

	if (!scope_expect_map(bus_scope, map, transports[bus->kind]))
		return;
	if (bus->kind != BUS_RTU) {
		scope_nest(&scope, bus_scope, bus->kind == BUS_TCP ? "tcp." : "rtu_over_tcp.");
		keys_walk(&scope, map, tcp_keys, bus, seen);
		check_host(&scope, keys_seen(tcp_keys, seen, "host"), scope_key(&scope, "host"),
			   bus->host);
		return;
	}
	scope_nest(&scope, bus_scope, "rtu.");
	keys_walk(&scope, map, rtu_keys, bus, seen);
	device = keys_seen(rtu_keys, seen, "device");
	check_serial(&scope, device, bus->device);
	if (bus->device && (other = idset_add(bus_scope->loader, &bus_scope->loader->bus_lines,
					     cfg->buses, cfg->nbuses - 1)) >= 0)
		scope_error(&scope, device, "rtu.device '%s' is already the line of bus %s "
			    "(one bus per serial line)", scope_quote(&scope, bus->device),
			    scope_quote(&scope, cfg->buses[other].id));
}

static const char *bus_id(const void *items, size_t i)
{
	return ((const struct bus_cfg *)items)[i].id;
}

static const char *bus_line(const void *items, size_t i)
{
	return ((const struct bus_cfg *)items)[i].device;
}

static const char *device_id(const void *items, size_t i)
{
	return ((const struct device_cfg *)items)[i].id;
}

void parse_bus(struct scope *root, ynode_t *map, size_t index)
{
	struct loader *loader = root->loader;
	struct config *cfg = loader->cfg;
	struct bus_cfg *bus = &cfg->buses[cfg->nbuses];
	ynode_t *seen[KEYS_MAX], *transport = NULL, *value;
	int ntransports = 0;
	struct scope scope;

	if (!scope_open_item(&scope, root, map, "buses", index))
		return;
	loader->bus_ids.name = bus_id;
	loader->bus_lines.name = bus_line;
	cfg->nbuses++;
	*bus = (struct bus_cfg){ .kind = -1, .port = 502, .baud = 9600, .parity = 'N',
				 .data_bits = 8, .stop_bits = 1, .timeout_ms = SEC_MS };
	bus->loc = node_loc(root->doc, map);
	keys_walk(&scope, map, bus_keys, bus, seen);
	if ((value = keys_seen(bus_keys, seen, "id")) && bus->id[0])
		scope_unique_id(&scope, value, "bus", bus->id, cfg->buses, cfg->nbuses - 1,
				loader->bus_id_locs, &loader->bus_ids);
	for (int kind = 0; kind < 3; kind++) {
		ynode_t *given = keys_seen(bus_keys, seen, transports[kind]);
		if (!given)
			continue;
		if (ntransports++) {
			scope_error(&scope, given, "give only one of tcp:, rtu: or rtu_over_tcp: (found "
				    "%s: and %s:)", transports[bus->kind], transports[kind]);
			continue;
		}
		bus->kind = kind;
		transport = given;
	}
	if (!ntransports) {
		scope_error(&scope, map, "missing the transport: give one of tcp:, rtu: or "
			    "rtu_over_tcp:");
		return;
	}
	if (!keys_seen(bus_keys, seen, "guard") && bus->kind != BUS_TCP)
		bus->guard_ms = 5;
	parse_transport(&scope, transport, bus);
}

/* ---- points ------------------------------------------------------------------------------- */

/* The points of a device (its profile's, then its own) or of a profile, as they are read. */
struct point_set {
	struct point_def *defs;
	struct src_loc *locs;
	bool *valid;             /* parsed without error: worth checking for overlaps */
	size_t n, cap;
	size_t nfrom_profile;    /* the first nfrom_profile came from the device's profile */
	const char *profile;     /* its name, for messages */
};

static int point_set_add(struct loader *loader, struct point_set *points,
			 const struct point_def *def, const struct src_loc *loc, bool valid)
{
	if (points->n == points->cap) {
		size_t cap = points->cap ? points->cap * 2 : 8;
		struct point_def *defs = realloc(points->defs, cap * sizeof *defs);
		if (defs)
			points->defs = defs;
		struct src_loc *locs = realloc(points->locs, cap * sizeof *locs);
		if (locs)
			points->locs = locs;
		bool *valids = realloc(points->valid, cap * sizeof *valids);
		if (valids)
			points->valid = valids;
		if (!defs || !locs || !valids) {
			loader->oom = true;
			return -1;
		}
		points->cap = cap;
	}
	points->defs[points->n] = *def;
	points->locs[points->n] = *loc;
	points->valid[points->n] = valid;
	points->n++;
	return 0;
}

static const struct key point_keys[] = {
	{ .name = "table", .type = K_ENUM, .off = OFF(struct point_def, table), .names = tables,
	  .flags = KF_REQ },
	{ .name = "address", .type = K_INT, .off = OFF(struct point_def, address), .min = 0,
	  .max = 65535, .flags = KF_REQ },
	{ .name = "type", .type = K_ENUM, .off = OFF(struct point_def, type), .names = types,
	  .flags = KF_REQ },
	{ .name = "bit", .type = K_INT, .off = OFF(struct point_def, bit), .min = 0, .max = 15 },
	{ .name = "length", .type = K_INT, .off = OFF(struct point_def, length), .min = 1,
	  .max = POINT_STRING_MAX_REGS },
	{ .name = "byte_order", .type = K_FN, .off = OFF(struct point_def, byte_order),
	  .fn = order_flag_fn },
	{ .name = "word_order", .type = K_FN, .off = OFF(struct point_def, word_order),
	  .fn = order_flag_fn },
	{ .name = "order", .type = K_NODE },
	{ .name = "scale", .type = K_NUM, .off = OFF(struct point_def, scale),
	  .flags = KF_NONZERO },
	{ .name = "offset", .type = K_NUM, .off = OFF(struct point_def, offset) },
	{ .name = "unit", .type = K_CHARS, .off = OFF(struct point_def, unit) },
	{ .name = "writable", .type = K_BOOL, .off = OFF(struct point_def, writable) },
	{ .name = "min", .type = K_NUM, .off = OFF(struct point_def, min),
	  .has = HAS(struct point_def, has_min) },
	{ .name = "max", .type = K_NUM, .off = OFF(struct point_def, max),
	  .has = HAS(struct point_def, has_max) },
	{ .name = "description", .type = K_TEXT },
	{ NULL },
};
KEY_TABLE_FITS(point_keys);

/*
 * order: ABCD and its kin, in place of byte_order and word_order. A string's registers
 * are not reordered, only the bytes in each: AB or BA, like a 16-bit value.
 */
static void point_order(struct scope *scope, ynode_t **seen, ynode_t *value,
			struct point_def *def)
{
	const char *s = scope_expect_scalar(scope, value, "order");
	const struct order_form *form;
	unsigned regs, bits;

	if (!s)
		return;
	if (def->table == MB_COIL || def->table == MB_DISCRETE) {
		scope_error(scope, value, "order is for registers: a %s is a single bit",
			    table_word(def->table));
		return;
	}
	if (keys_seen(point_keys, seen, "byte_order") || keys_seen(point_keys, seen, "word_order")) {
		scope_error(scope, value, "give order or byte_order/word_order, not both (order "
			    "sets both)");
		return;
	}
	regs = def->type == PT_BOOL || def->type == PT_STRING ? 1 : codec_type_regs(def->type);
	bits = def->type == PT_STRING ? 16 : 16 * regs;
	form = order_form_find(s);
	if (form && form->regs == regs) {
		def->byte_order = form->byte_order;
		def->word_order = form->word_order;
		return;
	}
	if (def->type == PT_STRING)
		scope_error(scope, value, "order '%s' does not fit type string: its bytes are "
			    "swapped in each register or not (expected AB or BA)",
			    scope_quote(scope, s));
	else if (form)
		scope_error(scope, value, "order %s is the order of a %u-bit value; type %s is %u "
			    "bits (expected %s)", form->name, 16 * form->regs,
			    enum_name(types, def->type), bits, order_forms_text(scope, regs));
	else
		scope_error(scope, value, "order '%s' is not one of %s (the orders of a %u-bit "
			    "value that byte and word swapping give)", scope_quote(scope, s),
			    order_forms_text(scope, regs), bits);
}

/* What the fields of one point say together; each key alone was checked by the walk. */
static void point_check(struct scope *scope, ynode_t **seen, struct point_def *def)
{
	ynode_t *type = keys_seen(point_keys, seen, "type");
	ynode_t *table = keys_seen(point_keys, seen, "table");
	ynode_t *value;
	bool bits = def->table == MB_COIL || def->table == MB_DISCRETE;
	unsigned width;

	/* a table or type that did not parse was reported; what follows would be noise */
	if (!type || !table || (unsigned)def->table > MB_HOLDING || (unsigned)def->type > PT_STRING)
		return;
	if (bits && def->type != PT_BOOL)
		scope_error(scope, type, "type %s cannot be read from a %s: %ss hold single bits "
			    "(use type bool)", enum_name(types, def->type), table_word(def->table),
			    table_word(def->table));
	if ((value = keys_seen(point_keys, seen, "bit"))) {
		if (def->type != PT_BOOL)
			scope_error(scope, value, "bit is only for type bool (a bool inside a "
				    "register)");
		else if (bits)
			scope_error(scope, value, "bit is only for input and holding registers: a %s "
				    "is a single bit already", table_word(def->table));
	}
	if ((value = keys_seen(point_keys, seen, "length")) && def->type != PT_STRING)
		scope_error(scope, value, "length is only for type string");
	if (def->type == PT_STRING && !keys_seen(point_keys, seen, "length"))
		scope_error(scope, type, "a string point needs length: (its size in registers, "
			    "1..%d)", POINT_STRING_MAX_REGS);
	if (def->type == PT_BOOL || def->type == PT_STRING) {
		if ((value = keys_seen(point_keys, seen, "scale")))
			scope_error(scope, value, "scale applies to numbers, not to type %s",
				    enum_name(types, def->type));
		if ((value = keys_seen(point_keys, seen, "offset")))
			scope_error(scope, value, "offset applies to numbers, not to type %s",
				    enum_name(types, def->type));
	}
	if ((value = keys_seen(point_keys, seen, "writable")) && def->writable &&
	    (def->table == MB_INPUT || def->table == MB_DISCRETE))
		scope_error(scope, value, "writable: %ss are read-only (only coil and holding points "
			    "can be written)", table_word(def->table));
	if ((value = keys_seen(point_keys, seen, "min") ? keys_seen(point_keys, seen, "min")
							 : keys_seen(point_keys, seen, "max"))) {
		/* the range of a write from the platform (uplink.commands) */
		if (def->type == PT_BOOL || def->type == PT_STRING)
			scope_error(scope, value, "min and max apply to numbers, not to type %s",
				    enum_name(types, def->type));
		else if (def->has_min && def->has_max && def->min > def->max)
			scope_error(scope, keys_seen(point_keys, seen, "max"), "max %g is below min %g",
				    def->max, def->min);
		else if (!def->writable)
			scope_warn(scope, value, "min and max bound what the platform may write "
				   "(uplink.commands), and this point is not writable");
	}
	if ((value = keys_seen(point_keys, seen, "order")))
		point_order(scope, seen, value, def);
	width = bits ? 1 : def->type == PT_STRING ? def->length : codec_type_regs(def->type);
	if (width && (value = keys_seen(point_keys, seen, "address")) &&
	    (unsigned)def->address + width > 65536)
		scope_error(scope, value, "the point runs past the last address: %s %u-%u "
			    "(addresses end at 65535)", table_words(def->table),
			    (unsigned)def->address, (unsigned)def->address + width - 1);
}

/* One pair name: {table, address, ...} of a points: mapping, into points. */
static void point_parse(struct scope *scope, ynode_t *map, size_t i, const char *owner,
			struct point_set *points)
{
	struct loader *loader = scope->loader;
	struct point_def def = { .bit = -1, .scale = 1.0 };
	ynode_t *key, *value, *seen[KEYS_MAX];
	size_t errors_before = loader->nerrors;
	struct scope point_scope;
	struct src_loc loc;
	const char *name;
	bool clash = false;

	if (!map_pair(scope, map, i, "point", &key, &value))
		return;
	/* out of range until the walk sets them: see point_check */
	def.table = (enum mb_table)(MB_HOLDING + 1);
	def.type = (enum pt_type)(PT_STRING + 1);
	name = node_text(key);
	if (!config_id_valid(name) || strlen(name) >= POINT_NAME_MAX) {
		scope_error(scope, key, "point name '%s' is not valid: use only letters, digits, '-' "
			    "and '_' (at most %d bytes)", scope_quote(scope, name),
			    POINT_NAME_MAX - 1);
		return;
	}
	for (size_t j = 0; j < points->nfrom_profile; j++)
		if (strcmp(points->defs[j].name, name) == 0) {
			scope_error(scope, key, "point '%s' is already defined by profile %s (%s:%d)",
				    scope_quote(scope, name), scope_quote(scope, points->profile),
				    points->locs[j].file, points->locs[j].line);
			clash = true;
		}
	if (clash)
		return;
	if (owner)
		scope_open(&point_scope, scope, "", "point '%s' of %s", name,
			   scope_quote(scope, owner));
	else
		scope_open(&point_scope, scope, "", "point '%s'", name);
	if (value->type != YAML_MAPPING_NODE) {
		scope_wrong_shape(scope, value, loader_text(loader, "point '%s'", name),
				  "a mapping (table, address, type, ...)");
		return;
	}
	keys_walk(&point_scope, value, point_keys, &def, seen);
	point_check(&point_scope, seen, &def);
	memcpy(def.name, name, strlen(name) + 1);
	loc = node_loc(scope->doc, value);
	point_set_add(loader, points, &def, &loc, loader->nerrors == errors_before);
}

/*
 * Read a points: mapping (name -> point) into points. owner names the device ("device
 * pump-1", or "devices[3]" without an id) for inline points; NULL in a profile (the
 * file names the profile).
 */
static void points_parse(struct scope *scope, ynode_t *map, const char *owner,
			 struct point_set *points)
{
	if (!scope_expect_map(scope, map, "points"))
		return;
	for (size_t i = 0; i < node_map_len(map); i++) {
		size_t mark = loader_texts_mark(scope->loader);

		point_parse(scope, map, i, owner, points);
		/* a profile may have hundreds of points: their texts go with them */
		loader_texts_release(scope->loader, mark);
	}
}

/* "12" or "12-13" */
static const char *address_range(struct scope *scope, unsigned address, unsigned width)
{
	if (width <= 1)
		return loader_text(scope->loader, "%u", address);
	return loader_text(scope->loader, "%u-%u", address, address + width - 1);
}

/* The points' indexes in order of table and address (then index), for overlap_check. */
static int point_order_cmp(const void *a, const void *b, void *ctx)
{
	const struct point_def *defs = ctx;
	size_t i = *(const size_t *)a, j = *(const size_t *)b;

	if (defs[i].table != defs[j].table)
		return defs[i].table < defs[j].table ? -1 : 1;
	if (defs[i].address != defs[j].address)
		return defs[i].address < defs[j].address ? -1 : 1;
	return i < j ? -1 : i > j;
}

/* Whether b overlaps a, the earlier point: shared registers, except bools naming
 * different bits of one register. */
static bool points_overlap(const struct point_def *a, const struct point_def *b)
{
	unsigned width_a = codec_width(a), width_b = codec_width(b);

	if (a->table != b->table || (unsigned)a->address + width_a <= b->address ||
	    (unsigned)b->address + width_b <= a->address)
		return false;
	return !(a->type == PT_BOOL && b->type == PT_BOOL && a->bit >= 0 && b->bit >= 0 &&
		 a->address == b->address && a->bit != b->bit);
}

/* The message for b overlapping a (earlier, index ia in points). */
static void overlap_report(struct scope *scope, const struct point_set *points, size_t ia,
			   size_t ib)
{
	const struct point_def *a = &points->defs[ia], *b = &points->defs[ib];
	unsigned width_a = codec_width(a), width_b = codec_width(b);
	const char *other, *range_a, *range_b;

	if (ia < points->nfrom_profile && ib >= points->nfrom_profile)
		other = loader_text(scope->loader, "'%s' of profile %s", a->name, points->profile);
	else
		other = loader_text(scope->loader, "'%s'", a->name);
	if (a->type == PT_BOOL && b->type == PT_BOOL && a->bit >= 0 && b->bit >= 0 &&
	    a->address == b->address) {
		scope_error_at(scope, &points->locs[ib], "point '%s' overlaps point %s (both are "
			       "bit %d of %s %u)", b->name, other, b->bit, table_word(b->table),
			       (unsigned)b->address);
		return;
	}
	range_b = address_range(scope, b->address, width_b);
	range_a = address_range(scope, a->address, width_a);
	if (strcmp(range_a, range_b) == 0)
		scope_error_at(scope, &points->locs[ib], "point '%s' overlaps point %s (both use %s "
			       "%s)", b->name, other,
			       width_b > 1 ? table_words(b->table) : table_word(b->table), range_b);
	else
		scope_error_at(scope, &points->locs[ib], "point '%s' overlaps point %s (%s %s and "
			       "%s)", b->name, other, table_words(b->table), range_b, range_a);
}

/*
 * Points of one table must not share registers (two readings of one quantity are a
 * mistake in the map), except bools naming different bits of one register. A point is
 * reported once, at its definition, with the first earlier point it overlaps (moving it
 * fixes them all); only points at index >= from are checked (the earlier ones were
 * checked where they were defined: the profile file).
 *
 * The points are sorted by address, so each is compared with the points that start at
 * most POINT_STRING_MAX_REGS - 1 registers before it (no point is wider) up to its end,
 * not with all the others: a device's few thousand points cost thousands of comparisons,
 * not millions.
 */
static void overlap_check(struct scope *scope, const struct point_set *points, size_t from)
{
	size_t n = 0, *order, *pos;

	if (points->n < 2 || from >= points->n)
		return;
	order = loader_calloc(scope->loader, points->n, sizeof *order);
	pos = loader_calloc(scope->loader, points->n, sizeof *pos);
	if (!order || !pos) {
		free(order);
		free(pos);
		return;
	}
	for (size_t i = 0; i < points->n; i++)
		if (points->valid[i])
			order[n++] = i;
	qsort_r(order, n, sizeof *order, point_order_cmp, points->defs);
	for (size_t k = 0; k < n; k++)
		pos[order[k]] = k;
	for (size_t j = from; j < points->n; j++) {
		const struct point_def *b = &points->defs[j];
		unsigned end = (unsigned)b->address + codec_width(b);
		size_t first = SIZE_MAX, k;

		if (!points->valid[j])
			continue;
		/* back to the first point of the table that could reach b */
		for (k = pos[j]; k > 0; k--) {
			const struct point_def *a = &points->defs[order[k - 1]];
			if (a->table != b->table ||
			    (unsigned)a->address + POINT_STRING_MAX_REGS <= b->address)
				break;
		}
		for (; k < n; k++) {
			size_t i = order[k];
			const struct point_def *a = &points->defs[i];
			if (a->table != b->table || a->address >= end)
				break;
			if (i < j && i < first && points_overlap(a, b))
				first = i;
		}
		if (first != SIZE_MAX)
			overlap_report(scope, points, first, j);
	}
	free(order);
	free(pos);
}

/* ---- profiles --------------------------------------------------------------------------- */

static const struct key profile_keys[] = {
	{ .name = "profile", .type = K_NODE, .flags = KF_REQ },
	{ .name = "name", .type = K_STR, .off = OFF(struct profile, display) },
	{ .name = "description", .type = K_TEXT },
	{ .name = "source", .type = K_TEXT },
	{ .name = "points", .type = K_NODE, .flags = KF_REQ },
	{ .name = "max_registers", .type = K_INT, .off = OFF(struct profile, max_registers),
	  .min = 1, .max = 125, .has = HAS(struct profile, has_max_registers) },
	{ .name = "max_gap", .type = K_INT, .off = OFF(struct profile, max_gap), .min = 0,
	  .max = 125, .has = HAS(struct profile, has_max_gap) },
	{ NULL },
};
KEY_TABLE_FITS(profile_keys);

/* The directory of the i-th place a profile is looked for: devices/ beside the config,
 * then the profile path's; NULL for a place there is not. */
static const char *profile_dir(const struct loader *loader, size_t i)
{
	return i == 0 ? loader->devices_dir : loader->profile_dirs[i - 1];
}

/* The file that holds profile name, or NULL. */
static char *profile_path(struct loader *loader, const char *name)
{
	for (size_t i = 0; i < loader->nprofile_dirs + 1; i++) {
		const char *dir = profile_dir(loader, i);
		struct stat st;
		char *path;

		if (!dir)
			continue;
		if (asprintf(&path, "%s/%s.yaml", dir, name) < 0) {
			loader->oom = true;
			return NULL;
		}
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
			return path;
		free(path);
	}
	return NULL;
}

/*
 * Every place looked in, each with what it is, and the two ways to add a profile: a
 * technician who gets this message should not need the documentation to act on it.
 */
void profile_not_found(struct scope *scope, ynode_t *value, const char *name)
{
	struct loader *loader = scope->loader;
	struct suggestion suggestion;
	const char *dirs = "", *quoted = scope_quote(scope, name), *add;

	suggest_init(&suggestion, scope->loader, name);
	for (size_t i = 0; i < loader->nprofile_dirs + 1; i++) {
		const char *dir = profile_dir(loader, i);
		const char *note = i == 0 ? "beside the config"
			: loader->profile_notes ? loader->profile_notes[i - 1] : NULL;
		if (!dir)
			continue;
		dirs = loader_text(loader, "%s%s%s%s%s%s", dirs, *dirs ? ", " : "", dir,
				   note ? " (" : "", note ? note : "", note ? ")" : "");
		suggest_dir(&suggestion, dir, ".yaml", "");
	}
	if (loader->devices_dir)
		add = loader_text(loader, "put %s.yaml in %s, or name its directory in "
				  "SLUICE_PROFILE_PATH (colon-separated)", quoted,
				  loader->devices_dir);
	else
		add = loader_text(loader, "put %s.yaml in a directory named in SLUICE_PROFILE_PATH "
				  "(colon-separated)", quoted);
	scope_error(scope, value, "profile '%s' not found: no file %s.yaml in %s%s; %s", quoted,
		    quoted, dirs, suggest_text(scope, &suggestion, NULL), add);
}

/* Read profile file path into profile; errors are located in that file. */
static void profile_read(struct loader *loader, struct profile *profile, const char *path)
{
	struct document doc;
	struct scope scope;
	ynode_t *root, *seen[KEYS_MAX], *value;
	struct point_set points = { 0 };
	size_t errors_before = loader->nerrors;
	const char *s;

	profile->found = true;
	if (document_load(loader, path, &doc) < 0)
		goto done;
	scope_top(&scope, loader, &doc);
	root = document_root(&doc);
	if (!scope_expect_map(&scope, root, "a profile"))
		goto done;
	keys_walk(&scope, root, profile_keys, profile, seen);
	if ((value = keys_seen(profile_keys, seen, "profile")) &&
	    (s = scope_expect_scalar(&scope, value, "profile")) && strcmp(s, profile->name) != 0)
		scope_error(&scope, value, "profile '%s' does not match the file's name: a profile "
			    "is found by its file name, so this file must say profile: %s",
			    scope_quote(&scope, s), scope_quote(&scope, profile->name));
	if ((value = keys_seen(profile_keys, seen, "points")) && value->type == YAML_MAPPING_NODE &&
	    node_map_len(value) > DEVICE_POINTS_MAX) {
		scope_error(&scope, value, "a profile has at most %d points; this one has %zu",
			    DEVICE_POINTS_MAX, node_map_len(value));
	} else if (value) {
		points_parse(&scope, value, NULL, &points);
		overlap_check(&scope, &points, 0);
	}
	profile->points = points.defs;
	profile->locs = points.locs;
	profile->valid = points.valid;
	profile->npoints = points.n;
done:
	document_free(&doc);
	profile->ok = !loader->oom && loader->nerrors == errors_before;
}

struct profile *profile_get(struct loader *loader, const char *name)
{
	struct profile *profile, *profiles;
	char *path;

	for (size_t i = 0; i < loader->nprofiles; i++)
		if (strcmp(loader->profiles[i].name, name) == 0)
			return loader->profiles[i].found ? &loader->profiles[i] : NULL;
	profiles = realloc(loader->profiles, (loader->nprofiles + 1) * sizeof *profiles);
	if (!profiles) {
		loader->oom = true;
		return NULL;
	}
	loader->profiles = profiles;
	profile = &loader->profiles[loader->nprofiles];
	memset(profile, 0, sizeof *profile);
	if (!(profile->name = loader_strdup(loader, name)))
		return NULL;
	loader->nprofiles++;
	if (!(path = profile_path(loader, name)))
		return NULL;
	profile_read(loader, profile, path);
	free(path);
	return profile;
}

void profiles_free(struct loader *loader)
{
	for (size_t i = 0; i < loader->nprofiles; i++) {
		free(loader->profiles[i].name);
		free(loader->profiles[i].display);
		if (!loader->profiles[i].shared) {
			free(loader->profiles[i].points);
			free(loader->profiles[i].locs);
		}
		free(loader->profiles[i].valid);
	}
	free(loader->profiles);
	loader->profiles = NULL;
	loader->nprofiles = 0;
}

/* ---- devices ---------------------------------------------------------------------------- */

static const struct key device_keys[] = {
	{ .name = "id", .type = K_ID, .off = OFF(struct device_cfg, id), .flags = KF_REQ },
	{ .name = "name", .type = K_STR, .off = OFF(struct device_cfg, name) },
	{ .name = "bus", .type = K_NODE, .flags = KF_REQ },
	{ .name = "unit_id", .type = K_NODE },
	{ .name = "profile", .type = K_NODE },
	{ .name = "points", .type = K_NODE },
	{ .name = "interval", .type = K_DUR, .off = OFF(struct device_cfg, interval_ms),
	  .min = 100, .max = DAY_MS },
	{ .name = "offline_after", .type = K_INT, .off = OFF(struct device_cfg, offline_after),
	  .min = 1, .max = 1000 },
	{ .name = "max_registers", .type = K_INT, .off = OFF(struct device_cfg, max_registers),
	  .min = 1, .max = 125 },
	{ .name = "max_gap", .type = K_INT, .off = OFF(struct device_cfg, max_gap), .min = 0,
	  .max = 125 },
	{ .name = "description", .type = K_TEXT },
	{ NULL },
};
KEY_TABLE_FITS(device_keys);

static long find_bus(const struct loader *loader, const char *id)
{
	return idset_find(&loader->bus_ids, loader->cfg->buses, id);
}

long loader_find_device(const struct loader *loader, const char *id)
{
	return idset_find(&loader->device_ids, loader->cfg->devices, id);
}

/* bus: an id of a bus above; -1 when it is not one. */
static long device_bus(struct scope *scope, ynode_t *value, struct device_cfg *device)
{
	const struct config *cfg = scope->loader->cfg;
	struct suggestion suggestion;
	const char *s;
	long bus;

	if (!(s = scope_expect_scalar(scope, value, "bus")))
		return -1;
	if ((bus = find_bus(scope->loader, s)) >= 0) {
		device->bus = (size_t)bus;
		return bus;
	}
	suggest_init(&suggestion, scope->loader, s);
	for (size_t i = 0; i < cfg->nbuses && suggest_more(&suggestion); i++)
		suggest_try(&suggestion, cfg->buses[i].id);
	scope_error(scope, value, "bus '%s' does not exist%s", scope_quote(scope, s),
		    suggest_text(scope, &suggestion, NULL));
	return -1;
}

/* On a serial line 0 is broadcast and 248..255 reserved; a TCP gateway routes by any
 * byte, and 255 is what many TCP-only devices expect. */
static void device_unit_id(struct scope *scope, ynode_t *value, long bus,
			   struct device_cfg *device)
{
	const struct config *cfg = scope->loader->cfg;
	bool serial = bus >= 0 && cfg->buses[bus].kind != BUS_TCP;
	int lo = serial ? 1 : 0, hi = serial ? 247 : 255;
	const char *s;
	int64_t n;

	if (!(s = scope_expect_scalar(scope, value, "unit_id")))
		return;
	if (config_parse_int(s, &n) < 0)
		scope_error(scope, value, "unit_id '%s' is not a whole number", scope_quote(scope, s));
	else if (n < lo || n > hi)
		scope_error(scope, value, "unit_id %s is out of range%s%s (expected %d..%d)",
			    scope_quote(scope, s), serial ? " for serial bus " : "",
			    serial ? cfg->buses[bus].id : "", lo, hi);
	else
		device->unit_id = (uint8_t)n;
}

/* profile: its points come first in points (copied only when the device adds points of
 * its own: copy; else the device shares the profile's, device_share); NULL when there
 * are none to take. */
static struct profile *device_profile(struct scope *scope, ynode_t *value, size_t index,
				      struct point_set *points, bool copy)
{
	struct loader *loader = scope->loader;
	struct device_cfg *device = &loader->cfg->devices[index];
	struct profile *profile;
	const char *s;

	if (!(s = scope_expect_scalar(scope, value, "profile"))) {
		loader->device_incomplete[index] = true;
		return NULL;
	}
	loader_set_string(loader, &device->profile, s);
	if (strcmp(s, "sunspec") == 0) {
		device->sunspec = true;
		return NULL;
	}
	if (!config_id_valid(s)) {
		scope_error(scope, value, "profile '%s' is not a valid profile name (letters, digits, "
			    "'-' and '_')", scope_quote(scope, s));
		loader->device_incomplete[index] = true;
		return NULL;
	}
	if (!(profile = profile_get(loader, s))) {
		if (!loader->oom)
			profile_not_found(scope, value, s);
		loader->device_incomplete[index] = true;
		return NULL;
	}
	if (!profile->ok)
		loader->device_incomplete[index] = true;
	for (size_t i = 0; copy && i < profile->npoints; i++)
		point_set_add(loader, points, &profile->points[i], &profile->locs[i],
			      profile->valid[i]);
	points->nfrom_profile = points->n;
	points->profile = profile->name;
	return profile;
}

/* The device has only profile's points: it takes the profile's own table, which the
 * config keeps from then on (one table for every device of that profile: a site of a
 * thousand meters of one model holds their points once). */
static void device_share(struct loader *loader, struct device_cfg *device,
			 struct profile *profile)
{
	struct config *cfg = loader->cfg;

	if (!profile->npoints)
		return;
	if (!profile->shared) {
		struct point_def **pts = realloc(cfg->shared_points,
						 (cfg->nshared + 1) * sizeof *pts);
		struct src_loc **locs;

		if (pts)
			cfg->shared_points = pts;
		locs = pts ? realloc(cfg->shared_locs, (cfg->nshared + 1) * sizeof *locs) : NULL;
		if (!locs) {
			loader->oom = true;
			return;
		}
		cfg->shared_locs = locs;
		cfg->shared_points[cfg->nshared] = profile->points;
		cfg->shared_locs[cfg->nshared] = profile->locs;
		cfg->nshared++;
		profile->shared = true;
	}
	device->points = profile->points;
	device->point_locs = profile->locs;
	device->npoints = profile->npoints;
	device->points_shared = true;
}

void parse_device(struct scope *root, ynode_t *map, size_t index)
{
	struct loader *loader = root->loader;
	struct config *cfg = loader->cfg;
	size_t di = cfg->ndevices;
	struct device_cfg *device = &cfg->devices[di];
	ynode_t *seen[KEYS_MAX], *value;
	struct point_set points = { 0 };
	struct profile *profile = NULL;
	long bus = -1;
	struct scope scope;

	if (!scope_open_item(&scope, root, map, "devices", index))
		return;
	loader->device_ids.name = device_id;
	cfg->ndevices++;
	*device = (struct device_cfg){ .unit_id = 1, .interval_ms = 10 * SEC_MS,
				       .offline_after = 3 };
	device->loc = node_loc(root->doc, map);
	keys_walk(&scope, map, device_keys, device, seen);
	if ((value = keys_seen(device_keys, seen, "id")) && device->id[0])
		scope_unique_id(&scope, value, "device", device->id, cfg->devices, di,
				loader->device_id_locs, &loader->device_ids);
	if ((value = keys_seen(device_keys, seen, "bus")))
		bus = device_bus(&scope, value, device);
	if ((value = keys_seen(device_keys, seen, "unit_id")))
		device_unit_id(&scope, value, bus, device);
	if ((value = keys_seen(device_keys, seen, "profile")))
		profile = device_profile(&scope, value, di, &points,
					 keys_seen(device_keys, seen, "points") != NULL);
	if ((value = keys_seen(device_keys, seen, "points")) && value->type == YAML_MAPPING_NODE &&
	    points.n + node_map_len(value) > DEVICE_POINTS_MAX) {
		if (points.n)
			scope_error(&scope, value, "a device has at most %d points; this one has "
				    "%zu (%zu from profile %s, %zu of its own)", DEVICE_POINTS_MAX,
				    points.n + node_map_len(value), points.n, points.profile,
				    node_map_len(value));
		else
			scope_error(&scope, value, "a device has at most %d points; this one has %zu",
				    DEVICE_POINTS_MAX, node_map_len(value));
		loader->device_incomplete[di] = true;
	} else if (value) {
		size_t errors_before = loader->nerrors;
		const char *owner = device->id[0] ? loader_text(loader, "device %s", device->id)
						  : loader_text(loader, "devices[%zu]", index);
		points_parse(&scope, value, owner, &points);
		if (loader->nerrors != errors_before)
			loader->device_incomplete[di] = true;
	}
	if (!keys_seen(device_keys, seen, "profile") && !keys_seen(device_keys, seen, "points")) {
		scope_error(&scope, map, "give profile: or points: (what to read from the device)");
		loader->device_incomplete[di] = true;
	}
	overlap_check(&scope, &points, points.nfrom_profile);
	if (!keys_seen(device_keys, seen, "max_registers"))
		device->max_registers =
			profile && profile->has_max_registers ? profile->max_registers : 125;
	if (!keys_seen(device_keys, seen, "max_gap"))
		device->max_gap = profile && profile->has_max_gap ? profile->max_gap : 8;
	if (profile && !keys_seen(device_keys, seen, "points"))
		points.n = profile->npoints; /* for the bound below: the same as a copy */
	if (loader->npoints + points.n > CONFIG_POINTS_MAX) {
		/* a profile's points count for each device that names it: they share one
		 * table, but each device's readings carry a value for every point */
		if (loader->npoints <= CONFIG_POINTS_MAX)
			scope_error(&scope, map, "with this device's %zu points the configuration has "
				    "more than %d (a profile's points count once for each device "
				    "that names it)", points.n, CONFIG_POINTS_MAX);
		loader->device_incomplete[di] = true;
		loader->npoints = CONFIG_POINTS_MAX + 1;
		/* the load fails: what would pass the bound is not kept */
		free(points.defs);
		free(points.locs);
		points.defs = NULL;
		points.locs = NULL;
		points.n = 0;
	}
	loader->npoints += points.n;
	if (profile && !keys_seen(device_keys, seen, "points")) {
		if (points.n)
			device_share(loader, device, profile);
	} else {
		/* the set grew by doubling; the config keeps it for as long as it runs */
		if (points.n && points.n < points.cap) {
			struct point_def *defs = realloc(points.defs, points.n * sizeof *defs);
			struct src_loc *locs = realloc(points.locs, points.n * sizeof *locs);
			if (defs)
				points.defs = defs;
			if (locs)
				points.locs = locs;
		}
		device->points = points.defs;
		device->point_locs = points.locs;
		device->npoints = points.n;
	}
	free(points.valid);
}
