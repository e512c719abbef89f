/*
 * probe: the command line and the printing of `sluicectl probe`. Owns no Modbus: the
 * transactions are drivers/mbclient's or, when a sluiced owns the line, its poller's
 * (asked over the control socket, tools/ctlclient), the decoding drivers/codec's, the
 * config config's. It must never write to a device: a technician probing a live plant
 * may only read; and it must never open a line a running sluiced may hold — two masters
 * on one RS-485 bus make frames collide — so it reads directly only when no daemon
 * listens for the config's data directory, or the daemon says the line is not its own.
 *
 *   sluicectl probe --config FILE [--timeout MS] [--json] DEVICE
 *   sluicectl probe [--config FILE] --tcp HOST:PORT | --rtu-tcp HOST:PORT | --rtu DEVICE
 *                   [--baud N --parity P --stop-bits S] [--unit N] [--timeout MS] [--json]
 *                   --read TABLE:ADDRESS[:COUNT] | --table T --address A [--count N]
 */
#include "probe.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codec.h"
#include "config.h"
#include "control.h"
#include "ctlclient.h"
#include "json.h"
#include "mbclient.h"
#include "mberr.h"
#include "mbpdu.h"
#include "poller.h"

#define PROBE_DEFAULT_TIMEOUT_MS 1000
#define PROBE_MAX_COUNT (MB_MAX_READ_REGS - 2) /* room for the neighbours read around it */

static void probe_usage(FILE *f)
{
	fprintf(f,
		"usage: sluicectl probe --config FILE [--timeout MS] [--json] DEVICE\n"
		"       sluicectl probe [--config FILE] TARGET [--unit N] [--timeout MS] [--json]\n"
		"                       --read TABLE:ADDRESS[:COUNT]\n"
		"       sluicectl probe [--config FILE] TARGET [--unit N] --table TABLE --address A\n"
		"                       [--count N]\n"
		"  TARGET: --tcp HOST:PORT | --rtu-tcp HOST:PORT | --rtu DEVICE [--baud 9600]\n"
		"          [--parity none|even|odd] [--stop-bits 1|2] [--data-bits 7|8]\n"
		"\n"
		"Reads a device once and prints what it answered; never writes. When sluiced runs\n"
		"for the config's data_dir (default " SLUICECTL_CONFIG ") and polls the line,\n"
		"the read goes through it, between its polls (via: sluiced): a second program on\n"
		"the same RS-485 line would collide with its frames. Otherwise the line is opened\n"
		"here (via: direct).\n"
		"  --config FILE DEVICE  every point of a configured device, decoded as sluiced\n"
		"                        would, with its raw registers\n"
		"  --tcp HOST:PORT       a Modbus TCP device or gateway ([::1]:502 for IPv6)\n"
		"  --rtu-tcp HOST:PORT   Modbus RTU frames over TCP: a 4G DTU or a serial device\n"
		"                        server in transparent mode\n"
		"  --rtu DEVICE          Modbus RTU on a serial line (/dev/ttyUSB0), default\n"
		"                        9600 baud, no parity, 8 data bits, 1 stop bit\n"
		"  --unit N              unit id, 0..255 (default 1)\n"
		"  --read TABLE:A[:N]    N (default 1) registers or bits of TABLE (holding, input,\n"
		"                        coil, discrete) from wire address A (0-based); the register\n"
		"                        before A is read too, so a manual that numbers registers\n"
		"                        from 1 is seen in the same call\n"
		"  --timeout MS          how long to wait for each reply (default: the bus's, or "
		"1000;\n"
		"                        through sluiced at most 10000)\n"
		"  --json                machine-readable output\n"
		"\n"
		"Registers are shown as hex, uint16 and int16, and every 32-bit pair as float32,\n"
		"uint32 and int32 in the four orders: ABCD (high word first, the Modbus default),\n"
		"CDAB (low word first, e.g. TUF-2000M), BADC and DCBA (bytes swapped). For 1, 2\n"
		"or 4 registers, the reading that looks right is marked, with the point line to\n"
		"paste into a config (order: as manuals write it); other orders that also read in\n"
		"range are named, for the device's display to decide.\n");
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return -1;
	*out = v;
	return 0;
}

/* A longer explanation of a failure, for a person deciding what to check next. */
static const char *probe_hint(int err)
{
	switch (err) {
	case MBE_TIMEOUT:
		return "no reply: check the unit id, the address and that the device is on";
	case MBE_CONNECT:
		return "cannot reach the device or gateway: check host, port and wiring";
	case MBE_CLOSED:
		return "the device closed the connection (some do for a wrong unit id)";
	case MBE_PROTO:
		return "a reply that does not fit the request";
	case MBE_EXC_BASE + 1:
		return "the device does not support this function: try another table";
	case MBE_EXC_BASE + 2:
		return "the device has no register there: check whether the manual numbers "
		       "from 1 (subtract 1) or as 40001 (subtract 40001)";
	case MBE_EXC_BASE + 3:
		return "the device refuses this count: read fewer registers";
	case MBE_EXC_BASE + 0x0B:
		return "the gateway got no reply from the unit behind it: check the unit id "
		       "and the serial side";
	default:
		return NULL;
	}
}

/*
 * The hint for a failed read of table at address: a refused 3xxxx/4xxxx address names the
 * wire address to try (into buf); else probe_hint's.
 */
static const char *read_hint(int err, enum mb_table table, unsigned address,
			     enum mb_hint_style style, char *buf, size_t len)
{
	if (mb_numbered_hint(buf, len, err, (int)table, address, style))
		return buf;
	return probe_hint(err);
}

/* detail (from mbclient, may be empty) says more than the code: which CRC, which unit. */
static void print_error_text(const char *what, int err, const char *detail, const char *hint)
{
	/* a plain timeout is said best by the hint; a frame cut short by its detail */
	if (detail != NULL && detail[0] != '\0' && err < MBE_EXC_BASE &&
	    strncmp(detail, "no reply", 8) != 0)
		printf("%s: %s — %s\n", what, mb_strerror(err), detail);
	else
		printf("%s: %s%s%s\n", what, mb_strerror(err), hint ? " — " : "",
		       hint ? hint : "");
}

/* --- raw reads ------------------------------------------------------------------- */

static uint32_t pair(uint16_t a, uint16_t b, bool words_swapped, bool bytes_swapped)
{
	if (bytes_swapped) {
		a = (uint16_t)(a << 8 | a >> 8);
		b = (uint16_t)(b << 8 | b >> 8);
	}
	return words_swapped ? (uint32_t)b << 16 | a : (uint32_t)a << 16 | b;
}

static float as_float(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof f);
	return f;
}

static const char *const order_names[4] = { "ABCD", "CDAB", "BADC", "DCBA" };

static uint32_t pair_order(const uint16_t *r, int order)
{
	return pair(r[0], r[1], order == 1 || order == 3, order >= 2);
}

/* The shortest text that reads back to the same float: 26.965054, not 26.9650536. */
static void fmt_float(char *buf, size_t len, float f)
{
	if (isnan(f)) {
		snprintf(buf, len, "nan");
		return;
	}
	for (int prec = 1; prec <= 9; prec++) {
		snprintf(buf, len, "%.*g", prec, (double)f);
		if (strtof(buf, NULL) == f)
			return;
	}
}

/* --- what the registers look like: the YAML to paste ----------------------------------- */

/*
 * A reading of the registers asked for, as one point would read them: its type, the order
 * it takes, and the value sluiced would decode with them. Decoded by the codec from a
 * point_def whose flags come from the config's own order: mapping, so the line printed is
 * exactly what a config with it reads.
 */
struct reading_guess {
	const char *type, *order; /* order NULL for bits */
	char value[48];
	unsigned digits;          /* significant digits of value */
	/* the other float readings in range, for the technician to compare with the display */
	const char *also_order[3];
	char also_value[3][48];
	unsigned nalso;
};

