/*
 * test_spb: the Sparkplug B codec (lib/spb.c) against bytes that Google's protobuf
 * wrote from the published schema. The vectors below are the output of
 * `python3 tests/integration/sparkplug.py vectors` (Debian's protobuf-compiler and
 * python3-protobuf, tests/data/sparkplug_b.proto): the encoder must write exactly those
 * bytes for the same payload, and the decoder must read them back field by field. Then
 * what protobuf also accepts (unknown fields, merged property sets, non-minimal varints)
 * and what it is refused for (truncation, groups, varints past 64 bits), and a round
 * trip of many generated payloads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spb.h"

#define TS1 1795706907307ull
#define TS2 1795706960451ull

static const char V_NBIRTH[] =
	"\x08\xab\xd5\xe3\xc3\xa1\x34\x12\x14\x0a\x05\x62\x64\x53\x65\x71\x10\x01\x18\xab\xd5"
	"\xe3\xc3\xa1\x34\x20\x08\x58\x03\x12\x23\x0a\x14\x4e\x6f\x64\x65\x20\x43\x6f\x6e\x74"
	"\x72\x6f\x6c\x2f\x52\x65\x62\x69\x72\x74\x68\x10\x02\x18\xab\xd5\xe3\xc3\xa1\x34\x20"
	"\x0b\x70\x00\x18\x00";

static const char V_DDATA[] =
	"\x08\xc3\xf4\xe6\xc3\xa1\x34\x12\x12\x10\x81\x80\x04\x18\xc3\xf4\xe6\xc3\xa1\x34\x28"
	"\x01\x65\xd1\xef\xd6\x41\x12\x11\x10\x82\x80\x04\x18\xc3\xf4\xe6\xc3\xa1\x34\x50\xfe"
	"\xff\xff\xff\x0f\x12\x16\x10\x83\x80\x04\x18\xc3\xf4\xe6\xc3\xa1\x34\x58\xff\xff\xff"
	"\xff\xff\xff\xff\xff\xff\x01\x12\x1e\x10\x84\x80\x04\x18\xc3\xf4\xe6\xc3\xa1\x34\x38"
	"\x01\x4a\x0f\x0a\x07\x51\x75\x61\x6c\x69\x74\x79\x12\x04\x08\x03\x18\x00\x18\xff\x01";

static const char V_DBIRTH[] =
	"\x08\xab\xd5\xe3\xc3\xa1\x34\x12\x31\x0a\x04\x66\x6c\x6f\x77\x10\x81\x80\x04\x18\xab"
	"\xd5\xe3\xc3\xa1\x34\x20\x0a\x4a\x13\x0a\x07\x65\x6e\x67\x55\x6e\x69\x74\x12\x08\x08"
	"\x0c\x42\x04\x6d\x33\x2f\x68\x69\x00\x00\x00\x00\x00\x00\x29\x40\x12\x23\x0a\x06\xe5"
	"\x90\x8d\xe5\xad\x97\x10\x82\x80\x04\x18\xab\xd5\xe3\xc3\xa1\x34\x20\x0c\x7a\x0c\xe4"
	"\xb8\x89\xe5\x8f\xb7\xe5\x88\x86\xe5\x8c\xba\x12\x17\x0a\x04\x70\x75\x6d\x70\x10\x83"
	"\x80\x04\x18\xab\xd5\xe3\xc3\xa1\x34\x20\x0b\x30\x01\x70\x01\x12\x11\x0a\x03\x72\x61"
	"\x77\x10\x84\x80\x04\x20\x11\x82\x01\x03\x00\x01\xff\x18\x01";

static const char V_UUID_BODY[] = "\x08\x01\x22\x06\x73\x6c\x75\x69\x63\x65\x2a\x02\x00\x78";

/* ---- the payloads of the vectors, built in C ----------------------------------------- */

static struct spb_value v_long(uint64_t l)
{
	return (struct spb_value){ .kind = SPB_V_LONG, .v.l = l };
}

static struct spb_value v_int(uint32_t i)
{
	return (struct spb_value){ .kind = SPB_V_INT, .v.i = i };
}

static struct spb_value v_bool(bool b)
{
	return (struct spb_value){ .kind = SPB_V_BOOL, .v.b = b };
}

static struct spb_value v_str(const char *s)
{
	return (struct spb_value){ .kind = SPB_V_STRING, .s = s, .len = strlen(s) };
}

