/*
 * fuzz_sunspec: SunSpec discovery (drivers/sunspec.c) over an arbitrary register map.
 * The first byte places the map (at 40000, 0 or 50000, where discovery looks for the
 * 'SunS' marker) and says which read, if any, fails as a transport error would; the
 * rest are the registers, big-endian. Registers outside the map answer "illegal
 * address", as a device does. Whatever discovery returns must be a usable point list.
 */
#include <string.h>

#include "fuzz.h"
#include "mberr.h"
#include "sunspec.h"

struct image {
	uint16_t base;
	const uint8_t *p;
	size_t nregs;
	unsigned reads, fail_at; /* fail_at 0: never */
};

static int img_read(void *ctx, uint16_t addr, uint16_t count, uint16_t *out)
{
	struct image *im = ctx;

	fuzz_check(count >= 1 && count <= 125);
	if (++im->reads == im->fail_at)
		return MBE_TIMEOUT;
	if (addr < im->base || (size_t)addr - im->base + count > im->nregs)
		return MBE_EXC_BASE + 2;
	for (uint16_t i = 0; i < count; i++) {
		const uint8_t *b = im->p + 2 * ((size_t)addr - im->base + i);
		out[i] = (uint16_t)(b[0] << 8 | b[1]);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t bases[] = { 40000, 0, 50000, 40000 };
	struct fuzz_in in = { data, size };
	uint8_t sel = fuzz_u8(&in);
	struct image im = { bases[sel & 3], NULL, in.n / 2, 0, (unsigned)(sel >> 2) & 15 };
	struct sunspec_info info;
	char err[256];
	uint8_t *copy = malloc(in.n ? in.n : 1);
	int rc;

	if (!copy)
		abort();
	if (in.n)
		memcpy(copy, in.p, in.n);
	im.p = copy;
	if ((size_t)im.base + im.nregs > 0x10000)
		im.nregs = 0x10000 - (size_t)im.base;
	err[0] = '\0';
	memset(&info, 0, sizeof info);
	rc = sunspec_discover(img_read, &im, &info, err, sizeof err);
	if (rc == 0) {
		fuzz_check(info.nmodels <= SUNSPEC_MAX_MODELS);
		fuzz_check(memchr(info.mn, '\0', sizeof info.mn) && memchr(info.md, '\0', sizeof info.md) &&
			   memchr(info.sn, '\0', sizeof info.sn));
		for (size_t i = 0; i < info.npoints; i++) {
			const struct point_def *p = &info.points[i];
			fuzz_check(memchr(p->name, '\0', sizeof p->name) != NULL);
			fuzz_check(codec_width(p) >= 1);
			fuzz_check((uint32_t)p->address + codec_width(p) <= 0x10000);
		}
		sunspec_info_free(&info);
	} else {
		fuzz_check(err[0] != '\0');
		fuzz_check(info.points == NULL);
	}
	free(copy);
	return 0;
}
