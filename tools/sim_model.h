/*
 * sim_model: what a simulated device reads, as a function of simulated time.
 *
 * Each point of a device gets a behaviour chosen from its unit and its name (a flow
 * meter's daily demand curve, a totalizer integrating that flow, a road-surface level
 * gauge, an inverter's output over the day...), and the device keeps a register image
 * of the four Modbus tables, encoded with the point's own type, orders and scale by
 * drivers/codec, which the simulator serves as it stands.
 *
 * Pure apart from each device's own random generator: the caller passes the simulated
 * time and the local UTC offset, so tests can drive a day in microseconds. It never
 * touches a socket, a file, a clock or the log.
 */
#ifndef SLUICE_SIM_MODEL_H
#define SLUICE_SIM_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"

/* What happens to a device over simulated time, counted from its creation. */
enum sim_scenario {
	SIM_STEADY = 0, /* the usual day */
	SIM_LEAK,       /* flows read +25 % from the start; totalizers integrate it */
	SIM_BURST,      /* after one simulated hour, flows read +150 %, sustained */
	SIM_RAIN,       /* a rain event every 6 h, the first 2 min in: the level rises over
			   15 min to about 0.45 m, holds 20 min, drains over 30 min */
	SIM_FAULT,      /* fault/alarm/trip points set, status points non-zero, running
			   points clear, no power output */
	SIM_DEAD,       /* the device never answers (the server drops its requests) */
	SIM_NSCENARIOS
};

/* How one point's value is made. */
enum sim_kind {
	SIM_K_CONST = 0, /* a constant: from the point name, or set by sim_device_set_const */
	SIM_K_FLOW,      /* demand curve x nominal flow */
	SIM_K_VOLUME,    /* totalizer of the device's flow */
	SIM_K_LEVEL,     /* water level above the road surface */
	SIM_K_GAP,       /* a level sensor's air gap: mounting height - level */
	SIM_K_POWER,     /* inverter output: rated x clear-sky bell, 06:00-18:00 */
	SIM_K_RATED,     /* the rated power, constant */
	SIM_K_ENERGY,    /* energy counter integrating the power */
	SIM_K_PRESSURE,  /* ~0.30 MPa, dipping when the flow peaks */
	SIM_K_VELOCITY,  /* flow / DN200 pipe area */
	SIM_K_ON,        /* bool: true (false in SIM_FAULT) */
	SIM_K_OFF,       /* bool: false */
	SIM_K_FAULTBIT,  /* bool: false (true in SIM_FAULT) */
	SIM_K_STATUS,    /* integer status or alarm word: 0 (1 in SIM_FAULT) */
	SIM_K_STRING,    /* the device's display name (or sim_device_set_string's), truncated */
	SIM_K_INV_STATE, /* inverter operating state, SunSpec St: 4 producing, 2 sleeping,
			    7 fault */
	SIM_NKINDS
};

/* Defaults of the model; documented in sluice-sim --help. */
#define SIM_NOMINAL_FLOW_M3H 40.0 /* the demand curve's scale; the day's mean is ~0.7 of it */
#define SIM_RATED_POWER_W 30000.0
#define SIM_RAIN_PEAK_M 0.45
#define SIM_GAUGE_HEIGHT_M 3.0    /* a radar gauge's height above the dry road */
#define SIM_PIPE_DN_M 0.200       /* velocity = flow / area of this pipe */

const char *sim_scenario_name(int s);
int sim_scenario_from_name(const char *s);   /* -1 when unknown */
const char *sim_kind_name(int k);

struct sim_device;

/*
 * A device serving points[0..n) (copied). display_name (may be NULL: "SLUICE-SIM") fills
 * string points. start_ms is the simulated time at which scenarios begin and totalizers
 * start counting. seed makes the noise reproducible. Points must not overlap and must
 * fit their table (address + width <= 65536). NULL with a message in err on failure.
 */
struct sim_device *sim_device_new(const struct point_def *points, size_t n,
				  const char *display_name, int scenario, uint64_t seed,
				  int64_t start_ms, char *err, size_t errlen);
void sim_device_free(struct sim_device *d);

int sim_device_scenario(const struct sim_device *d);
const struct point_def *sim_device_points(const struct sim_device *d, size_t *n);
int sim_device_kind(const struct sim_device *d, size_t i);

/* Overrides, for devices whose map the simulator builds itself (SunSpec) and for tests. */
/* factor: the point's reading per base unit of its kind (m3/h, m3, m, W, kWh, MPa, m/s);
 * 0 keeps the one its unit gave. */
void sim_device_set_kind(struct sim_device *d, size_t i, int kind, double factor);
void sim_device_set_const(struct sim_device *d, size_t i, double v);
/* A string point's own text instead of the display name. -1 on allocation failure. */
int sim_device_set_string(struct sim_device *d, size_t i, const char *s);
void sim_device_set_rated(struct sim_device *d, double watts);
double sim_device_rated(const struct sim_device *d);
void sim_device_set_nominal_flow(struct sim_device *d, double m3h);

/*
 * Recompute every point for simulated time sim_ms (ms since the epoch; the daily
 * patterns use sim_ms + utc_offset_s as local time) and encode the values into the
 * register image. Points that were written keep what was written. Time that goes
 * backwards leaves the totalizers where they are (they are monotonic).
 */
void sim_device_update(struct sim_device *d, int64_t sim_ms, int32_t utc_offset_s);

/* The model's value of point i after the last update (engineering units; bools 0/1;
 * NaN for strings). */
double sim_device_value(const struct sim_device *d, size_t i);
/* True once a write has touched point i: the model no longer changes it. */
bool sim_device_held(const struct sim_device *d, size_t i);

/*
 * The served tables. These have the shape of struct mbpdu_server's callbacks: 0, or
 * the Modbus exception code 2 (illegal data address) when the range is not wholly
 * inside the addresses this device serves (the span of its points in that table).
 */
int sim_device_read_regs(struct sim_device *d, enum mb_table t, uint16_t start,
			 uint16_t count, uint16_t *out);
int sim_device_read_bits(struct sim_device *d, enum mb_table t, uint16_t start,
			 uint16_t count, uint8_t *out);
int sim_device_write_regs(struct sim_device *d, uint16_t start, uint16_t count,
			  const uint16_t *in);
int sim_device_write_bits(struct sim_device *d, uint16_t start, uint16_t count,
			  const uint8_t *in);

/* The image behind a point, for decoding what is served: its registers (NULL for a
 * coil/discrete point) or its bit (0/1). */
const uint16_t *sim_device_point_regs(const struct sim_device *d, size_t i);
uint8_t sim_device_point_bit(const struct sim_device *d, size_t i);

/* The demand curve: a multiplier of the nominal flow at local hour h (0 <= h < 24). */
double sim_demand(double h);
/* The clear-sky bell: a fraction of rated power at local hour h. */
double sim_solar(double h);

#endif
