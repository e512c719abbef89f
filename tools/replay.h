/* replay: `sluicectl replay`, recorded readings through the alert engine (replay_core). */
#ifndef SLUICE_REPLAY_H
#define SLUICE_REPLAY_H

/* argv[0] is "replay". Returns the process's exit status: 0, 1 (failed), 2 (usage). */
int replay_main(int argc, char **argv);

#endif
