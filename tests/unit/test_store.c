/*
 * test_store: the store against a real SQLite database in a fresh temporary directory
 * per test (mkdtemp under /tmp, removed afterwards). sqlite3 is used directly only to
 * prepare files the store must take or refuse (a schema 2 database, foreign, newer,
 * corrupt) and to look at what the store cannot be asked about (pragmas it set). A
 * crash is a child process that exits without closing the store.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "clock.h"
#include "log.h"
#include "mberr.h"
#include "spill.h"
#include "store.h"

#define KEEP_MS ((int64_t)60 * 1000)
#define MiB ((uint64_t)1 << 20)
#define KiB ((uint64_t)1 << 10)

struct fx {
	char tmp[64];   /* the mkdtemp directory */
	char data[128]; /* tmp/data: not created, store_open must */
	char db[160];   /* data/sluice.db */
	char seq[160];  /* data/sluice.seq */
	char err[512];
};

/*
 * The devices the tests' readings name, by id: each has one string point "v", whose
 * length sizes a row. Recorded (store_devices) with the handle at hand whenever a new
 * one appears or the handle changed.
 */
#define NDEV 16
static struct device_cfg tdevs[NDEV];
static struct point_def tpoints[NDEV];
static uint32_t tids[NDEV];
static size_t ntdev;
static struct store *tdev_for;

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);

	if (!f)
		return -1;
	snprintf(f->tmp, sizeof f->tmp, "/tmp/sluice-store-XXXXXX");
	if (!mkdtemp(f->tmp)) {
		free(f);
		return -1;
	}
	snprintf(f->data, sizeof f->data, "%s/data", f->tmp);
	snprintf(f->db, sizeof f->db, "%s/sluice.db", f->data);
	snprintf(f->seq, sizeof f->seq, "%s/sluice.seq", f->data);
	ntdev = 0;
	tdev_for = NULL;
	unsetenv("SLUICE_TEST_BOOT_ID");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	int r = nftw(f->tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);

	free(f);
	unsetenv("SLUICE_TEST_BOOT_ID");
	return r;
}

static struct store *open_cfg(struct fx *f, uint64_t max_size, int durability)
{
	struct buffer_cfg b = { .max_size = max_size, .durability = durability,
				.keep_sent_ms = KEEP_MS };
	struct store *st = store_open(f->data, &b, f->err, sizeof f->err);

	if (!st)
		print_error("store_open: %s\n", f->err);
	assert_non_null(st);
	tdev_for = NULL;
	return st;
}

static struct store *open_rw(struct fx *f, uint64_t max_size)
{
	return open_cfg(f, max_size, DURABILITY_NORMAL);
}

static struct store *open_ro(struct fx *f)
{
	struct store *st = store_open_ro(f->data, f->err, sizeof f->err);

	if (!st)
		print_error("store_open_ro: %s\n", f->err);
	assert_non_null(st);
	return st;
}

/* The number of device id (a test device, see tdevs) with st. */
static uint32_t dev_of(struct store *st, const char *id)
{
	size_t i;

	for (i = 0; i < ntdev && strcmp(tdevs[i].id, id) != 0; i++)
		;
	if (i == ntdev) {
		assert_true(ntdev < NDEV);
		tdevs[i] = (struct device_cfg){ .points = &tpoints[i], .npoints = 1 };
		snprintf(tdevs[i].id, sizeof tdevs[i].id, "%s", id);
		tpoints[i] = (struct point_def){ .type = PT_STRING, .bit = -1, .scale = 1 };
		snprintf(tpoints[i].name, sizeof tpoints[i].name, "v");
		ntdev++;
		tdev_for = NULL;
	}
	if (tdev_for != st) {
		assert_int_equal(store_devices(st, tdevs, ntdev, tids), 0);
		tdev_for = st;
	}
	return tids[i];
}

/* A reading row of device dev: one string value of len bytes ('x' unless fill). */
static void reading_row(struct store_row *row, uint32_t dev, int64_t ts, size_t len, char fill)
{
	struct reading *r = reading_new(0, 1, len + 1);
	char *s;

	assert_non_null(r);
	s = reading_strbuf(r, len + 1);
	memset(s, fill ? fill : 'x', len);
	s[len] = '\0';
	r->values[0] = (struct value){ .kind = VAL_STRING, .s = s };
	*row = (struct store_row){ .kind = ROW_TELEMETRY, .ts_ms = ts, .dev = dev };
	assert_int_equal(store_row_set_reading(row, r), 0);
	reading_free(r);
}

/* The string value of a stored test reading (allocated). */
static char *reading_text(const struct store_row *row)
{
	struct reading *r = store_row_reading(row);
	char *s;

	assert_non_null(r);
	assert_int_equal(r->nvalues, 1);
	assert_int_equal(r->values[0].kind, VAL_STRING);
	s = strdup(r->values[0].s);
	reading_free(r);
	return s;
}

/*
 * Append n rows of one kind, topic and size, in batches of at most 100: readings of the
 * device telemetry/<id> names, or transitions as text. Checks the seqs are consecutive;
 * returns the first.
 */
static uint64_t append_n(struct store *st, int kind, size_t n, const char *topic,
			 size_t bodylen, int64_t ts)
{
	static struct store_row rows[100];
	static char topics[100][64];
	static char bodies[100][1024];
	uint64_t first = 0, prev = 0;
	uint32_t dev = kind == ROW_TELEMETRY ? dev_of(st, topic + strlen("telemetry/")) : 0;
	char err[512];

	assert_true(bodylen < sizeof bodies[0] - 64);
	while (n > 0) {
		size_t k = n < 100 ? n : 100;
		for (size_t i = 0; i < k; i++) {
			if (kind == ROW_TELEMETRY) {
				reading_row(&rows[i], dev, ts, bodylen, 0);
				continue;
			}
			int m = snprintf(bodies[i], sizeof bodies[i],
					 "\"ts\":%lld,\"state\":\"", (long long)ts);
			memset(bodies[i] + m, 'x', bodylen);
			snprintf(bodies[i] + m + bodylen, sizeof bodies[i] - m - bodylen, "\"");
			snprintf(topics[i], sizeof topics[i], "%s", topic);
			rows[i] = (struct store_row){ .kind = kind, .ts_ms = ts, .topic = topics[i],
						      .body = bodies[i], .retain = true };
		}
		int r = store_append(st, rows, k, err, sizeof err);
		if (r != 0)
			print_error("store_append: %s\n", err);
		assert_int_equal(r, 0);
		for (size_t i = 0; i < k; i++) {
			assert_true(rows[i].seq > 0);
			if (prev)
				assert_int_equal(rows[i].seq, prev + 1);
			prev = rows[i].seq;
			if (kind == ROW_TELEMETRY)
				store_row_clear(&rows[i]);
		}
		if (!first)
			first = rows[0].seq;
		n -= k;
	}
	return first;
}

static uint64_t append1(struct store *st, int kind, const char *topic, int64_t ts)
{
	return append_n(st, kind, 1, topic, 8, ts);
}

static struct store_stats stats(struct store *st)
{
	struct store_stats s;

	assert_int_equal(store_stats(st, &s), 0);
	return s;
}

/* The daemon's handle keeps its counts up to date instead of counting; a reader
 * counts. They must agree. */
static void check_counts(struct fx *f, struct store *st)
{
	struct store *ro;
	struct store_stats a = stats(st), b;

	/* a reader sees what is written: the delivery mark as the daemon knows it */
	assert_int_equal(store_flush(st), 0);
	ro = open_ro(f);
	b = stats(ro);
	if (a.unsent != b.unsent || a.rows != b.rows || a.aside != b.aside)
		print_error("daemon: rows %llu unsent %llu aside %llu; reader: %llu %llu %llu\n",
			    (unsigned long long)a.rows, (unsigned long long)a.unsent,
			    (unsigned long long)a.aside, (unsigned long long)b.rows,
			    (unsigned long long)b.unsent, (unsigned long long)b.aside);
	assert_int_equal(a.rows, b.rows);
	assert_int_equal(a.unsent, b.unsent);
	assert_int_equal(a.aside, b.aside);
	assert_int_equal(a.dropped, b.dropped);
	assert_int_equal(a.skipped, b.skipped);
	assert_int_equal(a.oldest_unsent_ms, b.oldest_unsent_ms);
	assert_string_equal(a.stream, b.stream);
	store_close(ro);
}

/* All unsent seqs of a kind, in order, via repeated fetches (as the uplink does). */
static size_t fetch_all(struct store *st, int kind, uint64_t *seqs, size_t cap)
{
	struct store_row rows[64];
	uint64_t after = 0;
	size_t n = 0;
	long got;

	while ((got = store_fetch_unsent(st, kind, after, 64, rows)) > 0) {
		for (long i = 0; i < got; i++) {
			assert_int_equal(rows[i].kind, kind);
			assert_true(rows[i].seq > after);
			after = rows[i].seq;
			assert_true(n < cap);
			seqs[n++] = rows[i].seq;
			store_row_clear(&rows[i]);
		}
	}
	assert_int_equal(got, 0);
	return n;
}

/* Transitions delivered, one by one. */
static void mark_range(struct store *st, uint64_t from, uint64_t to)
{
	static uint64_t seqs[4096];
	size_t n = 0;

	for (uint64_t s = from; s <= to; s++) {
		assert_true(n < 4096);
		seqs[n++] = s;
	}
	assert_int_equal(store_mark_sent(st, seqs, n), 0);
}

/* A crash: a child opens the store, does what fn says, and is killed (SIGKILL) with it
 * open (the database, the mark and the WAL as the kernel holds them). */
static void crash_after(struct fx *f, void (*fn)(struct store *st, void *arg), void *arg)
{
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0) {
		struct buffer_cfg b = { .max_size = 0, .durability = DURABILITY_NORMAL,
					.keep_sent_ms = KEEP_MS };
		struct store *c = store_open(f->data, &b, f->err, sizeof f->err);
		if (!c)
			_exit(2);
		tdev_for = NULL;
		fn(c, arg);
		raise(SIGKILL);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFSIGNALED(status))
		print_error("the child exited %d\n", WEXITSTATUS(status));
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

static bool exists(const char *dir, const char *name)
{
	char p[256];

	snprintf(p, sizeof p, "%s/%s", dir, name);
	return access(p, F_OK) == 0;
}

/* ---- seqs -------------------------------------------------------------------------- */

static void test_seq_starts_at_one(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);
	struct store_stats s;

	s = stats(st);
	assert_int_equal(s.rows, 0);
	assert_int_equal(s.last_seq, 0);
	assert_int_equal(s.skipped, 0);
	assert_int_equal(append_n(st, ROW_TELEMETRY, 3, "telemetry/a", 10, 1000), 1);
	assert_int_equal(append_n(st, ROW_ALERT, 2, "alert/r/c", 10, 1000), 4);
	assert_int_equal(append1(st, ROW_TELEMETRY, "telemetry/a", 1000), 6);
	s = stats(st);
	assert_int_equal(s.rows, 6);
	assert_int_equal(s.unsent, 6);
	assert_int_equal(s.last_seq, 6);
	check_counts(f, st);
	store_close(st);
}

static void test_seq_survives_reopen(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);

	append_n(st, ROW_TELEMETRY, 3, "telemetry/a", 10, 1000);
	store_close(st);
	st = open_rw(f, 0);
	assert_int_equal(stats(st).last_seq, 3);
	assert_int_equal(append1(st, ROW_TELEMETRY, "telemetry/a", 1000), 4);
	store_close(st);
	st = open_rw(f, 0);
	assert_int_equal(append1(st, ROW_ALERT, "alert/r/c", 1000), 5);
	assert_int_equal(stats(st).rows, 5);
	assert_int_equal(stats(st).skipped, 0);
	store_close(st);
}

static void test_seq_not_reused_after_prune(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);
	struct store_stats s;

	append_n(st, ROW_TELEMETRY, 5, "telemetry/a", 10, 1000);
	store_delivered(st, 5);
	assert_int_equal(store_flush(st), 0); /* as store_maintain does within seconds */
	/* every row, the highest seq included, past keep_sent */
	assert_int_equal(store_maintain(st, clock_real_ms() + KEEP_MS + 1000), 0);
	s = stats(st);
	assert_int_equal(s.rows, 0);
	assert_int_equal(s.last_seq, 5);
	assert_int_equal(append1(st, ROW_TELEMETRY, "telemetry/a", 1000), 6);
	store_close(st);

	st = open_rw(f, 0);
	store_delivered(st, 6);
	store_close(st);
	st = open_rw(f, 0);
	assert_int_equal(store_maintain(st, clock_real_ms() + KEEP_MS + 1000), 0);
	assert_int_equal(stats(st).rows, 0);
	store_close(st);

	st = open_rw(f, 0);
	assert_int_equal(stats(st).last_seq, 6);
	assert_int_equal(append1(st, ROW_TELEMETRY, "telemetry/a", 1000), 7);
	store_close(st);
}

static void hand_out_three(struct store *st, void *arg)
{
	uint64_t *got = arg;
	struct store_row r;
	char err[256];

	/* one stored, two handed out (as if published) and never stored */
	reading_row(&r, dev_of(st, "a"), 5000, 4, 0);
	r.seq = store_next_seq(st);
	if (store_append(st, &r, 1, err, sizeof err) != 0)
		_exit(3);
	store_row_clear(&r);
	got[0] = store_next_seq(st);
	got[1] = store_next_seq(st);
	/* the parent reads what it was: through a file, the child's memory is its own */
	{
		FILE *fp = fopen(getenv("TEST_HANDED"), "w");
		if (!fp)
			_exit(4);
		fprintf(fp, "%llu %llu\n", (unsigned long long)got[0], (unsigned long long)got[1]);
		fclose(fp);
	}
}

