/*
 * fileio: files created with a mode whatever the umask, and files replaced whole and
 * durably. Owns nothing but the calls; must never log or decide a mode of its own.
 */
#include "fileio.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Keep no bit mode does not grant; a file just created (empty, ours) gets mode itself. */
static void fileio_fix_mode(int fd, mode_t mode, bool created)
{
	struct stat sb;
	mode_t want;

	if (fstat(fd, &sb) < 0)
		return;
	want = created ? mode : (sb.st_mode & 07777 & mode);
	/* EPERM on a file of another user: the open worked, the mode is theirs to fix */
	if ((sb.st_mode & 07777) != want)
		(void)fchmod(fd, want);
}

int fileio_open(const char *path, int flags, mode_t mode)
{
	int e, fd;
	bool created = false;

	/* O_EXCL first, to know whether this call created the file */
	fd = open(path, flags | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd >= 0)
		created = true;
	else if (errno == EEXIST)
		fd = open(path, (flags & ~O_CREAT) | O_CLOEXEC);
	if (fd < 0)
		return -1;
	e = errno;
	fileio_fix_mode(fd, mode, created);
	errno = e;
	return fd;
}

int fileio_restrict(const char *path, mode_t mode)
{
	struct stat sb;

	if (stat(path, &sb) < 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISREG(sb.st_mode) || (sb.st_mode & 07777 & ~mode) == 0)
		return 0;
	return chmod(path, sb.st_mode & 07777 & mode);
}

int fileio_sync_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	int fd, r, e;

	if (!slash)
		dir = strdup(".");
	else if (slash == path)
		dir = strdup("/");
	else
		dir = strndup(path, (size_t)(slash - path));
	if (!dir)
		return -1;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (fd < 0)
		return -1;
	r = fsync(fd);
	e = errno;
	close(fd);
	errno = e;
	return r;
}

int fileio_write_whole(const char *path, const void *buf, size_t len, mode_t mode)
{
	size_t n = strlen(path), done = 0;
	char *tmp = malloc(n + 5);
	int fd, e;

	if (!tmp)
		return -1;
	memcpy(tmp, path, n);
	memcpy(tmp + n, ".tmp", 5);
	/* a tmp left by a crash is ours to overwrite */
	fd = fileio_open(tmp, O_WRONLY | O_TRUNC, mode);
	if (fd < 0)
		goto fail;
	while (done < len) {
		ssize_t w = write(fd, (const char *)buf + done, len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = EIO;
			goto fail_fd;
		}
		done += (size_t)w;
	}
	if (fsync(fd) < 0)
		goto fail_fd;
	if (close(fd) < 0) {
		fd = -1;
		goto fail_fd;
	}
	if (rename(tmp, path) < 0)
		goto fail;
	free(tmp);
	/* the rename itself, durable: the directory's entry */
	(void)fileio_sync_dir(path);
	return 0;
fail_fd:
	e = errno;
	if (fd >= 0)
		close(fd);
	errno = e;
fail:
	e = errno;
	unlink(tmp);
	free(tmp);
	errno = e;
	return -1;
}

int fileio_remove_durably(const char *path)
{
	if (unlink(path) < 0)
		return errno == ENOENT ? 0 : -1;
	return fileio_sync_dir(path);
}