static void assert_encodes(const struct spb_payload *p, const char *want, size_t wantlen)
{
	struct jbuf b;

	jb_init(&b);
	assert_int_equal(spb_encode(p, &b), 0);
	assert_int_equal(spb_encoded_size(p), wantlen);
	assert_int_equal(b.len, wantlen);
	assert_memory_equal(b.p, want, wantlen);
	jb_free(&b);
}

static struct spb_payload *assert_decodes(const char *buf, size_t len)
{
	char err[200];
	struct spb_payload *p = spb_decode(buf, len, err, sizeof err);

	if (!p)
		fail_msg("decode: %s", err);
	return p;
}

static void test_vector_empty(void **state)
{
	struct spb_payload p = { 0 }, *d;

	(void)state;
	assert_encodes(&p, "", 0);
	d = assert_decodes("", 0);
	assert_false(d->has_timestamp);
	assert_false(d->has_seq);
	assert_int_equal(d->nmetrics, 0);
	assert_null(d->metrics);
	assert_null(d->uuid);
	assert_false(d->has_body);
	spb_free(d);
}

static void test_vector_nbirth(void **state)
{
	struct spb_metric m[2] = {
		{ .name = "bdSeq", .has_alias = true, .alias = 1, .has_timestamp = true,
		  .timestamp = TS1, .has_datatype = true, .datatype = SPB_UINT64,
		  .value = v_long(3) },
		{ .name = "Node Control/Rebirth", .has_alias = true, .alias = 2,
		  .has_timestamp = true, .timestamp = TS1, .has_datatype = true,
		  .datatype = SPB_BOOLEAN, .value = v_bool(false) },
	};
	struct spb_payload p = { .has_timestamp = true, .timestamp = TS1, .metrics = m,
				 .nmetrics = 2, .has_seq = true, .seq = 0 };
	struct spb_payload *d;

	(void)state;
	assert_encodes(&p, V_NBIRTH, sizeof V_NBIRTH - 1);
	d = assert_decodes(V_NBIRTH, sizeof V_NBIRTH - 1);
	assert_true(d->has_timestamp);
	assert_true(d->timestamp == TS1);
	assert_true(d->has_seq);
	assert_int_equal(d->seq, 0);
	assert_int_equal(d->nmetrics, 2);
	assert_string_equal(d->metrics[0].name, "bdSeq");
	assert_true(d->metrics[0].has_alias && d->metrics[0].alias == 1);
	assert_int_equal(d->metrics[0].datatype, SPB_UINT64);
	assert_int_equal(d->metrics[0].value.kind, SPB_V_LONG);
	assert_int_equal(d->metrics[0].value.v.l, 3);
	assert_string_equal(d->metrics[1].name, "Node Control/Rebirth");
	assert_int_equal(d->metrics[1].value.kind, SPB_V_BOOL);
	assert_false(d->metrics[1].value.v.b);
	assert_ptr_equal(spb_find(d, "Node Control/Rebirth", false, 0), &d->metrics[1]);
	assert_ptr_equal(spb_find(d, NULL, true, 1), &d->metrics[0]);
	assert_null(spb_find(d, "bdseq", true, 7));
	spb_free(d);
}

