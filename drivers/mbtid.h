/*
 * mbtid: the transaction ids of a Modbus TCP client (tcpoll's connections, sluicectl
 * probe's mbclient). An id counted up by one lets any peer that saw a request name the
 * next: a broken gateway's trailing frame, or a forged one, carrying it would be taken
 * for the next request's reply, and its values published. So every id is drawn at
 * random, and is never the last id nor the one after it. Not a secret against a peer
 * that works at it — the device could as well lie in its replies — but nothing a frame
 * sent before the request can match by more than chance (1 in 65,534).
 */
#ifndef SLUICE_MBTID_H
#define SLUICE_MBTID_H

#include <stdint.h>

struct mbtid {
	uint64_t state;
	uint16_t last;
};

/* Seed from the kernel's random source (getrandom), or, should that fail, from the
 * clocks and the address of t. */
void mbtid_init(struct mbtid *t);
/* The id for the next request. */
uint16_t mbtid_next(struct mbtid *t);

#endif
