/*
 * sim_rtu: sluice-sim's RTU side. Serves Modbus RTU frames on a tty (for tests, one end
 * of a socat pseudo-terminal pair; for a technician, a USB adapter) and over TCP (what
 * a DTU or serial server carries), for any number of unit ids on one line — libmodbus's
 * RTU server answers one unit id only, so the framing is drivers/rtu's.
 *
 * It frames and unframes; what a request means is the simulator's business, asked
 * through a callback. Its descriptors join the simulator's epoll set; every epoll
 * data.ptr it registers points at a struct whose first member is the int SIM_RTU_EV,
 * so the simulator's loop can tell them from its own and hand them to sim_rtu_event.
 */
#ifndef SLUICE_SIM_RTU_H
#define SLUICE_SIM_RTU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIM_RTU_EV 0x5254 /* the epoll tag: distinct from sluice-sim's own */

/* What becomes of a reply's bytes on the way out (--garbage, --short). */
enum sim_rtu_mangle {
	SIM_RTU_INTACT = 0,
	SIM_RTU_GARBAGE,     /* replaced by noise of about its length (never a frame that
				checks out) */
	SIM_RTU_SHORT,       /* cut before its end */
};

/* How one reply goes out: the faults the simulator injects. Before asking, sim_rtu fills
 * in the request's unit and no fault; the serve callback may change any of them. */
struct sim_rtu_fault {
	uint8_t unit;        /* the unit id the reply carries (another: a wrong-unit reply) */
	unsigned delay_ms;   /* hold the reply this long; nothing else waits for it */
	bool bad_crc;        /* send it with a corrupt CRC */
	int mangle;          /* enum sim_rtu_mangle */
	uint64_t noise;      /* seeds the noise bytes and where a reply is cut, so that a
				--seed gives the same bytes again */
};

/* Draw a number from a noise state (a splitmix64 step): how the simulator and sim_rtu
 * turn a fault's noise seed into bytes, lengths and choices. */
uint64_t sim_rtu_noise_next(uint64_t *state);

/* Answer one request PDU for unit of the line whose cookie is line: write the reply PDU
 * to resp (MB_PDU_MAX bytes) and return its length, or 0 to stay silent (a dead unit, a
 * unit nobody serves on this line: on a serial line nobody answers for it). */
typedef size_t (*sim_rtu_serve_fn)(void *ctx, void *line, uint8_t unit, const uint8_t *pdu,
				   size_t len, uint8_t *resp, struct sim_rtu_fault *f);

struct sim_rtu_line_opts {
	unsigned baud;       /* 0: 9600 */
	char parity;         /* 'N', 'E', 'O'; 0: 'N' */
	unsigned data_bits;  /* 0: 8 */
	unsigned stop_bits;  /* 0: 1 */
	bool pace;           /* hold each reply for its transfer time at baud */
};

struct sim_rtu;

struct sim_rtu *sim_rtu_new(int epfd, sim_rtu_serve_fn serve, void *ctx);
/* Open and serve a tty at path. 0, or -1 with a message in err. */
int sim_rtu_add_tty(struct sim_rtu *r, const char *path, const struct sim_rtu_line_opts *o,
		    void *line, char *err, size_t errlen);
/* Listen on host:port (port "0": any; *bound_port gets the port, may be NULL) and serve
 * RTU frames on every connection. 0, or -1 with a message in err. */
int sim_rtu_add_tcp(struct sim_rtu *r, const char *host, const char *port,
		    const struct sim_rtu_line_opts *o, void *line, unsigned *bound_port,
		    char *err, size_t errlen);
/* An epoll event whose data.ptr is tagged SIM_RTU_EV. */
void sim_rtu_event(struct sim_rtu *r, void *tag, uint32_t events);
/* When the next delayed reply is due (clock_mono_ms), or -1 when none waits: the
 * simulator's epoll wait must not outlast it. */
int64_t sim_rtu_next_due(const struct sim_rtu *r);
/* Send the delayed replies due by now. */
void sim_rtu_tick(struct sim_rtu *r, int64_t now);
/* Requests answered, and frames dropped for a bad CRC. */
void sim_rtu_counts(const struct sim_rtu *r, uint64_t *answered, uint64_t *bad_crc);
void sim_rtu_free(struct sim_rtu *r);

#endif
