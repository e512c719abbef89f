/*
 * crashvfs: a SQLite VFS for the power-loss test (test_powerloss.py), in the design of
 * SQLite's own crash tests (src/test6.c): every write goes through to the real file as
 * usual, and is also recorded; a sync makes what was recorded durable. After sluiced is
 * SIGKILLed, the test rebuilds each file as a power cut would have left it: what was
 * synced, plus some of what was not (a random subset of the writes since, some of them
 * torn at 512-byte sectors).
 *
 * For each database file and WAL under $CRASHVFS_DIR (the data directory):
 *   PATH.durable   the file as the last sync left it (a copy at the first open)
 *   PATH.pending   the writes and truncations since, in order: records of
 *                  u8 'W', u64 offset, u32 length, bytes / u8 'T', u64 size
 * xSync applies PATH.pending to PATH.durable and empties it. The -shm index is not
 * recorded: after a power cut SQLite rebuilds it from the WAL (the test deletes it).
 *
 * Test-only code: never linked into a program. The test builds it as a shared object
 * and loads it with LD_PRELOAD, where its constructor registers it as the default VFS
 * (wrapping the one that was), for the files under $CRASHVFS_DIR only; with that unset
 * it does nothing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

static sqlite3_vfs *real_vfs;
static sqlite3_vfs crash_vfs;
static const char *crash_dir;

struct cfile {
	sqlite3_file base;
	int durable, pending; /* -1: not recorded */
	char path[PATH_MAX];
	sqlite3_file *real;   /* follows this struct */
};

static int must(ssize_t got, size_t want)
{
	return got == (ssize_t)want ? 0 : -1;
}

static int write_all(int fd, const void *p, size_t n, off_t off)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = off < 0 ? write(fd, c, n) : pwrite(fd, c, n, off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
		if (off >= 0)
			off += w;
	}
	return 0;
}

/* The pending writes onto the durable copy, then none pending. */
static int cf_settle(struct cfile *f)
{
	off_t end = lseek(f->pending, 0, SEEK_END), at = 0;
	unsigned char head[13];
	char *buf = NULL;
	int rc = 0;

	while (at < end) {
		uint64_t off;
		uint32_t len;

		if (must(pread(f->pending, head, 1, at), 1) < 0) {
			rc = -1;
			break;
		}
		if (head[0] == 'T') {
			if (must(pread(f->pending, &off, 8, at + 1), 8) < 0 ||
			    ftruncate(f->durable, (off_t)off) < 0) {
				rc = -1;
				break;
			}
			at += 9;
			continue;
		}
		if (must(pread(f->pending, &off, 8, at + 1), 8) < 0 ||
		    must(pread(f->pending, &len, 4, at + 9), 4) < 0) {
			rc = -1;
			break;
		}
		free(buf);
		buf = malloc(len ? len : 1);
		if (!buf || must(pread(f->pending, buf, len, at + 13), len) < 0 ||
		    write_all(f->durable, buf, len, (off_t)off) < 0) {
			rc = -1;
			break;
		}
		at += 13 + len;
	}
	free(buf);
	if (rc == 0 && ftruncate(f->pending, 0) < 0)
		rc = -1;
	return rc;
}

static int cf_close(sqlite3_file *p)
{
	struct cfile *f = (struct cfile *)p;
	int rc = f->real->pMethods ? f->real->pMethods->xClose(f->real) : SQLITE_OK;

	if (f->durable >= 0)
		close(f->durable);
	if (f->pending >= 0)
		close(f->pending);
	return rc;
}

static int cf_read(sqlite3_file *p, void *buf, int n, sqlite3_int64 off)
{
	struct cfile *f = (struct cfile *)p;

	return f->real->pMethods->xRead(f->real, buf, n, off);
}

static int cf_write(sqlite3_file *p, const void *buf, int n, sqlite3_int64 off)
{
	struct cfile *f = (struct cfile *)p;
	int rc = f->real->pMethods->xWrite(f->real, buf, n, off);

	if (rc == SQLITE_OK && f->pending >= 0) {
		unsigned char head[13];
		uint64_t o = (uint64_t)off;
		uint32_t l = (uint32_t)n;

		head[0] = 'W';
		memcpy(head + 1, &o, 8);
		memcpy(head + 9, &l, 4);
		if (write_all(f->pending, head, sizeof head, -1) < 0 ||
		    write_all(f->pending, buf, (size_t)n, -1) < 0)
			return SQLITE_IOERR_WRITE;
	}
	return rc;
}