static void test_vector_ddata(void **state)
{
	struct spb_property q = { .key = "Quality", .has_type = true, .type = SPB_INT32,
				  .value = v_int(0) };
	struct spb_metric m[4] = {
		{ .has_alias = true, .alias = 65537, .has_timestamp = true, .timestamp = TS2,
		  .is_historical = true, .value = { .kind = SPB_V_FLOAT, .v.f = 26.867098f } },
		{ .has_alias = true, .alias = 65538, .has_timestamp = true, .timestamp = TS2,
		  .value = v_int((uint32_t)(int32_t)-2) },
		{ .has_alias = true, .alias = 65539, .has_timestamp = true, .timestamp = TS2,
		  .value = v_long(UINT64_MAX) },
		{ .has_alias = true, .alias = 65540, .has_timestamp = true, .timestamp = TS2,
		  .is_null = true, .props = &q, .nprops = 1 },
	};
	struct spb_payload p = { .has_timestamp = true, .timestamp = TS2, .metrics = m,
				 .nmetrics = 4, .has_seq = true, .seq = 255 };
	struct spb_payload *d;

	(void)state;
	assert_encodes(&p, V_DDATA, sizeof V_DDATA - 1);
	d = assert_decodes(V_DDATA, sizeof V_DDATA - 1);
	assert_int_equal(d->seq, 255);
	assert_int_equal(d->nmetrics, 4);
	assert_null(d->metrics[0].name);
	assert_true(d->metrics[0].is_historical);
	assert_false(d->metrics[0].has_datatype);
	assert_int_equal(d->metrics[0].value.kind, SPB_V_FLOAT);
	assert_true(d->metrics[0].value.v.f == 26.867098f);
	assert_false(d->metrics[1].is_historical);
	assert_int_equal((int32_t)d->metrics[1].value.v.i, -2);
	assert_int_equal((int64_t)d->metrics[2].value.v.l, -1);
	assert_true(d->metrics[3].is_null);
	assert_int_equal(d->metrics[3].value.kind, SPB_V_NONE);
	assert_int_equal(d->metrics[3].nprops, 1);
	assert_string_equal(d->metrics[3].props[0].key, "Quality");
	assert_int_equal(d->metrics[3].props[0].type, SPB_INT32);
	assert_int_equal(d->metrics[3].props[0].value.kind, SPB_V_INT);
	assert_int_equal(d->metrics[3].props[0].value.v.i, 0);
	spb_free(d);
}

static void test_vector_dbirth(void **state)
{
	struct spb_property unit = { .key = "engUnit", .has_type = true, .type = SPB_STRING,
				     .value = v_str("m3/h") };
	struct spb_metric m[4] = {
		{ .name = "flow", .has_alias = true, .alias = 65537, .has_timestamp = true,
		  .timestamp = TS1, .has_datatype = true, .datatype = SPB_DOUBLE, .props = &unit,
		  .nprops = 1, .value = { .kind = SPB_V_DOUBLE, .v.d = 12.5 } },
		{ .name = "名字", .has_alias = true, .alias = 65538, .has_timestamp = true,
		  .timestamp = TS1, .has_datatype = true, .datatype = SPB_STRING,
		  .value = v_str("三号分区") },
		{ .name = "pump", .has_alias = true, .alias = 65539, .has_timestamp = true,
		  .timestamp = TS1, .has_datatype = true, .datatype = SPB_BOOLEAN,
		  .is_transient = true, .value = v_bool(true) },
		{ .name = "raw", .has_alias = true, .alias = 65540, .has_datatype = true,
		  .datatype = SPB_BYTES,
		  .value = { .kind = SPB_V_BYTES, .s = "\x00\x01\xff", .len = 3 } },
	};
	struct spb_payload p = { .has_timestamp = true, .timestamp = TS1, .metrics = m,
				 .nmetrics = 4, .has_seq = true, .seq = 1 };
	struct spb_payload *d;

	(void)state;
	assert_encodes(&p, V_DBIRTH, sizeof V_DBIRTH - 1);
	d = assert_decodes(V_DBIRTH, sizeof V_DBIRTH - 1);
	assert_int_equal(d->nmetrics, 4);
	assert_string_equal(d->metrics[0].props[0].value.s, "m3/h");
	assert_true(d->metrics[0].value.v.d == 12.5);
	assert_string_equal(d->metrics[1].name, "名字");
	assert_string_equal(d->metrics[1].value.s, "三号分区");
	assert_int_equal(d->metrics[1].value.len, strlen("三号分区"));
	assert_true(d->metrics[2].is_transient);
	assert_true(d->metrics[2].value.v.b);
	assert_false(d->metrics[3].has_timestamp);
	assert_int_equal(d->metrics[3].value.kind, SPB_V_BYTES);
	assert_int_equal(d->metrics[3].value.len, 3);
	assert_memory_equal(d->metrics[3].value.s, "\x00\x01\xff", 3);
	spb_free(d);
}

static void test_vector_uuid_body(void **state)
{
	struct spb_payload p = { .has_timestamp = true, .timestamp = 1, .uuid = "sluice",
				 .has_body = true, .body = (const uint8_t *)"\x00x", .body_len = 2 };
	struct spb_payload *d;

	(void)state;
	assert_encodes(&p, V_UUID_BODY, sizeof V_UUID_BODY - 1);
	d = assert_decodes(V_UUID_BODY, sizeof V_UUID_BODY - 1);
	assert_string_equal(d->uuid, "sluice");
	assert_true(d->has_body);
	assert_int_equal(d->body_len, 2);
	assert_memory_equal(d->body, "\x00x", 2);
	assert_false(d->has_seq);
	spb_free(d);
}

