/*
 * test_fileio: modes whatever the umask, whole-file replacement, durable removal, in a
 * fresh temporary directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"

struct fx {
	char dir[64];
	char a[128], tmp[140];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);

	if (!f)
		return -1;
	snprintf(f->dir, sizeof f->dir, "/tmp/sluice-fileio-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->a, sizeof f->a, "%s/a", f->dir);
	snprintf(f->tmp, sizeof f->tmp, "%s/a.tmp", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	unlink(f->a);
	unlink(f->tmp);
	rmdir(f->dir);
	free(f);
	return 0;
}

static mode_t mode_of(const char *p)
{
	struct stat sb;

	assert_int_equal(stat(p, &sb), 0);
	return sb.st_mode & 07777;
}

static void test_open_mode_whatever_the_umask(void **state)
{
	struct fx *f = *state;
	mode_t old = umask(077);
	int fd;

	fd = fileio_open(f->a, O_RDWR, 0640);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(mode_of(f->a), 0640);
	unlink(f->a);
	umask(022);
	fd = fileio_open(f->a, O_RDWR, 0640);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(mode_of(f->a), 0640);
	/* an existing file keeps what it has of the mode, loses the rest */
	assert_int_equal(chmod(f->a, 0666), 0);
	fd = fileio_open(f->a, O_RDWR, 0640);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(mode_of(f->a), 0640);
	assert_int_equal(chmod(f->a, 0600), 0);
	fd = fileio_open(f->a, O_RDWR, 0640);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(mode_of(f->a), 0600);
	assert_int_equal(chmod(f->a, 0604), 0);
	assert_int_equal(fileio_restrict(f->a, 0640), 0);
	assert_int_equal(mode_of(f->a), 0600);
	assert_int_equal(fileio_restrict(f->tmp, 0640), 0); /* no such file */
	umask(old);
}

static void test_write_whole(void **state)
{
	struct fx *f = *state;
	mode_t old = umask(077);
	char buf[32] = { 0 };
	int fd;

	assert_int_equal(fileio_write_whole(f->a, "one\n", 4, 0640), 0);
	assert_int_equal(fileio_write_whole(f->a, "two\n", 4, 0640), 0);
	assert_int_equal(mode_of(f->a), 0640);
	assert_int_equal(access(f->tmp, F_OK), -1);
	fd = open(f->a, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, buf, sizeof buf), 4);
	close(fd);
	assert_string_equal(buf, "two\n");
	/* a directory that is not there: an error, nothing left behind */
	{
		char p[200];
		snprintf(p, sizeof p, "%s/no/such", f->dir);
		errno = 0;
		assert_int_equal(fileio_write_whole(p, "x", 1, 0640), -1);
		assert_int_equal(errno, ENOENT);
	}
	assert_int_equal(fileio_remove_durably(f->a), 0);
	assert_int_equal(access(f->a, F_OK), -1);
	assert_int_equal(fileio_remove_durably(f->a), 0);
	umask(old);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_mode_whatever_the_umask, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_whole, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
