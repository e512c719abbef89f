/*
 * spill: owns data_dir/sluice.spill — its format (spill.h), its reserved space, and
 * the one damaged copy kept beside it. It must never speak SQL (the store takes the
 * rows in), hold a row for itself, or fail a start: a file that cannot be read is set
 * aside and the start goes on.
 */
#include "spill.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "fileio.h"
#include "log.h"

#define SPILL_MAGIC "SLUSPILL"
#define SPILL_REC_HEAD1 20 /* version 1: no seq */
#define SPILL_REC_HEAD 28
enum { SPILL_REC_ROW = 1, SPILL_REC_META = 2, SPILL_REC_READING = 3, SPILL_REC_DEVICE = 4 };

struct spill {
	int fd;
	char *path;
	/* the header as it is on disk */
	uint64_t id, payload, lost;
	uint32_t crc, nrows, nmeta, ndevs, version;
};

uint32_t spill_crc32(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint32_t c = crc ^ 0xffffffffu;

	/* bitwise: a spill is written once per stop and read once per start, a few MiB at
	 * most; a table would be speed nobody waits for */
	while (len--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
	}
	return c ^ 0xffffffffu;
}

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t get64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static bool all_zero(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static void spill_why(char *why, size_t len, const char *fmt, ...) PRINTF(3, 4);

static void spill_why(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!why || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
}

void spill_content_free(struct spill_content *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nrows; i++)
		store_row_clear(&c->rows[i]);
	for (size_t i = 0; i < c->nmeta; i++) {
		free(c->meta[i].key);
		free(c->meta[i].value);
	}
	for (size_t i = 0; i < c->ndevs; i++)
		free(c->devs[i].blob);
	free(c->rows);
	free(c->meta);
	free(c->devs);
	c->rows = NULL;
	c->meta = NULL;
	c->devs = NULL;
	c->nrows = c->nmeta = c->ndevs = 0;
}

/* A record's string: len bytes, no NUL inside (the store binds text by its length in
 * C strings), copied with a terminator. */
static char *spill_str(const unsigned char *p, uint32_t len)
{
	char *s;

	if (memchr(p, '\0', len))
		return NULL;
	s = malloc((size_t)len + 1);
	if (s) {
		memcpy(s, p, len);
		s[len] = '\0';
	}
	return s;
}

/* Bytes as they are (a reading's values, a description), copied. */
static unsigned char *spill_bytes(const unsigned char *p, uint32_t len)
{
	unsigned char *b = malloc(len ? len : 1);

	if (b && len)
		memcpy(b, p, len);
	return b;
}

/* The header's fields; false (why said) when it is not a header of ours. */
struct spill_hdr {
	uint64_t id, payload, lost;
	uint32_t crc, nrows, nmeta, ndevs, version;
};

static bool spill_read_header(const unsigned char *h, struct spill_hdr *hd, char *why,
			      size_t whylen)
{
	unsigned char copy[SPILL_HEADER];
	uint32_t ver = get32(h + 8);

	if (memcmp(h, SPILL_MAGIC, 8) != 0) {
		spill_why(why, whylen, "not a spill file (no SLUSPILL header)");
		return false;
	}
	memcpy(copy, h, SPILL_HEADER);
	put32(copy + 12, 0);
	if (spill_crc32(0, copy, SPILL_HEADER) != get32(h + 12)) {
		spill_why(why, whylen, "its header's checksum does not match");
		return false;
	}
	if (ver != 1 && ver != SPILL_VERSION) {
		spill_why(why, whylen, "format version %" PRIu32 ", this sluiced reads versions 1"
			  " and %d", ver, SPILL_VERSION);
		return false;
	}
	*hd = (struct spill_hdr){ .id = get64(h + 16), .payload = get64(h + 24),
				  .crc = get32(h + 32), .nrows = get32(h + 36),
				  .nmeta = get32(h + 40), .ndevs = get32(h + 44),
				  .lost = get64(h + 48), .version = ver };
	if ((ver == 1 && hd->ndevs) || get64(h + 56) ||
	    (hd->id == 0 && (hd->payload || hd->nrows || hd->nmeta || hd->ndevs || hd->lost))) {
		spill_why(why, whylen, "its header is inconsistent");
		return false;
	}
	return true;
}

