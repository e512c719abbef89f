/*
 * config: the one place that reads YAML. Loads the gateway config and the device
 * profiles it names into plain structs, validates everything the daemon would refuse,
 * and reports every mistake as FILE:LINE:COL: message (1-based line and column, from
 * libyaml's marks), not only the first.
 *
 * Nothing here opens a socket or a database; files the config names (TLS, password,
 * serial devices) are only checked for existence and secrecy.
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config_value.h" /* the value parsers: config_parse_duration, ... */
#include "point.h"
#include "site.h"

enum log_level { LOG_LVL_ERROR = 3, LOG_LVL_WARNING = 4, LOG_LVL_INFO = 6, LOG_LVL_DEBUG = 7 };

/* gateway.data_dir when the config gives none; sluicectl looks for a daemon there when
 * it has no config to ask. */
#define CONFIG_DATA_DIR_DEFAULT "/var/lib/sluice"

struct gateway_cfg {
	char id[ID_MAX];
	char *name;       /* UTF-8, may be NULL */
	char *timezone;   /* IANA name, default "UTC" */
	char *data_dir;   /* default /var/lib/sluice */
	int log_level;    /* enum log_level, default info */
};

enum mqtt_protocol { MQTT_311 = 4, MQTT_5 = 5 };

/* The language the platform speaks (uplink.format; docs/mqtt.md, a section each). */
enum uplink_format { FORMAT_SLUICE = 0, FORMAT_SPARKPLUG, FORMAT_THINGSBOARD };

/*
 * A broker tried when the first cannot be reached (uplink.fallback). What an entry does
 * not give is the first broker's, copied at load: the TLS block (tls given: its own),
 * the credentials (username or password_file given: its own) and the client id.
 */
#define UPLINK_FALLBACK_MAX 8

struct broker_cfg {
	char *host;            /* required */
	uint16_t port;         /* default 1883, or 8883 with tls */
	char *client_id;       /* may be NULL: the gateway id */
	char *username;        /* may be NULL */
	char *password_file;   /* may be NULL */
	bool tls;
	char *ca_file, *cert_file, *key_file; /* may be NULL */
	struct src_loc loc;
};

struct uplink_cfg {
	char *host;            /* required */
	uint16_t port;         /* default 1883, or 8883 with tls */
	int protocol;          /* enum mqtt_protocol, default mqtt311 */
	char *client_id;       /* default: gateway id */
	char *username;        /* may be NULL */
	char *password_file;   /* may be NULL; its first line is the password */
	bool tls;              /* a tls: block was given */
	char *ca_file, *cert_file, *key_file; /* may be NULL */
	char *topic_prefix;    /* default "sluice"; no leading/trailing '/', no + or # */
	int qos;               /* 1 or 2, default 1 */
	int64_t keepalive_ms;  /* >= 5 s, default 30 s */
	unsigned inflight;     /* 1..65535, default 64 */
	int64_t health_interval_ms; /* default 60 s */
	int64_t ack_timeout_ms;     /* a PUBACK later than this ends the session; 0: 2 × keepalive */
	uint64_t max_packet_size;   /* bytes, whole PUBLISH packet; 0: none (MQTT 5's CONNACK may say) */
	int format;                 /* enum uplink_format, default sluice */
	char *sparkplug_group;      /* uplink.sparkplug.group: required with format sparkplug */
	char *sparkplug_primary_host; /* uplink.sparkplug.primary_host, may be NULL */
	int sparkplug_qos;          /* uplink.sparkplug.qos: 0 or 1, default 1 */
	bool commands;              /* accept writes from the platform; default false */
	int64_t command_max_age_ms; /* refuse commands older than this; default 60 s */
	struct broker_cfg *fallback; /* tried in order when the first broker cannot be reached */
	size_t nfallback;
	int64_t fallback_check_ms;  /* while on a fallback, how often the first is tried; 3 min */
	struct src_loc loc;
};

enum durability { DURABILITY_NORMAL = 0, DURABILITY_FULL = 1 };

struct buffer_cfg {
	uint64_t max_size;     /* bytes, the whole database with its WAL; default 256 MiB */
	int durability;        /* enum durability */
	int64_t keep_sent_ms;  /* default 7 d */
};

/* The technicians' page (daemon/web*.c); no web: section, no page (listen NULL). */
struct web_cfg {
	char *listen;          /* "HOST:PORT" as written, numeric: "0.0.0.0:8080", "[::]:8080" */
	char *password_file;   /* lines user:HASH (crypt SHA-512); required unless loopback */
	char *cert_file, *key_file; /* HTTPS when given, both or neither */
	struct src_loc loc;
};

