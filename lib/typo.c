/*
 * typo: "did you mean" (lib/typo.h). Owns nothing; it must never allocate or do I/O.
 */
#include "typo.h"

#include <ctype.h>
#include <string.h>

size_t typo_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t rows[3][TYPO_WORD_MAX];
	size_t *before_last = rows[0], *last = rows[1], *cur = rows[2];

	if (la >= TYPO_WORD_MAX - 1 || lb >= TYPO_WORD_MAX - 1)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		last[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
			size_t v = last[j - 1] + (ca != cb);
			if (last[j] + 1 < v)
				v = last[j] + 1;
			if (cur[j - 1] + 1 < v)
				v = cur[j - 1] + 1;
			if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
			    tolower((unsigned char)a[i - 2]) == cb && before_last[j - 2] + 1 < v)
				v = before_last[j - 2] + 1;
			cur[j] = v;
		}
		size_t *t = before_last;
		before_last = last;
		last = cur;
		cur = t;
	}
	return last[lb];
}

void typo_best_init(struct typo_best *t, const char *word, uint64_t *spent, uint64_t budget)
{
	t->word = word;
	t->best[0] = '\0';
	t->distance = SIZE_MAX;
	t->spent = spent;
	t->budget = budget;
}

void typo_best_try(struct typo_best *t, const char *candidate)
{
	size_t lw = strlen(t->word), limit = lw <= 4 ? 1 : lw <= 10 ? 2 : 3;
	size_t distance, lc;

	if (!candidate || !*candidate || strcmp(candidate, t->word) == 0 ||
	    (lc = strlen(candidate)) >= sizeof t->best)
		return;
	if (t->spent && *t->spent > t->budget)
		return;
	/* the distance is at least the difference in length: not worth computing */
	if ((lc > lw ? lc - lw : lw - lc) > limit)
		return;
	if (t->spent)
		*t->spent += (uint64_t)(lw + 1) * (lc + 1);
	distance = typo_distance(t->word, candidate);
	if (distance <= limit && distance < lc && distance < t->distance) {
		t->distance = distance;
		memcpy(t->best, candidate, lc + 1);
	}
}