/* Significant digits of a number as text ("0.0125" 3, "-10" 1, "176" 3). */
static unsigned sig_digits(const char *s)
{
	char digits[64];
	size_t n = 0, a = 0;

	for (; *s && *s != 'e' && *s != 'E' && n < sizeof digits; s++)
		if (*s >= '0' && *s <= '9')
			digits[n++] = *s;
	while (a < n && digits[a] == '0')
		a++;
	while (n > a && digits[n - 1] == '0')
		n--;
	return (unsigned)(n - a);
}

/*
 * Decode regs as type under order into g; false when order is not one of the type's
 * width, or for a float, when the reading is not a plausible measurement: not finite, 0
 * (which says nothing of the order), or out of 1e-3..1e7 (1e-3..1e12 for float64). The
 * wrong orders of a real float put a mantissa byte in the exponent and land anywhere in
 * 1e-38..1e38 (2.030391e-06, -1.4e16); few land in range.
 */
static bool guess_try(const uint16_t *regs, enum pt_type type, const char *order,
		      struct reading_guess *g)
{
	struct point_def p = { .table = MB_HOLDING, .type = type, .bit = -1, .scale = 1.0 };
	double d, top = type == PT_FLOAT64 ? 1e12 : 1e7;
	struct value v;

	if (config_order_flags(order, codec_type_regs(type), &p.byte_order, &p.word_order) != 0 ||
	    codec_decode_regs(&p, regs, &v, NULL, 0) != 0)
		return false;
	g->type = codec_type_name(type);
	g->order = order;
	g->nalso = 0;
	switch (v.kind) {
	case VAL_INT:
		snprintf(g->value, sizeof g->value, "%" PRId64, v.v.i);
		break;
	case VAL_UINT:
		snprintf(g->value, sizeof g->value, "%" PRIu64, v.v.u);
		break;
	case VAL_DOUBLE:
		d = v.v.d;
		if (type == PT_FLOAT32) {
			fmt_float(g->value, sizeof g->value, (float)d);
		} else {
			for (int prec = 1; prec <= 17; prec++) {
				snprintf(g->value, sizeof g->value, "%.*g", prec, d);
				if (strtod(g->value, NULL) == d)
					break;
			}
		}
		if (!isfinite(d) || d == 0 || fabs(d) < 1e-3 || fabs(d) >= top)
			return false;
		break;
	default:
		return false;
	}
	g->digits = sig_digits(g->value);
	return true;
}

/*
 * An integer of count registers: high word first or low word first, whichever is the
 * smaller number (counters and codes sit far below the 2^31 the wrong order makes of
 * them), and signed when that reads shorter (0xFFF6 is -10; 0x8000 stays 32768).
 */
static bool guess_integer(const uint16_t *regs, uint16_t count, struct reading_guess *best)
{
	static const char *const orders[][2] = { { "AB", NULL }, { "ABCD", "CDAB" },
						 { "ABCDEFGH", "GHEFCDAB" } };
	enum pt_type u = count == 1 ? PT_UINT16 : count == 2 ? PT_UINT32 : PT_UINT64;
	enum pt_type s = count == 1 ? PT_INT16 : count == 2 ? PT_INT32 : PT_INT64;
	bool found = false;

	for (int o = 0; o < 2; o++) {
		const char *order = orders[count == 4 ? 2 : count - 1][o];
		struct reading_guess gu, gs;
		if (!order || !guess_try(regs, u, order, &gu))
			continue;
		if (guess_try(regs, s, order, &gs) && gs.value[0] == '-' && gs.digits < gu.digits)
			gu = gs;
		if (!found || strlen(gu.value) < strlen(best->value) ||
		    (strlen(gu.value) == strlen(best->value) && strcmp(gu.value, best->value) < 0)) {
			*best = gu;
			found = true;
		}
	}
	return found;
}

/*
 * What count registers (1, 2 or 4) at regs most likely hold. A float in range, in the
 * order devices most often use (ABCD, CDAB, then the byte-swapped BADC and DCBA), a
 * positive one before a negative one (most quantities measured are not below 0); the
 * other floats in range are kept in also_*, since a wrong order often lands in range too
 * (swapping the bytes of 24.5 makes -193.8) and only the device's display tells them
 * apart. With no float in range, an integer (guess_integer). False when nothing can be
 * told: registers that are all 0, or another count.
 */
static bool guess_registers(const uint16_t *regs, uint16_t count, struct reading_guess *best)
{
	static const char *const orders32[] = { "ABCD", "CDAB", "BADC", "DCBA" };
	static const char *const orders64[] = { "ABCDEFGH", "GHEFCDAB", "BADCFEHG", "HGFEDCBA" };
	bool zero = true, found = false;

	for (uint16_t i = 0; i < count; i++)
		zero &= regs[i] == 0;
	if (zero || (count != 1 && count != 2 && count != 4))
		return false;
	for (int o = 0; count > 1 && o < 4; o++) {
		struct reading_guess g;
		if (!guess_try(regs, count == 2 ? PT_FLOAT32 : PT_FLOAT64,
			       count == 2 ? orders32[o] : orders64[o], &g))
			continue;
		if (found && best->value[0] == '-' && g.value[0] != '-') {
			/* the positive one first; the negative one becomes the alternative */
			struct reading_guess neg = *best;
			g.nalso = neg.nalso;
			memcpy(g.also_order, neg.also_order, sizeof g.also_order);
			memcpy(g.also_value, neg.also_value, sizeof g.also_value);
			*best = g;
			g = neg;
		} else if (!found) {
			*best = g;
			found = true;
			continue;
		}
		if (best->nalso < 3) {
			best->also_order[best->nalso] = g.order;
			memcpy(best->also_value[best->nalso++], g.value, sizeof g.value);
		}
	}
	return found || guess_integer(regs, count, best);
}

/* "value: { table: holding, address: 0, type: float32, order: CDAB }" */
static void guess_yaml(const struct reading_guess *g, enum mb_table table, unsigned address,
		       char *buf, size_t len)
{
	if (g->order)
		snprintf(buf, len, "value: { table: %s, address: %u, type: %s, order: %s }",
			 codec_table_name(table), address, g->type, g->order);
	else
		snprintf(buf, len, "value: { table: %s, address: %u, type: bool }",
			 codec_table_name(table), address);
}

