/*
 * store_seq: the two small files beside the database that keep a seq from ever being
 * handed out twice — sluice.seq (the ceiling and the stream id, synced) and sluice.mark
 * (the highest seq handed out, in a page mapped shared, never synced). store.c decides
 * what to trust at a start (its opening comment says why); this file only reads, maps
 * and writes them. It must never speak SQL or fail a start: a file it cannot read or
 * map is logged and left out, and the start falls back on what is left.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "fileio.h"
#include "log.h"
#include "store_int.h"

#define SEQ_FILE_MODE 0640
#define MARK_MAGIC "SLUMARK1"
#define MARK_BOOT 8        /* the boot id, NUL-padded */
#define MARK_BOOT_LEN 40
#define MARK_SLOTS 48      /* two slots of { u64 seq, u64 ~seq } */
#define MARK_SIZE 4096     /* one page, mapped */

/*
 * This boot of the machine: the kernel's boot id, new at every boot. A mark written in
 * another boot may be older than the seqs then handed out (a power cut takes what the
 * page cache had not written), so it is not trusted. SLUICE_TEST_BOOT_ID stands in for
 * it in the power-loss test (tests/integration/test_powerloss.py), which rebuilds the
 * files as a power cut would leave them without rebooting the machine.
 */
static void seq_boot_id(char *out, size_t len)
{
	const char *t = getenv("SLUICE_TEST_BOOT_ID");
	ssize_t n = 0;
	int fd;

	memset(out, 0, len);
	if (t && *t) {
		snprintf(out, len, "%s", t);
		return;
	}
	fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, out, len - 1);
		close(fd);
	}
	out[n > 0 ? n : 0] = '\0';
	out[strcspn(out, "\n")] = '\0';
}

