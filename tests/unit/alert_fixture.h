/*
 * alert_fixture: what the alert engine's unit tests share — a config from YAML text
 * (in two parts, so that a file can keep its devices apart from each test's rules) and
 * an engine built from it, failing the test with the loader's messages otherwise.
 * Include after <cmocka.h>.
 */
#ifndef SLUICE_TEST_ALERT_FIXTURE_H
#define SLUICE_TEST_ALERT_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "alert.h"
#include "config.h"

static inline struct config *fx_load2(const char *head, const char *text)
{
	char path[] = "/tmp/sluice_test_alert_XXXXXX";
	int fd = mkstemp(path);
	struct config_opts opts = { .profile_path = "/nonexistent", .skip_secret_files = true };
	struct config_diag d;
	struct config *cfg;
	FILE *f;

	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs(head, f);
	fputs(text, f);
	fclose(f);
	cfg = config_load(path, &opts, &d);
	for (size_t i = 0; i < d.n; i++)
		fprintf(stderr, "%s\n", d.msgs[i]);
	config_diag_free(&d);
	unlink(path);
	assert_non_null(cfg);
	return cfg;
}

static inline struct config *fx_load(const char *text)
{
	return fx_load2("", text);
}

static inline struct alert_engine *fx_engine(const struct config *cfg)
{
	char err[256] = "";
	struct alert_engine *e = alert_new(cfg, err, sizeof err);

	if (!e)
		fprintf(stderr, "alert_new: %s\n", err);
	assert_non_null(e);
	return e;
}

#endif
