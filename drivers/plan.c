/*
 * plan: turns a device's points into the fewest read requests the device accepts.
 * Owns the merging rule only; it must never do I/O or reorder the caller's points —
 * slots stay in point order so that a reading's values line up with the config.
 * Allocates the plan's two arrays and nothing that outlives plan_free().
 */
#include "plan.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mbpdu.h"

struct plan_item {
	enum mb_table table;
	uint32_t start, end; /* [start, end) in registers or bits */
	size_t idx;          /* into the caller's points */
};

static int plan_item_cmp(const void *a, const void *b)
{
	const struct plan_item *x = a, *y = b;

	if (x->table != y->table)
		return x->table < y->table ? -1 : 1;
	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	/* qsort is not stable: the point index makes the plan the same on every load */
	if (x->idx != y->idx)
		return x->idx < y->idx ? -1 : 1;
	return 0;
}

static int plan_is_bits(enum mb_table t)
{
	return t == MB_COIL || t == MB_DISCRETE;
}

/*
 * Sort by (table, address), then sweep: a point joins the open request when it is in
 * the same table, the hole before it is at most max_gap, and the widened request stays
 * within the limit. A point wider than max_regs (but within the protocol's 125) can
 * never join or be joined, so it is read alone at its own width.
 */
int plan_build(const struct point_def *points, size_t n, unsigned max_regs, unsigned max_gap,
	       struct read_plan *out)
{
	struct plan_item *items = NULL;
	struct plan_req *reqs = NULL;
	struct plan_slot *slots = NULL;
	size_t nreqs = 0;

	memset(out, 0, sizeof *out);
	if (n == 0)
		return 0;
	if (max_regs < 1)
		max_regs = 1;
	if (max_regs > MB_MAX_READ_REGS)
		max_regs = MB_MAX_READ_REGS;
	/* slot.req is 16 bits; no device has this many points */
	if (n > UINT16_MAX) {
		errno = EINVAL;
		return -1;
	}

	items = calloc(n, sizeof *items);
	reqs = calloc(n, sizeof *reqs);
	slots = calloc(n, sizeof *slots);
	if (items == NULL || reqs == NULL || slots == NULL) {
		errno = ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		const struct point_def *p = &points[i];
		uint32_t w = codec_width(p);
		uint32_t cap = plan_is_bits(p->table) ? MB_MAX_READ_BITS : MB_MAX_READ_REGS;

		if ((unsigned)p->table > MB_HOLDING || w == 0 || w > cap ||
		    (uint32_t)p->address + w > 0x10000) {
			errno = EINVAL;
			goto fail;
		}
		items[i].table = p->table;
		items[i].start = p->address;
		items[i].end = p->address + w;
		items[i].idx = i;
	}
	qsort(items, n, sizeof *items, plan_item_cmp);

	uint32_t rstart = 0, rend = 0;
	for (size_t i = 0; i < n; i++) {
		const struct plan_item *it = &items[i];
		uint32_t limit = plan_is_bits(it->table) ? MB_MAX_READ_BITS : max_regs;
		uint32_t end = it->end > rend ? it->end : rend;
		int join = nreqs > 0 && reqs[nreqs - 1].table == it->table &&
			   (it->start <= rend || it->start - rend <= max_gap) &&
			   end - rstart <= limit;

		if (!join) {
			rstart = it->start;
			end = it->end;
			reqs[nreqs].table = it->table;
			reqs[nreqs].start = (uint16_t)rstart;
			nreqs++;
		}
		rend = end;
		reqs[nreqs - 1].count = (uint16_t)(rend - rstart);
		slots[it->idx].req = (uint16_t)(nreqs - 1);
		slots[it->idx].offset = (uint16_t)(it->start - rstart);
	}
	free(items);

	/* a shrink failing leaves the larger block, which is still correct */
	struct plan_req *shrunk = realloc(reqs, nreqs * sizeof *reqs);
	if (shrunk != NULL)
		reqs = shrunk;
	out->reqs = reqs;
	out->nreqs = nreqs;
	out->slots = slots;
	out->npoints = n;
	return 0;

fail:
	free(items);
	free(reqs);
	free(slots);
	return -1;
}

