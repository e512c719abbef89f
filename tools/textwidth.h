/*
 * textwidth: how many terminal columns UTF-8 text takes, so that tables for people line
 * up when names are Chinese. CJK ideographs, kana, hangul, fullwidth forms and emoji
 * take two columns (Unicode East Asian Width W and F); combining marks, variation
 * selectors and zero-width characters none; everything else one. Pure: no locale, no
 * I/O, works the same on a box without locales installed.
 */
#ifndef SLUICE_TEXTWIDTH_H
#define SLUICE_TEXTWIDTH_H

#include <stddef.h>
#include <stdint.h>

/* Columns of one code point: 0, 1 or 2. Controls (C0, DEL, C1) count 0: a caller that
 * prints untrusted text replaces them first. */
int textwidth_cp(uint32_t cp);

/*
 * Decode one UTF-8 character at s (n bytes available, n > 0): returns its length in
 * bytes and sets *cp. A malformed or truncated sequence, an overlong form, a surrogate
 * or a value past U+10FFFF is one byte long with *cp = U+FFFD (which a terminal
 * shows in one column).
 */
size_t textwidth_decode(const char *s, size_t n, uint32_t *cp);

/* Columns of a NUL-terminated string (NULL: 0). */
size_t textwidth_str(const char *s);

/*
 * The longest prefix of s that fits in max columns without splitting a character:
 * returns its length in bytes, and its width in *cols (may be NULL). Zero-width
 * characters that follow the last one that fits are kept with it.
 */
size_t textwidth_fit(const char *s, size_t max, size_t *cols);

#endif