/* ---- what protobuf accepts beyond what an encoder writes ------------------------------ */

static void test_accepts(void **state)
{
	struct spb_payload *d;
	/* field 99 (varint), field 7 (fixed64), field 8 (bytes), field 9 (fixed32), then seq */
	static const char unknown[] = "\x98\x06\x05\x39\x01\x02\x03\x04\x05\x06\x07\x08"
				      "\x42\x02\xaa\xbb\x4d\x01\x02\x03\x04\x18\x07";
	/* seq as a non-minimal varint (0x85 0x00 is 5), timestamp given twice (last wins) */
	static const char nonmin[] = "\x18\x85\x00\x08\x01\x08\x02";
	/* a metric with two property sets (merged), a metadata block (skipped), a data set
	 * value (present, not decoded), alias with the wrong wire type (skipped) */
	static const char merged[] =
		"\x12\x1e"
		"\x4a\x07\x0a\x01k\x12\x02\x18\x05"    /* properties {keys:"k" values:{int 5}} */
		"\x4a\x07\x0a\x01j\x12\x02\x38\x01"    /* properties {keys:"j" values:{bool 1}} */
		"\x42\x02\x10\x03"                     /* metadata {content_type..}: skipped */
		"\x15\x01\x02\x03\x04"                 /* alias as fixed32: skipped */
		"\x8a\x01\x00";                        /* dataset_value {} */
	/* a 10-byte varint of 2^63 (the longest there is) */
	static const char longest[] = "\x18\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01";

	(void)state;
	d = assert_decodes(unknown, sizeof unknown - 1);
	assert_true(d->has_seq && d->seq == 7);
	assert_false(d->has_timestamp);
	spb_free(d);

	d = assert_decodes(nonmin, sizeof nonmin - 1);
	assert_int_equal(d->seq, 5);
	assert_int_equal(d->timestamp, 2);
	spb_free(d);

	d = assert_decodes(merged, sizeof merged - 1);
	assert_int_equal(d->nmetrics, 1);
	assert_false(d->metrics[0].has_alias);
	assert_int_equal(d->metrics[0].nprops, 2);
	assert_string_equal(d->metrics[0].props[0].key, "k");
	assert_int_equal(d->metrics[0].props[0].value.v.i, 5);
	assert_string_equal(d->metrics[0].props[1].key, "j");
	assert_true(d->metrics[0].props[1].value.v.b);
	assert_int_equal(d->metrics[0].value.kind, SPB_V_OTHER);
	spb_free(d);

	d = assert_decodes(longest, sizeof longest - 1);
	assert_true(d->seq == 1ull << 63);
	spb_free(d);
}

static void assert_refused(const char *buf, size_t len, const char *why)
{
	char err[200];
	struct spb_payload *d = spb_decode(buf, len, err, sizeof err);

	if (d) {
		spb_free(d);
		fail_msg("decoded what should be refused (%s)", why);
	}
	if (!strstr(err, why))
		fail_msg("refused for '%s', expected '%s'", err, why);
}

static void test_refuses(void **state)
{
	(void)state;
	assert_refused("\x08", 1, "truncated varint");
	assert_refused("\x08\x80", 2, "truncated varint");
	assert_refused("\x18\x80\x80\x80\x80\x80\x80\x80\x80\x80\x02", 11, "longer than 64 bits");
	assert_refused("\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\x81\x01", 12, "longer than 64");
	assert_refused("\x12\x05\x0a\x01", 4, "length past the end");
	assert_refused("\x12\x02\x0a\x05xx", 5, "length past the end");    /* inside a metric */
	assert_refused("\x09\x01\x02", 3, "truncated fixed-width");
	assert_refused("\x12\x02\x65\x01", 4, "truncated fixed-width");   /* a float cut short */
	assert_refused("\x0b", 1, "group");
	assert_refused("\x0c", 1, "group");
	assert_refused("\x0e", 1, "unknown wire type");
	assert_refused("\x00\x01", 2, "field number out of range");
	assert_refused("\x12\x04\x0a\x02\x61\x00", 6, "NUL byte");
	assert_refused("\x12\x05\x4a\x03\x0a\x01k", 7, "1 keys and 0 values");
	assert_refused("\x12\x06\x4a\x04\x12\x02\x18\x01", 8, "0 keys and 1 values");
	assert_refused("\x12\x06\x4a\x04\x0a\x02k\x00", 8, "NUL byte");    /* in a key */
}

