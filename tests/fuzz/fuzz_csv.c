/*
 * fuzz_csv: the replay CSV reader (tools/csv.c) on arbitrary text, read through
 * fmemopen as sluicectl replay reads a file. Every record it accepts must have as many
 * fields as the header, each a string; a bad record must leave the reader able to go on.
 */
#include <string.h>

#include "csv.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct csv c;
	char err[512];
	FILE *f;
	int r;

	if (size == 0)
		return 0; /* fmemopen cannot open an empty buffer */
	if (!(f = fmemopen((void *)data, size, "r")))
		abort();
	err[0] = '\0';
	if (csv_open(&c, f, "fuzz.csv", err, sizeof err) < 0) {
		fuzz_check(err[0] != '\0');
		fclose(f);
		return 0;
	}
	fuzz_check(c.nhdr >= 1 && (c.sep == ',' || c.sep == ';'));
	/* each record consumes at least one byte, so this bounds the loop */
	for (size_t n = 0; n <= size; n++) {
		size_t line = c.next_line;
		err[0] = '\0';
		r = csv_next(&c, err, sizeof err);
		fuzz_check(c.next_line >= line);
		if (r == 1) {
			fuzz_check(c.nfld == c.nhdr);
			for (size_t i = 0; i < c.nfld; i++)
				fuzz_check(c.fld[i] != NULL && strlen(c.fld[i]) <= size);
		} else if (r == -1) {
			fuzz_check(strncmp(err, "fuzz.csv:", 9) == 0);
		} else {
			fuzz_check(r == 0 || r == -2);
			break;
		}
	}
	csv_close(&c);
	fclose(f);
	return 0;
}
