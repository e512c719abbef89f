/*
 * sim_faults: the faults sluice-sim injects on request (--slow, --exception, --bad-crc,
 * --wrong-unit, --garbage, --short, --silent). Holds one unit's faults and makes, for
 * each request, the decisions they call for: answer or stay silent, an exception or the
 * reply, and how the reply goes out; and turns a Modbus TCP reply into the noise or the
 * cut reply --garbage and --short promise (sim_rtu does the same to RTU frames).
 *
 * Which requests a share hits, and the noise, follow the unit's random state, seeded
 * from --seed: the same seed gives the same faults on the same bytes. Pure: no socket,
 * no clock, no log (the simulator says what a decision did), so the unit tests drive it
 * alone. Must never decide what a request means (mbpdu and sim_model do) nor frame RTU.
 */
#ifndef SLUICE_SIM_FAULTS_H
#define SLUICE_SIM_FAULTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "point.h"
#include "sim_rtu.h"

/* One per fault option, in the order sluice-sim --help lists them. */
enum sim_fault_kind {
	SIM_FAULT_SLOW = 0,        /* --slow UNIT:MS */
	SIM_FAULT_EXCEPTION,       /* --exception UNIT:TABLE:ADDR[-ADDR][:PERCENT] */
	SIM_FAULT_BAD_CRC,         /* --bad-crc UNIT:PERCENT */
	SIM_FAULT_WRONG_UNIT,      /* --wrong-unit UNIT:PERCENT */
	SIM_FAULT_GARBAGE,         /* --garbage UNIT:PERCENT */
	SIM_FAULT_SHORT,           /* --short UNIT:PERCENT */
	SIM_FAULT_SILENT,          /* --silent UNIT:PERCENT */
	SIM_FAULT_KINDS
};

/* An address range that answers exception 2 (--exception), to pct % of the requests. */
struct sim_exc_range {
	enum mb_table table;
	uint16_t lo, hi;           /* 0-based, as on the wire; lo <= hi */
	unsigned pct;              /* 100 unless the option gave a share */
};

/* One fault as an option gives it, whoever it is for. */
struct sim_fault_spec {
	int kind;                  /* enum sim_fault_kind */
	unsigned value;            /* milliseconds (--slow) or a percentage */
	struct sim_exc_range range; /* --exception */
};

/* One unit's faults; all zero: none. */
struct sim_faults {
	unsigned slow_ms;          /* hold every reply this long */
	unsigned bad_crc_pct;      /* this share of replies with a corrupt CRC */
	unsigned wrong_unit_pct;   /* this share from another unit id */
	unsigned garbage_pct;      /* this share replaced by noise */
	unsigned short_pct;        /* this share cut before its end */
	unsigned silent_pct;       /* this share of requests never answered */
	struct sim_exc_range *exc;
	size_t nexc;
	uint64_t rng;              /* the draws: reproducible with --seed */
};

/* Where the unit's draws start. Give the same state for the same --seed and unit (not
 * from its address: a test on a free port is reproducible too). */
void sim_faults_seed(struct sim_faults *f, uint64_t state);

/* Give f the fault spec. crc: the unit is served on a line with a CRC (RTU, RTU over
 * TCP). 0 when given, 1 when it does not apply there (--bad-crc without a CRC), -1 out
 * of memory. */
int sim_faults_add(struct sim_faults *f, const struct sim_fault_spec *spec, bool crc);
void sim_faults_free(struct sim_faults *f);

/* --silent: is this request to go unanswered, as if it never arrived? */
bool sim_faults_silent(struct sim_faults *f);

/* --exception: does the request pdu[0..plen) touch one of f's ranges (and, for a range
 * with a share, is it one of that share)? Draws only for a request that touches a
 * range with a share. */
bool sim_faults_exception(struct sim_faults *f, const uint8_t *pdu, size_t plen);

/* How a reply of unit goes out (out->unit is unit, and no fault, on entry): its delay,
 * a corrupt CRC (only where crc), another unit id, noise or a cut. Noise replaces the
 * reply whatever else hits it; a cut one keeps the others. True when any of them hit. */
bool sim_faults_reply(struct sim_faults *f, uint8_t unit, bool crc, struct sim_rtu_fault *out);

/* The unit id a --wrong-unit reply of unit carries: the next one, 1 after 247. */
uint8_t sim_faults_other_unit(uint8_t unit);

/* --garbage over Modbus TCP: noise in place of the reply adu[0..alen) to the request
 * req[0..reqlen) (transaction tid, unit uid), written to adu (MBTCP_ADU_MAX bytes).
 * Never a reply a master could take. Returns the noise's length. */
size_t sim_faults_tcp_garbage(uint8_t *adu, size_t alen, uint16_t tid, uint8_t uid,
			      const uint8_t *req, size_t reqlen, uint64_t noise);

/* --short over Modbus TCP: the reply adu[0..alen) cut short in place. Returns the
 * length that goes out. */
size_t sim_faults_tcp_short(uint8_t *adu, size_t alen, uint64_t noise);

/* The table a request's function code addresses (holding for the codes of none). */
enum mb_table sim_faults_fc_table(uint8_t fc);

#endif