static int cf_truncate(sqlite3_file *p, sqlite3_int64 size)
{
	struct cfile *f = (struct cfile *)p;
	int rc = f->real->pMethods->xTruncate(f->real, size);

	if (rc == SQLITE_OK && f->pending >= 0) {
		unsigned char head[9];
		uint64_t s = (uint64_t)size;

		head[0] = 'T';
		memcpy(head + 1, &s, 8);
		if (write_all(f->pending, head, sizeof head, -1) < 0)
			return SQLITE_IOERR_TRUNCATE;
	}
	return rc;
}

static int cf_sync(sqlite3_file *p, int flags)
{
	struct cfile *f = (struct cfile *)p;
	int rc = f->real->pMethods->xSync(f->real, flags);

	if (rc == SQLITE_OK && f->pending >= 0 && cf_settle(f) < 0)
		return SQLITE_IOERR_FSYNC;
	return rc;
}

static int cf_size(sqlite3_file *p, sqlite3_int64 *size)
{
	struct cfile *f = (struct cfile *)p;

	return f->real->pMethods->xFileSize(f->real, size);
}

static int cf_lock(sqlite3_file *p, int l)
{
	struct cfile *f = (struct cfile *)p;

	return f->real->pMethods->xLock(f->real, l);
}

static int cf_unlock(sqlite3_file *p, int l)
{
	struct cfile *f = (struct cfile *)p;

	return f->real->pMethods->xUnlock(f->real, l);
}

