/*
 * serpoll_tty: serpoll's transport for a BUS_RTU line, Modbus RTU on a tty through
 * libmodbus. Owns the line's modbus_t and its descriptor while open. It must never give
 * libmodbus a descriptor past 1023 (libmodbus select()s), and never leave a late reply
 * or line noise in the input to be read as the next reply.
 *
 * Timeout. A timeout is the time allowed for the reply to begin; on a serial line the
 * transfer time of the request and of the expected reply, at the line's character time
 * (start, data, parity and stop bits), is added: write() to a tty returns when the bytes
 * are queued, not sent, and a 125-register reply takes 266 ms at 9600 baud. libmodbus
 * gets that sum as its response timeout and no byte timeout, which makes it a deadline
 * for the whole reply.
 */
#include "serpoll_int.h"

#include <errno.h>
#include <fcntl.h>
#include <modbus.h>
#include <stdio.h>
#include <sys/select.h>
#include <unistd.h>

#include "mberr.h"
#include "mbpdu.h"
#include "rtu.h"

static int tty_code(int e)
{
	if (e > MODBUS_ENOBASE && e < MODBUS_ENOBASE + MODBUS_EXCEPTION_MAX)
		return MBE_EXC_BASE + (e - MODBUS_ENOBASE);
	if (e == ETIMEDOUT)
		return MBE_TIMEOUT;
	if (e == EMBBADCRC)
		return MBE_BAD_CRC;
	if (e == EMBBADSLAVE)
		return MBE_WRONG_UNIT;
	if (e == EMBBADDATA || e == EMBBADEXC || e == EMBUNKEXC || e == EMBMDATA)
		return MBE_PROTO;
	return MBE_IO;
}

static void tty_free(modbus_t *mb)
{
	modbus_close(mb);
	modbus_free(mb);
}

static int tty_open(struct sp_line *l, char *err, size_t errlen)
{
	const struct bus_cfg *b = l->bus;
	modbus_t *mb;
	int fd;

	mb = modbus_new_rtu(b->device, (int)b->baud, b->parity, b->data_bits, b->stop_bits);
	if (mb == NULL) {
		snprintf(err, errlen, "%s: %s", b->device, modbus_strerror(errno));
		return MBE_CONNECT;
	}
	if (modbus_connect(mb) != 0) {
		snprintf(err, errlen, "cannot open %s: %s", b->device, modbus_strerror(errno));
		modbus_free(mb);
		return MBE_CONNECT;
	}
	fd = modbus_get_socket(mb);
	if (fd >= FD_SETSIZE) {
		/* libmodbus would abort in select(): move the descriptor down, or refuse */
		int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		if (nfd < 0 || nfd >= FD_SETSIZE) {
			snprintf(err, errlen, "%s: its descriptor is %d, past %d, which libmodbus "
				 "cannot wait on (serial lines must be opened before the TCP "
				 "sockets)", b->device, nfd < 0 ? fd : nfd, FD_SETSIZE - 1);
			if (nfd >= 0)
				close(nfd);
			tty_free(mb);
			return MBE_CONNECT;
		}
		close(fd);
		modbus_set_socket(mb, nfd);
	}
	if (b->rs485 && modbus_rtu_set_serial_mode(mb, MODBUS_RTU_RS485) != 0) {
		snprintf(err, errlen, "%s: cannot switch to RS-485 mode: %s (a pseudo-terminal, "
			 "or an adapter that does RS-485 by itself: set rs485: false)", b->device,
			 modbus_strerror(errno));
		tty_free(mb);
		return MBE_CONNECT;
	}
	/* no byte timeout: the response timeout is then a deadline for the whole reply */
	modbus_set_byte_timeout(mb, 0, 0);
	l->conn = mb;
	return 0;
}

static void tty_close(struct sp_line *l)
{
	if (l->conn == NULL)
		return;
	tty_free(l->conn);
	l->conn = NULL;
}

/* Address unit, drop whatever is waiting, and allow the reply its timeout plus the
 * transfer time of a request of reqlen ADU bytes and its reply of replylen. */
static modbus_t *tty_prepare(struct sp_line *l, uint8_t unit, size_t reqlen, size_t replylen)
{
	modbus_t *mb = l->conn;
	int64_t ms = l->timeout + rtu_transfer_ms(l->bus->baud, l->char_bits, reqlen + replylen);

	modbus_set_slave(mb, unit);
	/* whatever a late reply or line noise left must not be read as this reply */
	modbus_flush(mb);
	modbus_set_response_timeout(mb, (uint32_t)(ms / 1000), (uint32_t)(ms % 1000) * 1000);
	return mb;
}

static int tty_read(struct sp_line *l, uint8_t unit, const struct plan_req *rq, uint16_t *regs,
		    uint8_t *bits)
{
	uint8_t req[5];
	modbus_t *mb;
	int rc;

	mbpdu_read_req(req, rq->table, rq->start, rq->count);
	mb = tty_prepare(l, unit, 8, rtu_reply_size(req, sizeof req));
	switch (rq->table) {
	case MB_COIL:
		rc = modbus_read_bits(mb, rq->start, rq->count, bits);
		break;
	case MB_DISCRETE:
		rc = modbus_read_input_bits(mb, rq->start, rq->count, bits);
		break;
	case MB_HOLDING:
		rc = modbus_read_registers(mb, rq->start, rq->count, regs);
		break;
	default:
		rc = modbus_read_input_registers(mb, rq->start, rq->count, regs);
		break;
	}
	if (rc < 0)
		return tty_code(errno);
	return rc == rq->count ? 0 : MBE_PROTO;
}

static int tty_write(struct sp_line *l, uint8_t unit, const struct mbwrite *w)
{
	modbus_t *mb;
	int rc;

	if (w->fc == MB_FC_WRITE_REGISTERS)
		mb = tty_prepare(l, unit, 9 + 2 * (size_t)w->n, 8);
	else
		mb = tty_prepare(l, unit, 8, 8);
	switch (w->fc) {
	case MB_FC_WRITE_COIL:
		rc = modbus_write_bit(mb, w->addr, w->on);
		break;
	case MB_FC_WRITE_REGISTER:
		rc = modbus_write_register(mb, w->addr, w->regs[0]);
		break;
	default:
		rc = modbus_write_registers(mb, w->addr, w->n, w->regs);
		break;
	}
	return rc < 0 ? tty_code(errno) : 0;
}

const struct sp_backend serpoll_tty_backend = {
	.name = "rtu",
	.open = tty_open,
	.close = tty_close,
	.read = tty_read,
	.write = tty_write,
};
