/*
 * fuzz_codec: register decoding (drivers/codec.c) with arbitrary point definitions —
 * any type, table, bit, length, byte and word order, scale and offset, including
 * values the config loader would refuse, because codec must not trust its caller's
 * point more than the device's registers. The registers and string buffer are exact
 * heap allocations. Encoding the decoded value is tried as well.
 */
#include <math.h>
#include <string.h>

#include "codec.h"
#include "fuzz.h"
#include "mberr.h"

static double pick_double(struct fuzz_in *in)
{
	static const double common[] = { 1.0, 0.0, 0.1, 0.001, -1.0, 10.0, 1e300, -1e-300,
					 INFINITY, -INFINITY, NAN, 0.5, 100.0, 65536.0, 1e19, -1e19 };
	uint8_t sel = fuzz_u8(in);
	double d;
	uint8_t b[8];

	if (sel < 0xF0)
		return common[sel % (sizeof common / sizeof common[0])];
	for (int i = 0; i < 8; i++)
		b[i] = fuzz_u8(in);
	memcpy(&d, b, sizeof d);
	return d;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct point_def p;
	struct value v;
	uint16_t *regs, width, enc[4];
	size_t strcap;
	char *strbuf;
	int rc;

	memset(&p, 0, sizeof p);
	snprintf(p.name, sizeof p.name, "p");
	p.table = (enum mb_table)(fuzz_u8(&in) % 5);   /* 4: not a table */
	p.type = (enum pt_type)(fuzz_u8(&in) % 12);    /* 10, 11: not a type */
	p.bit = (int8_t)fuzz_u8(&in);
	p.length = fuzz_u8(&in);
	p.byte_order = fuzz_u8(&in) % 3;
	p.word_order = fuzz_u8(&in) % 3;
	p.scale = pick_double(&in);
	p.offset = pick_double(&in);
	p.writable = true;
	strcap = fuzz_u8(&in) % 140;

	width = codec_width(&p);
	regs = malloc(width ? width * sizeof *regs : 1);
	strbuf = strcap ? malloc(strcap) : NULL;
	if (!regs || (strcap && !strbuf))
		abort();
	for (uint16_t i = 0; i < width; i++)
		regs[i] = fuzz_u16(&in);

	rc = codec_decode_regs(&p, regs, &v, strbuf, strcap);
	if (rc == 0) {
		fuzz_check(v.kind != VAL_NONE);
		if (v.kind == VAL_STRING) {
			fuzz_check(v.s == strbuf && strlen(v.s) < strcap);
		}
		if (codec_is_exact(&p))
			fuzz_check(v.kind == VAL_BOOL || v.kind == VAL_INT || v.kind == VAL_UINT);
	} else {
		fuzz_check(rc == -1 && v.kind == VAL_NONE && v.err == MBE_UNSUPPORTED);
	}

	/* and back: whatever came out, encoding it must stay inside the registers */
	if (rc == 0 && v.kind != VAL_STRING) {
		double d = v.kind == VAL_DOUBLE ? v.v.d : v.kind == VAL_INT ? (double)v.v.i
			 : v.kind == VAL_UINT ? (double)v.v.u : v.v.b;
		int n = codec_encode_regs(&p, d, enc);
		fuzz_check(n <= 4);
		if (v.kind == VAL_INT)
			fuzz_check(codec_encode_int(&p, v.v.i, enc) <= 4);
		if (v.kind == VAL_UINT)
			fuzz_check(codec_encode_uint(&p, v.v.u, enc) <= 4);
		if (width >= 1)
			codec_set_bit(&p, d != 0, &regs[0]);
	}
	free(regs);
	free(strbuf);
	return 0;
}
