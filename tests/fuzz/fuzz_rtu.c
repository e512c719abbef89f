/*
 * fuzz_rtu: Modbus RTU framing (drivers/rtu.c) on a byte stream as a serial line
 * delivers it: the frame-length rules cut the stream into frames as drivers/rtustream
 * does, each frame is unframed (CRC) and its PDU decoded as a read reply. The first
 * byte says whether the stream is read as a master (replies) or a slave (requests).
 */
#include <string.h>

#include "fuzz.h"
#include "mberr.h"
#include "rtu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	int slave = fuzz_u8(&in) & 1;
	uint8_t *buf = malloc(in.n ? in.n : 1);
	size_t off = 0;

	if (!buf)
		abort();
	if (in.n)
		memcpy(buf, in.p, in.n);

	/* the whole input as one frame */
	{
		uint8_t unit;
		const uint8_t *pdu;
		size_t pdulen;
		if (rtu_unframe(buf, in.n, &unit, &pdu, &pdulen) == 0) {
			uint8_t adu[RTU_ADU_MAX];
			fuzz_check(pdulen + 3 == in.n && pdu == buf + 1 && unit == buf[0]);
			if (pdulen >= 1)
				fuzz_check(rtu_frame(adu, unit, pdu, pdulen) == in.n &&
					   memcmp(adu, buf, in.n) == 0);
		}
	}

	/* the input as a stream: frames one after the other */
	while (off < in.n) {
		size_t have = in.n - off;
		/* feed the length rule one byte more at a time, as bytes arrive */
		int want = 0;
		for (size_t k = 1; k <= have && want == 0; k++)
			want = slave ? rtu_request_len(buf + off, k) : rtu_reply_len(buf + off, k);
		if (want < 0) {
			off++; /* resynchronise on the next byte */
			continue;
		}
		if (want == 0 || (size_t)want > have)
			break;
		fuzz_check(want >= RTU_ADU_MIN + 1 && want <= RTU_ADU_MAX);

		uint8_t *frame = malloc((size_t)want);
		uint8_t unit;
		const uint8_t *pdu;
		size_t pdulen;
		if (!frame)
			abort();
		memcpy(frame, buf + off, (size_t)want);
		if (rtu_unframe(frame, (size_t)want, &unit, &pdu, &pdulen) == 0) {
			uint16_t regs[MB_MAX_READ_REGS];
			uint8_t bits[MB_MAX_READ_BITS];
			if (slave) {
				size_t rs = rtu_reply_size(pdu, pdulen);
				(void)rs;
			} else if (pdulen >= 2 && pdu[0] >= 1 && pdu[0] <= 4) {
				enum mb_table t = pdu[0] == 1 ? MB_COIL : pdu[0] == 2 ? MB_DISCRETE
					       : pdu[0] == 3 ? MB_HOLDING : MB_INPUT;
				uint16_t count = t <= MB_DISCRETE ? (uint16_t)(pdu[1] * 8)
								  : (uint16_t)(pdu[1] / 2);
				int rc = mbpdu_read_resp(pdu, pdulen, t, count ? count : 1, regs, bits);
				fuzz_check(rc == 0 || rc == MBE_PROTO || rc > MBE_EXC_BASE);
			}
		}
		free(frame);
		off += (size_t)want;
	}

	/* the timing arithmetic takes line settings from the config: no overflow */
	{
		unsigned baud = (unsigned)((size ? data[0] : 0) * 1200u);
		unsigned cb = rtu_char_bits(size % 10, "NEOX"[size % 4], size % 3);
		fuzz_check(cb >= 7 && cb <= 12);
		if (size)
			fuzz_check(rtu_transfer_us(baud, cb, in.n) >= 0 &&
				   rtu_transfer_ms(baud, cb, in.n) >= 0);
	}
	free(buf);
	return 0;
}
