/*
 * plan: which read requests fetch the points of one device. Points of one table whose
 * ranges touch or overlap (or leave a hole of at most max_gap registers) are merged,
 * up to max_regs registers (or MB_MAX_READ_BITS bits) per request. Pure; computed once
 * per device when the config is loaded, then narrowed at run time by the poller
 * (plan_split, plan_move_last) when the device refuses a merged read.
 */
#ifndef SLUICE_PLAN_H
#define SLUICE_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"

struct plan_req {
	enum mb_table table;
	uint16_t start;
	uint16_t count;   /* registers, or bits for coil/discrete */
};

struct plan_slot {
	uint16_t req;     /* index into reqs */
	uint16_t offset;  /* of the point's first register/bit within that request */
};

struct read_plan {
	struct plan_req *reqs;
	size_t nreqs;
	struct plan_slot *slots; /* one per point, in the points' order */
	size_t npoints;
};

/*
 * Build the plan for points[0..n). max_regs: 1..125 (clamped); max_gap: registers or
 * bits of hole that may be read to merge two ranges. Returns 0, or -1 on allocation
 * failure or a point that does not fit (address + width > 65536).
 */
int plan_build(const struct point_def *points, size_t n, unsigned max_regs, unsigned max_gap,
	       struct read_plan *out);
void plan_free(struct read_plan *p);

/*
 * Split request req of a plan built from points in two, between the points it reads
 * (never through a point, nor between points that share registers), as near the
 * middle by point count as the points allow. The first half stays at index req, the
 * second is inserted at req + 1 and later requests move up by one; slots follow.
 * Returns 1 when split, 0 when the request reads a single point (or points that all
 * overlap) and cannot be split, -1 on allocation failure (the plan is unchanged).
 */
int plan_split(struct read_plan *p, const struct point_def *points, size_t req);

/* Move request req to the end of the plan (slots follow); the others keep their order. */
void plan_move_last(struct read_plan *p, size_t req);

/* Number of points request req reads. */
size_t plan_req_points(const struct read_plan *p, size_t req);

#endif
