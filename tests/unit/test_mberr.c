/*
 * test_mberr: the hint for a refused 3xxxx/4xxxx address. Only ILLEGAL DATA ADDRESS on
 * input or holding registers at 30000..49999 gets one; it names the wire address the
 * manual's number stands for (30001 and 40001 are address 0) and, when the number names
 * the other table, that table.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "mberr.h"
#include "point.h"

#define ILLEGAL_ADDRESS (MBE_EXC_BASE + 2)

static const char *hint(int err, int table, unsigned address, enum mb_hint_style style)
{
	static char buf[200];

	strcpy(buf, "untouched");
	if (!mb_numbered_hint(buf, sizeof buf, err, table, address, style))
		assert_string_equal(buf, "untouched");
	return buf;
}

static void test_numbered_hint(void **state)
{
	(void)state;
	assert_string_equal(hint(ILLEGAL_ADDRESS, MB_HOLDING, 40001, MB_HINT_CONFIG),
			    "the manual may number holding registers from 40001 (40001 is wire "
			    "address 0): try address: 0");
	assert_string_equal(hint(ILLEGAL_ADDRESS, MB_HOLDING, 40101, MB_HINT_CONFIG),
			    "the manual may number holding registers from 40001 (40001 is wire "
			    "address 0): try address: 100");
	assert_string_equal(hint(ILLEGAL_ADDRESS, MB_INPUT, 30011, MB_HINT_CONFIG),
			    "the manual may number input registers from 30001 (30001 is wire "
			    "address 0): try address: 10");
	/* the number names the other table */
	assert_string_equal(hint(ILLEGAL_ADDRESS, MB_HOLDING, 30011, MB_HINT_CONFIG),
			    "the manual may number input registers from 30001 (30001 is wire "
			    "address 0): try table: input, address: 10");
	assert_string_equal(hint(ILLEGAL_ADDRESS, MB_INPUT, 49999, MB_HINT_CONFIG),
			    "the manual may number holding registers from 40001 (40001 is wire "
			    "address 0): try table: holding, address: 9998");
	/* 30000 and 40000: a number already made 0-based by subtracting one */
	assert_string_equal(hint(ILLEGAL_ADDRESS, MB_HOLDING, 40000, MB_HINT_PROBE),
			    "the manual may number holding registers from 40001 (40001 is wire "
			    "address 0): try --read holding:0");
	assert_string_equal(hint(ILLEGAL_ADDRESS, MB_INPUT, 30000, MB_HINT_PROBE),
			    "the manual may number input registers from 30001 (30001 is wire "
			    "address 0): try --read input:0");

	/* no hint: below 30000, at 50000 and above, another error, bits */
	assert_string_equal(hint(ILLEGAL_ADDRESS, MB_HOLDING, 29999, MB_HINT_CONFIG), "untouched");
	assert_string_equal(hint(ILLEGAL_ADDRESS, MB_HOLDING, 50000, MB_HINT_CONFIG), "untouched");
	assert_string_equal(hint(MBE_TIMEOUT, MB_HOLDING, 40001, MB_HINT_CONFIG), "untouched");
	assert_string_equal(hint(MBE_EXC_BASE + 1, MB_HOLDING, 40001, MB_HINT_CONFIG),
			    "untouched");
	assert_string_equal(hint(ILLEGAL_ADDRESS, MB_COIL, 40001, MB_HINT_CONFIG), "untouched");
	assert_string_equal(hint(ILLEGAL_ADDRESS, MB_DISCRETE, 30001, MB_HINT_CONFIG),
			    "untouched");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_numbered_hint),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
