/* textwidth: display columns of UTF-8 text — CJK wide, combining marks zero, bad bytes
 * one column each — and cutting text to a width without splitting a character. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "textwidth.h"

static void test_code_points(void **state)
{
	(void)state;
	assert_int_equal(textwidth_cp('a'), 1);
	assert_int_equal(textwidth_cp(' '), 1);
	assert_int_equal(textwidth_cp(0x00E9), 1);  /* é */
	assert_int_equal(textwidth_cp(0x4E09), 2);  /* 三 */
	assert_int_equal(textwidth_cp(0x4E00), 2);  /* first of the URO block */
	assert_int_equal(textwidth_cp(0x9FFF), 2);  /* its last */
	assert_int_equal(textwidth_cp(0x3000), 2);  /* ideographic space */
	assert_int_equal(textwidth_cp(0x3001), 2);  /* 、 */
	assert_int_equal(textwidth_cp(0xFF08), 2);  /* fullwidth ( */
	assert_int_equal(textwidth_cp(0xFF61), 1);  /* halfwidth ｡: just past fullwidth */
	assert_int_equal(textwidth_cp(0xFF60), 2);
	assert_int_equal(textwidth_cp(0x3042), 2);  /* あ */
	assert_int_equal(textwidth_cp(0xAC00), 2);  /* 가 */
	assert_int_equal(textwidth_cp(0xD7A3), 2);  /* last hangul syllable */
	assert_int_equal(textwidth_cp(0xD7A4), 1);
	assert_int_equal(textwidth_cp(0x1F600), 2); /* 😀 */
	assert_int_equal(textwidth_cp(0x20000), 2); /* CJK extension B */
	assert_int_equal(textwidth_cp(0x2FFFD), 2);
	assert_int_equal(textwidth_cp(0x2FFFE), 1);
	assert_int_equal(textwidth_cp(0x2103), 1);  /* ℃: ambiguous, narrow */
	assert_int_equal(textwidth_cp(0x00B0), 1);  /* ° */
	assert_int_equal(textwidth_cp(0x0301), 0);  /* combining acute */
	assert_int_equal(textwidth_cp(0x200B), 0);  /* zero width space */
	assert_int_equal(textwidth_cp(0xFE0F), 0);  /* variation selector 16 */
	assert_int_equal(textwidth_cp(0x3099), 0);  /* combining kana mark, in a wide block */
	assert_int_equal(textwidth_cp(0x1160), 0);  /* hangul medial vowel */
	assert_int_equal(textwidth_cp('\t'), 0);
	assert_int_equal(textwidth_cp(0x7F), 0);
	assert_int_equal(textwidth_cp(0x9B), 0);    /* C1 CSI */
	assert_int_equal(textwidth_cp(0x10FFFF), 1);
}

static void test_strings(void **state)
{
	(void)state;
	assert_int_equal(textwidth_str(NULL), 0);
	assert_int_equal(textwidth_str(""), 0);
	assert_int_equal(textwidth_str("inlet"), 5);
	assert_int_equal(textwidth_str("三号分区 进水流量计"), 19);
	assert_int_equal(textwidth_str("新华路下穿道"), 12);
	assert_int_equal(textwidth_str("DMA3 入口"), 9);
	assert_int_equal(textwidth_str("0.42 m³/h"), 9);
	assert_int_equal(textwidth_str("e\xcc\x81"), 1);      /* e + combining acute */
	assert_int_equal(textwidth_str("（备用）"), 8);      /* fullwidth parentheses */
	/* bytes are not columns: 6 and 5 bytes, 4 columns each */
	assert_int_equal(strlen("水表"), 6);
	assert_int_equal(strlen("ab水"), 5);
	assert_int_equal(textwidth_str("水表"), 4);
	assert_int_equal(textwidth_str("ab水"), 4);
}

static void test_bad_utf8(void **state)
{
	uint32_t cp;

	(void)state;
	/* each bad byte: one column (a terminal shows U+FFFD) */
	assert_int_equal(textwidth_str("a\xff" "b"), 3);
	assert_int_equal(textwidth_str("\xe4\xb8"), 2);          /* truncated 三 */
	assert_int_equal(textwidth_str("\xc0\xaf"), 2);          /* overlong '/' */
	assert_int_equal(textwidth_str("\xed\xa0\x80"), 3);      /* a surrogate */
	assert_int_equal(textwidth_str("\xf4\x90\x80\x80"), 4);  /* past U+10FFFF */
	assert_int_equal(textwidth_str("\xe4\xb8\x89\x80"), 3);  /* 三 + a stray continuation */

	assert_int_equal(textwidth_decode("\xe4\xb8\x89", 3, &cp), 3);
	assert_int_equal(cp, 0x4E09);
	assert_int_equal(textwidth_decode("\xe4\xb8\x89", 2, &cp), 1);  /* n bounds it */
	assert_int_equal(cp, 0xFFFD);
	assert_int_equal(textwidth_decode("\xf0\x9f\x98\x80", 4, &cp), 4);
	assert_int_equal(cp, 0x1F600);
	assert_int_equal(textwidth_decode("\xe0\x80\x80", 3, &cp), 1);  /* overlong */
	assert_int_equal(cp, 0xFFFD);
}

static void test_fit(void **state)
{
	size_t cols;

	(void)state;
	/* 三号分区: 4 characters, 3 bytes and 2 columns each */
	assert_int_equal(textwidth_fit("三号分区", 4, &cols), 6);
	assert_int_equal(cols, 4);
	/* 5 columns: the third character does not fit whole */
	assert_int_equal(textwidth_fit("三号分区", 5, &cols), 6);
	assert_int_equal(cols, 4);
	assert_int_equal(textwidth_fit("三号分区", 1, &cols), 0);
	assert_int_equal(cols, 0);
	assert_int_equal(textwidth_fit("ab三", 3, &cols), 2);
	assert_int_equal(textwidth_fit("ab三", 4, &cols), 5);
	assert_int_equal(cols, 4);
	/* a combining mark stays with its base */
	assert_int_equal(textwidth_fit("e\xcc\x81x", 1, &cols), 3);
	assert_int_equal(cols, 1);
	assert_int_equal(textwidth_fit("abc", 0, NULL), 0);
	assert_int_equal(textwidth_fit("", 10, &cols), 0);
	assert_int_equal(cols, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_code_points),
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_bad_utf8),
		cmocka_unit_test(test_fit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
