/*
 * mberr: the text of a Modbus failure code. Owns the wording that operators see in
 * logs and in a reading's published `errors`, so the texts must stay stable; it must
 * never allocate or log.
 */
#include "mberr.h"

#include <stdio.h>

#include "point.h"

static const char *const mberr_texts[] = {
	[MBE_OK] = "ok",
	[MBE_TIMEOUT] = "timeout",
	[MBE_CONNECT] = "connection failed",
	[MBE_CLOSED] = "connection closed",
	[MBE_PROTO] = "malformed reply",
	[MBE_IO] = "i/o error",
	[MBE_UNSUPPORTED] = "unsupported",
	[MBE_NOT_IMPL] = "not implemented",
	[MBE_BAD_CRC] = "CRC error",
	[MBE_WRONG_UNIT] = "reply from another unit",
};

/* Indexed by the Modbus exception code (application protocol spec, section 7). */
static const char *const mberr_exceptions[] = {
	[1] = "illegal function",
	[2] = "illegal data address",
	[3] = "illegal data value",
	[4] = "server device failure",
	[5] = "acknowledge",
	[6] = "server device busy",
	[8] = "memory parity error",
	[0x0A] = "gateway path unavailable",
	[0x0B] = "gateway target failed to respond",
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/*
 * Codes without a name are formatted into a per-thread buffer: pollers call this
 * from their own threads, and the text stays valid until the same thread asks again.
 */
const char *mb_strerror(int code)
{
	static _Thread_local char buf[32];

	if (code >= 0 && (size_t)code < NELEM(mberr_texts))
		return mberr_texts[code];
	if (code > MBE_EXC_BASE && code <= MBE_EXC_BASE + 0xFF) {
		int exc = code - MBE_EXC_BASE;
		if ((size_t)exc < NELEM(mberr_exceptions) && mberr_exceptions[exc] != NULL)
			return mberr_exceptions[exc];
		snprintf(buf, sizeof buf, "exception %d", exc);
		return buf;
	}
	snprintf(buf, sizeof buf, "error %d", code);
	return buf;
}

int mb_numbered_hint(char *buf, size_t len, int err, int table, unsigned address,
		     enum mb_hint_style style)
{
	/* 3xxxx numbers input registers from 30001, 4xxxx holding registers from 40001 */
	int numbered = address >= 40000 ? MB_HOLDING : MB_INPUT;
	unsigned first = numbered == MB_HOLDING ? 40001 : 30001;
	unsigned wire = address >= first ? address - first : 0;
	const char *name = numbered == MB_HOLDING ? "holding" : "input";

	if (err != MBE_EXC_BASE + 2 || (table != MB_INPUT && table != MB_HOLDING) ||
	    address < 30000 || address > 49999 || len == 0)
		return 0;
	if (style == MB_HINT_PROBE)
		snprintf(buf, len, "the manual may number %s registers from %u (%u is wire "
			 "address 0): try --read %s:%u", name, first, first, name, wire);
	else if (table != numbered)
		snprintf(buf, len, "the manual may number %s registers from %u (%u is wire "
			 "address 0): try table: %s, address: %u", name, first, first, name, wire);
	else
		snprintf(buf, len, "the manual may number %s registers from %u (%u is wire "
			 "address 0): try address: %u", name, first, first, wire);
	return 1;
}
