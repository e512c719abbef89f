/*
 * alert_pv: the pv rule kind. NOT IMPLEMENTED YET: the rule loads, but no checks are
 * created, so a pv rule raises nothing. Planned checks are fault, no_output, low_output
 * and peer (see docs/alerts.md and the power:/fault:/peer_ratio keys in config.h).
 *
 * It must never do I/O or read a clock (see alert.c).
 */
#include "alert_int.h"

static int pv_init(struct alert_engine *e, struct rstate *r, char *err, size_t errlen)
{
	(void)e;
	(void)r;
	(void)err;
	(void)errlen;
	return 0;
}

const struct rule_ops alert_pv_ops = { .init = pv_init };
