/*
 * spill: data_dir/sluice.spill, where the rows a stopping sluiced still holds in memory
 * wait for the next start. They are there because the store could not write them (the
 * disk full, a file size limit); the next store_open takes them into the outbox before
 * anything else, in the order they waited, with their timestamps and the seqs they were
 * handed (those without one are given one then). The store is this module's only user:
 * it owns the file's format and its space, never SQL; a reading's values and a device's
 * description are the store's bytes, kept as they are.
 *
 * Space: the file is kept allocated (posix_fallocate at open, while the disk still has
 * room), so that writing it at a stop, when the disk is full, writes into blocks the
 * file already has. On a copy-on-write file system (btrfs) that guarantee does not hold.
 *
 * Format, version 2 (version 1, of the release before, is still read), integers
 * little-endian:
 *
 *   header, 64 bytes, at offset 0
 *      0  "SLUSPILL"       magic
 *      8  u32 version      2
 *     12  u32 crc32 of the 64 header bytes with this field zero
 *     16  u64 id           names these contents (0: empty); the store records the id it
 *                          took in, in the same transaction as the rows, so that rows
 *                          taken in are never taken twice
 *     24  u64 payload      bytes of records after the header
 *     32  u32 crc32 of those bytes
 *     36  u32 rows         records of types 1 and 3
 *     40  u32 metas        records of type 2
 *     44  u32 devices      records of type 4 (version 1: 0)
 *     48  u64 lost         rows that waited and did not fit
 *     56  u64 0
 *   records, from offset 64, each
 *      u8 type (1 text row, 2 meta, 3 reading, 4 device), u8 kind (row_kind),
 *      u8 retain (0/1), u8 0, i64 ts_ms, u64 seq (version 2 only; 0: none),
 *      u32 a_len, u32 b_len, a_len bytes, b_len bytes
 *      text row: a = topic, b = body; meta: a = key, b = value (kind, retain, ts and
 *      seq 0); reading: a = its device's number (u32), b = its values (store_codec.c);
 *      device: a = its number (u32), b = its description (store_int.h). The devices
 *      come first.
 *
 * A file whose first 64 bytes are zero is empty: the reserve as fallocate left it, or
 * cleared after the store took its rows in. Writing appends records after the payload,
 * syncs, then writes the header and syncs: a stop cut short before the header leaves
 * the previous header, which still describes only what was written before it.
 * Anything that does not read back whole (magic, version, a checksum, a record running
 * past the payload, counts that disagree) is damaged: kept aside as
 * sluice.spill.damaged, said in the log, and never the reason a start fails.
 */
#ifndef SLUICE_SPILL_H
#define SLUICE_SPILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define SPILL_HEADER 64
#define SPILL_VERSION 2

struct spill_meta {
	char *key, *value;
};

/* A device a spilled reading names: its number in the run that spilled, its bytes. */
struct spill_dev {
	uint32_t dev;
	unsigned char *blob;
	size_t len;
};

/* What a spill file holds. */
struct spill_content {
	uint64_t id;              /* 0: nothing (and then nrows, nmeta, lost are 0) */
	struct store_row *rows;   /* in the order they waited, with their seqs (0: none) */
	size_t nrows;
	struct spill_meta *meta;  /* in the order written: a later pair of a key wins */
	size_t nmeta;
	struct spill_dev *devs;   /* the devices the readings name */
	size_t ndevs;
	bool devs_mapped;         /* the store numbered them (and the rows) its own way */
	uint64_t lost;            /* rows that waited and were not kept */
	bool header_ok;           /* damaged: the header could still be read, so lost counts
				     the rows it said it held too */
};

/*
 * Read a whole file's bytes. 0: out holds them (id 0 when empty). -1: damaged, why says
 * what; out holds no rows, and with header_ok its lost counts every row the file held.
 * Either way spill_content_free(out) afterwards.
 */
int spill_parse(const unsigned char *buf, size_t len, struct spill_content *out, char *why,
		size_t whylen);
void spill_content_free(struct spill_content *c);

/* crc32 (IEEE 802.3, as zlib's crc32), continued from crc (0 to start). */
uint32_t spill_crc32(uint32_t crc, const void *buf, size_t len);

struct spill;

/*
 * Open (creating, mode 0640) path and read it into out; a damaged file is renamed
 * path.damaged (replacing an older one), logged, and a fresh file made in its place,
 * out then saying what is known of what was lost (header_ok, lost). Then reserve bytes
 * of space (less is logged, not an error). NULL only when no file can be had at all;
 * err says why.
 */
struct spill *spill_open(const char *path, uint64_t reserve, struct spill_content *out,
			 char *err, size_t errlen);
void spill_close(struct spill *sp);

/*
 * Append rows (n, in the order they waited), the devices their readings name, and,
 * when key is not NULL, the pair key := value, durably (above). When they do not all fit
 * in the space the file can have, the devices and the alert rows are kept first, then
 * the pair, then the newest telemetry (the store's own rule when full: alerts are never
 * dropped, the oldest telemetry goes first); *kept says how many rows, and the rest is
 * added to the header's lost. 0, or -1 when not even the header could be written (the
 * file says what it said before; err says why).
 */
int spill_append(struct spill *sp, const struct store_row *rows, size_t n,
		 const struct spill_dev *devs, size_t ndevs, const char *key, const char *value,
		 size_t *kept, char *err, size_t errlen);

/* The rows were taken in: the file is empty again (its space kept). 0 or -1 (err). */
int spill_clear(struct spill *sp, char *err, size_t errlen);

/* The header's id (0: empty); spill_append gives an empty file a new one. */
uint64_t spill_id(const struct spill *sp);

#endif