/* A reference "device.point" in a rule or action. */
struct point_ref {
	size_t device;         /* index into config.devices */
	long point;            /* index into that device's points; -1 for a sunspec device
				  (the name is resolved after discovery) */
	char name[POINT_NAME_MAX];
	struct src_loc loc;
};

enum rule_kind { RULE_THRESHOLD = 0, RULE_WATERLOGGING, RULE_LEAKAGE, RULE_PV };
enum severity { SEV_NONE = 0, SEV_BLUE, SEV_YELLOW, SEV_ORANGE, SEV_RED };

struct action_cfg {
	int severity;          /* on_fire: the grade that triggers it (SEV_NONE: any); on_resolve: SEV_NONE */
	struct point_ref target;/* a writable point */
	double value;
	struct src_loc loc;
};

/* A pump whose run signal the rule names: its flow is not the zone's use. */
struct night_exclude {
	struct point_ref run;  /* 1 (or true) while the pump runs */
	double flow;           /* m3/h it moves while running */
};

/* Every device a rule reads is named by one of its point_refs (or is its inverter): the
 * alert engine gives a rule only the readings of those devices (alert.c, rule_devices),
 * so a point_ref added here is added there too. */
struct rule_cfg {
	char id[ID_MAX];
	char *name;            /* may be NULL */
	int kind;              /* enum rule_kind */
	int severity;          /* enum severity; default per kind (yellow) */
	int64_t for_ms;        /* condition must hold this long; default 0 */
	double hysteresis;     /* default 0 */

	/* threshold, waterlogging */
	struct point_ref point;
	bool has_point;
	bool has_above, has_below;
	double above, below;

	/* waterlogging: levels[SEV_BLUE..SEV_RED], NAN where not given */
	double levels[5];
	bool has_rise;
	double rise_by;
	int64_t rise_within_ms;
	/* spike rejection: a one-sample jump of more than this (the point's unit) waits for
	 * the next sample to confirm it; NAN: the lowest level given (or rise.by); 0: off */
	double spike;
	bool has_stuck;
	int64_t stuck_for_ms;  /* no change for this long: stuck */
	double stuck_tolerance;/* a change of at most this is no change; default 0 */

	/* leakage */
	struct point_ref *inflow, *outflow;
	size_t ninflow, noutflow;
	int64_t window_ms;     /* default 1 d */
	bool has_max_loss_ratio;
	double max_loss_ratio; /* default 0.085 */
	bool has_night;
	int night_from_s, night_to_s; /* seconds after local midnight */
	bool has_night_max_flow;
	double night_max_flow;
	unsigned night_baseline;  /* nights in the moving baseline; 0: none (default 7) */
	double night_ratio;       /* above the baseline by this fraction (default 0.1) ... */
	double night_by;          /* ... plus this flow, m3/h (default 0) */
	bool night_weekly;        /* the baseline is of the same weekday's nights */
	/* baseline, ratio, by, weekly or max_flow named: a verdict each night against them
	 * (the check before the change detector); otherwise the detector below */
	bool night_legacy;
	double night_allowance;   /* CUSUM allowance k, in noise units (default 2) */
	double night_decision;    /* CUSUM decision interval h, in noise units (default 5) */
	double night_min_step;    /* smallest step paged, m3/h (default 0: twice the noise) */
	unsigned night_learn;     /* nights learnt before the first page (default 14) */
	bool night_pump_steps;    /* find a pump's steps in the zone's flow (default true) */
	struct night_exclude *night_exclude; /* pumps whose run signal is known */
	size_t nnight_exclude;
	double rollover;          /* totalizers' modulus (point unit); 0: from type and scale */
	bool has_burst;
	double burst_ratio;       /* above the usual flow for the time of day by this fraction */
	double burst_by;          /* ... plus this flow, m3/h (default 0) */
	int64_t burst_for_ms;     /* sustained this long (default 1 h) */
	unsigned burst_days;      /* days behind the usual flow (default 7) */

	/* pv */
	bool has_inverter;
	size_t inverter;       /* device index */
	double rated_power_w;  /* 0 when not given */
	bool has_daylight;
	int daylight_from_s, daylight_to_s;
	double min_output_ratio; /* of rated power; default 0.1 */
	bool has_power, has_fault;
	struct point_ref power;  /* a non-SunSpec inverter's AC power (W or kW) */
	struct point_ref fault;  /* non-zero: the inverter reports a fault or alarm */
	double peer_ratio;       /* below this fraction of its peers' output (default 0.5) */

	struct action_cfg *on_fire, *on_resolve;
	size_t non_fire, non_resolve;
	struct src_loc loc;
};