static void read_handed(struct fx *f, uint64_t *a, uint64_t *b)
{
	char p[200];
	unsigned long long x, y;
	FILE *fp;

	snprintf(p, sizeof p, "%s/handed", f->tmp);
	fp = fopen(p, "r");
	assert_non_null(fp);
	assert_int_equal(fscanf(fp, "%llu %llu", &x, &y), 2);
	fclose(fp);
	*a = x;
	*b = y;
}

/*
 * Seqs handed out before their rows are stored (a reading published at once) never
 * come again: after a crash in the same boot the start goes on after sluice.mark; after
 * a power cut (another boot) after the ceiling in sluice.seq; after a clean stop after
 * what sluice.clean says. The seqs passed over are counted as skipped, and logged.
 */
static void test_seq_handed_before_stored(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);
	uint64_t got[2], a, b, next, ceiling;
	char p[200];
	FILE *fp;
	unsigned long long c;

	append_n(st, ROW_TELEMETRY, 3, "telemetry/a", 10, 1000);
	store_close(st);
	snprintf(p, sizeof p, "%s/handed", f->tmp);
	setenv("TEST_HANDED", p, 1);

	/* a crash in this boot: after the mark */
	crash_after(f, hand_out_three, got);
	read_handed(f, &a, &b);
	assert_int_equal(a, 5);
	assert_int_equal(b, 6);
	st = open_rw(f, 0);
	assert_int_equal(stats(st).last_seq, 6);
	assert_int_equal(stats(st).skipped, 2);
	next = append1(st, ROW_TELEMETRY, "telemetry/a", 1000);
	assert_int_equal(next, 7);
	check_counts(f, st);
	store_close(st);

	/* a power cut: another boot, the mark is not believed; the ceiling is */
	crash_after(f, hand_out_three, got);
	read_handed(f, &a, &b);
	assert_int_equal(b, 10);
	fp = fopen(f->seq, "r");
	assert_non_null(fp);
	assert_int_equal(fscanf(fp, "%llu", &c), 1);
	fclose(fp);
	ceiling = c;
	assert_true(ceiling > b);
	setenv("SLUICE_TEST_BOOT_ID", "another-boot", 1);
	st = open_rw(f, 0);
	assert_int_equal(stats(st).last_seq, ceiling - 1);
	assert_int_equal(stats(st).skipped, 2 + (ceiling - 1 - 8));
	assert_int_equal(append1(st, ROW_TELEMETRY, "telemetry/a", 1000), ceiling);
	/* handed out, not stored, then a clean stop: sluice.clean says it */
	a = store_next_seq(st);
	assert_int_equal(a, ceiling + 1);
	store_close(st);
	st = open_rw(f, 0);
	assert_int_equal(append1(st, ROW_TELEMETRY, "telemetry/a", 1000), ceiling + 2);
	/* counted in lost_at_stop when a row had it, not skipped: a clean stop skips none */
	assert_int_equal(stats(st).skipped, 2 + (ceiling - 1 - 8));
	store_close(st);
	unsetenv("TEST_HANDED");
}

/* The seqs of a lost database are never handed out again: sluice.seq's ceiling, when
 * nothing can be read back; the file's own sequence when it can. */
static void test_seq_survives_lost_database(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);
	char wal[200], mark[200];
	uint64_t s1, s2;

	append_n(st, ROW_TELEMETRY, 10, "telemetry/a", 10, 1000);
	store_close(st);
	/* an operator's rm: a new database, seqs above the ceiling (the mark gone too) */
	snprintf(wal, sizeof wal, "%s-wal", f->db);
	snprintf(mark, sizeof mark, "%s/sluice.mark", f->data);
	assert_int_equal(unlink(f->db), 0);
	unlink(wal);
	unlink(mark);
	st = open_rw(f, 0);
	s1 = append1(st, ROW_TELEMETRY, "telemetry/a", 1000);
	assert_true(s1 > 10);
	store_close(st);
	/* and a second time, from there (the mark kept: a clean stop wrote it) */
	assert_int_equal(unlink(f->db), 0);
	unlink(wal);
	st = open_rw(f, 0);
	s2 = append1(st, ROW_TELEMETRY, "telemetry/a", 1000);
	assert_true(s2 > s1);
	store_close(st);
	/* a damaged ceiling file is ignored, with the database there nothing changes */
	{
		int fd = open(f->seq, O_WRONLY | O_TRUNC);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, "x\n", 2), 2);
		close(fd);
	}
	st = open_rw(f, 0);
	assert_int_equal(append1(st, ROW_TELEMETRY, "telemetry/a", 1000), s2 + 1);
	store_close(st);
}

/* A stream id names the seq space: kept across restarts and a lost database (whose
 * seqs go on), new when seqs start again at 1 (a new data_dir). */
static void test_stream(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);
	char s1[24], cmd[512];
	struct store_stats s;

	s = stats(st);
	assert_int_equal(strlen(s.stream), 16);
	assert_int_equal(strspn(s.stream, "0123456789abcdef"), 16);
	assert_string_equal(store_stream(st), s.stream);
	snprintf(s1, sizeof s1, "%s", s.stream);
	append_n(st, ROW_TELEMETRY, 3, "telemetry/a", 10, 1000);
	store_close(st);

	st = open_rw(f, 0);
	assert_string_equal(stats(st).stream, s1);
	store_close(st);
	st = open_ro(f);
	assert_string_equal(stats(st).stream, s1);
	store_close(st);

	/* the database lost: the same stream, seqs above */
	assert_int_equal(unlink(f->db), 0);
	st = open_rw(f, 0);
	assert_string_equal(stats(st).stream, s1);
	assert_true(append1(st, ROW_TELEMETRY, "telemetry/a", 1000) > 3);
	store_close(st);

	/* a new data_dir: seqs from 1, and another stream */
	snprintf(cmd, sizeof cmd, "rm -rf %s", f->data);
	assert_int_equal(system(cmd), 0);
	st = open_rw(f, 0);
	assert_int_equal(append1(st, ROW_TELEMETRY, "telemetry/a", 1000), 1);
	assert_string_not_equal(stats(st).stream, s1);
	store_close(st);
}

/* ---- appending and fetching ---------------------------------------------------------- */

static void test_append_batch_is_one_transaction(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);
	struct store_row rows[5], out[8];
	uint32_t dev;
	char err[512];

	append_n(st, ROW_TELEMETRY, 2, "telemetry/a", 10, 1000);
	dev = dev_of(st, "b");
	for (int i = 0; i < 5; i++)
		reading_row(&rows[i], dev, 2000 + i, 4, 0);
	/* The third row has a seq that is taken: SQLite refuses it after two rows of the
	 * batch were inserted, and they must go too. */
	rows[2].seq = 1;
	assert_int_equal(store_append(st, rows, 5, err, sizeof err), -1);
	assert_non_null(strstr(err, "row 3 of 5"));
	assert_non_null(strstr(err, "UNIQUE"));
	assert_non_null(strstr(err, f->db));
	/* the seqs given by that append are taken back; one handed out before stays */
	assert_int_equal(rows[0].seq, 0);
	assert_int_equal(rows[1].seq, 0);
	assert_int_equal(rows[2].seq, 1);
	assert_int_equal(stats(st).rows, 2);
	assert_int_equal(stats(st).last_seq, 2);
	assert_int_equal(store_recent(st, "telemetry/b", 8, out), 0);

	/* A row that is neither a reading nor a text row. */
	rows[2].seq = 0;
	rows[4].kind = 7;
	assert_int_equal(store_append(st, rows, 5, err, sizeof err), -1);
	assert_non_null(strstr(err, "row 5 of 5"));
	assert_int_equal(stats(st).rows, 2);

	/* The store is still usable and the batch goes in whole once it is valid. */
	rows[4].kind = ROW_TELEMETRY;
	assert_int_equal(store_append(st, rows, 5, err, sizeof err), 0);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(rows[i].seq, 3 + i);
		store_row_clear(&rows[i]);
	}
	assert_int_equal(stats(st).rows, 7);
	assert_int_equal(store_append(st, rows, 0, err, sizeof err), 0);
	check_counts(f, st);
	store_close(st);
}

/* Readings are delivered by the mark: all up to it but those set aside; the mark stays
 * in memory until an append or maintenance writes it, and a close writes it. */
static void test_delivery_mark(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);
	uint64_t seqs[16];
	uint64_t ev[] = { 5 };

	append_n(st, ROW_TELEMETRY, 4, "telemetry/a", 10, 1000); /* 1..4 */
	append1(st, ROW_ALERT, "alert/r/c", 1000);               /* 5 */
	append_n(st, ROW_TELEMETRY, 3, "telemetry/a", 10, 1000); /* 6..8 */
	assert_int_equal(fetch_all(st, ROW_TELEMETRY, seqs, 16), 7);
	store_delivered(st, 3);
	assert_int_equal(fetch_all(st, ROW_TELEMETRY, seqs, 16), 4);
	assert_int_equal(seqs[0], 4);
	assert_int_equal(stats(st).unsent, 5);
	/* a mark below the mark changes nothing; over a transition, it is not marked */
	store_delivered(st, 2);
	store_delivered(st, 6);
	assert_int_equal(stats(st).unsent, 3);
	assert_int_equal(fetch_all(st, ROW_ALERT, seqs, 16), 1);
	assert_int_equal(store_mark_sent(st, ev, 1), 0);
	assert_int_equal(stats(st).unsent, 2);
	/* a mark past what is stored covers rows stored after it */
	store_delivered(st, 10);
	assert_int_equal(stats(st).unsent, 0);
	append_n(st, ROW_TELEMETRY, 3, "telemetry/a", 10, 1000); /* 9..11 */
	assert_int_equal(fetch_all(st, ROW_TELEMETRY, seqs, 16), 1);
	assert_int_equal(seqs[0], 11);
	assert_int_equal(stats(st).unsent, 1);
	check_counts(f, st);
	store_close(st);

	st = open_rw(f, 0);
	assert_int_equal(fetch_all(st, ROW_TELEMETRY, seqs, 16), 1);
	assert_int_equal(stats(st).unsent, 1);
	assert_int_equal(stats(st).rows, 11);
	store_close(st);
}

static void deliver_all_then_crash(struct store *st, void *arg)
{
	(void)arg;
	append_n(st, ROW_TELEMETRY, 3, "telemetry/a", 10, 1000);
	store_delivered(st, 6);
}

/* A crash before the mark is written: the readings are sent again (at least once). */
static void test_delivery_mark_lost_in_a_crash(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);
	uint64_t seqs[16];

	append_n(st, ROW_TELEMETRY, 3, "telemetry/a", 10, 1000);
	store_delivered(st, 3);
	store_close(st);
	crash_after(f, deliver_all_then_crash, NULL);
	st = open_rw(f, 0);
	assert_int_equal(fetch_all(st, ROW_TELEMETRY, seqs, 16), 3);
	assert_int_equal(seqs[0], 4);
	assert_int_equal(stats(st).unsent, 3);
	check_counts(f, st);
	store_close(st);
}

static void test_fetch_order_after_and_kinds(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);
	struct store_row out[8];
	char *s;
	long n;

	/* seq: 1 T, 2 A, 3 T, 4 T, 5 A, 6 T */
	append1(st, ROW_TELEMETRY, "telemetry/a", 100);
	append1(st, ROW_ALERT, "alert/r/c", 200);
	append1(st, ROW_TELEMETRY, "telemetry/a", 300);
	append1(st, ROW_TELEMETRY, "telemetry/b", 400);
	append1(st, ROW_ALERT, "alert/r/d", 500);
	append1(st, ROW_TELEMETRY, "telemetry/a", 600);

	n = store_fetch_unsent(st, ROW_TELEMETRY, 0, 2, out);
	assert_int_equal(n, 2);
	assert_int_equal(out[0].seq, 1);
	assert_int_equal(out[1].seq, 3);
	assert_int_equal(out[1].ts_ms, 300);
	assert_null(out[0].topic);
	assert_false(out[0].retain);
	assert_int_equal(out[0].dev, dev_of(st, "a"));
	assert_string_equal(store_device(st, out[0].dev)->id, "a");
	s = reading_text(&out[0]);
	assert_string_equal(s, "xxxxxxxx");
	free(s);
	store_row_clear(&out[0]);
	store_row_clear(&out[1]);
	assert_null(out[0].vals);

	n = store_fetch_unsent(st, ROW_TELEMETRY, 3, 8, out);
	assert_int_equal(n, 2);
	assert_int_equal(out[0].seq, 4);
	assert_string_equal(store_device(st, out[0].dev)->id, "b");
	assert_int_equal(out[1].seq, 6);
	store_row_clear(&out[0]);
	store_row_clear(&out[1]);

	n = store_fetch_unsent(st, ROW_ALERT, 0, 8, out);
	assert_int_equal(n, 2);
	assert_int_equal(out[0].seq, 2);
	assert_int_equal(out[0].kind, ROW_ALERT);
	assert_true(out[0].retain);
	assert_string_equal(out[0].body, "\"ts\":200,\"state\":\"xxxxxxxx\"");
	assert_string_equal(out[1].topic, "alert/r/d");
	assert_int_equal(out[1].ts_ms, 500);
	store_row_clear(&out[0]);
	store_row_clear(&out[1]);

	assert_int_equal(store_fetch_unsent(st, ROW_ALERT, 5, 8, out), 0);
	assert_int_equal(store_fetch_unsent(st, ROW_TELEMETRY, 0, 0, out), 0);
	/* a reader fetches the same */
	store_close(st);
	st = open_ro(f);
	assert_int_equal(store_fetch_unsent(st, ROW_TELEMETRY, 3, 8, out), 2);
	assert_int_equal(out[1].seq, 6);
	store_row_clear(&out[0]);
	store_row_clear(&out[1]);
	store_close(st);
}