static int cf_reserved(sqlite3_file *p, int *out)
{
	struct cfile *f = (struct cfile *)p;

	return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int cf_fcntl(sqlite3_file *p, int op, void *arg)
{
	struct cfile *f = (struct cfile *)p;

	return f->real->pMethods->xFileControl(f->real, op, arg);
}

static int cf_sector(sqlite3_file *p)
{
	struct cfile *f = (struct cfile *)p;

	return f->real->pMethods->xSectorSize(f->real);
}

static int cf_device(sqlite3_file *p)
{
	struct cfile *f = (struct cfile *)p;

	return f->real->pMethods->xDeviceCharacteristics(f->real);
}

static int cf_shm_map(sqlite3_file *p, int pg, int sz, int extend, void volatile **out)
{
	struct cfile *f = (struct cfile *)p;

	return f->real->pMethods->xShmMap(f->real, pg, sz, extend, out);
}

static int cf_shm_lock(sqlite3_file *p, int off, int n, int flags)
{
	struct cfile *f = (struct cfile *)p;

	return f->real->pMethods->xShmLock(f->real, off, n, flags);
}

static void cf_shm_barrier(sqlite3_file *p)
{
	struct cfile *f = (struct cfile *)p;

	f->real->pMethods->xShmBarrier(f->real);
}

static int cf_shm_unmap(sqlite3_file *p, int del)
{
	struct cfile *f = (struct cfile *)p;

	return f->real->pMethods->xShmUnmap(f->real, del);
}

static const sqlite3_io_methods cf_methods = {
	.iVersion = 2,
	.xClose = cf_close,
	.xRead = cf_read,
	.xWrite = cf_write,
	.xTruncate = cf_truncate,
	.xSync = cf_sync,
	.xFileSize = cf_size,
	.xLock = cf_lock,
	.xUnlock = cf_unlock,
	.xCheckReservedLock = cf_reserved,
	.xFileControl = cf_fcntl,
	.xSectorSize = cf_sector,
	.xDeviceCharacteristics = cf_device,
	.xShmMap = cf_shm_map,
	.xShmLock = cf_shm_lock,
	.xShmBarrier = cf_shm_barrier,
	.xShmUnmap = cf_shm_unmap,
};

/* PATH.durable as the file is now, unless a copy is there already (this process, or
 * one before it whose files the test has not rebuilt). */
static int cf_start(struct cfile *f)
{
	char name[PATH_MAX + 16];
	struct stat sb;
	int src;

	snprintf(name, sizeof name, "%s.durable", f->path);
	if (stat(name, &sb) != 0) {
		int fd = open(name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		char buf[65536];
		ssize_t n;
		off_t at = 0;

		if (fd < 0)
			return -1;
		src = open(f->path, O_RDONLY | O_CLOEXEC);
		while (src >= 0 && (n = pread(src, buf, sizeof buf, at)) > 0) {
			if (write_all(fd, buf, (size_t)n, at) < 0) {
				close(src);
				close(fd);
				return -1;
			}
			at += n;
		}
		if (src >= 0)
			close(src);
		f->durable = fd;
	} else {
		f->durable = open(name, O_RDWR | O_CLOEXEC);
	}
	snprintf(name, sizeof name, "%s.pending", f->path);
	f->pending = open(name, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	return f->durable >= 0 && f->pending >= 0 ? 0 : -1;
}

static int cv_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *p, int flags, int *out)
{
	struct cfile *f = (struct cfile *)p;
	int rc;

	(void)vfs;
	memset(f, 0, sizeof *f);
	f->durable = f->pending = -1;
	f->real = (sqlite3_file *)(f + 1);
	rc = real_vfs->xOpen(real_vfs, name, f->real, flags, out);
	if (rc != SQLITE_OK) {
		f->real->pMethods = NULL;
		return rc;
	}
	p->pMethods = &cf_methods;
	if (name && crash_dir && strncmp(name, crash_dir, strlen(crash_dir)) == 0 &&
	    (flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL))) {
		snprintf(f->path, sizeof f->path, "%s", name);
		if (cf_start(f) < 0) {
			cf_close(p);
			p->pMethods = NULL;
			return SQLITE_CANTOPEN;
		}
	}
	return SQLITE_OK;
}

static int cv_delete(sqlite3_vfs *vfs, const char *name, int dirsync)
{
	char p[PATH_MAX + 16];

	(void)vfs;
	if (crash_dir && strncmp(name, crash_dir, strlen(crash_dir)) == 0) {
		snprintf(p, sizeof p, "%s.durable", name);
		unlink(p);
		snprintf(p, sizeof p, "%s.pending", name);
		unlink(p);
	}
	return real_vfs->xDelete(real_vfs, name, dirsync);
}

static int cv_access(sqlite3_vfs *v, const char *n, int f, int *o)
{
	(void)v;
	return real_vfs->xAccess(real_vfs, n, f, o);
}

static int cv_fullpath(sqlite3_vfs *v, const char *n, int len, char *out)
{
	(void)v;
	return real_vfs->xFullPathname(real_vfs, n, len, out);
}

static void *cv_dlopen(sqlite3_vfs *v, const char *n)
{
	(void)v;
	return real_vfs->xDlOpen(real_vfs, n);
}

static void cv_dlerror(sqlite3_vfs *v, int n, char *out)
{
	(void)v;
	real_vfs->xDlError(real_vfs, n, out);
}

static void (*cv_dlsym(sqlite3_vfs *v, void *h, const char *s))(void)
{
	(void)v;
	return real_vfs->xDlSym(real_vfs, h, s);
}

static void cv_dlclose(sqlite3_vfs *v, void *h)
{
	(void)v;
	real_vfs->xDlClose(real_vfs, h);
}

static int cv_random(sqlite3_vfs *v, int n, char *out)
{
	(void)v;
	return real_vfs->xRandomness(real_vfs, n, out);
}

static int cv_sleep(sqlite3_vfs *v, int us)
{
	(void)v;
	return real_vfs->xSleep(real_vfs, us);
}

static int cv_time(sqlite3_vfs *v, double *out)
{
	(void)v;
	return real_vfs->xCurrentTime(real_vfs, out);
}

static int cv_lasterr(sqlite3_vfs *v, int n, char *out)
{
	(void)v;
	return real_vfs->xGetLastError(real_vfs, n, out);
}

static int cv_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
	(void)v;
	return real_vfs->xCurrentTimeInt64(real_vfs, out);
}

__attribute__((constructor)) static void crashvfs_register(void)
{
	crash_dir = getenv("CRASHVFS_DIR");
	if (!crash_dir || !*crash_dir)
		return;
	real_vfs = sqlite3_vfs_find(NULL);
	if (!real_vfs) {
		fprintf(stderr, "crashvfs: no default VFS\n");
		abort();
	}
	crash_vfs = (sqlite3_vfs){
		.iVersion = 2,
		.szOsFile = (int)sizeof(struct cfile) + real_vfs->szOsFile,
		.mxPathname = real_vfs->mxPathname,
		.zName = "crashvfs",
		.xOpen = cv_open,
		.xDelete = cv_delete,
		.xAccess = cv_access,
		.xFullPathname = cv_fullpath,
		.xDlOpen = cv_dlopen,
		.xDlError = cv_dlerror,
		.xDlSym = cv_dlsym,
		.xDlClose = cv_dlclose,
		.xRandomness = cv_random,
		.xSleep = cv_sleep,
		.xCurrentTime = cv_time,
		.xGetLastError = cv_lasterr,
		.xCurrentTimeInt64 = cv_time64,
	};
	if (sqlite3_vfs_register(&crash_vfs, 1) != SQLITE_OK) {
		fprintf(stderr, "crashvfs: cannot register\n");
		abort();
	}
}
