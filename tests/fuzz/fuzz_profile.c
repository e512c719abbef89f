/*
 * fuzz_profile: device profiles (config_load_profile) on arbitrary YAML. A profile is
 * found by its file name, so each input is written to DIR/devices/fz.yaml in a private
 * directory under /dev/shm (or TMPDIR) made once and removed at exit.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "config.h"
#include "fuzz.h"

static char dir[256], devdir[300], file[320];

static void cleanup(void)
{
	unlink(file);
	rmdir(devdir);
	rmdir(dir);
}

static int setup(void)
{
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");

	snprintf(dir, sizeof dir, "%s/sluice-fuzz-XXXXXX", base ? base : "/tmp");
	if (!mkdtemp(dir))
		return -1;
	snprintf(devdir, sizeof devdir, "%s/devices", dir);
	snprintf(file, sizeof file, "%s/fz.yaml", devdir);
	if (mkdir(devdir, 0700) < 0)
		return -1;
	atexit(cleanup);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	/* a search path that does not exist: only DIR/devices holds fz.yaml */
	struct config_opts opts = { .profile_path = "/nonexistent", .skip_secret_files = true };
	struct config_diag d;
	struct point_def *pts;
	size_t npts;
	char *display;
	int fd, rc;

	if (!ready) {
		if (setup() < 0)
			fuzz_fail("cannot make a directory for the profile");
		ready = 1;
	}
	if ((fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0 ||
	    (size && write(fd, data, size) != (ssize_t)size))
		fuzz_fail("cannot write %s", file);
	close(fd);

	rc = config_load_profile("fz", dir, &opts, &pts, &npts, &display, &d);
	fuzz_check(d.nerrors + d.nwarnings == d.n);
	for (size_t i = 0; i < d.n; i++)
		fuzz_check(d.msgs[i] != NULL);
	if (rc == 0) {
		fuzz_check(d.nerrors == 0);
		for (size_t i = 0; i < npts; i++) {
			fuzz_check(memchr(pts[i].name, '\0', sizeof pts[i].name) != NULL);
			fuzz_check(memchr(pts[i].unit, '\0', sizeof pts[i].unit) != NULL);
			fuzz_check(codec_width(&pts[i]) >= 1);
			fuzz_check((uint32_t)pts[i].address + codec_width(&pts[i]) <= 0x10000);
		}
		free(pts);
		free(display);
	} else {
		fuzz_check(pts == NULL && npts == 0 && display == NULL);
		fuzz_check(d.nerrors > 0 || d.n == 0);
	}
	config_diag_free(&d);
	return 0;
}