/* Every kind of value comes back as it went in: the bits of a float32, integers whole
 * to 64 bits, a failed point with its error, NaN, UTF-8 text. */
static void test_values_round_trip(void **state)
{
	struct fx *f = *state;
	struct reading *r = reading_new(7, 12, 64), *back;
	struct store_row row = { 0 };
	char *s;

	(void)f;
	r->values[0] = (struct value){ .kind = VAL_BOOL, .v.b = true };
	r->values[1] = (struct value){ .kind = VAL_BOOL, .v.b = false };
	r->values[2] = (struct value){ .kind = VAL_INT, .v.i = INT64_MIN };
	r->values[3] = (struct value){ .kind = VAL_INT, .v.i = -1 };
	r->values[4] = (struct value){ .kind = VAL_UINT, .v.u = UINT64_MAX };
	r->values[5] = (struct value){ .kind = VAL_DOUBLE, .v.d = (double)15.709783f };
	r->values[6] = (struct value){ .kind = VAL_DOUBLE, .v.d = 0.1 }; /* no float holds it */
	r->values[7] = (struct value){ .kind = VAL_DOUBLE, .v.d = NAN };
	r->values[8] = (struct value){ .kind = VAL_DOUBLE, .v.d = -INFINITY };
	r->values[9] = (struct value){ .kind = VAL_NONE, .err = MBE_EXC_BASE + 2 };
	s = reading_strbuf(r, 16);
	strcpy(s, "渝北 水位");
	r->values[10] = (struct value){ .kind = VAL_STRING, .s = s };
	r->values[11] = (struct value){ .kind = VAL_NONE, .err = MBE_TIMEOUT };
	r->ts_ms = 123;
	assert_int_equal(store_row_set_reading(&row, r), 0);
	row.ts_ms = 456;
	/* ten float32s take 46 bytes; these twelve, their kinds' sizes */
	assert_true(row.nvals < 80);
	back = store_row_reading(&row);
	assert_non_null(back);
	assert_int_equal(back->nvalues, 12);
	assert_int_equal(back->ts_ms, 456);
	assert_int_equal(back->values[0].kind, VAL_BOOL);
	assert_true(back->values[0].v.b);
	assert_false(back->values[1].v.b);
	assert_int_equal(back->values[2].kind, VAL_INT);
	assert_true(back->values[2].v.i == INT64_MIN);
	assert_true(back->values[3].v.i == -1);
	assert_int_equal(back->values[4].kind, VAL_UINT);
	assert_true(back->values[4].v.u == UINT64_MAX);
	assert_int_equal(back->values[5].kind, VAL_DOUBLE);
	assert_true(back->values[5].v.d == (double)15.709783f);
	assert_true(back->values[6].v.d == 0.1);
	assert_true(isnan(back->values[7].v.d));
	assert_true(isinf(back->values[8].v.d) && back->values[8].v.d < 0);
	assert_int_equal(back->values[9].kind, VAL_NONE);
	assert_int_equal(back->values[9].err, MBE_EXC_BASE + 2);
	assert_int_equal(back->values[10].kind, VAL_STRING);
	assert_string_equal(back->values[10].s, "渝北 水位");
	assert_int_equal(back->values[11].err, MBE_TIMEOUT);
	reading_free(back);

	/* damaged bytes are refused, never read past: every shorter prefix, and junk */
	for (size_t len = 0; len < row.nvals; len++) {
		struct store_row cut = row;
		cut.nvals = len;
		assert_null(store_row_reading(&cut));
	}
	{
		unsigned char junk[64];
		struct store_row j = { .vals = junk, .nvals = sizeof junk };
		uint64_t x = 88172645463325252ULL;
		for (int round = 0; round < 2000; round++) {
			for (size_t i = 0; i < sizeof junk; i++) {
				x ^= x << 13;
				x ^= x >> 7;
				x ^= x << 17;
				junk[i] = (unsigned char)x;
			}
			junk[0] &= 0x0f; /* a count the bytes could hold */
			back = store_row_reading(&j);
			reading_free(back);
		}
	}
	store_row_clear(&row);
	reading_free(r);
}

/* A device keeps its number while its description (names, types, units) stays; a
 * changed one is a new number, and readings stored under the old one still read with
 * the old names, after a restart too. */
static void test_devices(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);
	struct point_def pts[3] = {
		{ .name = "flow", .type = PT_FLOAT32, .unit = "m3/h", .bit = -1, .scale = 1 },
		{ .name = "total", .type = PT_UINT32, .unit = "m3", .bit = -1, .scale = 0.1 },
		{ .name = "level", .type = PT_INT16, .unit = "cm", .bit = -1, .scale = 1 },
	};
	struct device_cfg d[2] = { { .name = "三号 进水", .points = pts, .npoints = 2 },
				   { .points = pts, .npoints = 1 } };
	uint32_t ids[2], ids2[2], old;
	const struct device_cfg *got;
	struct store_row out[4];

	snprintf(d[0].id, sizeof d[0].id, "inlet");
	snprintf(d[1].id, sizeof d[1].id, "outlet");
	assert_int_equal(store_devices(st, d, 2, ids), 0);
	assert_true(ids[0] && ids[1] && ids[0] != ids[1]);
	assert_ptr_equal(store_device(st, ids[0]), &d[0]);
	store_close(st);

	st = open_rw(f, 0);
	assert_int_equal(store_devices(st, d, 2, ids2), 0);
	assert_int_equal(ids2[0], ids[0]);
	assert_int_equal(ids2[1], ids[1]);
	{
		struct store_row r;
		struct reading *rd = reading_new(0, 2, 0);
		char err[256];

		rd->values[0] = (struct value){ .kind = VAL_DOUBLE, .v.d = 1.5 };
		rd->values[1] = (struct value){ .kind = VAL_DOUBLE, .v.d = 7.5 };
		r = (struct store_row){ .kind = ROW_TELEMETRY, .ts_ms = 1, .dev = ids[0] };
		assert_int_equal(store_row_set_reading(&r, rd), 0);
		assert_int_equal(store_append(st, &r, 1, err, sizeof err), 0);
		store_row_clear(&r);
		reading_free(rd);
	}
	/* a point added, one renamed: a new description, a new number */
	d[0].npoints = 3;
	snprintf(pts[1].name, sizeof pts[1].name, "totaliser");
	old = ids[0];
	assert_int_equal(store_devices(st, d, 2, ids2), 0);
	assert_true(ids2[0] != old);
	assert_int_equal(ids2[1], ids[1]);
	store_close(st);

	/* the reading stored under the old description reads with the old names */
	st = open_ro(f);
	assert_int_equal(store_fetch_unsent(st, ROW_TELEMETRY, 0, 4, out), 1);
	got = store_device(st, out[0].dev);
	assert_non_null(got);
	assert_string_equal(got->id, "inlet");
	assert_string_equal(got->name, "三号 进水");
	assert_int_equal(got->npoints, 2);
	assert_string_equal(got->points[1].name, "total");
	assert_int_equal(got->points[1].type, PT_UINT32);
	assert_string_equal(got->points[1].unit, "m3");
	assert_true(got->points[1].scale == 0.1);
	assert_int_equal(got->points[0].type, PT_FLOAT32);
	assert_null(store_device(st, 999));
	assert_non_null(strstr(store_error(st), "no device 999"));
	store_row_clear(&out[0]);
	store_close(st);
}

/* ---- history, the size bound ---------------------------------------------------------- */

static void test_keep_sent_pruning(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);
	uint64_t seqs[8];
	int64_t now;

	append_n(st, ROW_TELEMETRY, 4, "telemetry/a", 10, 1000); /* 1..4 */
	append1(st, ROW_ALERT, "alert/r/c", 1000);               /* 5 */
	append1(st, ROW_ALERT, "alert/r/c", 1000);               /* 6 */
	store_delivered(st, 2);
	mark_range(st, 5, 6);
	assert_int_equal(store_flush(st), 0); /* as store_maintain does within seconds */
	now = clock_real_ms();
	assert_int_equal(store_maintain(st, now), 0);
	assert_int_equal(stats(st).rows, 6);
	assert_int_equal(store_maintain(st, now + KEEP_MS - 1000), 0);
	assert_int_equal(stats(st).rows, 6);
	assert_int_equal(store_maintain(st, now + KEEP_MS + 1000), 0);
	/* the delivered rows went, the older alert transition among them; the newest
	 * transition of the alert stays (it says the alert is firing), and so does the
	 * backlog */
	assert_int_equal(stats(st).rows, 3);
	assert_int_equal(stats(st).unsent, 2);
	{
		struct store_row last[2];
		assert_int_equal(store_recent(st, "alert/r/c", 2, last), 1);
		assert_int_equal(last[0].seq, 6);
		store_row_clear(&last[0]);
	}
	assert_int_equal(fetch_all(st, ROW_TELEMETRY, seqs, 8), 2);
	assert_int_equal(seqs[0], 3);
	assert_int_equal(seqs[1], 4);
	assert_int_equal(stats(st).dropped, 0);
	/* delivered later: kept for keep_sent from then, not from when it was taken */
	store_delivered(st, 4);
	assert_int_equal(store_flush(st), 0);
	assert_int_equal(store_maintain(st, clock_real_ms() + KEEP_MS - 1000), 0);
	assert_int_equal(stats(st).rows, 3);
	check_counts(f, st);
	store_close(st);
}

/* Delivered history goes first; the backlog is untouched when that is enough. */
static void test_max_size_drops_history_first(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, MiB);
	static uint64_t seqs[4096];
	static struct store_row out[4096];
	struct store_stats s;
	long n;

	append_n(st, ROW_TELEMETRY, 3000, "telemetry/old", 400, 1000);
	store_delivered(st, 3000);
	append_n(st, ROW_TELEMETRY, 300, "telemetry/new", 400, 2000);
	append_n(st, ROW_ALERT, 5, "alert/r/c", 400, 2000);
	s = stats(st);
	assert_true(s.db_bytes > MiB);

	assert_int_equal(store_maintain(st, clock_real_ms()), 0);
	s = stats(st);
	assert_true(s.db_bytes <= MiB);
	assert_int_equal(s.dropped, 0);
	assert_int_equal(s.unsent, 305);
	assert_int_equal(fetch_all(st, ROW_TELEMETRY, seqs, 4096), 300);
	assert_int_equal(seqs[0], 3001);
	assert_int_equal(fetch_all(st, ROW_ALERT, seqs, 4096), 5);
	/* some history is left, and it is the newest: a contiguous run up to 3000 */
	n = store_recent(st, "telemetry/old", 4096, out);
	assert_true(n > 0 && n < 3000);
	assert_int_equal(s.rows, (uint64_t)n + 305);
	for (long i = 0; i < n; i++) {
		assert_int_equal(out[i].seq, 3000 - (uint64_t)i);
		store_row_clear(&out[i]);
	}
	check_counts(f, st);
	store_close(st);
}

/* Rows handed to the broker and awaiting its ack are not dropped: they may arrive,
 * and a drop counted for a delivered row would report a loss that never happened. */
static void test_max_size_spares_rows_in_flight(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, MiB);
	static uint64_t tseq[8192];
	struct store_stats s;
	size_t nt;

	append_n(st, ROW_TELEMETRY, 3000, "telemetry/a", 400, 1000);
	store_set_in_flight(st, 32);
	assert_int_equal(store_maintain(st, clock_real_ms()), 0);
	s = stats(st);
	assert_true(s.db_bytes <= MiB);
	assert_true(s.dropped > 0);
	nt = fetch_all(st, ROW_TELEMETRY, tseq, 8192);
	assert_int_equal(nt + s.dropped, 3000);
	/* 1..32 kept; the drop starts at 33 */
	for (uint64_t i = 0; i < 32; i++)
		assert_int_equal(tseq[i], i + 1);
	assert_int_equal(tseq[32], 33 + s.dropped);
	check_counts(f, st);
	store_close(st);
}

/* Then the oldest unsent telemetry; alerts never; every drop counted, persistently. */
static void test_max_size_drops_oldest_telemetry_never_alerts(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, MiB);
	static uint64_t tseq[8192], aseq[64];
	struct store_stats s;
	size_t nt, na;

	/* 40 alerts spread through 3000 readings, the first alerts the oldest rows */
	for (int i = 0; i < 40; i++) {
		append1(st, ROW_ALERT, "alert/r/c", 1000 + i);
		append_n(st, ROW_TELEMETRY, 75, "telemetry/a", 400, 1000 + i);
	}
	s = stats(st);
	assert_int_equal(s.rows, 3040);
	assert_true(s.db_bytes > MiB);

	assert_int_equal(store_maintain(st, clock_real_ms()), 0);
	s = stats(st);
	assert_true(s.db_bytes <= MiB);
	assert_true(s.dropped > 0);
	assert_int_equal(s.rows, s.unsent);  /* no history left */
	na = fetch_all(st, ROW_ALERT, aseq, 64);
	assert_int_equal(na, 40);
	assert_int_equal(aseq[0], 1);
	nt = fetch_all(st, ROW_TELEMETRY, tseq, 8192);
	assert_int_equal(nt + s.dropped, 3000);
	assert_int_equal(s.unsent, nt + 40);
	/* what is left of the readings is the newest: every reading from the first one
	 * kept up to the last (alerts, every 76th seq, in between) */
	for (size_t i = 1; i < nt; i++)
		assert_true(tseq[i] == tseq[i - 1] + 1 || (tseq[i] == tseq[i - 1] + 2 &&
							   (tseq[i] - 1 - 1) % 76 == 0));
	assert_int_equal(tseq[nt - 1], 3040);
	/* the oldest unsent row is now the first alert */
	assert_int_equal(s.oldest_unsent_ms, 1000);
	uint64_t dropped = s.dropped;

	/* the next call has nothing to do */
	assert_int_equal(store_maintain(st, clock_real_ms()), 0);
	assert_int_equal(stats(st).dropped, dropped);
	check_counts(f, st);
	store_close(st);

	st = open_rw(f, MiB);
	assert_int_equal(stats(st).dropped, dropped);
	store_close(st);
	st = open_ro(f);
	assert_int_equal(stats(st).dropped, dropped);
	store_close(st);
}