static void test_encoder_refuses(void **state)
{
	struct spb_property bytes = { .key = "k", .value = { .kind = SPB_V_BYTES, .s = "x",
							     .len = 1 } };
	struct spb_property nokey = { .key = NULL, .value = { .kind = SPB_V_INT } };
	struct spb_metric m = { .name = "m", .props = &bytes, .nprops = 1 };
	struct spb_payload p = { .metrics = &m, .nmetrics = 1 };
	struct jbuf b;

	(void)state;
	jb_init(&b);
	assert_int_equal(spb_encode(&p, &b), -1);
	assert_int_equal(spb_encoded_size(&p), 0);
	m.props = &nokey;
	assert_int_equal(spb_encode(&p, &b), -1);
	m.nprops = 0;
	m.value.kind = SPB_V_OTHER;
	assert_int_equal(spb_encode(&p, &b), -1);
	m.value.kind = SPB_V_NONE;
	assert_int_equal(spb_encode(&p, &b), 0);
	assert_int_equal(b.len, 5);   /* 12 03 0a 01 6d */
	jb_free(&b);
}

/* ---- a round trip of generated payloads --------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* A value worth encoding: small and large varints, every kind. */
static uint64_t rnd_varint(void)
{
	return rnd() >> (rnd() % 64);
}

static struct spb_value rnd_value(bool bytes_ok, const char *text)
{
	struct spb_value v = { 0 };

	switch (rnd() % (bytes_ok ? 8 : 7)) {
	case 0:
		break;
	case 1:
		v.kind = SPB_V_INT;
		v.v.i = (uint32_t)rnd_varint();
		break;
	case 2:
		v.kind = SPB_V_LONG;
		v.v.l = rnd_varint();
		break;
	case 3:
		v.kind = SPB_V_FLOAT;
		v.v.f = (float)(int64_t)rnd() / 1e9f;
		break;
	case 4:
		v.kind = SPB_V_DOUBLE;
		v.v.d = (double)(int64_t)rnd() / 1e7;
		break;
	case 5:
		v.kind = SPB_V_BOOL;
		v.v.b = rnd() & 1;
		break;
	case 6:
		v.kind = SPB_V_STRING;
		v.s = text;
		v.len = rnd() % (strlen(text) + 1);
		break;
	default:
		v.kind = SPB_V_BYTES;
		v.s = "\0\1\2\3\4\5\6\7";
		v.len = rnd() % 9;
		break;
	}
	return v;
}

static void assert_value_equal(const struct spb_value *a, const struct spb_value *b)
{
	assert_int_equal(a->kind, b->kind);
	switch (a->kind) {
	case SPB_V_INT:
		assert_int_equal(a->v.i, b->v.i);
		break;
	case SPB_V_LONG:
		assert_true(a->v.l == b->v.l);
		break;
	case SPB_V_FLOAT:
		assert_memory_equal(&a->v.f, &b->v.f, 4);
		break;
	case SPB_V_DOUBLE:
		assert_memory_equal(&a->v.d, &b->v.d, 8);
		break;
	case SPB_V_BOOL:
		assert_int_equal(a->v.b, b->v.b);
		break;
	case SPB_V_STRING:
	case SPB_V_BYTES:
		assert_int_equal(a->len, b->len);
		if (a->len)
			assert_memory_equal(a->s, b->s, a->len);
		break;
	default:
		break;
	}
}