static uint64_t get64(const volatile unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static void put64(volatile unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* The highest valid slot of a mark's bytes, 0 when none. */
static uint64_t mark_value(const volatile unsigned char *m)
{
	uint64_t best = 0;

	for (int s = 0; s < 2; s++) {
		uint64_t v = get64(m + MARK_SLOTS + 16 * s), inv = get64(m + MARK_SLOTS + 16 * s + 8);
		if (v == ~inv && v > best)
			best = v;
	}
	return best;
}

static void seq_read_file(struct store_seq *sf)
{
	char buf[128], *end, *nl;
	unsigned long long v;
	ssize_t n;
	int fd = open(sf->seq_path, O_RDONLY | O_CLOEXEC);

	sf->ceiling = 0;
	sf->stream[0] = '\0';
	if (fd < 0) {
		if (errno != ENOENT)
			log_warn("store: cannot read %s", sf->seq_path);
		return;
	}
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	errno = 0;
	v = strtoull(buf, &end, 10);
	if (errno || end == buf || (*end && *end != '\n')) {
		log_warnx("store: %s does not hold a number; ignored", sf->seq_path);
		return;
	}
	sf->ceiling = (uint64_t)v;
	/* the stream, on the second line (files of older releases have none) */
	if (*end == '\n') {
		char *s = end + 1;
		nl = strchr(s, '\n');
		if (nl)
			*nl = '\0';
		if (strlen(s) == STORE_STREAM_LEN && strspn(s, "0123456789abcdef") == STORE_STREAM_LEN)
			memcpy(sf->stream, s, STORE_STREAM_LEN + 1);
	}
}

static void seq_map_mark(struct store_seq *sf, uint64_t *found)
{
	unsigned char old[MARK_SLOTS + 32];
	char boot[MARK_BOOT_LEN];
	volatile unsigned char *m;
	struct stat sb;
	ssize_t n;
	int fd;

	*found = 0;
	sf->mark = NULL;
	sf->mark_fd = -1;
	fd = fileio_open(sf->mark_path, O_RDWR, SEQ_FILE_MODE);
	if (fd < 0) {
		log_warn("store: cannot open %s (a start after a crash then goes on from the"
			 " ceiling in sluice.seq)", sf->mark_path);
		return;
	}
	seq_boot_id(boot, sizeof boot);
	n = pread(fd, old, sizeof old, 0);
	if (n == (ssize_t)sizeof old && memcmp(old, MARK_MAGIC, 8) == 0 && boot[0] &&
	    strncmp((const char *)old + MARK_BOOT, boot, MARK_BOOT_LEN) == 0)
		*found = mark_value(old);
	/* the space first, while there may be room: a mapped page past the end is SIGBUS */
	if (fstat(fd, &sb) < 0 || (sb.st_size < MARK_SIZE && posix_fallocate(fd, 0, MARK_SIZE) != 0)) {
		log_warn("store: cannot size %s (a start after a crash then goes on from the"
			 " ceiling in sluice.seq)", sf->mark_path);
		close(fd);
		return;
	}
	m = mmap(NULL, MARK_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		log_warn("store: cannot map %s", sf->mark_path);
		close(fd);
		return;
	}
	/* this boot's, carrying what it said over: a start that dies before it hands out a
	 * seq must leave the previous run's mark as it was */
	for (int i = 0; i < 8; i++)
		m[i] = (unsigned char)MARK_MAGIC[i];
	for (int i = 0; i < MARK_BOOT_LEN; i++)
		m[MARK_BOOT + i] = (unsigned char)boot[i];
	sf->mark = m;
	sf->mark_fd = fd;
	sf->marked = *found;
	for (int s = 0; s < 2; s++) {
		put64(m + MARK_SLOTS + 16 * s, *found);
		put64(m + MARK_SLOTS + 16 * s + 8, ~*found);
	}
	sf->slot = 0;
}

void store_seq_open(struct store_seq *sf, const char *seq_path, const char *mark_path,
		    uint64_t *found_mark, bool *existed)
{
	sf->seq_path = strdup(seq_path);
	sf->mark_path = strdup(mark_path);
	sf->ceiling_warned = false;
	*found_mark = 0;
	sf->mark = NULL;
	sf->mark_fd = -1;
	*existed = false;
	if (!sf->seq_path || !sf->mark_path)
		return;
	*existed = access(mark_path, F_OK) == 0;
	seq_read_file(sf);
	seq_map_mark(sf, found_mark);
}

void store_seq_close(struct store_seq *sf, bool sync)
{
	if (sf->mark) {
		if (sync && msync((void *)sf->mark, MARK_SIZE, MS_SYNC) != 0)
			log_debug("store: cannot sync %s: %s", sf->mark_path, strerror(errno));
		munmap((void *)sf->mark, MARK_SIZE);
	}
	if (sf->mark_fd >= 0)
		close(sf->mark_fd);
	sf->mark = NULL;
	sf->mark_fd = -1;
	free(sf->seq_path);
	free(sf->mark_path);
	sf->seq_path = sf->mark_path = NULL;
}

void store_seq_mark(struct store_seq *sf, uint64_t seq)
{
	volatile unsigned char *s;

	if (seq <= sf->marked)
		return;
	sf->marked = seq;
	if (!sf->mark)
		return;
	/*
	 * The slot not holding the newest value: a process killed half-way through these
	 * stores (a 64-bit store is two on a 32-bit CPU) leaves this slot failing its check
	 * and the other one holding the previous mark, which still covers every seq
	 * published, since none above it was yet.
	 */
	s = sf->mark + MARK_SLOTS + 16 * sf->slot;
	put64(s, seq);
	put64(s + 8, ~seq);
	sf->slot ^= 1;
}

int store_seq_write(struct store_seq *sf)
{
	char buf[64];
	int len = snprintf(buf, sizeof buf, "%" PRIu64 "\n%s\n", sf->ceiling, sf->stream);

	return fileio_write_whole(sf->seq_path, buf, (size_t)len, SEQ_FILE_MODE);
}

int store_seq_raise(struct store_seq *sf, uint64_t want, uint64_t block)
{
	uint64_t old = sf->ceiling;

	if (want < sf->ceiling)
		return 0;
	sf->ceiling = (want / block + 1) * block;
	if (store_seq_write(sf) == 0) {
		if (sf->ceiling_warned)
			log_info("store: %s written again", sf->seq_path);
		sf->ceiling_warned = false;
		return 0;
	}
	if (!sf->ceiling_warned)
		log_warn("store: cannot write %s (seqs then wait for their rows to be stored"
			 " before they are published)", sf->seq_path);
	sf->ceiling_warned = true;
	sf->ceiling = old;
	return -1;
}

void store_seq_new_stream(struct store_seq *sf)
{
	unsigned char r[STORE_STREAM_LEN / 2];
	static const char hex[] = "0123456789abcdef";

	if (getrandom(r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
		/* no entropy yet (a box just booted): the time and pid still tell two data
		 * directories apart */
		uint64_t x = (uint64_t)clock_real_ms() * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
		for (size_t i = 0; i < sizeof r; i++)
			r[i] = (unsigned char)(x >> (8 * i));
	}
	for (size_t i = 0; i < sizeof r; i++) {
		sf->stream[2 * i] = hex[r[i] >> 4];
		sf->stream[2 * i + 1] = hex[r[i] & 15];
	}
	sf->stream[STORE_STREAM_LEN] = '\0';
}