static void test_max_size_alerts_only_stay(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 256 * KiB);
	struct store_stats s;

	append_n(st, ROW_ALERT, 1000, "alert/r/c", 400, 1000);
	assert_int_equal(store_maintain(st, clock_real_ms()), 0);
	s = stats(st);
	assert_int_equal(s.rows, 1000);
	assert_int_equal(s.unsent, 1000);
	assert_int_equal(s.dropped, 0);
	store_close(st);
}

/* A box that runs full for a while: after every maintain the whole is within bounds. */
static void test_max_size_holds_over_time(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, MiB);
	static uint64_t seqs[8192];
	uint64_t seq, dropped = 0, mark = 0;
	struct store_stats s;
	size_t n;

	for (int round = 0; round < 30; round++) {
		seq = append_n(st, ROW_TELEMETRY, 300, "telemetry/a", 300, 1000 + round);
		/* the uplink delivers 100 rows of the backlog a round, oldest first */
		n = fetch_all(st, ROW_TELEMETRY, seqs, 8192);
		mark = seqs[n > 100 ? 99 : n - 1];
		store_delivered(st, mark);
		store_set_in_flight(st, mark);
		assert_int_equal(store_maintain(st, clock_real_ms()), 0);
		s = stats(st);
		assert_true(s.db_bytes <= MiB);
		/* a reading is dropped only once no delivered row is left */
		if (s.dropped > dropped)
			assert_int_equal(s.rows, s.unsent);
		dropped = s.dropped;
		(void)seq;
	}
	assert_true(dropped > 0);
	assert_int_equal(s.last_seq, 9000);
	/* the newest round is whole, and delivered plus dropped plus kept is every one */
	n = fetch_all(st, ROW_TELEMETRY, seqs, 8192);
	assert_int_equal(seqs[n - 1], 9000);
	assert_true(n >= 200 && seqs[n - 200] == 8801);
	check_counts(f, st);
	store_close(st);
}

static void test_durability_full(void **state)
{
	struct fx *f = *state;
	struct store *st = open_cfg(f, MiB, DURABILITY_FULL);
	sqlite3 *db;
	sqlite3_stmt *q;

	append_n(st, ROW_TELEMETRY, 10, "telemetry/a", 10, 1000);
	assert_int_equal(stats(st).rows, 10);
	store_close(st);

	st = open_rw(f, MiB);
	assert_int_equal(stats(st).rows, 10);
	store_close(st);

	/* what the store set up, seen from outside */
	assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(q, 0), "wal");
	sqlite3_finalize(q);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &q, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(q, 0), 4096);
	sqlite3_finalize(q);
	sqlite3_close(db);
}

static void test_ro_missing(void **state)
{
	struct fx *f = *state;
	char want[512];

	snprintf(want, sizeof want, "no database at %s: has sluiced run with this data_dir?",
		 f->db);
	assert_null(store_open_ro(f->data, f->err, sizeof f->err));
	assert_string_equal(f->err, want);
	/* nor does it create anything */
	assert_int_equal(access(f->data, F_OK), -1);
	assert_int_equal(mkdir(f->data, 0750), 0);
	assert_null(store_open_ro(f->data, f->err, sizeof f->err));
	assert_string_equal(f->err, want);
	assert_false(exists(f->data, "sluice.db"));
}

/*
 * A FIFO named sluice.db (or -wal, -shm) is refused with a message, not opened: SQLite's
 * open() of a FIFO waits for a writer for ever. The alarm turns such a hang into a
 * failure of this test instead of a test run that never ends.
 */
static void test_ro_refuses_fifo(void **state)
{
	struct fx *f = *state;
	const char *const names[] = { "sluice.db-wal", "sluice.db-shm" };
	char want[512], path[256];
	struct store *st;

	alarm(20);
	assert_int_equal(mkdir(f->data, 0750), 0);
	assert_int_equal(mkfifo(f->db, 0644), 0);
	assert_null(store_open_ro(f->data, f->err, sizeof f->err));
	snprintf(want, sizeof want, "%s is a FIFO (named pipe), not a database file: sluicectl "
		 "reads only a regular file", f->db);
	assert_string_equal(f->err, want);
	assert_int_equal(unlink(f->db), 0);
	assert_int_equal(mkdir(f->db, 0750), 0);
	assert_null(store_open_ro(f->data, f->err, sizeof f->err));
	assert_non_null(strstr(f->err, "is a directory, not a database file"));
	assert_int_equal(rmdir(f->db), 0);

	/* a real database, and a FIFO beside it in the place of its WAL or shared memory */
	st = open_rw(f, MiB);
	append_n(st, ROW_TELEMETRY, 3, "telemetry/a", 10, 1000);
	store_close(st);
	for (size_t i = 0; i < 2; i++) {
		snprintf(path, sizeof path, "%s/%s", f->data, names[i]);
		assert_int_equal(mkfifo(path, 0644), 0);
		assert_null(store_open_ro(f->data, f->err, sizeof f->err));
		snprintf(want, sizeof want, "%s is a FIFO (named pipe), not the database's %s file: "
			 "sluicectl reads only regular files", path, names[i] + 10);
		assert_string_equal(f->err, want);
		assert_int_equal(unlink(path), 0);
	}
	st = open_ro(f);
	assert_int_equal(stats(st).rows, 3);
	store_close(st);
	alarm(0);
}


static void test_ro_beside_daemon(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, MiB), *ro;
	struct store_row r = { 0 }, out[8];
	char err[256];
	char *v;
	uint64_t one = 4;

	append_n(st, ROW_TELEMETRY, 3, "telemetry/a", 10, 1000);
	ro = open_ro(f);
	assert_int_equal(stats(ro).rows, 3);
	/* the reader sees what the daemon commits after it opened (in the WAL) */
	append1(st, ROW_ALERT, "alert/r/c", 2000);
	assert_int_equal(stats(ro).rows, 4);
	assert_int_equal(store_fetch_unsent(ro, ROW_ALERT, 0, 8, out), 1);
	store_row_clear(&out[0]);

	/* it cannot write */
	assert_int_equal(store_append(ro, &r, 1, err, sizeof err), -1);
	assert_non_null(strstr(err, "read-only"));
	assert_int_equal(store_mark_sent(ro, &one, 1), -1);
	assert_non_null(strstr(store_error(ro), "read-only"));
	assert_int_equal(store_maintain(ro, clock_real_ms()), -1);
	assert_int_equal(store_meta_put(ro, "k", "v"), -1);
	assert_int_equal(store_next_seq(ro), 0);

	/* and it does not make the daemon fail, checkpoints included */
	assert_int_equal(store_meta_put(st, "k", "v"), 0);
	assert_int_equal(store_mark_sent(st, &one, 1), 0);
	append_n(st, ROW_TELEMETRY, 500, "telemetry/a", 300, 3000);
	assert_int_equal(store_maintain(st, clock_real_ms()), 0);
	assert_int_equal(store_meta_get(ro, "k", &v), 0);
	assert_string_equal(v, "v");
	free(v);
	store_close(ro);
	store_close(st);

	/* with the daemon gone, a reader reads the file and leaves nothing behind that
	 * a daemon running as another user could not write */
	assert_false(exists(f->data, "sluice.db-wal"));
	ro = open_ro(f);
	assert_int_equal(stats(ro).rows, 504);
	assert_int_equal(store_recent(ro, "alert/r/c", 8, out), 1);
	store_row_clear(&out[0]);
	assert_int_equal(store_recent(ro, "telemetry/a", 8, out), 8);
	assert_int_equal(out[0].seq, 504);
	for (int i = 0; i < 8; i++)
		store_row_clear(&out[i]);
	store_close(ro);
	assert_false(exists(f->data, "sluice.db-wal"));
	assert_false(exists(f->data, "sluice.db-shm"));
}

static void test_meta(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);
	char *v = (char *)1;

	assert_int_equal(store_meta_get(st, "alert/r/c", &v), 0);
	assert_null(v);
	assert_int_equal(store_meta_put(st, "alert/r/c", "{\"state\":\"firing\"}"), 0);
	assert_int_equal(store_meta_get(st, "alert/r/c", &v), 0);
	assert_string_equal(v, "{\"state\":\"firing\"}");
	free(v);
	assert_int_equal(store_meta_put(st, "alert/r/c", "黄色"), 0);
	assert_int_equal(store_meta_put(st, "other", ""), 0);
	store_close(st);

	st = open_rw(f, 0);
	assert_int_equal(store_meta_get(st, "alert/r/c", &v), 0);
	assert_string_equal(v, "黄色");
	free(v);
	assert_int_equal(store_meta_get(st, "other", &v), 0);
	assert_string_equal(v, "");
	free(v);
	assert_int_equal(store_meta_put(st, "other", NULL), 0);
	assert_int_equal(store_meta_get(st, "other", &v), 0);
	assert_null(v);
	store_close(st);
}


static void test_stats(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);
	struct store_stats s;
	uint64_t two = 2;

	s = stats(st);
	assert_int_equal(s.oldest_unsent_ms, 0);
	assert_true(s.db_bytes >= 4096);
	append1(st, ROW_TELEMETRY, "telemetry/a", 1000);
	append1(st, ROW_ALERT, "alert/r/c", 500);
	append1(st, ROW_TELEMETRY, "telemetry/a", 3000);
	s = stats(st);
	assert_int_equal(s.rows, 3);
	assert_int_equal(s.unsent, 3);
	assert_int_equal(s.oldest_unsent_ms, 500);
	assert_int_equal(s.last_seq, 3);
	assert_int_equal(s.dropped, 0);
	assert_int_equal(store_mark_sent(st, &two, 1), 0);
	s = stats(st);
	assert_int_equal(s.rows, 3);
	assert_int_equal(s.unsent, 2);
	assert_int_equal(s.oldest_unsent_ms, 1000);
	store_delivered(st, 3);
	s = stats(st);
	assert_int_equal(s.unsent, 0);
	assert_int_equal(s.oldest_unsent_ms, 0);
	/* handed out, not stored: last_seq says it */
	assert_int_equal(store_next_seq(st), 4);
	assert_int_equal(stats(st).last_seq, 4);
	check_counts(f, st);
	store_close(st);
}

/*
 * sluicectl tail: a device's readings, newest first, along its own chain through many
 * other devices' readings; across a change of its description; from a reader (which
 * starts at the heads table and looks for newer rows); ending where history was pruned.
 */
static void test_recent(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);
	static struct store_row out[64];
	char name[16];
	long n;

	for (int i = 0; i < 4; i++) {
		append1(st, ROW_TELEMETRY, "telemetry/a", 100 + i);
		for (int k = 0; k < 10; k++) {
			snprintf(name, sizeof name, "telemetry/o%d", k);
			append1(st, ROW_TELEMETRY, name, 100 + i);
		}
	}
	n = store_recent(st, "telemetry/a", 3, out);
	assert_int_equal(n, 3);
	assert_int_equal(out[0].seq, 34);
	assert_int_equal(out[1].seq, 23);
	assert_int_equal(out[2].seq, 12);
	assert_int_equal(out[0].ts_ms, 103);
	for (long i = 0; i < n; i++)
		store_row_clear(&out[i]);
	assert_int_equal(store_recent(st, "telemetry/o9", 8, out), 4);
	for (int i = 0; i < 4; i++)
		store_row_clear(&out[i]);
	assert_int_equal(store_recent(st, "telemetry/c", 8, out), 0);
	assert_int_equal(store_recent(st, "telemetry/a", 0, out), 0);

	/* device a changes (a point renamed): its chain goes on under the new number */
	snprintf(tpoints[0].name, sizeof tpoints[0].name, "w");
	tdev_for = NULL;
	append1(st, ROW_TELEMETRY, "telemetry/a", 200);
	n = store_recent(st, "telemetry/a", 8, out);
	assert_int_equal(n, 5);
	assert_int_equal(out[0].seq, 45);
	assert_int_equal(out[1].seq, 34);
	assert_true(out[0].dev != out[1].dev);
	for (long i = 0; i < n; i++)
		store_row_clear(&out[i]);

	/* a reader, beside the daemon: the heads written, then newer rows found */
	assert_int_equal(store_maintain(st, clock_real_ms()), 0);
	append1(st, ROW_TELEMETRY, "telemetry/o3", 300);
	append1(st, ROW_TELEMETRY, "telemetry/a", 300);
	append1(st, ROW_TELEMETRY, "telemetry/o3", 300);
	{
		struct store *ro = open_ro(f);
		n = store_recent(ro, "telemetry/a", 8, out);
		assert_int_equal(n, 6);
		assert_int_equal(out[0].seq, 47);
		assert_int_equal(out[1].seq, 45);
		for (long i = 0; i < n; i++)
			store_row_clear(&out[i]);
		n = store_recent(ro, "telemetry/o3", 8, out);
		assert_int_equal(n, 6);
		assert_int_equal(out[0].seq, 48);
		for (long i = 0; i < n; i++)
			store_row_clear(&out[i]);
		store_close(ro);
	}
	store_close(st);

	/* after a restart (the heads as the clean stop wrote them); then history pruned:
	 * the chain ends where it was cut */
	st = open_rw(f, 0);
	n = store_recent(st, "telemetry/a", 8, out);
	assert_int_equal(n, 6);
	for (long i = 0; i < n; i++)
		store_row_clear(&out[i]);
	store_delivered(st, 30);
	store_close(st);
	st = open_rw(f, 0);
	assert_int_equal(store_maintain(st, clock_real_ms() + KEEP_MS + 1000), 0);
	n = store_recent(st, "telemetry/a", 8, out);
	assert_int_equal(n, 3);
	assert_int_equal(out[2].seq, 34);
	for (long i = 0; i < n; i++)
		store_row_clear(&out[i]);
	store_close(st);
}