static void test_round_trip(void **state)
{
	static const char *const names[] = { "flow", "Node Control/Rebirth", "", "名字/水位" };
	struct spb_metric ms[8];
	struct spb_property ps[8][3];
	struct jbuf b, b2;

	(void)state;
	jb_init(&b);
	jb_init(&b2);
	for (int round = 0; round < 2000; round++) {
		struct spb_payload p = { 0 }, *d;
		char err[200];

		p.has_timestamp = rnd() & 1;
		p.timestamp = rnd_varint();
		p.has_seq = rnd() & 1;
		p.seq = rnd() % 256;
		p.uuid = rnd() % 4 ? NULL : "u-1";
		p.has_body = rnd() % 4 == 0;
		p.body = (const uint8_t *)"\xff\x00";
		p.body_len = rnd() % 3;
		p.nmetrics = rnd() % 9;
		p.metrics = ms;
		for (size_t i = 0; i < p.nmetrics; i++) {
			struct spb_metric *m = &ms[i];
			memset(m, 0, sizeof *m);
			m->name = rnd() % 3 ? names[rnd() % 4] : NULL;
			m->has_alias = rnd() & 1;
			m->alias = rnd_varint();
			m->has_timestamp = rnd() & 1;
			m->timestamp = rnd_varint();
			m->has_datatype = rnd() & 1;
			m->datatype = (uint32_t)(rnd() % 35);
			m->is_historical = rnd() & 1;
			m->is_transient = rnd() & 1;
			m->is_null = rnd() & 1;
			m->nprops = rnd() % 4;
			m->props = ps[i];
			for (size_t k = 0; k < m->nprops; k++) {
				ps[i][k] = (struct spb_property){
					.key = names[rnd() % 4], .has_type = rnd() & 1,
					.type = (uint32_t)(rnd() % 22), .is_null = rnd() & 1,
					.value = rnd_value(false, "三号分区 engUnit") };
			}
			m->value = rnd_value(true, "m3/h 进水");
		}
		jb_reset(&b);
		assert_int_equal(spb_encode(&p, &b), 0);
		assert_int_equal(spb_encoded_size(&p), b.len);
		d = spb_decode(b.p, b.len, err, sizeof err);
		if (!d)
			fail_msg("round %d: %s", round, err);
		assert_int_equal(d->has_timestamp, p.has_timestamp);
		if (p.has_timestamp)
			assert_true(d->timestamp == p.timestamp);
		assert_int_equal(d->has_seq, p.has_seq);
		if (p.has_seq)
			assert_true(d->seq == p.seq);
		if (p.uuid)
			assert_string_equal(d->uuid, p.uuid);
		else
			assert_null(d->uuid);
		assert_int_equal(d->has_body, p.has_body);
		assert_int_equal(d->nmetrics, p.nmetrics);
		for (size_t i = 0; i < p.nmetrics; i++) {
			const struct spb_metric *a = &p.metrics[i], *m = &d->metrics[i];
			if (a->name)
				assert_string_equal(m->name, a->name);
			else
				assert_null(m->name);
			assert_int_equal(m->has_alias, a->has_alias);
			if (a->has_alias)
				assert_true(m->alias == a->alias);
			assert_int_equal(m->has_datatype, a->has_datatype);
			assert_int_equal(m->is_historical, a->is_historical);
			assert_int_equal(m->is_transient, a->is_transient);
			assert_int_equal(m->is_null, a->is_null);
			assert_int_equal(m->nprops, a->nprops);
			for (size_t k = 0; k < a->nprops; k++) {
				assert_string_equal(m->props[k].key, a->props[k].key);
				assert_int_equal(m->props[k].has_type, a->props[k].has_type);
				assert_int_equal(m->props[k].is_null, a->props[k].is_null);
				assert_value_equal(&m->props[k].value, &a->props[k].value);
			}
			assert_value_equal(&m->value, &a->value);
		}
		/* and what was decoded encodes to the same bytes */
		jb_reset(&b2);
		assert_int_equal(spb_encode(d, &b2), 0);
		assert_int_equal(b2.len, b.len);
		assert_memory_equal(b2.p, b.p, b.len);
		spb_free(d);
	}
	jb_free(&b);
	jb_free(&b2);
}

/* Every prefix of a valid payload either decodes or is refused, never read past. */
static void test_truncations(void **state)
{
	(void)state;
	for (size_t n = 0; n < sizeof V_DBIRTH - 1; n++) {
		char err[200], *copy = malloc(n ? n : 1);
		struct spb_payload *d;

		assert_non_null(copy);
		memcpy(copy, V_DBIRTH, n);
		d = spb_decode(copy, n, err, sizeof err);
		spb_free(d);
		free(copy);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vector_empty),
		cmocka_unit_test(test_vector_nbirth),
		cmocka_unit_test(test_vector_ddata),
		cmocka_unit_test(test_vector_dbirth),
		cmocka_unit_test(test_vector_uuid_body),
		cmocka_unit_test(test_accepts),
		cmocka_unit_test(test_refuses),
		cmocka_unit_test(test_encoder_refuses),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_truncations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
