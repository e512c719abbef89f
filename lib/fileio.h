/*
 * fileio: files that must not be readable by every local user, and files written whole.
 * A leaf with no policy: the caller says the mode and what to write; nothing here logs.
 *
 * The umask says what a process's new files may NOT be, not what they must be: a daemon
 * started from a shell with umask 022 would create its files 0644, one started with 077
 * 0600 (its group, sluicectl's, locked out). So a file created here gets exactly the
 * mode asked for (fchmod, which the umask does not touch), and an existing one loses
 * whatever bits the mode does not grant (an older release's 0644 file becomes 0640).
 */
#ifndef SLUICE_FILEIO_H
#define SLUICE_FILEIO_H

#include <stddef.h>
#include <sys/types.h>

/*
 * open(path, flags | O_CLOEXEC) with O_CREAT implied, then the mode as
 * above. Returns the descriptor, or -1 with errno set (the open's; failing to change the
 * mode of a file that belongs to another user is not an error).
 */
int fileio_open(const char *path, int flags, mode_t mode);

/* An existing path loses the bits mode does not grant. 0 (also when there is no such
 * file), or -1 with errno set. */
int fileio_restrict(const char *path, mode_t mode);

/*
 * Replace path by len bytes, durably and all at once: path.tmp written with the mode,
 * synced, renamed over path, the directory synced. A reader sees the old file or the new
 * one, never a part; after a power cut, one of the two. 0, or -1 with errno set (path
 * is then unchanged and path.tmp removed).
 */
int fileio_write_whole(const char *path, const void *buf, size_t len, mode_t mode);

/* Remove path and sync its directory, so that the removal survives a power cut. 0 (also
 * when there was no such file), or -1 with errno set. */
int fileio_remove_durably(const char *path);

/* fsync the directory that holds path (a rename or an unlink in it made durable). */
int fileio_sync_dir(const char *path);

#endif