static void fill_and_crash(struct store *st, void *arg)
{
	(void)arg;
	append_n(st, ROW_TELEMETRY, 5, "telemetry/a", 10, 1000);
	append_n(st, ROW_TELEMETRY, 5, "telemetry/b", 10, 1000);
}

/* A crash after the heads were written: a restart finds the readings stored since. */
static void test_recent_after_crash(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);
	struct store_row out[16];
	long n;

	append_n(st, ROW_TELEMETRY, 3, "telemetry/a", 10, 1000);
	store_close(st);
	crash_after(f, fill_and_crash, NULL);
	st = open_rw(f, 0);
	n = store_recent(st, "telemetry/a", 16, out);
	assert_int_equal(n, 8);
	assert_int_equal(out[0].seq, 8);
	assert_int_equal(out[7].seq, 1);
	for (long i = 0; i < n; i++)
		store_row_clear(&out[i]);
	append1(st, ROW_TELEMETRY, "telemetry/b", 1000);
	n = store_recent(st, "telemetry/b", 16, out);
	assert_int_equal(n, 6);
	assert_int_equal(out[1].seq, 13);
	for (long i = 0; i < n; i++)
		store_row_clear(&out[i]);
	store_close(st);
}

/* The one damaged copy beside the database: its path into aside, or fail. */
static void find_aside(struct fx *f, char *aside, size_t len)
{
	char cmd[256];
	FILE *p;

	snprintf(cmd, sizeof cmd, "ls %s | grep -c '^sluice.db.damaged-[0-9TZ.]*$'", f->data);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(aside, (int)len, p));
	pclose(p);
	assert_string_equal(aside, "1\n");
	snprintf(cmd, sizeof cmd, "ls -d %s/sluice.db.damaged-*[0-9Z]", f->data);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(aside, (int)len, p));
	pclose(p);
	aside[strcspn(aside, "\n")] = '\0';
}

static size_t slurp(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	assert_true(fd >= 0);
	n = read(fd, buf, len);
	close(fd);
	assert_true(n >= 0);
	return (size_t)n;
}


/* A file that is not a database at all: a reader says so by name; the daemon's open
 * keeps the bytes as they were under another name and starts afresh, once. */
static void test_corrupt_database(void **state)
{
	struct fx *f = *state;
	static char junk[8192], back[16384];
	char aside[512];
	struct store *st;
	int fd;

	assert_int_equal(mkdir(f->data, 0750), 0);
	fd = open(f->db, O_WRONLY | O_CREAT | O_TRUNC, 0640);
	assert_true(fd >= 0);
	memset(junk, 'Z', sizeof junk);
	memcpy(junk, "this is not a database at all\n", 30);
	assert_int_equal(write(fd, junk, sizeof junk), sizeof junk);
	close(fd);

	assert_null(store_open_ro(f->data, f->err, sizeof f->err));
	assert_non_null(strstr(f->err, f->db));
	assert_non_null(strstr(f->err, "not a database"));

	st = open_rw(f, 0);
	assert_non_null(st);
	find_aside(f, aside, sizeof aside);
	assert_int_equal(slurp(aside, back, sizeof back), sizeof junk);
	assert_memory_equal(back, junk, sizeof junk);
	assert_int_equal(append1(st, ROW_TELEMETRY, "telemetry/a", 1000), 1);
	store_close(st);
	/* the fresh database is healthy: nothing more is set aside */
	st = open_rw(f, 0);
	assert_non_null(st);
	find_aside(f, aside, sizeof aside);
	assert_int_equal(append1(st, ROW_TELEMETRY, "telemetry/a", 1000), 2);
	store_close(st);
}


/* The database's page where table's b-tree starts ("*": the last table's). */
static long root_page(struct fx *f, const char *table)
{
	sqlite3 *db;
	sqlite3_stmt *q;
	long root;

	assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT max(rootpage) FROM sqlite_master"
					    " WHERE name = ?1 OR ?1 = '*'", -1, &q, NULL), SQLITE_OK);
	sqlite3_bind_text(q, 1, table, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	root = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	sqlite3_close(db);
	return root;
}

/* Junk over the 16 pages after the last table's root: the readings' oldest rows, where
 * a fetch of the backlog starts. */
static void damage_readings(struct fx *f)
{
	static char junk[16 * 4096];
	int fd = open(f->db, O_WRONLY);

	assert_true(fd >= 0);
	memset(junk, 0x55, sizeof junk);
	assert_int_equal(pwrite(fd, junk, sizeof junk, root_page(f, "*") * 4096), sizeof junk);
	close(fd);
}

static void damage(const char *path)
{
	static char junk[64 * 1024];
	int fd = open(path, O_WRONLY);

	assert_true(fd >= 0);
	memset(junk, 0x55, sizeof junk);
	assert_int_equal(pwrite(fd, junk, sizeof junk, 3 * 4096), sizeof junk);
	close(fd);
}


/* A file cut short (a copy interrupted, a card's lost blocks): set aside, fresh. */
static void test_truncated_database(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);
	char aside[512];
	struct stat sb;

	append_n(st, ROW_TELEMETRY, 3000, "telemetry/a", 300, 1000);
	store_close(st);
	assert_int_equal(stat(f->db, &sb), 0);
	assert_true(sb.st_size > 64 * 4096);
	assert_int_equal(truncate(f->db, sb.st_size / 2), 0);
	st = open_rw(f, 0);
	assert_non_null(st);
	find_aside(f, aside, sizeof aside);
	assert_int_equal(stat(aside, &sb), 0);
	assert_true(append1(st, ROW_TELEMETRY, "telemetry/a", 1000) > 3000);
	store_close(st);
}

/* Only the newest two damaged copies are kept: a card that keeps rotting does not
 * fill the disk with them. */
static void test_damaged_copies_bounded(void **state)
{
	struct fx *f = *state;
	char cmd[256], line[64];
	FILE *p;

	for (int i = 0; i < 4; i++) {
		struct store *st;
		int fd;

		mkdir(f->data, 0750);
		fd = open(f->db, O_WRONLY | O_CREAT | O_TRUNC, 0640);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, "garbage garbage garbage garbage!", 32), 32);
		close(fd);
		st = open_rw(f, 0);
		assert_non_null(st);
		store_close(st);
	}
	snprintf(cmd, sizeof cmd, "ls %s | grep -c '^sluice.db.damaged-'", f->data);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(line, sizeof line, p));
	pclose(p);
	assert_string_equal(line, "2\n");
}

/* A zero-length file, as a crash during the very first open could leave, is a new
 * database. */
static void test_empty_file_is_new(void **state)
{
	struct fx *f = *state;
	struct store *st;
	int fd;

	assert_int_equal(mkdir(f->data, 0750), 0);
	fd = open(f->db, O_WRONLY | O_CREAT | O_TRUNC, 0640);
	assert_true(fd >= 0);
	close(fd);
	st = open_rw(f, 0);
	assert_int_equal(append1(st, ROW_TELEMETRY, "telemetry/a", 1), 1);
	store_close(st);
}


static void sql(const char *path, const char *q)
{
	sqlite3 *db;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, q, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static void test_foreign_and_newer_database(void **state)
{
	struct fx *f = *state;
	struct store *st;

	assert_int_equal(mkdir(f->data, 0750), 0);
	sql(f->db, "CREATE TABLE accounts (id INTEGER)");
	assert_null(store_open(f->data, NULL, f->err, sizeof f->err));
	assert_non_null(strstr(f->err, "not sluice's"));
	assert_null(store_open_ro(f->data, f->err, sizeof f->err));
	assert_non_null(strstr(f->err, "not a sluice database"));
	assert_int_equal(unlink(f->db), 0);

	st = open_rw(f, 0);
	append1(st, ROW_TELEMETRY, "telemetry/a", 1);
	store_close(st);
	sql(f->db, "PRAGMA user_version = 99");
	assert_null(store_open(f->data, NULL, f->err, sizeof f->err));
	assert_non_null(strstr(f->err, "schema version 99 is newer"));
	assert_null(store_open_ro(f->data, f->err, sizeof f->err));
	assert_non_null(strstr(f->err, "schema version 99"));
}


static void test_data_dir(void **state)
{
	struct fx *f = *state;
	struct store *st;
	struct stat sb;
	char p[256];
	int fd;

	st = open_rw(f, 0);
	assert_int_equal(stat(f->data, &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	assert_int_equal(sb.st_mode & 07777, 0750);
	assert_true(exists(f->data, "sluice.db"));
	store_close(st);

	snprintf(p, sizeof p, "%s/file", f->tmp);
	fd = open(p, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_null(store_open(p, NULL, f->err, sizeof f->err));
	assert_non_null(strstr(f->err, "is not a directory"));

	snprintf(p, sizeof p, "%s/no/such", f->tmp);
	assert_null(store_open(p, NULL, f->err, sizeof f->err));
	assert_non_null(strstr(f->err, "cannot create data_dir"));
	assert_non_null(strstr(f->err, p));

	assert_null(store_open("", NULL, f->err, sizeof f->err));
}

static void test_second_writer_refused(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0), *st2;
	char pid[32];

	st2 = store_open(f->data, NULL, f->err, sizeof f->err);
	assert_null(st2);
	assert_non_null(strstr(f->err, "in use by another sluiced"));
	snprintf(pid, sizeof pid, "(pid %ld)", (long)getpid());
	assert_non_null(strstr(f->err, pid));
	/* a reader is welcome */
	st2 = open_ro(f);
	store_close(st2);
	store_close(st);
	st = open_rw(f, 0);
	store_close(st);
}


/* ---------------------------------------------------------------------------------- */
/* file modes, the clean-stop marker, sluicectl check, the spill file                  */

static mode_t mode_of(const char *dir, const char *name)
{
	char p[256];
	struct stat sb;

	snprintf(p, sizeof p, "%s/%s", dir, name);
	if (stat(p, &sb) != 0)
		print_error("no %s\n", p);
	assert_int_equal(stat(p, &sb), 0);
	return sb.st_mode & 07777;
}

/* Every file of data_dir, as the daemon leaves it while running and after a stop. */
static void assert_modes(struct fx *f, struct store *st)
{
	static const char *const running[] = { "sluice.db", "sluice.db-wal", "sluice.db-shm",
					       "sluice.lock", "sluice.seq", "sluice.spill",
					       "sluice.mark" };

	(void)st;
	for (size_t i = 0; i < sizeof running / sizeof running[0]; i++) {
		mode_t m = mode_of(f->data, running[i]);
		if (m != 0640)
			print_error("%s is %04o\n", running[i], (unsigned)m);
		assert_int_equal(m, 0640);
	}
}

/*
 * Issue 15, defect 9: with umask 022 and a data_dir that already exists 0755, every
 * file is 0640 (sluice.db was 0644: every local user could read the outbox); with
 * umask 077 too (0600 would lock sluicectl's group out); an older 0644 database is
 * brought down to 0640; damaged copies and the marker are 0640.
 */
static void test_file_modes(void **state)
{
	struct fx *f = *state;
	struct store *st;
	char p[256], aside[512];
	mode_t old;
	int fd;

	old = umask(022);
	assert_int_equal(mkdir(f->data, 0755), 0);
	st = open_rw(f, 0);
	append_n(st, ROW_TELEMETRY, 100, "telemetry/a", 100, 1000);
	assert_modes(f, st);
	store_close(st);
	assert_int_equal(mode_of(f->data, "sluice.clean"), 0640);
	/* the directory was someone else's choice: kept, and warned about (the log) */
	assert_int_equal(mode_of(f->tmp, "data"), 0755);

	/* umask 077: still 0640, not 0600 */
	umask(077);
	snprintf(p, sizeof p, "rm -f %s/sluice.*", f->data);
	assert_int_equal(system(p), 0);
	st = open_rw(f, 0);
	append_n(st, ROW_TELEMETRY, 100, "telemetry/a", 100, 1000);
	assert_modes(f, st);
	store_close(st);

	/* an older release's 0644 database (and WAL) lose what 0640 does not grant */
	umask(022);
	assert_int_equal(chmod(f->db, 0644), 0);
	st = open_rw(f, 0);
	assert_int_equal(mode_of(f->data, "sluice.db"), 0640);
	store_close(st);

	/* a damaged file set aside keeps 0640 */
	assert_int_equal(chmod(f->db, 0644), 0);
	fd = open(f->db, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "garbage garbage garbage garbage!", 32), 32);
	close(fd);
	st = open_rw(f, 0);
	find_aside(f, aside, sizeof aside);
	assert_int_equal(mode_of("/", aside + 1), 0640);
	store_close(st);

	/* a new data_dir is 0750 whatever the umask */
	umask(077);
	assert_int_equal(system((snprintf(p, sizeof p, "rm -rf %s", f->data), p)), 0);
	st = open_rw(f, 0);
	assert_int_equal(mode_of(f->tmp, "data"), 0750);
	assert_int_equal(mode_of(f->data, "sluice.db"), 0640);
	store_close(st);
	umask(old);
}

/* The log (stderr) of what runs between capture_begin and capture_end, at info level. */
static int cap_saved = -1;

static void capture_begin(struct fx *f)
{
	char p[160];
	int fd;

	snprintf(p, sizeof p, "%s/log", f->tmp);
	fflush(stderr);
	cap_saved = dup(2);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0 && cap_saved >= 0);
	dup2(fd, 2);
	close(fd);
	log_set_level(6);
}

static void capture_end(struct fx *f, char *buf, size_t len)
{
	char p[160];
	size_t n;

	log_set_level(3);
	fflush(stderr);
	dup2(cap_saved, 2);
	close(cap_saved);
	snprintf(p, sizeof p, "%s/log", f->tmp);
	n = slurp(p, buf, len - 1);
	buf[n] = '\0';
}

static struct store *open_logged(struct fx *f, char *log, size_t len)
{
	struct store *st;

	capture_begin(f);
	st = store_open(f->data, NULL, f->err, sizeof f->err);
	capture_end(f, log, len);
	if (!st)
		print_error("store_open: %s\n", f->err);
	assert_non_null(st);
	return st;
}

/*
 * Issue 15, defect 10b: every page is read at a start after a stop that was not clean
 * (here a child process SIGKILLed with the store open), or
 * when the file changed after a clean stop; not after a clean one.
 */

/*
 * Issue 15, defect 10b: every page is read at a start after a stop that was not clean
 * (here a child process SIGKILLed with the store open), or
 * when the file changed after a clean stop; not after a clean one.
 */
static void test_check_only_after_unclean_stop(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);
	struct timespec ts[2];
	struct stat sb;
	static char log[8192];
	pid_t pid;
	int status;

	append_n(st, ROW_TELEMETRY, 500, "telemetry/a", 100, 1000);
	store_close(st);
	assert_true(exists(f->data, "sluice.clean"));

	/* a clean restart: not checked, and the marker goes at once */
	st = open_logged(f, log, sizeof log);
	assert_null(strstr(log, "checked every page"));
	assert_non_null(strstr(log, "closed cleanly"));
	assert_false(exists(f->data, "sluice.clean"));
	append_n(st, ROW_TELEMETRY, 10, "telemetry/a", 100, 1000);

	/* killed while open: no marker, so the next start checks */
	store_close(st);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct store *c = store_open(f->data, NULL, f->err, sizeof f->err);
		if (!c)
			_exit(2);
		append_n(c, ROW_TELEMETRY, 10, "telemetry/a", 100, 1000);
		raise(SIGKILL);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	assert_false(exists(f->data, "sluice.clean"));
	st = open_logged(f, log, sizeof log);
	assert_non_null(strstr(log, "checked every page"));
	assert_non_null(strstr(log, "no record of a clean stop"));
	assert_int_equal(stats(st).last_seq, 520);
	store_close(st);

	/* the file changed after a clean stop (here only its time): checked */
	assert_int_equal(stat(f->db, &sb), 0);
	ts[0] = sb.st_atim;
	ts[1] = sb.st_mtim;
	ts[1].tv_sec -= 10;
	assert_int_equal(utimensat(AT_FDCWD, f->db, ts, 0), 0);
	st = open_logged(f, log, sizeof log);
	assert_non_null(strstr(log, "checked every page"));
	assert_non_null(strstr(log, "changed after the last clean stop"));
	store_close(st);

	/* a marker that is not ours: checked */
	{
		char p[200];
		int fd;
		snprintf(p, sizeof p, "%s/sluice.clean", f->data);
		fd = open(p, O_WRONLY | O_TRUNC);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, "yes\n", 4), 4);
		close(fd);
	}
	st = open_logged(f, log, sizeof log);
	assert_non_null(strstr(log, "checked every page"));
	store_close(st);
}