/* Whether a record's head is one its type allows. */
static bool spill_rec_ok(const unsigned char *p, uint32_t alen, uint64_t seq)
{
	switch (p[0]) {
	case SPILL_REC_ROW:
		return p[1] <= ROW_ALERT && p[2] <= 1 && alen > 0;
	case SPILL_REC_META:
		return !p[1] && !p[2] && !get64(p + 4) && !seq && alen > 0;
	case SPILL_REC_READING:
		return p[1] == ROW_TELEMETRY && !p[2] && alen == 4;
	case SPILL_REC_DEVICE:
		return !p[1] && !p[2] && !get64(p + 4) && !seq && alen == 4;
	}
	return false;
}

int spill_parse(const unsigned char *buf, size_t len, struct spill_content *out, char *why,
		size_t whylen)
{
	struct spill_hdr hd;
	const unsigned char *p, *end;
	size_t nr = 0, nm = 0, nd = 0, head;

	memset(out, 0, sizeof *out);
	if (len == 0 || all_zero(buf, len < SPILL_HEADER ? len : SPILL_HEADER))
		return 0; /* the reserve as allocated, or cleared */
	if (len < SPILL_HEADER) {
		spill_why(why, whylen, "cut short (%zu bytes, less than its header)", len);
		return -1;
	}
	if (!spill_read_header(buf, &hd, why, whylen))
		return -1;
	head = hd.version == 1 ? SPILL_REC_HEAD1 : SPILL_REC_HEAD;
	out->header_ok = true;
	/* what is lost if the rest cannot be read: every row the header speaks of */
	out->lost = hd.lost + hd.nrows;
	if (hd.payload > len - SPILL_HEADER) {
		spill_why(why, whylen, "cut short (%zu bytes of records, the header says %" PRIu64 ")",
			  len - SPILL_HEADER, hd.payload);
		return -1;
	}
	if (spill_crc32(0, buf + SPILL_HEADER, (size_t)hd.payload) != hd.crc) {
		spill_why(why, whylen, "its records' checksum does not match");
		return -1;
	}
	/* every record takes at least its head: counts beyond that are lies, not memory */
	if ((uint64_t)hd.nrows + hd.nmeta + hd.ndevs > hd.payload / head) {
		spill_why(why, whylen, "its header counts more records than it has bytes for");
		return -1;
	}
	out->rows = calloc(hd.nrows ? hd.nrows : 1, sizeof *out->rows);
	out->meta = calloc(hd.nmeta ? hd.nmeta : 1, sizeof *out->meta);
	out->devs = calloc(hd.ndevs ? hd.ndevs : 1, sizeof *out->devs);
	if (!out->rows || !out->meta || !out->devs) {
		spill_why(why, whylen, "out of memory");
		goto fail;
	}
	p = buf + SPILL_HEADER;
	end = p + hd.payload;
	while (p < end) {
		uint32_t alen, blen;
		uint64_t seq = 0;
		const unsigned char *ap, *bp;
		char *a = NULL, *b = NULL;
		bool text, full;

		if ((size_t)(end - p) < head) {
			spill_why(why, whylen, "a record at byte %zu is cut short", (size_t)(p - buf));
			goto fail;
		}
		if (hd.version > 1)
			seq = get64(p + 12);
		alen = get32(p + head - 8);
		blen = get32(p + head - 4);
		if ((uint64_t)alen + blen > (uint64_t)(end - p - head) || p[3] != 0 ||
		    (hd.version == 1 && p[0] > SPILL_REC_META) || !spill_rec_ok(p, alen, seq)) {
			spill_why(why, whylen, "the record at byte %zu is malformed", (size_t)(p - buf));
			goto fail;
		}
		full = p[0] == SPILL_REC_META ? nm >= hd.nmeta
		     : p[0] == SPILL_REC_DEVICE ? nd >= hd.ndevs : nr >= hd.nrows;
		if (full) {
			spill_why(why, whylen, "it holds more records than its header counts");
			goto fail;
		}
		ap = p + head;
		bp = ap + alen;
		text = p[0] == SPILL_REC_ROW || p[0] == SPILL_REC_META;
		if (text) {
			a = spill_str(ap, alen);
			b = a ? spill_str(bp, blen) : NULL;
			if (!a || !b) {
				free(a);
				spill_why(why, whylen, "the record at byte %zu has a NUL byte in its"
					  " text", (size_t)(p - buf));
				goto fail;
			}
		}
		switch (p[0]) {
		case SPILL_REC_ROW:
			out->rows[nr++] = (struct store_row){ .kind = p[1], .retain = p[2] != 0,
							      .ts_ms = (int64_t)get64(p + 4),
							      .seq = seq, .topic = a, .body = b };
			break;
		case SPILL_REC_META:
			out->meta[nm++] = (struct spill_meta){ .key = a, .value = b };
			break;
		case SPILL_REC_READING:
			out->rows[nr] = (struct store_row){ .kind = ROW_TELEMETRY,
							    .ts_ms = (int64_t)get64(p + 4), .seq = seq,
							    .dev = get32(ap), .nvals = blen,
							    .vals = spill_bytes(bp, blen) };
			if (!out->rows[nr].dev || !out->rows[nr++].vals)
				goto damaged_or_oom;
			break;
		case SPILL_REC_DEVICE:
			out->devs[nd] = (struct spill_dev){ .dev = get32(ap), .len = blen,
							    .blob = spill_bytes(bp, blen) };
			if (!out->devs[nd].dev || !out->devs[nd++].blob)
				goto damaged_or_oom;
			break;
		}
		out->nrows = nr;
		out->nmeta = nm;
		out->ndevs = nd;
		p += head + alen + blen;
		continue;
damaged_or_oom:
		out->nrows = nr;
		out->ndevs = nd;
		spill_why(why, whylen, "the record at byte %zu names no device (or out of memory)",
			  (size_t)(p - buf));
		goto fail;
	}
	if (nr != hd.nrows || nm != hd.nmeta || nd != hd.ndevs) {
		spill_why(why, whylen, "it holds fewer records than its header counts");
		goto fail;
	}
	out->id = hd.id;
	out->lost = hd.lost;
	return 0;
fail:
	spill_content_free(out);
	out->lost = hd.lost + hd.nrows;
	return -1;
}

