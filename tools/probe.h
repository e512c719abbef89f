/*
 * probe: `sluicectl probe`, a technician's one-shot read of a device from the command
 * line (a configured device's points, or a raw register range shown under every word
 * and byte order and at both the 0-based and the 1-based address).
 */
#ifndef SLUICE_PROBE_H
#define SLUICE_PROBE_H

/* sluicectl's config when none is given: where it finds the data directory, and so the
 * database and a running sluiced's control socket. */
#define SLUICECTL_CONFIG "/etc/sluice/sluice.yaml"

/* argv[0] is "probe". Returns the exit status: 0 read, 1 the device failed (timeout,
 * exception, connection), 2 bad usage or config. */
int probe_main(int argc, char **argv);

#endif