/* sluicectl check: sound, damaged (pages, junk), nothing there; never a file made. */
static void test_check_dir(void **state)
{
	struct fx *f = *state;
	struct store *st;
	static char what[1024];
	int fd;

	assert_int_equal(store_check_dir(f->data, what, sizeof what), -1);
	assert_non_null(strstr(what, "no database"));
	st = open_rw(f, 0);
	append_n(st, ROW_TELEMETRY, 4000, "telemetry/a", 900, 1000);
	/* beside the daemon's open handle */
	assert_int_equal(store_check_dir(f->data, what, sizeof what), 0);
	assert_non_null(strstr(what, ": ok"));
	store_close(st);
	assert_int_equal(store_check_dir(f->data, what, sizeof what), 0);
	assert_false(exists(f->data, "sluice.db-wal"));
	assert_false(exists(f->data, "sluice.db-shm"));

	damage(f->db);
	assert_int_equal(store_check_dir(f->data, what, sizeof what), 1);
	assert_non_null(strstr(what, "age")); /* "Page N: ..." or "... page ..." */
	assert_false(exists(f->data, "sluice.db-wal"));

	fd = open(f->db, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "this is not a database at all, no\n", 34), 34);
	close(fd);
	assert_int_equal(store_check_dir(f->data, what, sizeof what), 1);
	assert_non_null(strstr(what, "not a database"));
}

/* Damage inside the file (the header intact) is found by the first statement that
 * reads there: a clear error naming the file, no crash, on every path, and
 * store_damaged says so. The next open sets the file aside, carries over what it can
 * read, and seqs go on above the old ones. */
static void test_damaged_pages(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0), *ro;
	struct store_row out[8];
	struct store_stats s;
	char err[512], aside[512], *text;
	uint64_t one = 1, next;

	/* more than SQLite's page cache holds, so the open's check does not leave the
	 * damaged pages in memory */
	append_n(st, ROW_TELEMETRY, 4000, "telemetry/a", 900, 1000);
	store_close(st);
	/* opened beside the damage: the daemon's open counts the outbox and finds it */
	st = open_rw(f, 0);
	assert_false(store_damaged(st));
	damage_readings(f);
	assert_int_equal(store_fetch_unsent(st, ROW_TELEMETRY, 0, 8, out), -1);
	assert_non_null(strstr(store_error(st), f->db));
	assert_non_null(strstr(store_error(st), "malformed"));
	assert_true(store_damaged(st));
	assert_int_equal(store_append(st, out, 0, err, sizeof err), 0);
	assert_int_equal(store_mark_sent(st, &one, 1), 0);
	store_close(st);

	/* a reader opens (it reads only what it is asked for) and fails on reading */
	ro = open_ro(f);
	assert_int_equal(store_stats(ro, &s), -1);
	assert_non_null(strstr(store_error(ro), "malformed"));
	assert_int_equal(store_fetch_unsent(ro, ROW_TELEMETRY, 0, 8, out), -1);
	store_close(ro);

	/* the daemon's next open: set aside, fresh, what was readable carried over */
	st = open_rw(f, 0);
	assert_non_null(st);
	assert_false(store_damaged(st));
	find_aside(f, aside, sizeof aside);
	s = stats(st);
	assert_true(s.unsent > 0);
	assert_true(s.unsent < 4000);
	assert_int_equal(s.unsent, s.rows);
	assert_true(s.last_seq >= 4000);
	/* what could not be read is counted, as skipped seqs */
	assert_int_equal(s.unsent + s.skipped, 4000);
	/* carried-over rows keep their seqs, device and values, in order */
	assert_int_equal(store_fetch_unsent(st, ROW_TELEMETRY, 0, 8, out), 8);
	assert_true(out[0].seq >= 1 && out[7].seq <= 4000 && out[0].seq < out[7].seq);
	assert_string_equal(store_device(st, out[0].dev)->id, "a");
	text = reading_text(&out[0]);
	assert_int_equal(strlen(text), 900);
	free(text);
	for (int i = 0; i < 8; i++)
		store_row_clear(&out[i]);
	next = append1(st, ROW_TELEMETRY, "telemetry/a", 1000);
	assert_true(next > 4000);
	check_counts(f, st);
	store_close(st);
}

/* Found damaged while running: store_reopen replaces the file under the same lock,
 * and the handle works again, under the same device numbers. */
static void test_reopen_after_damage(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);
	struct store_row out[8];
	char err[512], aside[512];
	uint32_t dev;
	long n;

	append_n(st, ROW_TELEMETRY, 4000, "telemetry/a", 900, 1000);
	store_close(st);
	st = open_rw(f, 0);
	dev = dev_of(st, "a");
	damage_readings(f);
	assert_int_equal(store_fetch_unsent(st, ROW_TELEMETRY, 0, 8, out), -1);
	assert_true(store_damaged(st));
	assert_int_equal(store_reopen(st, err, sizeof err), 0);
	assert_false(store_damaged(st));
	find_aside(f, aside, sizeof aside);
	n = store_fetch_unsent(st, ROW_TELEMETRY, 0, 8, out);
	assert_true(n > 0);
	for (long i = 0; i < n; i++)
		store_row_clear(&out[i]);
	/* the devices the core recorded keep their numbers */
	assert_int_equal(dev_of(st, "a"), dev);
	assert_true(append1(st, ROW_TELEMETRY, "telemetry/a", 1000) > 4000);
	/* the lock was kept throughout */
	assert_null(store_open(f->data, NULL, f->err, sizeof f->err));
	assert_non_null(strstr(f->err, "in use"));
	store_close(st);
}

/* The rows set aside are carried into a fresh database as such: each stays a counted
 * gap (set aside) until delivered, whatever the delivery mark says. */
static void test_salvage_keeps_aside(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);
	static uint64_t seqs[8192];
	char aside[512];
	struct store_stats s;

	append_n(st, ROW_TELEMETRY, 10, "telemetry/a", 10, 1000);
	assert_int_equal(store_aside_put(st, 3, "too large"), 1);
	append1(st, ROW_ALERT, "alert/r/c", 1000); /* 11 */
	assert_int_equal(store_aside_put(st, 11, "not authorised"), 1);
	store_delivered(st, 10);
	append_n(st, ROW_TELEMETRY, 4000, "telemetry/a", 900, 1000);
	store_close(st);
	/* damage past the first pages: the rows set aside sit before it */
	{
		static char junk[64 * 1024];
		int fd = open(f->db, O_WRONLY);
		assert_true(fd >= 0);
		memset(junk, 0x55, sizeof junk);
		assert_int_equal(pwrite(fd, junk, sizeof junk, 400 * 4096), sizeof junk);
		close(fd);
	}
	/* sluice.clean says the file is as it left it: a changed file is checked */
	st = open_rw(f, 0);
	find_aside(f, aside, sizeof aside);
	s = stats(st);
	assert_int_equal(s.aside, 2);
	/* every undelivered reading carried over or counted (skipped: unreadable) */
	assert_int_equal(fetch_all(st, ROW_TELEMETRY, seqs, 8192) + s.skipped, 4000);
	{
		struct store_aside list[4];
		assert_int_equal(store_aside_list(st, 4, list), 2);
		assert_int_equal(list[0].row.seq, 3);
		assert_string_equal(list[0].reason, "too large");
		assert_int_equal(list[1].row.seq, 11);
		assert_string_equal(list[1].row.topic, "alert/r/c");
		store_aside_clear(&list[0]);
		store_aside_clear(&list[1]);
	}
	check_counts(f, st);
	store_close(st);
}

/* ---- rows set aside ---------------------------------------------------------------- */

/* The seqs store_fetch_aside gives from after on, in order. */
static size_t fetch_aside_all(struct store *st, uint64_t *seqs, size_t cap)
{
	struct store_row rows[4];
	uint64_t after = 0;
	size_t n = 0;
	long got;

	while ((got = store_fetch_aside(st, after, 4, rows)) > 0) {
		for (long i = 0; i < got; i++) {
			assert_true(rows[i].seq > after);
			after = rows[i].seq;
			assert_true(n < cap);
			seqs[n++] = rows[i].seq;
			store_row_clear(&rows[i]);
		}
	}
	assert_int_equal(got, 0);
	return n;
}