/* ---- the file -------------------------------------------------------------------- */

static int spill_pread_all(int fd, unsigned char *buf, size_t len, off_t off, size_t *got)
{
	*got = 0;
	while (*got < len) {
		ssize_t r = pread(fd, buf + *got, len - *got, off + (off_t)*got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		*got += (size_t)r;
	}
	return 0;
}

/* Write all of buf at off; *done says how much was written when it fails. */
static int spill_pwrite_all(int fd, const unsigned char *buf, size_t len, off_t off,
			    size_t *done)
{
	*done = 0;
	while (*done < len) {
		ssize_t w = pwrite(fd, buf + *done, len - *done, off + (off_t)*done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = ENOSPC;
			return -1;
		}
		*done += (size_t)w;
	}
	return 0;
}

/* The file's bytes that matter: the header, and the records it speaks of when it is a
 * header of ours (else just the header, for spill_parse to say what is wrong). */
static unsigned char *spill_slurp(struct spill *sp, size_t *len, char *err, size_t errlen)
{
	unsigned char h[SPILL_HEADER], *buf;
	struct spill_hdr hd;
	struct stat sb;
	size_t want = SPILL_HEADER, got;
	char why[8];

	if (fstat(sp->fd, &sb) < 0 || spill_pread_all(sp->fd, h, sizeof h, 0, &got) < 0) {
		spill_why(err, errlen, "cannot read %s: %s", sp->path, strerror(errno));
		return NULL;
	}
	if (got == SPILL_HEADER && spill_read_header(h, &hd, why, sizeof why) &&
	    hd.payload <= (uint64_t)sb.st_size - SPILL_HEADER)
		want += (size_t)hd.payload;
	buf = malloc(want);
	if (!buf) {
		spill_why(err, errlen, "%s: out of memory", sp->path);
		return NULL;
	}
	if (spill_pread_all(sp->fd, buf, want, 0, len) < 0) {
		spill_why(err, errlen, "cannot read %s: %s", sp->path, strerror(errno));
		free(buf);
		return NULL;
	}
	return buf;
}

/* The handle's header from the file's (NULL: empty). */
static void spill_keep_header(struct spill *sp, const struct spill_hdr *hd)
{
	static const struct spill_hdr none;

	if (!hd)
		hd = &none;
	sp->id = hd->id;
	sp->payload = hd->payload;
	sp->crc = hd->crc;
	sp->nrows = hd->nrows;
	sp->nmeta = hd->nmeta;
	sp->ndevs = hd->ndevs;
	sp->lost = hd->lost;
	sp->version = hd->id ? hd->version : SPILL_VERSION;
}

/* Set the damaged file aside as path.damaged, and start a fresh one. */
static int spill_set_aside(struct spill *sp, const char *why, const struct spill_content *c,
			   char *err, size_t errlen)
{
	size_t n = strlen(sp->path);
	char *aside = malloc(n + 9);

	if (!aside) {
		spill_why(err, errlen, "%s: out of memory", sp->path);
		return -1;
	}
	memcpy(aside, sp->path, n);
	memcpy(aside + n, ".damaged", 9);
	close(sp->fd);
	sp->fd = -1;
	if (rename(sp->path, aside) < 0) {
		spill_why(err, errlen, "%s is damaged (%s) and cannot be set aside as %s: %s",
			  sp->path, why, aside, strerror(errno));
		free(aside);
		return -1;
	}
	(void)fileio_sync_dir(sp->path);
	if (c->header_ok)
		log_errx("store: %s is damaged (%s): kept as %s; the %" PRIu64 " rows it held are"
			 " lost", sp->path, why, aside, c->lost);
	else
		log_errx("store: %s is damaged (%s): kept as %s; the rows it held, if any, are"
			 " lost (how many cannot be read)", sp->path, why, aside);
	free(aside);
	sp->fd = fileio_open(sp->path, O_RDWR, 0640);
	if (sp->fd < 0) {
		spill_why(err, errlen, "cannot create %s: %s", sp->path, strerror(errno));
		return -1;
	}
	return 0;
}

struct spill *spill_open(const char *path, uint64_t reserve, struct spill_content *out,
			 char *err, size_t errlen)
{
	struct spill *sp = calloc(1, sizeof *sp);
	unsigned char *buf;
	struct stat sb;
	size_t len;
	char why[160];
	int r;

	memset(out, 0, sizeof *out);
	if (!sp || !(sp->path = strdup(path))) {
		spill_why(err, errlen, "%s: out of memory", path);
		free(sp);
		return NULL;
	}
	sp->fd = fileio_open(path, O_RDWR, 0640);
	if (sp->fd < 0) {
		spill_why(err, errlen, "cannot open %s: %s", path, strerror(errno));
		goto fail;
	}
	if (!(buf = spill_slurp(sp, &len, err, errlen)))
		goto fail;
	r = spill_parse(buf, len, out, why, sizeof why);
	if (r == 0) {
		struct spill_hdr hd;
		char w[8];
		/* appending goes after what is there, the crc continues over it */
		spill_keep_header(sp, out->id && spill_read_header(buf, &hd, w, sizeof w) ? &hd
										      : NULL);
	}
	free(buf);
	if (r != 0) {
		/* its rows are not readable; what is known of them stays in out (lost) */
		if (spill_set_aside(sp, why, out, err, errlen) < 0)
			goto fail;
		spill_keep_header(sp, NULL);
	}
	/*
	 * The reserve. posix_fallocate allocates without writing (no flash wear); where the
	 * file system cannot, glibc writes zeros, once. Smaller than asked is not an error:
	 * a stop on a full disk then keeps what fits, and says how many rows it could not.
	 */
	if (reserve && fstat(sp->fd, &sb) == 0 && (uint64_t)sb.st_blocks * 512 < reserve) {
		r = posix_fallocate(sp->fd, 0, (off_t)reserve);
		if (r != 0)
			log_warnx("store: cannot reserve %" PRIu64 " KiB for %s (%s): rows waiting"
				  " in memory at a stop while the disk is full may not all be kept",
				  reserve / 1024, path, strerror(r));
	}
	return sp;
fail:
	spill_content_free(out);
	spill_close(sp);
	return NULL;
}

void spill_close(struct spill *sp)
{
	if (!sp)
		return;
	if (sp->fd >= 0)
		close(sp->fd);
	free(sp->path);
	free(sp);
}

uint64_t spill_id(const struct spill *sp)
{
	return sp->id;
}

/* A new id for contents; never 0 (empty), and not one a previous stop used. */
static uint64_t spill_new_id(void)
{
	uint64_t id = 0;

	if (getrandom(&id, sizeof id, GRND_NONBLOCK) != (ssize_t)sizeof id)
		id = ((uint64_t)clock_real_ms() << 20) ^ ((uint64_t)getpid() << 4) ^
		     (uint64_t)clock_mono_ms();
	return id ? id : 1;
}

/* A row's record: its type, and its a and b parts. */
static int spill_row_parts(const struct store_row *r, unsigned char dev[4], const void **a,
			   size_t *alen, const void **b, size_t *blen)
{
	if (r->dev) {
		put32(dev, r->dev);
		*a = dev;
		*alen = 4;
		*b = r->vals ? (const void *)r->vals : "";
		*blen = r->nvals;
		return SPILL_REC_READING;
	}
	*a = r->topic;
	*alen = strlen(r->topic);
	*b = r->body;
	*blen = strlen(r->body);
	return SPILL_REC_ROW;
}

static size_t spill_row_size(const struct store_row *r)
{
	unsigned char dev[4];
	const void *a, *b;
	size_t alen, blen;

	spill_row_parts(r, dev, &a, &alen, &b, &blen);
	return SPILL_REC_HEAD + alen + blen;
}

static unsigned char *spill_put_rec(unsigned char *p, int type, int kind, bool retain,
				    int64_t ts, uint64_t seq, const void *a, size_t alen,
				    const void *b, size_t blen)
{
	p[0] = (unsigned char)type;
	p[1] = (unsigned char)kind;
	p[2] = retain ? 1 : 0;
	p[3] = 0;
	put64(p + 4, (uint64_t)ts);
	put64(p + 12, seq);
	put32(p + 20, (uint32_t)alen);
	put32(p + 24, (uint32_t)blen);
	memcpy(p + SPILL_REC_HEAD, a, alen);
	memcpy(p + SPILL_REC_HEAD + alen, b, blen);
	return p + SPILL_REC_HEAD + alen + blen;
}

/* The records of the devices, the rows marked in keep (all when keep is NULL), then the
 * pair. */
static unsigned char *spill_encode(const struct store_row *rows, size_t n, const bool *keep,
				   const struct spill_dev *devs, size_t ndevs, const char *key,
				   const char *value, size_t *len)
{
	unsigned char *buf, *p, dev[4];
	size_t total = key ? SPILL_REC_HEAD + strlen(key) + strlen(value) : 0;

	for (size_t i = 0; i < ndevs; i++)
		total += SPILL_REC_HEAD + 4 + devs[i].len;
	for (size_t i = 0; i < n; i++)
		if (!keep || keep[i])
			total += spill_row_size(&rows[i]);
	buf = malloc(total ? total : 1);
	if (!buf)
		return NULL;
	p = buf;
	for (size_t i = 0; i < ndevs; i++) {
		put32(dev, devs[i].dev);
		p = spill_put_rec(p, SPILL_REC_DEVICE, 0, false, 0, 0, dev, 4, devs[i].blob,
				  devs[i].len);
	}
	for (size_t i = 0; i < n; i++) {
		const void *a, *b;
		size_t alen, blen;
		int type;

		if (keep && !keep[i])
			continue;
		type = spill_row_parts(&rows[i], dev, &a, &alen, &b, &blen);
		p = spill_put_rec(p, type, rows[i].kind, rows[i].retain, rows[i].ts_ms, rows[i].seq,
				  a, alen, b, blen);
	}
	if (key)
		p = spill_put_rec(p, SPILL_REC_META, 0, false, 0, 0, key, strlen(key), value,
				  strlen(value));
	*len = total;
	return buf;
}

/*
 * Which rows fit in room bytes, after the devices: every alert row, then the pair (the
 * alert engine's state) when it still fits with them, then the newest telemetry — rows
 * are data, the state can be rebuilt, but a state that comes with the alert rows it
 * produced keeps them from firing twice. Returns how many rows; *with_key whether the
 * pair is kept.
 */
static size_t spill_choose(const struct store_row *rows, size_t n, const struct spill_dev *devs,
			   size_t ndevs, const char *key, const char *value, size_t room,
			   bool *keep, bool *with_key)
{
	size_t used = 0, kept = 0;

	memset(keep, 0, n * sizeof *keep);
	for (size_t i = 0; i < ndevs; i++)
		used += SPILL_REC_HEAD + 4 + devs[i].len;
	*with_key = false;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t k = n; k-- > 0;) {
			size_t i = pass == 0 ? n - 1 - k : k; /* alerts oldest first, telemetry newest */
			size_t sz = spill_row_size(&rows[i]);

			if ((rows[i].kind == ROW_ALERT) != (pass == 0) || used + sz > room)
				continue;
			keep[i] = true;
			used += sz;
			kept++;
		}
		if (pass == 0 && key && used + SPILL_REC_HEAD + strlen(key) + strlen(value) <= room) {
			*with_key = true;
			used += SPILL_REC_HEAD + strlen(key) + strlen(value);
		}
	}
	return kept;
}

