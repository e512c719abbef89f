/*
 * typo: "did you mean". How far a word someone typed is from one that exists, and the
 * closest of many candidates that is near enough to be a slip of the fingers rather than
 * another word. Pure: no I/O, no allocation, no policy on what is offered or how it is
 * said (that is the caller's message).
 */
#ifndef SLUICE_TYPO_H
#define SLUICE_TYPO_H

#include <stddef.h>
#include <stdint.h>

/* Words this long are not compared: no name sluice offers is. */
#define TYPO_WORD_MAX 128

/* Edit distance with transpositions (optimal string alignment), ignoring ASCII case;
 * SIZE_MAX when either word is TYPO_WORD_MAX - 1 bytes or longer. */
size_t typo_distance(const char *a, const char *b);

/* The closest candidate offered so far. */
struct typo_best {
	const char *word;
	char best[TYPO_WORD_MAX]; /* "" while none is near enough */
	size_t distance;
	uint64_t *spent;  /* edit-distance table cells spent, shared by a run of lookups */
	uint64_t budget;  /* ... beyond which candidates are no longer compared */
};

/* Look for word; spent may be NULL (no bound), else *spent counts up to budget: a run
 * that compares many words with many candidates stays bounded in time. */
void typo_best_init(struct typo_best *t, const char *word, uint64_t *spent, uint64_t budget);
/* Keep candidate when it is closer than any before and near enough to be a slip: at
 * most 1 edit for a word of up to 4 bytes, 2 up to 10, 3 beyond, and fewer edits than
 * the candidate has bytes. The word itself is no suggestion. */
void typo_best_try(struct typo_best *t, const char *candidate);

#endif