static void test_aside(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);
	struct store_aside list[8];
	uint64_t seqs[16], one;
	struct store_stats s;
	int64_t t0 = clock_real_ms();

	/* seq 1..5 telemetry (ts 100..500), 6 an alert */
	for (int i = 1; i <= 5; i++)
		append1(st, ROW_TELEMETRY, "telemetry/a", 100 * i);
	append1(st, ROW_ALERT, "alert/r/c", 600);
	one = 6;
	assert_int_equal(store_mark_sent(st, &one, 1), 0);

	assert_int_equal(store_aside_put(st, 2, "packet too large"), 1);
	/* again, a sent row, a row that does not exist: nothing */
	assert_int_equal(store_aside_put(st, 2, "again"), 0);
	assert_int_equal(store_aside_put(st, 6, "sent"), 0);
	assert_int_equal(store_aside_put(st, 99, "none"), 1); /* handed out, not stored */
	assert_int_equal(stats(st).aside, 2);

	/* the mark passes it, it stays undelivered: not fetched, not in the backlog */
	store_delivered(st, 2);
	assert_int_equal(fetch_all(st, ROW_TELEMETRY, seqs, 16), 3);
	assert_int_equal(seqs[0], 3);
	s = stats(st);
	assert_int_equal(s.unsent, 3);
	assert_int_equal(s.aside, 2);
	assert_int_equal(s.oldest_unsent_ms, 300);
	assert_int_equal(s.rows, 6);

	/* for a retry, and for sluicectl, with when and why */
	assert_int_equal(fetch_aside_all(st, seqs, 16), 1);
	assert_int_equal(seqs[0], 2);
	assert_int_equal(store_aside_list(st, 8, list), 1);
	assert_int_equal(list[0].row.seq, 2);
	assert_int_equal(list[0].row.ts_ms, 200);
	assert_int_equal(list[0].row.dev, dev_of(st, "a"));
	assert_string_equal(list[0].reason, "packet too large");
	assert_true(list[0].since_ms >= t0 && list[0].since_ms <= clock_real_ms());
	assert_false(list[0].superseded);
	store_aside_clear(&list[0]);
	assert_null(list[0].reason);

	/* it survives a restart, and a reader sees it too (the one not stored is gone) */
	store_close(st);
	st = open_rw(f, 0);
	assert_int_equal(stats(st).aside, 1);
	assert_int_equal(fetch_all(st, ROW_TELEMETRY, seqs, 16), 3);
	check_counts(f, st);

	/* delivered at last (a retry): counted neither as set aside nor as backlog */
	one = 2;
	assert_int_equal(store_mark_sent(st, &one, 1), 0);
	s = stats(st);
	assert_int_equal(s.aside, 0);
	assert_int_equal(s.unsent, 3);
	assert_int_equal(fetch_aside_all(st, seqs, 16), 0);
	assert_int_equal(store_aside_list(st, 8, list), 0);
	check_counts(f, st);
	store_close(st);
}

/* A reading refused before it was stored (published at once) is set aside when it is. */
static void test_aside_before_stored(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);
	struct store_row r[3];
	uint64_t seqs[8];
	char err[256];

	for (int i = 0; i < 3; i++) {
		reading_row(&r[i], dev_of(st, "a"), 100 + i, 4, 0);
		r[i].seq = store_next_seq(st);
	}
	assert_int_equal(store_aside_put(st, r[1].seq, "too large"), 1);
	store_delivered(st, r[2].seq); /* the others acknowledged, the mark past them */
	assert_int_equal(store_append(st, r, 3, err, sizeof err), 0);
	for (int i = 0; i < 3; i++)
		store_row_clear(&r[i]);
	assert_int_equal(stats(st).aside, 1);
	assert_int_equal(stats(st).unsent, 0);
	assert_int_equal(fetch_aside_all(st, seqs, 8), 1);
	assert_int_equal(seqs[0], 2);
	check_counts(f, st);
	store_close(st);
}

/* A state transition set aside is retried only while it is its topic's newest: sent
 * after a newer one, the retained state would go back. */
static void test_aside_superseded_state(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);
	struct store_aside list[8];
	uint64_t seqs[16];
	long n;

	append1(st, ROW_ALERT, "alert/r/c", 100);      /* 1 */
	append1(st, ROW_TELEMETRY, "telemetry/a", 200); /* 2 */
	append1(st, ROW_ALERT, "alert/r/d", 300);      /* 3 */
	assert_int_equal(store_aside_put(st, 1, "not authorised"), 1);
	assert_int_equal(store_aside_put(st, 2, "too large"), 1);
	assert_int_equal(store_aside_put(st, 3, "not authorised"), 1);
	assert_int_equal(fetch_aside_all(st, seqs, 16), 3);

	append1(st, ROW_ALERT, "alert/r/c", 400);      /* 4 supersedes 1 */
	assert_int_equal(fetch_aside_all(st, seqs, 16), 2);
	assert_int_equal(seqs[0], 2);
	assert_int_equal(seqs[1], 3);
	/* still set aside, and counted: sluicectl says why it is not retried */
	assert_int_equal(stats(st).aside, 3);
	n = store_aside_list(st, 8, list);
	assert_int_equal(n, 3);
	assert_true(list[0].superseded);
	assert_false(list[1].superseded);
	assert_false(list[2].superseded);
	for (long i = 0; i < n; i++)
		store_aside_clear(&list[i]);
	/* the list stops at max */
	assert_int_equal(store_aside_list(st, 2, list), 2);
	store_aside_clear(&list[0]);
	store_aside_clear(&list[1]);
	check_counts(f, st);
	store_close(st);
}

/* The size bound drops a telemetry row set aside like any unsent reading: counted as
 * dropped then, no longer as set aside. */
static void test_aside_dropped_by_size_bound(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, MiB);
	struct store_stats s;

	append_n(st, ROW_TELEMETRY, 3000, "telemetry/a", 400, 1000);
	for (uint64_t q = 1; q <= 10; q++)
		assert_int_equal(store_aside_put(st, q, "too large"), 1);
	assert_int_equal(store_aside_put(st, 2900, "too large"), 1);
	store_delivered(st, 10);
	assert_int_equal(stats(st).aside, 11);
	assert_int_equal(store_maintain(st, clock_real_ms()), 0);
	s = stats(st);
	assert_true(s.dropped > 10 && s.dropped < 2900);
	assert_int_equal(s.aside, 1);
	assert_int_equal(s.unsent + s.aside + s.dropped, 3000);
	check_counts(f, st);
	store_close(st);
}

/* ---- schema 2 -> 3 --------------------------------------------------------------------- */

/* A database as the release before wrote it: the schema of migrations 0 -> 2 (as they
 * were released), an outbox of text rows. */
static void make_v2(struct fx *f, bool v1)
{
	char q[4096];

	assert_int_equal(mkdir(f->data, 0750), 0);
	snprintf(q, sizeof q,
		 "PRAGMA page_size = 4096; PRAGMA auto_vacuum = INCREMENTAL;"
		 "PRAGMA journal_mode = WAL;"
		 "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
		 " kind INTEGER NOT NULL CHECK (kind IN (0, 1)), ts INTEGER NOT NULL,"
		 " topic TEXT NOT NULL, body TEXT NOT NULL, retain INTEGER NOT NULL DEFAULT 0,"
		 " sent_at INTEGER);"
		 "CREATE INDEX outbox_unsent ON outbox (kind, seq) WHERE sent_at IS NULL;"
		 "CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;"
		 "CREATE INDEX outbox_topic ON outbox (topic, seq);"
		 "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;"
		 "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
		 "INSERT INTO counters (name, value) VALUES ('dropped', 3);"
		 "PRAGMA application_id = 1936487779;"
		 "%s"
		 "INSERT INTO outbox (kind, ts, topic, body, retain, sent_at) VALUES"
		 " (0, 100, 'telemetry/a', '\"ts\":100,\"values\":{\"v\":1}', 0, 150),"
		 " (1, 110, 'alert/r/c', '\"ts\":110,\"state\":\"firing\"', 1, 160),"
		 " (0, 120, 'telemetry/a', '\"ts\":120,\"values\":{\"v\":2}', 0, 170),"
		 " (0, 130, 'telemetry/b', '\"ts\":130,\"values\":{\"v\":3}', 0, NULL),"
		 " (1, 140, 'device/a', '\"ts\":140,\"state\":\"offline\"', 1, NULL),"
		 " (0, 150, 'telemetry/a', '\"ts\":150,\"values\":{\"v\":4}', 0, NULL),"
		 " (0, 160, 'telemetry/a', '\"ts\":160,\"values\":{\"v\":5}', 0, NULL);"
		 "DELETE FROM outbox WHERE seq = 7;"
		 "INSERT INTO meta (key, value) VALUES ('alert_state', 'S');"
		 "PRAGMA user_version = %d;",
		 v1 ? "" : "CREATE TABLE aside (seq INTEGER PRIMARY KEY, since INTEGER NOT NULL,"
			   " reason TEXT NOT NULL); INSERT INTO aside VALUES (4, 99, 'too large');",
		 v1 ? 1 : 2);
	sql(f->db, q);
}

/*
 * A database of the release before keeps its backlog: its readings go out as they are
 * (their text), in seq order before anything newer, marked delivered by the mark; its
 * transitions as transitions; its rows set aside stay so; seqs go on after its last
 * (AUTOINCREMENT's, a pruned row's too); sluicectl reads it all.
 */
static void test_migrate_from_v2(void **state)
{
	struct fx *f = *state;
	struct store *st;
	struct store_row out[8], *latest;
	uint64_t seqs[16];
	struct store_stats s;
	char *v;
	long n;

	make_v2(f, false);
	assert_null(store_open_ro(f->data, f->err, sizeof f->err));
	assert_non_null(strstr(f->err, "start sluiced once to migrate it"));

	st = open_rw(f, 0);
	s = stats(st);
	assert_int_equal(s.rows, 6);
	assert_int_equal(s.unsent, 2); /* 6 (4 set aside), and the device state 5 */
	assert_int_equal(s.aside, 1);
	assert_int_equal(s.dropped, 3);
	assert_int_equal(s.last_seq, 7);
	assert_int_equal(s.skipped, 0);
	n = store_fetch_unsent(st, ROW_TELEMETRY, 0, 8, out);
	assert_int_equal(n, 1);
	assert_int_equal(out[0].seq, 6);
	assert_int_equal(out[0].dev, 0);
	assert_string_equal(out[0].topic, "telemetry/a");
	assert_string_equal(out[0].body, "\"ts\":150,\"values\":{\"v\":4}");
	store_row_clear(&out[0]);
	assert_int_equal(fetch_all(st, ROW_ALERT, seqs, 16), 1);
	assert_int_equal(seqs[0], 5);
	assert_int_equal(fetch_aside_all(st, seqs, 16), 1);
	assert_int_equal(seqs[0], 4);
	v = NULL;
	assert_int_equal(store_meta_get(st, "alert_state", &v), 0);
	assert_string_equal(v, "S");
	free(v);

	/* new readings after them, in seq order; the old ones delivered by the mark */
	assert_int_equal(append1(st, ROW_TELEMETRY, "telemetry/a", 200), 8);
	assert_int_equal(fetch_all(st, ROW_TELEMETRY, seqs, 16), 2);
	assert_int_equal(seqs[0], 6);
	assert_int_equal(seqs[1], 8);
	store_delivered(st, 6);
	assert_int_equal(fetch_all(st, ROW_TELEMETRY, seqs, 16), 1);
	assert_int_equal(stats(st).unsent, 2);
	check_counts(f, st);

	/* sluicectl tail: the new reading, then the older release's text rows */
	n = store_recent(st, "telemetry/a", 8, out);
	assert_int_equal(n, 4);
	assert_int_equal(out[0].seq, 8);
	assert_true(out[0].dev != 0);
	assert_int_equal(out[1].seq, 6);
	assert_string_equal(out[1].body, "\"ts\":150,\"values\":{\"v\":4}");
	assert_int_equal(out[3].seq, 1);
	for (long i = 0; i < n; i++)
		store_row_clear(&out[i]);
	n = store_latest(st, "alert/", &latest);
	assert_int_equal(n, 1);
	assert_int_equal(latest[0].seq, 2);
	store_row_clear(&latest[0]);
	free(latest);
	store_close(st);

	st = open_rw(f, 0);
	assert_int_equal(fetch_all(st, ROW_TELEMETRY, seqs, 16), 1);
	assert_int_equal(seqs[0], 8);
	store_close(st);
	st = open_ro(f);
	assert_int_equal(stats(st).unsent, 2);
	assert_int_equal(stats(st).aside, 1);
	store_close(st);
}

/* Schema 1 (before rows could be set aside) is migrated too. */
static void test_migrate_from_v1(void **state)
{
	struct fx *f = *state;
	struct store *st;
	uint64_t seqs[16];

	make_v2(f, true);
	st = open_rw(f, 0);
	assert_int_equal(fetch_all(st, ROW_TELEMETRY, seqs, 16), 2);
	assert_int_equal(seqs[0], 4);
	assert_int_equal(store_aside_put(st, 4, "too large"), 1);
	assert_int_equal(stats(st).unsent, 2);
	assert_int_equal(append1(st, ROW_ALERT, "alert/r/c", 1000), 8);
	check_counts(f, st);
	store_close(st);
}

static struct store_row mkrow(int kind, int64_t ts, const char *topic, const char *body)
{
	return (struct store_row){ .kind = kind, .ts_ms = ts, .topic = (char *)topic,
				   .body = (char *)body, .retain = kind == ROW_ALERT };
}

/* All unsent rows of a kind after seq `after`, in order (caller clears them). */
static long fetch(struct store *st, int kind, uint64_t after, struct store_row *out, size_t max)
{
	long n = store_fetch_unsent(st, kind, after, max, out);

	assert_true(n >= 0);
	return n;
}

static void clear_rows(struct store_row *r, long n)
{
	for (long i = 0; i < n; i++)
		store_row_clear(&r[i]);
}

static char *meta(struct store *st, const char *key)
{
	char *v = NULL;

	assert_int_equal(store_meta_get(st, key, &v), 0);
	return v;
}

/*
 * Issue 15, defect 10a: rows a stopping daemon holds (the store refused them) go to
 * the spill file and are stored first at the next start: in order, with their
 * timestamps, kinds, devices and the seqs they were handed (those without one after
 * the last), the engine state with them; never twice (not at a second start, not after
 * a crash between storing them and emptying the file).
 */
