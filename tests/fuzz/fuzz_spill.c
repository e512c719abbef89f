/*
 * fuzz_spill: the spill file's reader (daemon/spill.c, spill_parse) on arbitrary bytes,
 * as a start reads data_dir/sluice.spill. A file it accepts gives rows of a known kind
 * with text that fits in the input; one it refuses says why and leaves no row, so a
 * damaged spill can be set aside instead of failing the start.
 */
#include <string.h>

#include "fuzz.h"
#include "spill.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spill_content c;
	char why[160];
	size_t text = 0;
	int r;

	why[0] = '\0';
	r = spill_parse(data, size, &c, why, sizeof why);
	if (r == 0) {
		fuzz_check(why[0] == '\0');
		fuzz_check(c.id != 0 || (c.nrows == 0 && c.nmeta == 0 && c.lost == 0));
		for (size_t i = 0; i < c.nrows; i++) {
			fuzz_check(c.rows[i].topic && c.rows[i].body && c.rows[i].topic[0]);
			fuzz_check(c.rows[i].kind == ROW_TELEMETRY || c.rows[i].kind == ROW_ALERT);
			fuzz_check(c.rows[i].seq == 0);
			text += strlen(c.rows[i].topic) + strlen(c.rows[i].body);
		}
		for (size_t i = 0; i < c.nmeta; i++) {
			fuzz_check(c.meta[i].key && c.meta[i].value && c.meta[i].key[0]);
			text += strlen(c.meta[i].key) + strlen(c.meta[i].value);
		}
		fuzz_check(text <= size);
	} else {
		fuzz_check(r == -1 && why[0] != '\0');
		fuzz_check(c.nrows == 0 && c.nmeta == 0);
		fuzz_check(c.header_ok || c.lost == 0);
	}
	spill_content_free(&c);
	return 0;
}