static void spill_header_bytes(const struct spill *sp, unsigned char *h)
{
	memset(h, 0, SPILL_HEADER);
	memcpy(h, SPILL_MAGIC, 8);
	put32(h + 8, SPILL_VERSION);
	put64(h + 16, sp->id);
	put64(h + 24, sp->payload);
	put32(h + 32, sp->crc);
	put32(h + 36, sp->nrows);
	put32(h + 40, sp->nmeta);
	put32(h + 44, sp->ndevs);
	put64(h + 48, sp->lost);
	put32(h + 12, spill_crc32(0, h, SPILL_HEADER));
}

int spill_append(struct spill *sp, const struct store_row *rows, size_t n,
		 const struct spill_dev *devs, size_t ndevs, const char *key, const char *value,
		 size_t *kept, char *err, size_t errlen)
{
	struct spill saved = *sp;
	unsigned char *buf, h[SPILL_HEADER];
	off_t at = (off_t)(SPILL_HEADER + sp->payload);
	size_t len, done;
	bool *keep, with_key = key != NULL;
	int e;

	*kept = 0;
	if (sp->fd < 0) {
		spill_why(err, errlen, "%s is not open", sp->path);
		return -1;
	}
	/* rows of the release before, not yet stored (the disk was full since the upgrade):
	 * records of two versions cannot share a file */
	if (sp->version != SPILL_VERSION && sp->id) {
		spill_why(err, errlen, "%s still holds the rows of a stop of the release before",
			  sp->path);
		return -1;
	}
	if (!value)
		value = "";
	buf = spill_encode(rows, n, NULL, devs, ndevs, key, value, &len);
	if (!buf) {
		spill_why(err, errlen, "%s: out of memory", sp->path);
		return -1;
	}
	*kept = n;
	if (spill_pwrite_all(sp->fd, buf, len, at, &done) < 0) {
		/*
		 * What was written shows what the file can take from there (the reserve, a
		 * file size limit, what the disk had left): write again what fits in it.
		 */
		e = errno;
		free(buf);
		keep = malloc(n ? n * sizeof *keep : 1);
		if (!keep) {
			spill_why(err, errlen, "%s: out of memory", sp->path);
			return -1;
		}
		*kept = spill_choose(rows, n, devs, ndevs, key, value, done, keep, &with_key);
		log_warnx("store: %s could take %zu bytes (%s): %zu of the %zu rows", sp->path,
			  done, strerror(e), *kept, n);
		buf = spill_encode(rows, n, keep, devs, ndevs, with_key ? key : NULL, value, &len);
		free(keep);
		if (!buf || len > done || spill_pwrite_all(sp->fd, buf, len, at, &done) < 0) {
			spill_why(err, errlen, "cannot write %s: %s", sp->path,
				  buf ? strerror(errno) : "out of memory");
			free(buf);
			*kept = 0;
			return -1;
		}
	}
	if (len > 0 && fdatasync(sp->fd) < 0) {
		spill_why(err, errlen, "cannot sync %s: %s", sp->path, strerror(errno));
		free(buf);
		*kept = 0;
		return -1;
	}
	if (sp->id == 0)
		sp->id = spill_new_id();
	sp->crc = spill_crc32(sp->crc, buf, len);
	sp->payload += len;
	sp->nrows += (uint32_t)*kept;
	sp->nmeta += with_key ? 1 : 0;
	sp->ndevs += (uint32_t)ndevs;
	sp->version = SPILL_VERSION;
	sp->lost += n - *kept;
	free(buf);
	spill_header_bytes(sp, h);
	/* the header last: until it is on disk, the file says what it said before */
	if (spill_pwrite_all(sp->fd, h, sizeof h, 0, &done) < 0 || fdatasync(sp->fd) < 0) {
		spill_why(err, errlen, "cannot write %s: %s", sp->path, strerror(errno));
		*sp = saved;
		*kept = 0;
		return -1;
	}
	return 0;
}

int spill_clear(struct spill *sp, char *err, size_t errlen)
{
	static const unsigned char zero[SPILL_HEADER];
	size_t done;

	if (sp->fd < 0) {
		spill_why(err, errlen, "%s is not open", sp->path);
		return -1;
	}
	if (spill_pwrite_all(sp->fd, zero, sizeof zero, 0, &done) < 0 || fdatasync(sp->fd) < 0) {
		spill_why(err, errlen, "cannot clear %s: %s", sp->path, strerror(errno));
		return -1;
	}
	sp->id = sp->payload = sp->lost = 0;
	sp->crc = sp->nrows = sp->nmeta = sp->ndevs = 0;
	sp->version = SPILL_VERSION;
	return 0;
}