static void test_spill_round_trip(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);
	struct store_row held[4], out[16];
	char p[200], copy[200], cmd[512], *v;
	long n;

	append_n(st, ROW_TELEMETRY, 5, "telemetry/a", 10, 1000);
	reading_row(&held[0], dev_of(st, "a"), 5001, 3, 'a');
	held[0].seq = store_next_seq(st);
	held[1] = mkrow(ROW_ALERT, 5002, "alert/r/level", "\"ts\":5002,\"state\":\"firing\"");
	held[1].seq = store_next_seq(st);
	reading_row(&held[2], dev_of(st, "b"), 5003, 6, 'b');
	reading_row(&held[3], dev_of(st, "a"), 5004, 4, 'c');
	assert_int_equal(store_spill(st, held, 4, "alert_state", "S1"), 0);
	store_close(st);
	assert_int_equal(mode_of(f->data, "sluice.spill"), 0640);
	snprintf(p, sizeof p, "%s/sluice.spill", f->data);
	snprintf(copy, sizeof copy, "%s/spill.copy", f->tmp);
	snprintf(cmd, sizeof cmd, "cp %s %s", p, copy);
	assert_int_equal(system(cmd), 0);

	/* a new config: the devices the spilled readings name are found by description */
	ntdev = 0;
	dev_of(NULL, "z");
	st = open_rw(f, 0);
	assert_int_equal(stats(st).last_seq, 9);
	assert_int_equal(stats(st).unsent, 9);
	n = fetch(st, ROW_TELEMETRY, 5, out, 16);
	assert_int_equal(n, 3);
	assert_int_equal(out[0].seq, 6);
	assert_int_equal(out[0].ts_ms, 5001);
	assert_string_equal(store_device(st, out[0].dev)->id, "a");
	v = reading_text(&out[1]);
	assert_string_equal(v, "bbbbbb");
	free(v);
	assert_string_equal(store_device(st, out[1].dev)->id, "b");
	assert_int_equal(out[1].seq, 8);
	assert_int_equal(out[2].ts_ms, 5004);
	assert_int_equal(out[2].seq, 9);
	clear_rows(out, n);
	n = fetch(st, ROW_ALERT, 0, out, 16);
	assert_int_equal(n, 1);
	assert_int_equal(out[0].seq, 7);
	assert_true(out[0].retain);
	assert_string_equal(out[0].topic, "alert/r/level");
	clear_rows(out, n);
	v = meta(st, "alert_state");
	assert_string_equal(v, "S1");
	free(v);
	assert_int_equal(stats(st).lost_at_stop, 0);
	assert_int_equal(stats(st).skipped, 0);
	/* the chain of a goes through the spilled readings */
	n = store_recent(st, "telemetry/a", 16, out);
	assert_int_equal(n, 7);
	assert_int_equal(out[0].seq, 9);
	assert_int_equal(out[1].seq, 6);
	clear_rows(out, n);
	check_counts(f, st);
	store_close(st);

	/* a second start takes nothing */
	st = open_rw(f, 0);
	assert_int_equal(stats(st).last_seq, 9);
	store_close(st);

	/* the file as it was before it was emptied (a crash between the two): its id is
	 * known, so nothing is stored twice */
	snprintf(cmd, sizeof cmd, "cp %s %s", copy, p);
	assert_int_equal(system(cmd), 0);
	st = open_rw(f, 0);
	assert_int_equal(stats(st).last_seq, 9);
	assert_int_equal(append1(st, ROW_TELEMETRY, "telemetry/a", 6000), 10);
	/* and the next spill, in that same file, is a new one */
	held[3].seq = 0;
	assert_int_equal(store_spill(st, &held[3], 1, NULL, NULL), 0);
	store_close(st);
	st = open_rw(f, 0);
	assert_int_equal(stats(st).last_seq, 11);
	store_close(st);
	for (int i = 0; i < 4; i++)
		if (held[i].dev)
			store_row_clear(&held[i]);
}

/* Held rows meet a spill that cannot be stored yet (another writer holds the lock, as a
 * full disk would refuse): the spill's state is what store_meta_get says, every write
 * waits for the spill to go in first, and the next stop's rows go after it in the file. */
static void test_spill_pending(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);
	struct store_row held[3], out[8], r;
	sqlite3 *db;
	char err[512], *v;
	long n;

	append_n(st, ROW_TELEMETRY, 3, "telemetry/a", 10, 1000);
	for (int i = 0; i < 3; i++)
		reading_row(&held[i], dev_of(st, "a"), 7001 + i, 4, 0);
	assert_int_equal(store_meta_put(st, "alert_state", "S0"), 0);
	assert_int_equal(store_spill(st, held, 2, "alert_state", "S1"), 0);
	store_close(st);

	assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	st = open_rw(f, 0); /* the spill cannot go in: the writer holds the lock */
	v = meta(st, "alert_state");
	assert_string_equal(v, "S1");
	free(v);
	r = mkrow(ROW_ALERT, 7100, "alert/r/c", "\"ts\":7100");
	assert_int_equal(store_append(st, &r, 1, err, sizeof err), -1);
	assert_int_equal(r.seq, 0);
	assert_int_equal(store_meta_put(st, "alert_state", "S9"), -1);
	assert_int_equal(store_spill(st, &held[2], 1, "alert_state", "S2"), 0);
	store_close(st);
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(db);

	st = open_rw(f, 0);
	n = fetch(st, ROW_TELEMETRY, 3, out, 8);
	assert_int_equal(n, 3);
	for (long i = 0; i < n; i++) {
		assert_int_equal(out[i].seq, 4 + (uint64_t)i);
		assert_int_equal(out[i].ts_ms, 7001 + i);
	}
	clear_rows(out, n);
	v = meta(st, "alert_state");
	assert_string_equal(v, "S2");
	free(v);
	store_close(st);
	clear_rows(held, 3);
}

/* Not all rows fit (a file size limit at the stop): the alerts and the newest readings
 * are kept, in order; the others are counted in lost_at_stop at the next start. */
static void test_spill_partial(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);
	static char bodies[12][600];
	struct store_row held[12], out[16];
	struct rlimit lim, old;
	size_t alert = 28 + strlen("alert/r/leve") + 599, rdg = 28 + 4 + 1 + 1 + 2 + 599;
	size_t dev = 28 + 4 + 10;
	long n;

	for (int i = 0; i < 12; i++) {
		memset(bodies[i], 'a' + i, 599);
		bodies[i][599] = '\0';
		if (i == 1 || i == 5)
			held[i] = mkrow(ROW_ALERT, 100 + i, "alert/r/leve", bodies[i]);
		else
			reading_row(&held[i], dev_of(st, "a"), 100 + i, 599, 'a' + i);
	}
	append_n(st, ROW_TELEMETRY, 2, "telemetry/a", 10, 1000);
	/* room for the header, the device, the two alerts and three readings, not four */
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 64 + dev + 2 * alert + 3 * rdg + rdg / 2;
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	assert_int_equal(store_spill(st, held, 12, NULL, NULL), 7);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	store_close(st);

	st = open_rw(f, 0);
	assert_int_equal(stats(st).lost_at_stop, 7);
	assert_int_equal(stats(st).last_seq, 7);
	n = fetch(st, ROW_ALERT, 0, out, 16);
	assert_int_equal(n, 2);
	assert_int_equal(out[0].ts_ms, 101);
	assert_int_equal(out[1].ts_ms, 105);
	clear_rows(out, n);
	n = fetch(st, ROW_TELEMETRY, 2, out, 16);
	assert_int_equal(n, 3);
	assert_int_equal(out[0].ts_ms, 109);
	assert_int_equal(out[1].ts_ms, 110);
	assert_int_equal(out[2].ts_ms, 111);
	assert_int_equal(out[2].seq, 7);
	clear_rows(out, n);
	check_counts(f, st);
	store_close(st);
	for (int i = 0; i < 12; i++)
		if (held[i].dev)
			store_row_clear(&held[i]);
}

/* A damaged spill file never stops a start: set aside (0640), said, counted when its
 * header still says how many rows it held; the store goes on, with a fresh spill. */
static void test_spill_damaged(void **state)
{
	struct fx *f = *state;
	struct store *st = open_rw(f, 0);
	struct store_row held[2];
	char p[200];
	int fd;

	held[0] = mkrow(ROW_ALERT, 1, "alert/r/c", "\"ts\":1");
	held[1] = mkrow(ROW_ALERT, 2, "alert/r/c", "\"ts\":2");
	assert_int_equal(store_spill(st, held, 2, NULL, NULL), 0);
	store_close(st);
	/* a record's byte flipped: the header is sound and counts two rows */
	snprintf(p, sizeof p, "%s/sluice.spill", f->data);
	fd = open(p, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "X", 1, 64 + 22), 1);
	close(fd);
	st = open_rw(f, 0);
	assert_true(exists(f->data, "sluice.spill.damaged"));
	assert_int_equal(mode_of(f->data, "sluice.spill.damaged"), 0640);
	assert_int_equal(stats(st).lost_at_stop, 2);
	assert_int_equal(stats(st).last_seq, 0);
	assert_int_equal(store_spill(st, held, 2, NULL, NULL), 0);
	store_close(st);
	/* junk from the first byte: how many is unknown, nothing counted */
	fd = open(p, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "junk junk junk", 14, 0), 14);
	close(fd);
	st = open_rw(f, 0);
	assert_int_equal(stats(st).lost_at_stop, 2);
	assert_int_equal(stats(st).last_seq, 0);
	assert_int_equal(append1(st, ROW_TELEMETRY, "telemetry/a", 3), 1);
	store_close(st);
}

/* A spill file of the release before (version 1: text rows, no seqs) is still read:
 * its readings go out as text, before anything newer. */
static void test_spill_v1(void **state)
{
	struct fx *f = *state;
	static unsigned char buf[512];
	const char *topic = "telemetry/a", *body = "\"ts\":9,\"values\":{\"v\":1}";
	size_t tl = strlen(topic), bl = strlen(body), rec = 20 + tl + bl;
	struct store_row out[4];
	struct store *st;
	char p[200];
	uint32_t crc;
	int fd;

	st = open_rw(f, 0);
	append1(st, ROW_ALERT, "alert/r/c", 1);
	store_close(st);
	memset(buf, 0, sizeof buf);
	memcpy(buf, "SLUSPILL", 8);
	buf[8] = 1;                         /* version 1 */
	buf[16] = 7;                        /* id 7 */
	buf[24] = (unsigned char)rec;       /* payload */
	buf[36] = 1;                        /* one row */
	buf[64] = 1;                        /* a row, telemetry, not retained */
	buf[68] = 9;                        /* ts 9 */
	buf[76] = (unsigned char)tl;
	buf[80] = (unsigned char)bl;
	memcpy(buf + 84, topic, tl);
	memcpy(buf + 84 + tl, body, bl);
	crc = spill_crc32(0, buf + 64, rec);
	for (int i = 0; i < 4; i++)
		buf[32 + i] = (unsigned char)(crc >> (8 * i));
	crc = spill_crc32(0, buf, 64);
	for (int i = 0; i < 4; i++)
		buf[12 + i] = (unsigned char)(crc >> (8 * i));
	snprintf(p, sizeof p, "%s/sluice.spill", f->data);
	fd = open(p, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, 64 + rec), (ssize_t)(64 + rec));
	close(fd);
	st = open_rw(f, 0);
	assert_int_equal(store_fetch_unsent(st, ROW_TELEMETRY, 0, 4, out), 1);
	assert_int_equal(out[0].seq, 2);
	assert_int_equal(out[0].dev, 0);
	assert_string_equal(out[0].body, body);
	store_row_clear(&out[0]);
	assert_int_equal(append1(st, ROW_TELEMETRY, "telemetry/a", 10), 3);
	assert_int_equal(store_fetch_unsent(st, ROW_TELEMETRY, 0, 4, out), 2);
	assert_int_equal(out[1].seq, 3);
	clear_rows(out, 2);
	check_counts(f, st);
	store_close(st);
}

int main(void)
{
	/* warnings about drops are expected here; keep the output to failures */
	log_init(3, "test_store");
	umask(022);
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_seq_starts_at_one),
		T(test_seq_survives_reopen),
		T(test_seq_not_reused_after_prune),
		T(test_seq_handed_before_stored),
		T(test_seq_survives_lost_database),
		T(test_stream),
		T(test_append_batch_is_one_transaction),
		T(test_delivery_mark),
		T(test_delivery_mark_lost_in_a_crash),
		T(test_fetch_order_after_and_kinds),
		T(test_values_round_trip),
		T(test_devices),
		T(test_keep_sent_pruning),
		T(test_max_size_drops_history_first),
		T(test_max_size_drops_oldest_telemetry_never_alerts),
		T(test_max_size_spares_rows_in_flight),
		T(test_max_size_alerts_only_stay),
		T(test_max_size_holds_over_time),
		T(test_durability_full),
		T(test_ro_missing),
		T(test_ro_refuses_fifo),
		T(test_ro_beside_daemon),
		T(test_meta),
		T(test_stats),
		T(test_recent),
		T(test_recent_after_crash),
		T(test_corrupt_database),
		T(test_damaged_pages),
		T(test_truncated_database),
		T(test_reopen_after_damage),
		T(test_salvage_keeps_aside),
		T(test_damaged_copies_bounded),
		T(test_empty_file_is_new),
		T(test_foreign_and_newer_database),
		T(test_data_dir),
		T(test_second_writer_refused),
		T(test_file_modes),
		T(test_check_only_after_unclean_stop),
		T(test_check_dir),
		T(test_spill_round_trip),
		T(test_spill_pending),
		T(test_spill_partial),
		T(test_spill_damaged),
		T(test_spill_v1),
		T(test_aside),
		T(test_aside_before_stored),
		T(test_aside_superseded_state),
		T(test_aside_dropped_by_size_bound),
		T(test_migrate_from_v2),
		T(test_migrate_from_v1),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
