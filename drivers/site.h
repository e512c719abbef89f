/*
 * site: the part of a gateway's configuration that the drivers read — its buses and
 * devices, each with where it was written — as plain structs. config (daemon/config.h)
 * fills them from YAML and owns them; the pollers are handed a struct site that points
 * into the config and never see the rest of it (uplink, buffer, rules). Nothing here
 * reads a file or parses anything.
 */
#ifndef SLUICE_SITE_H
#define SLUICE_SITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "point.h"

#define ID_MAX 64

struct src_loc {
	const char *file; /* owned by the config (its files[] list) */
	int line, col;    /* 1-based; 0 when not from a file (a default) */
};

enum bus_kind { BUS_TCP = 0, BUS_RTU, BUS_RTU_OVER_TCP };

struct bus_cfg {
	char id[ID_MAX];
	int kind;              /* enum bus_kind */
	char *host;            /* tcp, rtu_over_tcp */
	uint16_t port;         /* default 502 */
	char *device;          /* rtu */
	unsigned baud;         /* default 9600 */
	char parity;           /* 'N', 'E', 'O'; default 'N' */
	uint8_t data_bits;     /* 7 or 8, default 8 */
	uint8_t stop_bits;     /* 1 or 2, default 1 */
	bool rs485;            /* default false */
	int64_t timeout_ms;    /* until the reply begins; default 1 s */
	int64_t guard_ms;      /* silence between requests; default 0 (tcp), 5 ms (serial) */
	struct src_loc loc;
};

struct device_cfg {
	char id[ID_MAX];
	char *name;            /* UTF-8, may be NULL */
	size_t bus;            /* index into config.buses */
	uint8_t unit_id;       /* 0..255 on tcp, 1..247 on serial lines; default 1 */
	char *profile;         /* the profile name, or NULL for inline points */
	bool sunspec;          /* profile: sunspec — points are discovered at run time */
	struct point_def *points;
	size_t npoints;
	struct src_loc *point_locs; /* one per point: where it was defined */
	/* points and point_locs are its profile's, shared by every device that names the
	 * profile and has no points of its own, and belong to the config, not to the
	 * device: read them, never write or free them */
	bool points_shared;
	int64_t interval_ms;   /* default 10 s */
	unsigned offline_after;/* default 3 */
	unsigned max_registers;/* 1..125, default 125 */
	unsigned max_gap;      /* default 8: holes are read to merge; a refused merge is split */
	struct src_loc loc;
};

/* A config's buses and devices, as the pollers see them. The arrays belong to the
 * config, which outlives every poller built from it; a SunSpec device's points are filled
 * in by discovery before a poller is built. */
struct site {
	const struct bus_cfg *buses;
	size_t nbuses;
	struct device_cfg *devices;
	size_t ndevices;
};

#endif