/* The offset of word as a whole column heading in header ("int16", not "uint16"'s). */
static int heading_at(const char *header, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = strstr(header, word); p; p = strstr(p + 1, word))
		if ((p == header || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
			return (int)(p - header);
	return -1;
}

/* Under header's column for g: a mark, the value it reads, and the line to paste. */
static void guess_print(const char *header, const char *heading, const struct reading_guess *g,
			enum mb_table table, unsigned address)
{
	int at = *heading ? heading_at(header, heading) : -1;
	char yaml[160];

	guess_yaml(g, table, address, yaml, sizeof yaml);
	if (at >= 0)
		printf("%*s%.*s looks right for wire %u: %s\n", at, "", (int)strlen(heading),
		       "^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^", address, g->value);
	else
		printf("wire %u reads %s as %s%s%s\n", address, g->value, g->type,
		       g->order ? " " : "", g->order ? g->order : "");
	for (unsigned i = 0; i < g->nalso; i++)
		printf("%s %s %s also reads in range: %s", i ? "," : "(but", g->type,
		       g->also_order[i], g->also_value[i]);
	if (g->nalso)
		printf("; the device's display tells which)\n");
	printf("to read it, paste under the device's points (and name it):\n  %s\n", yaml);
}

/* The four registers at r as a 64-bit value in each order: a header (into header) and a row. */
static void raw_print_64(const uint16_t *r, char *header, size_t len)
{
	static const char *const orders[] = { "ABCDEFGH", "GHEFCDAB", "BADCFEHG", "HGFEDCBA" };
	char f[4][48], u[2][48];

	snprintf(header, len, "  %-19s  %23s  %23s  %23s  %23s  %20s  %20s", "regs",
		 "float64 ABCDEFGH", "float64 GHEFCDAB", "float64 BADCFEHG", "float64 HGFEDCBA",
		 "uint64 ABCDEFGH", "uint64 GHEFCDAB");
	for (int o = 0; o < 4; o++) {
		struct reading_guess g;
		if (!guess_try(r, PT_FLOAT64, orders[o], &g)) {
			/* out of the plausible range: shown all the same */
			struct point_def p = { .table = MB_HOLDING, .type = PT_FLOAT64, .bit = -1,
					       .scale = 1.0 };
			struct value v;
			config_order_flags(orders[o], 4, &p.byte_order, &p.word_order);
			codec_decode_regs(&p, r, &v, NULL, 0);
			snprintf(g.value, sizeof g.value, "%.17g", v.v.d);
		}
		snprintf(f[o], sizeof f[o], "%s", g.value);
	}
	for (int o = 0; o < 2; o++) {
		struct reading_guess g;
		guess_try(r, PT_UINT64, orders[o], &g);
		snprintf(u[o], sizeof u[o], "%s", g.value);
	}
	printf("%s\n  %04X %04X %04X %04X  %23s  %23s  %23s  %23s  %20s  %20s\n", header, r[0], r[1],
	       r[2], r[3], f[0], f[1], f[2], f[3], u[0], u[1]);
}

/* Where to probe, as given on the command line. */
enum target_kind { TGT_NONE, TGT_TCP, TGT_RTU_TCP, TGT_RTU };

struct target {
	enum target_kind kind;
	const char *arg;     /* HOST:PORT or the serial device */
	unsigned baud;
	char parity;
	unsigned data_bits, stop_bits;
};

/* Open t: the client, or NULL with a message on stderr and *status 1 (cannot reach) or
 * 2 (the address is not an address). */
static struct mbclient *target_open(const struct target *t, int timeout_ms, int *status)
{
	char host[256], err[300];
	uint16_t port;
	struct mbclient *c;
	static const char *const opt[] = { "", "--tcp", "--rtu-tcp", "--rtu" };

	*status = 1;
	if (t->kind == TGT_RTU) {
		c = mbclient_open_rtu(t->arg, t->baud, t->parity, t->data_bits, t->stop_bits,
				      timeout_ms, err, sizeof err);
	} else {
		if (mbclient_parse_addr(t->arg, host, sizeof host, &port) != 0) {
			fprintf(stderr, "sluicectl probe: %s %s: expected HOST:PORT, or "
				"[IPV6]:PORT\n", opt[t->kind], t->arg);
			*status = 2;
			return NULL;
		}
		if (t->kind == TGT_RTU_TCP)
			c = mbclient_open_rtu_tcp(host, port, timeout_ms, err, sizeof err);
		else
			c = mbclient_open_tcp(host, port, timeout_ms, err, sizeof err);
	}
	if (c == NULL)
		fprintf(stderr, "sluicectl probe: %s\n", err);
	return c;
}

/* --- where the reads go: through sluiced, or straight to the device -------------------- */

/* One read, asked (table, start, count) and answered (err, regs or bits, detail). */
struct pread {
	enum mb_table table;
	uint16_t start, count;
	int err;
	char detail[320];
	uint16_t regs[MB_MAX_READ_REGS];
	uint8_t bits[MB_MAX_READ_REGS];
};

/*
 * The way to the device: decided at the first reads. The sluiced of data_dir is asked;
 * when it owns the target's line the reads go through it (ctl), else — no daemon
 * listens, or it says the line is not one of its buses — the line is opened here (mb).
 */
struct plink {
	const struct target *t;
	const char *data_dir;
	int timeout_ms;          /* asked with --timeout, 0 when not (sluiced: the bus's) */
	int direct_timeout_ms;   /* each reply when going straight to the device */
	int wait_ms;             /* each reply's share of the wait for sluiced's answer */
	bool line_given;         /* --baud, --parity...: sluiced's line must be so */
	bool decided;
	struct ctlclient *ctl;
	struct mbclient *mb;
	char bus[ID_MAX];        /* through sluiced: its bus */
	struct jval *reply;      /* sluiced's last answer (its word on the device in it) */
	char note[512];          /* sluiced was asked and the line is not its own: why */
	bool unreachable;        /* going straight to the device, it could not be opened */
};

#define PLINK_NOT_OWNED 3

static const char *const kind_json[] = { "", "tcp", "rtu_over_tcp", "rtu" };

/* The request's "target": the line as the asker knows it; a tty's character device is
 * looked up here, so that the daemon never looks at a path a client gives it. */
static int plink_target(const struct plink *l, struct jbuf *b)
{
	const struct target *t = l->t;
	bool first = true;

	jb_cstr(b, "{");
	jb_key(b, "kind", &first);
	jb_str(b, kind_json[t->kind]);
	if (t->kind == TGT_RTU) {
		struct stat st;

		jb_key(b, "device", &first);
		jb_str(b, t->arg);
		if (stat(t->arg, &st) == 0 && S_ISCHR(st.st_mode)) {
			jb_key(b, "rdev", &first);
			jb_u64(b, (uint64_t)st.st_rdev);
		}
		if (l->line_given) {
			jb_key(b, "baud", &first);
			jb_u64(b, t->baud);
			jb_key(b, "parity", &first);
			jb_str(b, t->parity == 'E' ? "even" : t->parity == 'O' ? "odd" : "none");
			jb_key(b, "data_bits", &first);
			jb_u64(b, t->data_bits);
			jb_key(b, "stop_bits", &first);
			jb_u64(b, t->stop_bits);
		}
	} else {
		char host[256];
		uint16_t port;

		if (mbclient_parse_addr(t->arg, host, sizeof host, &port) != 0)
			return -1;
		jb_key(b, "host", &first);
		jb_str(b, host);
		jb_key(b, "port", &first);
		jb_u64(b, port);
	}
	jb_cstr(b, "}");
	return 0;
}

/* n reads (at most a request's) through sluiced. 0 done, PLINK_NOT_OWNED (the daemon
 * does not use this line: its words in l->note), or 1/2 with the daemon's refusal said. */
static int plink_sluiced(struct plink *l, uint8_t unit, struct pread *r, size_t n, bool sos)
{
	const struct jval *reads;
	struct jbuf b;
	char why[400];
	bool first = true;
	int wait = CONTROL_PROBE_WAIT_MS + (int)n * (l->wait_ms + 1000) + 5000;

	if (l->timeout_ms > POLLER_PROBE_TIMEOUT_MAX_MS) {
		fprintf(stderr, "sluicectl probe: sluiced polls this line: through it, --timeout is "
			"at most %d ms (the line is shared with its polls)\n",
			POLLER_PROBE_TIMEOUT_MAX_MS);
		return 2;
	}
	jb_init(&b);
	jb_cstr(&b, "{");
	jb_key(&b, "v", &first);
	jb_i64(&b, CONTROL_PROTOCOL);
	jb_key(&b, "op", &first);
	jb_str(&b, "probe");
	jb_key(&b, "target", &first);
	if (plink_target(l, &b) != 0) {
		jb_free(&b);
		fprintf(stderr, "sluicectl probe: %s: expected HOST:PORT, or [IPV6]:PORT\n",
			l->t->arg);
		return 2;
	}
	jb_key(&b, "unit", &first);
	jb_u64(&b, unit);
	if (l->timeout_ms > 0) {
		jb_key(&b, "timeout_ms", &first);
		jb_i64(&b, l->timeout_ms);
	}
	jb_key(&b, "stop_on_silence", &first);
	jb_bool(&b, sos);
	jb_key(&b, "reads", &first);
	jb_cstr(&b, "[");
	for (size_t i = 0; i < n; i++) {
		bool f2 = true;

		jb_cstr(&b, i ? ",{" : "{");
		jb_key(&b, "table", &f2);
		jb_str(&b, codec_table_name(r[i].table));
		jb_key(&b, "address", &f2);
		jb_u64(&b, r[i].start);
		jb_key(&b, "count", &f2);
		jb_u64(&b, r[i].count);
		jb_cstr(&b, "}");
	}
	jb_cstr(&b, "]}");
	jread_free(l->reply);
	l->reply = b.oom ? NULL : ctlclient_call(l->ctl, jb_cstr_get(&b), wait, why, sizeof why);
	jb_free(&b);
	if (!l->reply) {
		fprintf(stderr, "sluicectl probe: %s\n", b.oom ? "out of memory" : why);
		return 1;
	}
	if (!jread_bool(l->reply, "ok", false)) {
		const char *code = jread_str(l->reply, "error"), *msg = jread_str(l->reply, "message");

		if (code && strcmp(code, "not_owned") == 0) {
			snprintf(l->note, sizeof l->note, "%s", msg ? msg : "not its line");
			return PLINK_NOT_OWNED;
		}
		fprintf(stderr, "sluicectl probe: sluiced: %s\n", msg ? msg : code ? code : "refused");
		return code && (strcmp(code, "mismatch") == 0 || strcmp(code, "bad_request") == 0)
			       ? 2 : 1;
	}
	snprintf(l->bus, sizeof l->bus, "%s", jread_str(l->reply, "bus") ? jread_str(l->reply, "bus")
									 : "?");
	reads = jread_get(l->reply, "reads");
	if (!reads || reads->type != J_ARR || reads->n != n) {
		fprintf(stderr, "sluicectl probe: sluiced's answer does not fit the question\n");
		return 1;
	}
	for (size_t i = 0; i < n; i++) {
		const struct jval *x = reads->items[i];
		const struct jval *vals = jread_get(x, r[i].table == MB_COIL ||
						       r[i].table == MB_DISCRETE ? "bits" : "registers");

		r[i].detail[0] = '\0';
		r[i].err = (int)jread_i64(x, "code", 0);
		if (r[i].err != 0)
			continue;
		if (!vals || vals->type != J_ARR || vals->n != r[i].count) {
			r[i].err = MBE_PROTO;
			continue;
		}
		for (uint16_t k = 0; k < r[i].count; k++) {
			uint16_t v = (uint16_t)vals->items[k]->num;
			r[i].regs[k] = v;
			r[i].bits[k] = (uint8_t)(v != 0);
		}
	}
	return 0;
}

/*
 * Do the reads r[0..n) of unit: each one's result in it. With sos (stop on silence), a
 * read that gets no reply at all fails the rest unsent, since each would wait its own
 * timeout. 0, or the exit status when they could not be asked (said on stderr).
 */
static int plink_read(struct plink *l, uint8_t unit, struct pread *r, size_t n, bool sos)
{
	size_t from = 0; /* reads done already */
	int stop = 0, status;
	char why[400];

	if (!l->decided) {
		l->decided = true;
		switch (ctlclient_open(l->data_dir, &l->ctl, why, sizeof why)) {
		case CTL_UNREACHABLE:
			fprintf(stderr, "sluicectl probe: %s\nsluicectl probe: a sluiced may be "
				"polling this line and cannot be asked, so the line is not opened: "
				"run as root or as a member of group sluice, or stop sluiced to probe "
				"directly\n", why);
			return 1;
		case CTL_FOUND:
			/* the first request decides: the daemon's line, or not */
			from = n < POLLER_PROBE_READS_MAX ? n : POLLER_PROBE_READS_MAX;
			status = plink_sluiced(l, unit, r, from, sos);
			if (status != PLINK_NOT_OWNED) {
				if (status != 0)
					return status;
				break;
			}
			from = 0;
			ctlclient_close(l->ctl);
			l->ctl = NULL;
			break;
		default:
			break;
		}
		if (!l->ctl) {
			l->mb = target_open(l->t, l->direct_timeout_ms, &status);
			if (!l->mb) {
				l->unreachable = status == 1;
				return status;
			}
		}
	}
	if (l->ctl) {
		for (size_t i = from; i < n; i += POLLER_PROBE_READS_MAX) {
			size_t k = n - i < POLLER_PROBE_READS_MAX ? n - i : POLLER_PROBE_READS_MAX;

			if (i > 0 && sos && poller_silent(r[i - 1].err)) {
				for (size_t j = i; j < n; j++)
					r[j].err = r[i - 1].err;
				return 0;
			}
			status = plink_sluiced(l, unit, r + i, k, sos);
			if (status == PLINK_NOT_OWNED) {
				/* it owned the line a moment ago: a reload in between */
				fprintf(stderr, "sluicectl probe: sluiced: %s\n", l->note);
				return 1;
			}
			if (status != 0)
				return status;
		}
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		r[i].detail[0] = '\0';
		if (stop != 0) {
			r[i].err = stop;
			continue;
		}
		r[i].err = mbclient_read(l->mb, unit, r[i].table, r[i].start, r[i].count, r[i].regs,
					 r[i].bits);
		if (r[i].err != 0)
			snprintf(r[i].detail, sizeof r[i].detail, "%s", mbclient_detail(l->mb));
		if (sos && poller_silent(r[i].err))
			stop = r[i].err;
	}
	return 0;
}

static void plink_close(struct plink *l)
{
	ctlclient_close(l->ctl);
	if (l->mb)
		mbclient_close(l->mb);
	jread_free(l->reply);
}

/* "via: sluiced (bus roof)" or "via: direct", for people. */
static void plink_print_via(const struct plink *l)
{
	if (l->ctl)
		printf("via: sluiced (bus %s, between its polls)\n", l->bus);
	else if (l->note[0])
		printf("via: direct (sluiced runs, but %s)\n", l->note);
	else
		printf("via: direct\n");
}

/* The same for --json: "via" and, through sluiced, "bus" and its word on the device. */
static void plink_json_via(const struct plink *l, struct jbuf *b, bool *first)
{
	const struct jval *dev = l->ctl ? jread_get(l->reply, "device") : NULL;

	jb_key(b, "via", first);
	jb_str(b, l->ctl ? "sluiced" : "direct");
	if (l->ctl) {
		jb_key(b, "bus", first);
		jb_str(b, l->bus);
	}
	if (dev) {
		jb_key(b, "sluiced_device", first);
		jread_emit(b, dev);
	}
}

/* After a read that got no reply: what sluiced thinks of the device, when it has it
 * offline (its polls are slowed down: this probe was one more try). */
static void plink_print_offline(const struct plink *l, int err)
{
	const struct jval *dev = l->ctl ? jread_get(l->reply, "device") : NULL;
	const char *state = jread_str(dev, "state"), *last = jread_str(dev, "last_error");

	if (!poller_silent(err) || !state || strcmp(state, "offline") != 0)
		return;
	printf("sluiced has %s offline%s%s%s: it polls it at the slower offline pace until it "
	       "answers (sluicectl status)\n", jread_str(dev, "id") ? jread_str(dev, "id") : "it",
	       last ? " (" : "", last ? last : "", last ? ")" : "");
}

struct raw_req {
	const char *target;   /* HOST:PORT or the serial device, as given */
	uint8_t unit;
	enum mb_table table;
	uint16_t address, count;
};

static int raw_print_text(const struct plink *l, const struct raw_req *q, uint16_t lo,
			  uint16_t n, const uint16_t *regs, const uint8_t *bits)
{
	bool isbits = q->table == MB_COIL || q->table == MB_DISCRETE;
	uint16_t k = (uint16_t)(q->address - lo); /* the first register asked for */
	struct reading_guess g;
	bool guessed = !isbits && guess_registers(regs + k, q->count, &g);
	char header[256], heading[32];

	printf("%s unit %u, %s %s %u..%u (wire addresses, 0-based)\n", q->target, q->unit,
	       codec_table_name(q->table), isbits ? "bits" : "registers", lo, lo + n - 1);
	plink_print_via(l);
	if (isbits) {
		printf("\n  %5s  %7s  %s\n", "wire", "1-based", "value");
		for (uint16_t i = 0; i < n; i++) {
			uint32_t a = (uint32_t)lo + i;
			bool asked = a >= q->address && a < (uint32_t)q->address + q->count;
			printf("%c %5u  %7u  %u\n", asked ? ' ' : '+', a, a + 1, bits[i]);
		}
		if (q->count == 1) {
			struct reading_guess b = { .type = "bool", .value = "" };
			snprintf(b.value, sizeof b.value, "%u", bits[k]);
			printf("\n");
			guess_print("", "", &b, q->table, q->address);
		}
	} else {
		snprintf(header, sizeof header, "  %5s  %7s  %4s  %6s  %6s", "wire", "1-based", "hex",
			 "uint16", "int16");
		printf("\n%s\n", header);
		for (uint16_t i = 0; i < n; i++) {
			uint32_t a = (uint32_t)lo + i;
			bool asked = a >= q->address && a < (uint32_t)q->address + q->count;
			printf("%c %5u  %7u  %04X  %6u  %6d\n", asked ? ' ' : '+', a, a + 1, regs[i],
			       regs[i], (int16_t)regs[i]);
		}
		if (guessed && q->count == 1)
			guess_print(header, g.type, &g, q->table, q->address);
		if (n >= 2) {
			printf("\n32-bit values from each register and the next:\n");
			snprintf(header, sizeof header, "  %5s  %7s  %-9s  %14s  %14s  %14s  %14s  %11s  "
				 "%11s  %11s  %11s", "wire", "1-based", "regs", "float32 ABCD",
				 "float32 CDAB", "float32 BADC", "float32 DCBA", "uint32 ABCD",
				 "uint32 CDAB", "int32 ABCD", "int32 CDAB");
			printf("%s\n", header);
			for (uint16_t i = 0; i + 1 < n; i++) {
				uint32_t a = (uint32_t)lo + i;
				bool asked = a >= q->address && a < (uint32_t)q->address + q->count;
				char f[4][32];
				for (int o = 0; o < 4; o++)
					fmt_float(f[o], sizeof f[o], as_float(pair_order(regs + i, o)));
				printf("%c %5u  %7u  %04X %04X  %14s  %14s  %14s  %14s  %11" PRIu32
				       "  %11" PRIu32 "  %11" PRId32 "  %11" PRId32 "\n",
				       asked ? ' ' : '+', a, a + 1, regs[i], regs[i + 1], f[0], f[1],
				       f[2], f[3], pair_order(regs + i, 0), pair_order(regs + i, 1),
				       (int32_t)pair_order(regs + i, 0), (int32_t)pair_order(regs + i, 1));
			}
			if (guessed && q->count == 2) {
				snprintf(heading, sizeof heading, "%s %s", g.type, g.order);
				guess_print(header, heading, &g, q->table, q->address);
			}
		}
		if (q->count == 4) {
			printf("\n64-bit values from wire %u..%u:\n", q->address, q->address + 3);
			raw_print_64(regs + k, header, sizeof header);
			if (guessed) {
				snprintf(heading, sizeof heading, "%s %s", g.type, g.order);
				guess_print(header, heading, &g, q->table, q->address);
			}
		}
		if (!guessed && (q->count == 1 || q->count == 2 || q->count == 4))
			printf("\n(all zero: read again when the value is not 0 to see which order "
			       "looks right)\n");
	}
	if (lo < q->address || (uint32_t)lo + n > (uint32_t)q->address + q->count)
		printf("\n+ read around the address asked for: a manual that numbers registers "
		       "from 1 calls wire address N register N+1.\n");
	return 0;
}

/* "looks_right": what the registers asked for look like, with the line to paste; null
 * when nothing can be told (all zero, or a count that is not one value's). */
static void raw_json_guess(struct jbuf *b, const struct raw_req *q, uint16_t lo,
			   const uint16_t *regs, const uint8_t *bits, bool *first)
{
	uint16_t k = (uint16_t)(q->address - lo);
	bool isbits = q->table == MB_COIL || q->table == MB_DISCRETE, f2 = true;
	struct reading_guess g = { .type = "bool" };
	char yaml[160];

	jb_key(b, "looks_right", first);
	if (isbits ? q->count != 1 : !guess_registers(regs + k, q->count, &g)) {
		jb_cstr(b, "null");
		return;
	}
	if (isbits)
		snprintf(g.value, sizeof g.value, "%u", bits[k]);
	guess_yaml(&g, q->table, q->address, yaml, sizeof yaml);
	jb_raw(b, "{", 1);
	jb_key(b, "address", &f2);
	jb_u64(b, q->address);
	jb_key(b, "type", &f2);
	jb_str(b, g.type);
	jb_key(b, "order", &f2);
	jb_str(b, g.order);
	jb_key(b, "value", &f2);
	jb_cstr(b, g.value);
	jb_key(b, "yaml", &f2);
	jb_str(b, yaml);
	if (g.nalso) {
		jb_key(b, "also_in_range", &f2);
		jb_raw(b, "[", 1);
		for (unsigned i = 0; i < g.nalso; i++) {
			bool f3 = true;
			jb_raw(b, i ? ",{" : "{", i ? 2 : 1);
			jb_key(b, "order", &f3);
			jb_str(b, g.also_order[i]);
			jb_key(b, "value", &f3);
			jb_cstr(b, g.also_value[i]);
			jb_raw(b, "}", 1);
		}
		jb_raw(b, "]", 1);
	}
	jb_raw(b, "}", 1);
}

static void raw_print_json(const struct plink *l, const struct raw_req *q, uint16_t lo,
			   uint16_t n, const uint16_t *regs, const uint8_t *bits)
{
	struct jbuf b;
	bool first = true;
	bool isbits = q->table == MB_COIL || q->table == MB_DISCRETE;

	jb_init(&b);
	jb_raw(&b, "{", 1);
	jb_key(&b, "target", &first);
	jb_str(&b, q->target);
	plink_json_via(l, &b, &first);
	jb_key(&b, "unit", &first);
	jb_u64(&b, q->unit);
	jb_key(&b, "table", &first);
	jb_str(&b, codec_table_name(q->table));
	jb_key(&b, "address", &first);
	jb_u64(&b, q->address);
	jb_key(&b, "count", &first);
	jb_u64(&b, q->count);
	jb_key(&b, isbits ? "bits" : "registers", &first);
	jb_raw(&b, "[", 1);
	for (uint16_t i = 0; i < n; i++) {
		bool f2 = true;
		char hex[8];
		uint32_t a = (uint32_t)lo + i;

		if (i > 0)
			jb_raw(&b, ",", 1);
		jb_raw(&b, "{", 1);
		jb_key(&b, "address", &f2);
		jb_u64(&b, a);
		jb_key(&b, "one_based", &f2);
		jb_u64(&b, a + 1);
		jb_key(&b, "asked", &f2);
		jb_bool(&b, a >= q->address && a < (uint32_t)q->address + q->count);
		if (isbits) {
			jb_key(&b, "value", &f2);
			jb_bool(&b, bits[i] != 0);
			jb_raw(&b, "}", 1);
			continue;
		}
		snprintf(hex, sizeof hex, "%04X", regs[i]);
		jb_key(&b, "hex", &f2);
		jb_str(&b, hex);
		jb_key(&b, "uint16", &f2);
		jb_u64(&b, regs[i]);
		jb_key(&b, "int16", &f2);
		jb_i64(&b, (int16_t)regs[i]);
		if (i + 1 < n) {
			static const char *const kinds[3] = { "float32", "uint32", "int32" };
			for (int k = 0; k < 3; k++) {
				bool f3 = true;
				jb_key(&b, kinds[k], &f2);
				jb_raw(&b, "{", 1);
				for (int o = 0; o < 4; o++) {
					uint32_t u = pair_order(regs + i, o);
					jb_key(&b, order_names[o], &f3);
					if (k == 0)
						jb_float32(&b, as_float(u));
					else if (k == 1)
						jb_u64(&b, u);
					else
						jb_i64(&b, (int32_t)u);
				}
				jb_raw(&b, "}", 1);
			}
		}
		jb_raw(&b, "}", 1);
	}
	jb_raw(&b, "]", 1);
	raw_json_guess(&b, q, lo, regs, bits, &first);
	jb_raw(&b, "}", 1);
	printf("%s\n", jb_cstr_get(&b));
	jb_free(&b);
}

static void json_error(const struct plink *l, const char *target, int err, const char *detail,
		       const char *hint)
{
	struct jbuf b;
	bool first = true;

	jb_init(&b);
	jb_raw(&b, "{", 1);
	jb_key(&b, "target", &first);
	jb_str(&b, target);
	plink_json_via(l, &b, &first);
	jb_key(&b, "error", &first);
	jb_str(&b, mb_strerror(err));
	jb_key(&b, "code", &first);
	jb_i64(&b, err);
	jb_key(&b, "hint", &first);
	jb_str(&b, hint);
	if (detail != NULL && detail[0] != '\0') {
		jb_key(&b, "detail", &first);
		jb_str(&b, detail);
	}
	jb_raw(&b, "}", 1);
	printf("%s\n", jb_cstr_get(&b));
	jb_free(&b);
}

static int probe_raw(struct plink *l, const struct raw_req *q, bool json)
{
	struct pread *r = calloc(1, sizeof *r);
	uint16_t lo, n;
	uint32_t hi;
	int rc;

	if (r == NULL) {
		fprintf(stderr, "sluicectl probe: out of memory\n");
		return 1;
	}
	/* one more on each side: the register a 1-based manual means, and the second
	 * half of a 32-bit value that starts at the last one asked for */
	lo = q->address > 0 ? q->address - 1 : 0;
	hi = (uint32_t)q->address + q->count + 1;
	if (hi > 0x10000)
		hi = 0x10000;
	n = (uint16_t)(hi - lo);
	*r = (struct pread){ .table = q->table, .start = lo, .count = n };
	rc = plink_read(l, q->unit, r, 1, false);
	if (rc == 0 && r->err >= MBE_EXC_BASE) {
		/* the neighbours may not exist: the range asked for alone */
		lo = q->address;
		n = q->count;
		*r = (struct pread){ .table = q->table, .start = lo, .count = n };
		rc = plink_read(l, q->unit, r, 1, false);
	}
	if (rc != 0) {
		if (json && l->unreachable)
			json_error(l, q->target, MBE_CONNECT, NULL, probe_hint(MBE_CONNECT));
		free(r);
		return rc;
	}
	if (r->err != 0) {
		char what[128], buf[200];
		const char *hint = read_hint(r->err, q->table, q->address, MB_HINT_PROBE, buf,
					     sizeof buf);
		if (json) {
			json_error(l, q->target, r->err, r->detail, hint);
			free(r);
			return 1;
		}
		snprintf(what, sizeof what, "%s unit %u, %s %u..%u", q->target, q->unit,
			 codec_table_name(q->table), q->address, q->address + q->count - 1);
		plink_print_via(l);
		print_error_text(what, r->err, r->detail, hint);
		plink_print_offline(l, r->err);
		free(r);
		return 1;
	}
	if (json)
		raw_print_json(l, q, lo, n, r->regs, r->bits);
	else
		raw_print_text(l, q, lo, n, r->regs, r->bits);
	free(r);
	return 0;
}

/* --- a configured device ----------------------------------------------------------- */

struct pt_result {
	int err;
	char detail[320];
	uint16_t regs[POINT_STRING_MAX_REGS];
	uint16_t nregs;
	uint8_t bit;
	struct value v;
	char str[2 * POINT_STRING_MAX_REGS + 1];
};

/* The value as text: exact integers, float32 as float32, strings as they are. */
static void value_text(const struct point_def *p, const struct value *v, char *buf, size_t len)
{
	struct jbuf b;

	if (v->kind == VAL_STRING) {
		snprintf(buf, len, "%s", v->s);
		return;
	}
	jb_init(&b);
	jb_point_value(&b, p, v);
	snprintf(buf, len, "%s", jb_cstr_get(&b));
	jb_free(&b);
}

/*
 * One request per point, so each error is the point's own (the daemon merges; a probe
 * is for finding which point is wrong). After a failure that says the device is not
 * answering, the remaining points are not tried: each would wait its own timeout.
 * 0, or the exit status when the reads could not be asked.
 */
static int read_points(struct plink *l, const struct device_cfg *d, struct pt_result *res)
{
	struct pread *r = calloc(d->npoints ? d->npoints : 1, sizeof *r);
	int rc;

	if (r == NULL) {
		fprintf(stderr, "sluicectl probe: out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < d->npoints; i++) {
		const struct point_def *p = &d->points[i];
		bool bit = p->table == MB_COIL || p->table == MB_DISCRETE;

		r[i] = (struct pread){ .table = p->table, .start = p->address,
				       .count = bit ? 1 : codec_width(p) };
	}
	rc = plink_read(l, d->unit_id, r, d->npoints, true);
	for (size_t i = 0; i < d->npoints && rc == 0; i++) {
		const struct point_def *p = &d->points[i];
		struct pt_result *x = &res[i];

		memset(x, 0, sizeof *x);
		x->err = r[i].err;
		snprintf(x->detail, sizeof x->detail, "%s", r[i].detail);
		if (x->err != 0)
			continue;
		if (p->table == MB_COIL || p->table == MB_DISCRETE) {
			x->bit = r[i].bits[0];
			codec_decode_bit(p, x->bit, &x->v);
		} else {
			x->nregs = r[i].count;
			memcpy(x->regs, r[i].regs, x->nregs * sizeof *x->regs);
			if (codec_decode_regs(p, x->regs, &x->v, x->str, sizeof x->str) != 0)
				x->err = x->v.err;
		}
	}
	free(r);
	return rc;
}

static void hex_regs(const struct pt_result *r, const struct point_def *p, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	if (p->table == MB_COIL || p->table == MB_DISCRETE) {
		if (r->err == 0)
			snprintf(buf, len, "%u", r->bit);
		return;
	}
	for (uint16_t k = 0; k < r->nregs && off + 6 < len; k++)
		off += (size_t)snprintf(buf + off, len - off, "%s%04X", k ? " " : "", r->regs[k]);
}

static void device_print_text(const struct plink *l, const struct config *cfg,
			      const struct device_cfg *d, const struct pt_result *res)
{
	const struct bus_cfg *bus = &cfg->buses[d->bus];
	size_t wname = 5;

	for (size_t i = 0; i < d->npoints; i++)
		if (strlen(d->points[i].name) > wname)
			wname = strlen(d->points[i].name);
	if (bus->kind == BUS_RTU)
		printf("device %s on bus %s (%s, %u baud), unit %u\n", d->id, bus->id,
		       bus->device, bus->baud, d->unit_id);
	else
		printf("device %s on bus %s (%s%s port %u), unit %u\n", d->id, bus->id,
		       bus->kind == BUS_RTU_OVER_TCP ? "RTU over TCP, " : "", bus->host,
		       bus->port, d->unit_id);
	plink_print_via(l);
	printf("\n");
	printf("%-*s  %-8s  %7s  %-7s  %-19s  %s\n", (int)wname, "point", "table", "address",
	       "type", "raw", "value");
	for (size_t i = 0; i < d->npoints; i++) {
		const struct point_def *p = &d->points[i];
		const struct pt_result *r = &res[i];
		char raw[64], val[300], type[16];

		hex_regs(r, p, raw, sizeof raw);
		if (p->bit >= 0)
			snprintf(type, sizeof type, "%s.%d", codec_type_name(p->type), p->bit);
		else
			snprintf(type, sizeof type, "%s", codec_type_name(p->type));
		printf("%-*s  %-8s  %7u  %-7s  %-19s  ", (int)wname, p->name,
		       codec_table_name(p->table), p->address, type, raw);
		if (r->err != 0) {
			char buf[200];
			const char *hint = read_hint(r->err, p->table, p->address, MB_HINT_CONFIG,
						     buf, sizeof buf);
			if (r->detail[0] != '\0' && r->err < MBE_EXC_BASE &&
			    strncmp(r->detail, "no reply", 8) != 0)
				hint = r->detail;
			printf("error: %s%s%s\n", mb_strerror(r->err), hint ? " — " : "",
			       hint ? hint : "");
			continue;
		}
		value_text(p, &r->v, val, sizeof val);
		printf("%s%s%s\n", val, p->unit[0] ? " " : "", p->unit);
	}
	for (size_t i = 0; i < d->npoints; i++)
		if (poller_silent(res[i].err)) {
			plink_print_offline(l, res[i].err);
			break;
		}
}

static void device_print_json(const struct plink *l, const struct device_cfg *d,
			      const struct pt_result *res)
{
	struct jbuf b;
	bool first = true;

	jb_init(&b);
	jb_raw(&b, "{", 1);
	jb_key(&b, "device", &first);
	jb_str(&b, d->id);
	plink_json_via(l, &b, &first);
	jb_key(&b, "unit", &first);
	jb_u64(&b, d->unit_id);
	jb_key(&b, "points", &first);
	jb_raw(&b, "[", 1);
	for (size_t i = 0; i < d->npoints; i++) {
		const struct point_def *p = &d->points[i];
		const struct pt_result *r = &res[i];
		bool f2 = true;

		if (i > 0)
			jb_raw(&b, ",", 1);
		jb_raw(&b, "{", 1);
		jb_key(&b, "name", &f2);
		jb_str(&b, p->name);
		jb_key(&b, "table", &f2);
		jb_str(&b, codec_table_name(p->table));
		jb_key(&b, "address", &f2);
		jb_u64(&b, p->address);
		jb_key(&b, "type", &f2);
		jb_str(&b, codec_type_name(p->type));
		if (r->err == 0 && r->nregs > 0) {
			jb_key(&b, "raw", &f2);
			jb_raw(&b, "[", 1);
			for (uint16_t k = 0; k < r->nregs; k++) {
				char hex[8];
				snprintf(hex, sizeof hex, "%04X", r->regs[k]);
				if (k > 0)
					jb_raw(&b, ",", 1);
				jb_str(&b, hex);
			}
			jb_raw(&b, "]", 1);
		}
		jb_key(&b, "value", &f2);
		jb_point_value(&b, p, &r->v);
		if (p->unit[0] != '\0') {
			jb_key(&b, "unit", &f2);
			jb_str(&b, p->unit);
		}
		if (r->err != 0) {
			char buf[200];
			const char *hint = read_hint(r->err, p->table, p->address, MB_HINT_CONFIG,
						     buf, sizeof buf);
			jb_key(&b, "error", &f2);
			jb_str(&b, mb_strerror(r->err));
			if (hint) {
				jb_key(&b, "hint", &f2);
				jb_str(&b, hint);
			}
		}
		jb_raw(&b, "}", 1);
	}
	jb_raw(&b, "]}", 2);
	printf("%s\n", jb_cstr_get(&b));
	jb_free(&b);
}

static int probe_device(const struct config *cfg, const char *cfgpath, const char *devid,
			int timeout_ms, bool json)
{
	const struct device_cfg *d;
	const struct bus_cfg *bus;
	struct pt_result *res = NULL;
	struct target t = { 0 };
	struct plink l = { 0 };
	char addr[300];
	long di;
	int rc = 0, status;

	di = config_find_device(cfg, devid);
	if (di < 0) {
		fprintf(stderr, "sluicectl probe: %s has no device '%s'\n", cfgpath, devid);
		return 2;
	}
	d = &cfg->devices[di];
	bus = &cfg->buses[d->bus];
	if (bus->kind == BUS_RTU) {
		t = (struct target){ .kind = TGT_RTU, .arg = bus->device, .baud = bus->baud,
				     .parity = bus->parity, .data_bits = bus->data_bits,
				     .stop_bits = bus->stop_bits };
	} else {
		snprintf(addr, sizeof addr, strchr(bus->host, ':') ? "[%s]:%u" : "%s:%u",
			 bus->host, bus->port);
		t.kind = bus->kind == BUS_RTU_OVER_TCP ? TGT_RTU_TCP : TGT_TCP;
		t.arg = addr;
	}
	if (d->sunspec) {
		static const char *const opt[] = { "", "--tcp", "--rtu-tcp", "--rtu" };
		fprintf(stderr, "sluicectl probe: device %s is a SunSpec device, whose points are "
			"found at run time; read its registers with %s %s --unit %u "
			"--read holding:40000:70\n", d->id, opt[t.kind], t.arg, d->unit_id);
		return 2;
	}
	l = (struct plink){ .t = &t, .data_dir = cfg->gateway.data_dir, .timeout_ms = timeout_ms,
			    .wait_ms = timeout_ms > 0 ? timeout_ms : (int)bus->timeout_ms };
	if (timeout_ms <= 0)
		timeout_ms = bus->timeout_ms > 0 ? (int)bus->timeout_ms : PROBE_DEFAULT_TIMEOUT_MS;
	l.direct_timeout_ms = timeout_ms;
	res = calloc(d->npoints ? d->npoints : 1, sizeof *res);
	if (res == NULL) {
		fprintf(stderr, "sluicectl probe: out of memory\n");
		return 1;
	}
	status = read_points(&l, d, res);
	if (status != 0) {
		if (json && l.unreachable)
			json_error(&l, t.arg, MBE_CONNECT, NULL, probe_hint(MBE_CONNECT));
		fprintf(stderr, "sluicectl probe: device %s could not be reached\n", d->id);
		plink_close(&l);
		free(res);
		return status;
	}
	for (size_t i = 0; i < d->npoints; i++) {
		if (res[i].err != 0) {
			rc = 1;
			memset(&res[i].v, 0, sizeof res[i].v);
			res[i].v.kind = VAL_NONE;
			res[i].v.err = res[i].err;
		}
	}
	if (json)
		device_print_json(&l, d, res);
	else
		device_print_text(&l, cfg, d, res);
	plink_close(&l);
	free(res);
	return rc;
}

/*
 * The config: the one given (its mistakes said), or else the default one, quietly — it
 * only tells where a running sluiced would be (NULL when there is none).
 */
static struct config *probe_config(const char *cfgpath, int *status)
{
	struct config_diag diag = { 0 };
	struct config_opts copts = { .skip_secret_files = true };
	struct config *cfg = config_load(cfgpath ? cfgpath : SLUICECTL_CONFIG, &copts, &diag);

	*status = 0;
	if (cfg == NULL && cfgpath != NULL) {
		for (size_t i = 0; i < diag.n; i++)
			fprintf(stderr, "%s\n", diag.msgs[i]);
		fprintf(stderr, "sluicectl probe: cannot use %s\n", cfgpath);
		*status = 2;
	}
	config_diag_free(&diag);
	return cfg;
}

/* --- the command line ------------------------------------------------------------------ */

/* TABLE:ADDRESS[:COUNT] */
static int parse_read(const char *s, struct raw_req *q)
{
	char buf[64], *a, *n;
	unsigned long v;
	int t;

	if (strlen(s) >= sizeof buf)
		return -1;
	strcpy(buf, s);
	a = strchr(buf, ':');
	if (a == NULL)
		return -1;
	*a++ = '\0';
	n = strchr(a, ':');
	if (n != NULL)
		*n++ = '\0';
	t = codec_table_from_name(buf);
	if (t < 0 || parse_uint(a, 65535, &v) != 0)
		return -1;
	q->table = (enum mb_table)t;
	q->address = (uint16_t)v;
	if (n != NULL) {
		if (parse_uint(n, PROBE_MAX_COUNT, &v) != 0 || v == 0)
			return -1;
		q->count = (uint16_t)v;
	}
	return 0;
}

int probe_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "tcp", required_argument, NULL, 'T' },
		{ "rtu-tcp", required_argument, NULL, 'R' },
		{ "rtu", required_argument, NULL, 'S' },
		{ "unit", required_argument, NULL, 'u' },
		{ "read", required_argument, NULL, 'r' },
		{ "table", required_argument, NULL, 't' },
		{ "address", required_argument, NULL, 'a' },
		{ "count", required_argument, NULL, 'n' },
		{ "baud", required_argument, NULL, 'B' },
		{ "parity", required_argument, NULL, 'P' },
		{ "stop-bits", required_argument, NULL, 'Z' },
		{ "data-bits", required_argument, NULL, 'D' },
		{ "timeout", required_argument, NULL, 'w' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cfgpath = NULL;
	struct target tg = { .kind = TGT_NONE, .baud = 9600, .parity = 'N', .data_bits = 8,
			     .stop_bits = 1 };
	struct raw_req q = { .unit = 1, .table = MB_HOLDING, .count = 1 };
	bool json = false, have_read = false, have_table = false, have_addr = false;
	bool have_line = false;
	int ntargets = 0;
	unsigned long v;
	int timeout_ms = 0, ch, t, rc;

	optind = 0; /* GNU: reinitialise, whatever parsed argv before us */
	while ((ch = getopt_long(argc, argv, "c:u:r:t:a:n:jh", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			cfgpath = optarg;
			break;
		case 'T':
		case 'R':
		case 'S':
			tg.kind = ch == 'T' ? TGT_TCP : ch == 'R' ? TGT_RTU_TCP : TGT_RTU;
			tg.arg = optarg;
			ntargets++;
			break;
		case 'B':
			if (parse_uint(optarg, 4000000, &v) != 0 || v == 0) {
				fprintf(stderr, "sluicectl probe: --baud %s: expected a speed such as "
					"9600\n", optarg);
				return 2;
			}
			tg.baud = (unsigned)v;
			have_line = true;
			break;
		case 'P':
			if (strcmp(optarg, "none") == 0 || strcmp(optarg, "N") == 0)
				tg.parity = 'N';
			else if (strcmp(optarg, "even") == 0 || strcmp(optarg, "E") == 0)
				tg.parity = 'E';
			else if (strcmp(optarg, "odd") == 0 || strcmp(optarg, "O") == 0)
				tg.parity = 'O';
			else {
				fprintf(stderr, "sluicectl probe: --parity %s: expected none, even "
					"or odd\n", optarg);
				return 2;
			}
			have_line = true;
			break;
		case 'Z':
		case 'D':
			if (parse_uint(optarg, 8, &v) != 0 ||
			    (ch == 'Z' ? v < 1 || v > 2 : v < 7)) {
				fprintf(stderr, "sluicectl probe: --%s %s: expected %s\n",
					ch == 'Z' ? "stop-bits" : "data-bits", optarg,
					ch == 'Z' ? "1 or 2" : "7 or 8");
				return 2;
			}
			if (ch == 'Z')
				tg.stop_bits = (unsigned)v;
			else
				tg.data_bits = (unsigned)v;
			have_line = true;
			break;
		case 'u':
			if (parse_uint(optarg, 255, &v) != 0) {
				fprintf(stderr, "sluicectl probe: --unit %s: expected 0..255\n", optarg);
				return 2;
			}
			q.unit = (uint8_t)v;
			break;
		case 'r':
			if (parse_read(optarg, &q) != 0) {
				fprintf(stderr, "sluicectl probe: --read %s: expected TABLE:ADDRESS"
					"[:COUNT], TABLE one of holding, input, coil, discrete, "
					"ADDRESS 0..65535, COUNT 1..%d\n", optarg, PROBE_MAX_COUNT);
				return 2;
			}
			have_read = true;
			break;
		case 't':
			t = codec_table_from_name(optarg);
			if (t < 0) {
				fprintf(stderr, "sluicectl probe: --table %s: expected holding, input, "
					"coil or discrete\n", optarg);
				return 2;
			}
			q.table = (enum mb_table)t;
			have_table = true;
			break;
		case 'a':
			if (parse_uint(optarg, 65535, &v) != 0) {
				fprintf(stderr, "sluicectl probe: --address %s: expected 0..65535\n",
					optarg);
				return 2;
			}
			q.address = (uint16_t)v;
			have_addr = true;
			break;
		case 'n':
			if (parse_uint(optarg, PROBE_MAX_COUNT, &v) != 0 || v == 0) {
				fprintf(stderr, "sluicectl probe: --count %s: expected 1..%d\n", optarg,
					PROBE_MAX_COUNT);
				return 2;
			}
			q.count = (uint16_t)v;
			break;
		case 'w':
			if (parse_uint(optarg, 600000, &v) != 0 || v == 0) {
				fprintf(stderr, "sluicectl probe: --timeout %s: expected milliseconds, "
					"1..600000\n", optarg);
				return 2;
			}
			timeout_ms = (int)v;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			probe_usage(stdout);
			return 0;
		default:
			probe_usage(stderr);
			return 2;
		}
	}
	if (ntargets > 1) {
		fprintf(stderr, "sluicectl probe: give one of --tcp, --rtu-tcp and --rtu\n");
		return 2;
	}
	if (have_line && tg.kind != TGT_RTU) {
		fprintf(stderr, "sluicectl probe: --baud, --parity, --stop-bits and --data-bits "
			"are for --rtu (a DTU's serial side is set in the DTU)\n");
		return 2;
	}
	if (cfgpath != NULL && ntargets == 0) {
		struct config *cfg;
		int rc;

		if (optind + 1 != argc || have_read || have_table || have_addr) {
			fprintf(stderr, "sluicectl probe: with --config, name one device (and no "
				"--read/--table/--address), or give a --tcp, --rtu-tcp or --rtu "
				"target\n");
			return 2;
		}
		if (!(cfg = probe_config(cfgpath, &rc)))
			return rc;
		rc = probe_device(cfg, cfgpath, argv[optind], timeout_ms, json);
		config_free(cfg);
		return rc;
	}
	if (ntargets == 0 || optind != argc) {
		probe_usage(stderr);
		return 2;
	}
	if (have_read && (have_table || have_addr)) {
		fprintf(stderr, "sluicectl probe: give --read, or --table and --address, not both\n");
		return 2;
	}
	if (!have_read && !have_addr) {
		fprintf(stderr, "sluicectl probe: what to read? --read TABLE:ADDRESS[:COUNT]\n");
		return 2;
	}
	if ((uint32_t)q.address + q.count > 0x10000) {
		fprintf(stderr, "sluicectl probe: %u registers from %u run past 65535\n", q.count,
			q.address);
		return 2;
	}
	q.target = tg.arg;
	{
		/* where a running sluiced would listen: the config's data_dir, the default
		 * config's, or the default one */
		struct config *cfg = probe_config(cfgpath, &rc);
		struct plink l = { .t = &tg, .timeout_ms = timeout_ms,
				   .direct_timeout_ms = timeout_ms > 0 ? timeout_ms
								       : PROBE_DEFAULT_TIMEOUT_MS,
				   .wait_ms = timeout_ms > 0 ? timeout_ms : POLLER_PROBE_TIMEOUT_MAX_MS,
				   .line_given = have_line };

		if (!cfg && rc != 0)
			return rc;
		l.data_dir = cfg ? cfg->gateway.data_dir : CONFIG_DATA_DIR_DEFAULT;
		rc = probe_raw(&l, &q, json);
		plink_close(&l);
		config_free(cfg);
		return rc;
	}
}