void plan_free(struct read_plan *p)
{
	if (p == NULL)
		return;
	free(p->reqs);
	free(p->slots);
	memset(p, 0, sizeof *p);
}

size_t plan_req_points(const struct read_plan *p, size_t req)
{
	size_t n = 0;

	for (size_t i = 0; i < p->npoints; i++)
		n += p->slots[i].req == req;
	return n;
}

/*
 * Used when a device refuses a merged read (an unimplemented register in a hole, a
 * block it will not read across): halves are tried until each refusal is narrowed to
 * the point that causes it, so a poll costs log2(points) extra requests once and the
 * working halves stay merged afterwards.
 */
int plan_split(struct read_plan *p, const struct point_def *points, size_t req)
{
	struct plan_item *items;
	struct plan_req *reqs;
	size_t n = 0, cut = 0, best = SIZE_MAX;
	uint32_t maxend = 0, s1, e1 = 0, s2, e2 = 0;

	if (req >= p->nreqs)
		return 0;
	items = calloc(p->npoints ? p->npoints : 1, sizeof *items);
	if (items == NULL)
		return -1;
	for (size_t i = 0; i < p->npoints; i++) {
		if (p->slots[i].req != req)
			continue;
		items[n].table = points[i].table;
		items[n].start = points[i].address;
		items[n].end = points[i].address + (uint32_t)codec_width(&points[i]);
		items[n].idx = i;
		n++;
	}
	qsort(items, n, sizeof *items, plan_item_cmp);
	/* a cut before item k is allowed when no earlier point reaches into item k */
	for (size_t k = 0; k < n; k++) {
		if (k > 0 && items[k].start >= maxend) {
			size_t dist = k > n / 2 ? k - n / 2 : n / 2 - k;
			if (dist < best) {
				best = dist;
				cut = k;
			}
		}
		if (items[k].end > maxend)
			maxend = items[k].end;
	}
	if (cut == 0) {
		free(items);
		return 0;
	}
	reqs = realloc(p->reqs, (p->nreqs + 1) * sizeof *reqs);
	if (reqs == NULL) {
		free(items);
		return -1;
	}
	p->reqs = reqs;
	memmove(&reqs[req + 2], &reqs[req + 1], (p->nreqs - req - 1) * sizeof *reqs);
	p->nreqs++;
	for (size_t i = 0; i < p->npoints; i++)
		if (p->slots[i].req > req)
			p->slots[i].req++;
	s1 = items[0].start;
	s2 = items[cut].start;
	for (size_t k = 0; k < n; k++) {
		struct plan_slot *sl = &p->slots[items[k].idx];
		if (k < cut) {
			sl->offset = (uint16_t)(items[k].start - s1);
			if (items[k].end > e1)
				e1 = items[k].end;
		} else {
			sl->req = (uint16_t)(req + 1);
			sl->offset = (uint16_t)(items[k].start - s2);
			if (items[k].end > e2)
				e2 = items[k].end;
		}
	}
	reqs[req + 1].table = reqs[req].table;
	reqs[req].start = (uint16_t)s1;
	reqs[req].count = (uint16_t)(e1 - s1);
	reqs[req + 1].start = (uint16_t)s2;
	reqs[req + 1].count = (uint16_t)(e2 - s2);
	free(items);
	return 1;
}

void plan_move_last(struct read_plan *p, size_t req)
{
	struct plan_req moved;
	size_t last = p->nreqs - 1;

	if (req >= last)
		return;
	moved = p->reqs[req];
	memmove(&p->reqs[req], &p->reqs[req + 1], (last - req) * sizeof *p->reqs);
	p->reqs[last] = moved;
	for (size_t i = 0; i < p->npoints; i++) {
		if (p->slots[i].req == req)
			p->slots[i].req = (uint16_t)last;
		else if (p->slots[i].req > req)
			p->slots[i].req--;
	}
}