struct config {
	char *path;            /* the file it was loaded from */
	char **files;          /* every file read (config, profiles): src_loc.file points here */
	size_t nfiles;
	struct gateway_cfg gateway;
	struct uplink_cfg uplink;
	struct buffer_cfg buffer;
	struct web_cfg web;
	struct bus_cfg *buses;
	size_t nbuses;
	struct device_cfg *devices;
	size_t ndevices;
	struct rule_cfg *rules;
	size_t nrules;
	/* the point tables of the profiles that devices share (device_cfg.points_shared):
	 * one copy of a profile's points for all its devices, freed with the config */
	struct point_def **shared_points;
	struct src_loc **shared_locs;
	size_t nshared;
};

/* Messages from a load: errors and warnings, each "FILE:LINE:COL: message"
 * (warnings read "FILE:LINE:COL: warning: message"), sorted by file (the config first,
 * then profiles in the order they were read), line and column. A problem with a whole
 * file (cannot be opened, empty) reads "FILE: message". */
struct config_diag {
	char **msgs;
	bool *is_error;
	size_t n;
	size_t nerrors, nwarnings;
};

struct config_opts {
	/* Where profiles are looked for after devices/ beside the config file.
	 * NULL: the environment variable SLUICE_PROFILE_PATH (colon-separated), else the
	 * defaults: the config/devices of the source tree the program was built in when it
	 * runs from there uninstalled, then SLUICE_DATADIR "/devices"
	 * (<PREFIX>/share/sluice/devices). */
	const char *profile_path;
	/* Do not check the TLS and password files the config names (sluice-sim and
	 * sluicectl, which never read them, on a laptop that does not have them). */
	bool skip_secret_files;
};

/*
 * Load and validate. Returns the config, or NULL when there is any error; diag
 * (which may be NULL) receives every message. Free diag with config_diag_free.
 * diag is overwritten, not appended to (free it before reusing it). Relative paths in
 * the file (data_dir, password_file, TLS files) are resolved against the config
 * file's directory; the config keeps them absolute.
 */
struct config *config_load(const char *path, const struct config_opts *opts,
			   struct config_diag *diag);
/*
 * The same, with the config's text given in memory (text[0..len), need not be
 * NUL-terminated): name stands for the file in messages, and its directory is where
 * devices/ and relative paths are looked for, as for config_load(name). Profiles the
 * text names are read from disk. For the fuzzer and tests.
 */
struct config *config_load_buffer(const char *name, const void *text, size_t len,
				  const struct config_opts *opts, struct config_diag *diag);
void config_free(struct config *cfg);
void config_diag_free(struct config_diag *d);

/*
 * Read one device profile by name, for sluice-sim and sluicectl (which do not call
 * libyaml). It is searched for as config_load does for a config: config_dir/devices/NAME.yaml
 * (skipped when config_dir is NULL), then opts->profile_path / $SLUICE_PROFILE_PATH /
 * the defaults (config_opts). On success (0) *points (malloc'ed, the caller frees it with
 * free()) holds *npoints points and *display_name (malloc'ed, may be NULL) the profile's
 * name: line. "sunspec" succeeds with no points (they are discovered at run time).
 * On failure (-1) nothing is allocated and diag (may be NULL) says why, located in the
 * profile file; a profile that is not found gives a message without a file name.
 */
int config_load_profile(const char *name, const char *config_dir, const struct config_opts *opts,
			struct point_def **points, size_t *npoints, char **display_name,
			struct config_diag *diag);

/*
 * The byte_order and word_order that a point's order: (ABCD, CDAB, ..., as manuals write
 * it) stands for on a value of regs registers (1, 2 or 4). 0, or -1 when name is not an
 * order of that width. For sluicectl probe, which prints the order: to paste.
 */
int config_order_flags(const char *name, unsigned regs, uint8_t *byte_order,
		       uint8_t *word_order);

/* "4 buses, 6 devices (1 SunSpec), 16 points, 4 rules": points are the static ones
 * (a SunSpec device's are discovered at run time). */
void config_summary(const struct config *cfg, char *buf, size_t len);

/* The buses and devices of cfg, for the pollers (drivers/site.h): points into cfg. */
struct site config_site(const struct config *cfg);

/* Lookups by id; -1 when absent. */
long config_find_device(const struct config *cfg, const char *id);
long config_find_point(const struct device_cfg *d, const char *name);

const char *severity_name(int sev);   /* "blue", ... ; NULL for SEV_NONE */
const char *uplink_format_name(int format); /* "sluice", "sparkplug", "thingsboard" */
const char *point_type_name(int type);      /* "int16", ..., as a profile writes it */
int severity_from_name(const char *s);/* -1 when unknown */
const char *rule_kind_name(int kind);

#endif
