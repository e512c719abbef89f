/*
 * fuzz_config: the gateway config loader (daemon/config*.c) on arbitrary YAML, through
 * config_load_buffer so no file is written per input. Profiles the text names are read
 * from config/devices (the run script works from the top of the tree). It checks what
 * config_load promises: NULL exactly when there is an error, every message a string.
 */
#include <string.h>

#include "config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_opts opts = { .profile_path = "config/devices", .skip_secret_files = true };
	struct config_diag d;
	struct config *cfg;

	cfg = config_load_buffer("tests/fuzz/sluice.yaml", data, size, &opts, &d);
	for (size_t i = 0; i < d.n; i++)
		fuzz_check(d.msgs[i] != NULL && strlen(d.msgs[i]) > 0);
	fuzz_check(d.nerrors + d.nwarnings == d.n);
	if (cfg) {
		char sum[200];
		fuzz_check(d.nerrors == 0);
		config_summary(cfg, sum, sizeof sum);
		for (size_t i = 0; i < cfg->ndevices; i++) {
			const struct device_cfg *dev = &cfg->devices[i];
			fuzz_check(dev->bus < cfg->nbuses);
			for (size_t j = 0; j < dev->npoints; j++)
				fuzz_check(config_find_point(dev, dev->points[j].name) >= 0);
		}
		config_free(cfg);
	}
	config_diag_free(&d);
	return 0;
}
