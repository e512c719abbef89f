/*
 * sim_sunspec: the register map of a SunSpec three-phase inverter (models 1, 103, 120),
 * built as sim_model points with their behaviours set explicitly: a SunSpec map is
 * identified by its markers and scale factors, not by names and units, so nothing here
 * is left to sim_model's guessing. Must never do I/O or keep state of its own.
 */
#include "sim_sunspec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Special values in the descriptor table. */
#define SF_W 99        /* scale: the power scale factor chosen for the rated power */
#define K_SF_W (-1)    /* kind: a constant equal to that scale factor */
#define K_TEXT (-2)    /* kind: a string with its own text */
#define NOT_IMPL_I16 (-32768.0) /* SunSpec's "not implemented" for int16 and sunssf */
#define NOT_IMPL_U16 65535.0

struct ss_pt {
	const char *name;
	uint16_t off;      /* from SIM_SUNSPEC_BASE */
	enum pt_type type;
	uint16_t len;      /* registers, strings only */
	int sf;            /* the point's scale is 10^sf (SF_W: the power's) */
	int kind;          /* enum sim_kind, K_SF_W or K_TEXT */
	double arg;        /* a constant's value, or a power-derived point's factor */
};

/* AC 400 V three-phase (230 V phase), DC string at 600 V, 97 % efficiency. */
#define V_PH 230.0
#define V_DC 600.0
#define EFF 0.97

static const struct ss_pt ss_map[] = {
	{ "SunS", 0, PT_UINT32, 0, 0, SIM_K_CONST, 0x53756e53 },
	/* common model */
	{ "C_ID", 2, PT_UINT16, 0, 0, SIM_K_CONST, 1 },
	{ "C_L", 3, PT_UINT16, 0, 0, SIM_K_CONST, 66 },
	{ "Mn", 4, PT_STRING, 16, 0, K_TEXT, 0 },
	{ "Md", 20, PT_STRING, 16, 0, SIM_K_STRING, 0 },
	{ "Opt", 36, PT_STRING, 8, 0, K_TEXT, 0 },
	{ "Vr", 44, PT_STRING, 8, 0, K_TEXT, 0 },
	{ "SN", 52, PT_STRING, 16, 0, K_TEXT, 0 },
	{ "DA", 68, PT_UINT16, 0, 0, SIM_K_CONST, 0 },
	{ "C_Pad", 69, PT_UINT16, 0, 0, SIM_K_CONST, 0x8000 },
	/* three-phase inverter */
	{ "I_ID", 70, PT_UINT16, 0, 0, SIM_K_CONST, 103 },
	{ "I_L", 71, PT_UINT16, 0, 0, SIM_K_CONST, 50 },
	{ "A", 72, PT_UINT16, 0, -2, SIM_K_POWER, 1.0 / V_PH }, /* the sum of the phases */
	{ "AphA", 73, PT_UINT16, 0, -2, SIM_K_POWER, 1.0 / V_PH / 3.0 },
	{ "AphB", 74, PT_UINT16, 0, -2, SIM_K_POWER, 1.0 / V_PH / 3.0 },
	{ "AphC", 75, PT_UINT16, 0, -2, SIM_K_POWER, 1.0 / V_PH / 3.0 },
	{ "A_SF", 76, PT_INT16, 0, 0, SIM_K_CONST, -2 },
	{ "PPVphAB", 77, PT_UINT16, 0, -1, SIM_K_CONST, 400.0 },
	{ "PPVphBC", 78, PT_UINT16, 0, -1, SIM_K_CONST, 400.0 },
	{ "PPVphCA", 79, PT_UINT16, 0, -1, SIM_K_CONST, 400.0 },
	{ "PhVphA", 80, PT_UINT16, 0, -1, SIM_K_CONST, V_PH },
	{ "PhVphB", 81, PT_UINT16, 0, -1, SIM_K_CONST, V_PH },
	{ "PhVphC", 82, PT_UINT16, 0, -1, SIM_K_CONST, V_PH },
	{ "V_SF", 83, PT_INT16, 0, 0, SIM_K_CONST, -1 },
	{ "W", 84, PT_INT16, 0, SF_W, SIM_K_POWER, 1.0 },
	{ "W_SF", 85, PT_INT16, 0, 0, K_SF_W, 0 },
	{ "Hz", 86, PT_UINT16, 0, -2, SIM_K_CONST, 50.0 },
	{ "Hz_SF", 87, PT_INT16, 0, 0, SIM_K_CONST, -2 },
	{ "VA", 88, PT_INT16, 0, SF_W, SIM_K_POWER, 1.0 },
	{ "VA_SF", 89, PT_INT16, 0, 0, K_SF_W, 0 },
	{ "VAr", 90, PT_INT16, 0, 0, SIM_K_CONST, 0 },
	{ "VAr_SF", 91, PT_INT16, 0, 0, SIM_K_CONST, 0 },
	{ "PF", 92, PT_INT16, 0, 0, SIM_K_CONST, 100 },
	{ "PF_SF", 93, PT_INT16, 0, 0, SIM_K_CONST, 0 },
	{ "WH", 94, PT_UINT32, 0, 0, SIM_K_ENERGY, 1000.0 }, /* Wh per kWh */
	{ "WH_SF", 96, PT_INT16, 0, 0, SIM_K_CONST, 0 },
	{ "DCA", 97, PT_UINT16, 0, -2, SIM_K_POWER, 1.0 / EFF / V_DC },
	{ "DCA_SF", 98, PT_INT16, 0, 0, SIM_K_CONST, -2 },
	{ "DCV", 99, PT_UINT16, 0, -1, SIM_K_CONST, V_DC },
	{ "DCV_SF", 100, PT_INT16, 0, 0, SIM_K_CONST, -1 },
	{ "DCW", 101, PT_INT16, 0, SF_W, SIM_K_POWER, 1.0 / EFF },
	{ "DCW_SF", 102, PT_INT16, 0, 0, K_SF_W, 0 },
	{ "TmpCab", 103, PT_INT16, 0, -1, SIM_K_CONST, 35.0 },
	{ "TmpSnk", 104, PT_INT16, 0, -1, SIM_K_CONST, 45.0 },
	{ "TmpTrns", 105, PT_INT16, 0, 0, SIM_K_CONST, NOT_IMPL_I16 },
	{ "TmpOt", 106, PT_INT16, 0, 0, SIM_K_CONST, NOT_IMPL_I16 },
	{ "Tmp_SF", 107, PT_INT16, 0, 0, SIM_K_CONST, -1 },
	{ "St", 108, PT_UINT16, 0, 0, SIM_K_INV_STATE, 0 },
	{ "StVnd", 109, PT_UINT16, 0, 0, SIM_K_CONST, NOT_IMPL_U16 },
	{ "Evt1", 110, PT_UINT32, 0, 0, SIM_K_STATUS, 0 }, /* bit 0: ground fault */
	{ "Evt2", 112, PT_UINT32, 0, 0, SIM_K_CONST, 0 },
	{ "EvtVnd1", 114, PT_UINT32, 0, 0, SIM_K_CONST, 0 },
	{ "EvtVnd2", 116, PT_UINT32, 0, 0, SIM_K_CONST, 0 },
	{ "EvtVnd3", 118, PT_UINT32, 0, 0, SIM_K_CONST, 0 },
	{ "EvtVnd4", 120, PT_UINT32, 0, 0, SIM_K_CONST, 0 },
	/* nameplate */
	{ "N_ID", 122, PT_UINT16, 0, 0, SIM_K_CONST, 120 },
	{ "N_L", 123, PT_UINT16, 0, 0, SIM_K_CONST, 26 },
	{ "DERTyp", 124, PT_UINT16, 0, 0, SIM_K_CONST, 4 }, /* PV */
	{ "WRtg", 125, PT_UINT16, 0, SF_W, SIM_K_RATED, 1.0 },
	{ "WRtg_SF", 126, PT_INT16, 0, 0, K_SF_W, 0 },
	{ "VARtg", 127, PT_UINT16, 0, SF_W, SIM_K_RATED, 1.0 },
	{ "VARtg_SF", 128, PT_INT16, 0, 0, K_SF_W, 0 },
	{ "VArRtgQ1", 129, PT_INT16, 0, 0, SIM_K_CONST, NOT_IMPL_I16 },
	{ "VArRtgQ2", 130, PT_INT16, 0, 0, SIM_K_CONST, NOT_IMPL_I16 },
	{ "VArRtgQ3", 131, PT_INT16, 0, 0, SIM_K_CONST, NOT_IMPL_I16 },
	{ "VArRtgQ4", 132, PT_INT16, 0, 0, SIM_K_CONST, NOT_IMPL_I16 },
	{ "VArRtg_SF", 133, PT_INT16, 0, 0, SIM_K_CONST, NOT_IMPL_I16 },
	{ "ARtg", 134, PT_UINT16, 0, -2, SIM_K_RATED, 1.0 / V_PH / 3.0 },
	{ "ARtg_SF", 135, PT_INT16, 0, 0, SIM_K_CONST, -2 },
	{ "PFRtgQ1", 136, PT_INT16, 0, 0, SIM_K_CONST, NOT_IMPL_I16 },
	{ "PFRtgQ2", 137, PT_INT16, 0, 0, SIM_K_CONST, NOT_IMPL_I16 },
	{ "PFRtgQ3", 138, PT_INT16, 0, 0, SIM_K_CONST, NOT_IMPL_I16 },
	{ "PFRtgQ4", 139, PT_INT16, 0, 0, SIM_K_CONST, NOT_IMPL_I16 },
	{ "PFRtg_SF", 140, PT_INT16, 0, 0, SIM_K_CONST, NOT_IMPL_I16 },
	{ "WHRtg", 141, PT_UINT16, 0, 0, SIM_K_CONST, NOT_IMPL_U16 },
	{ "WHRtg_SF", 142, PT_INT16, 0, 0, SIM_K_CONST, NOT_IMPL_I16 },
	{ "AhrRtg", 143, PT_UINT16, 0, 0, SIM_K_CONST, NOT_IMPL_U16 },
	{ "AhrRtg_SF", 144, PT_INT16, 0, 0, SIM_K_CONST, NOT_IMPL_I16 },
	{ "MaxChaRte", 145, PT_UINT16, 0, 0, SIM_K_CONST, NOT_IMPL_U16 },
	{ "MaxChaRte_SF", 146, PT_INT16, 0, 0, SIM_K_CONST, NOT_IMPL_I16 },
	{ "MaxDisChaRte", 147, PT_UINT16, 0, 0, SIM_K_CONST, NOT_IMPL_U16 },
	{ "MaxDisChaRte_SF", 148, PT_INT16, 0, 0, SIM_K_CONST, NOT_IMPL_I16 },
	{ "N_Pad", 149, PT_UINT16, 0, 0, SIM_K_CONST, 0x8000 },
	/* end of the models */
	{ "End_ID", 150, PT_UINT16, 0, 0, SIM_K_CONST, 0xffff },
	{ "End_L", 151, PT_UINT16, 0, 0, SIM_K_CONST, 0 },
};
#define SS_N (sizeof ss_map / sizeof ss_map[0])

/* The smallest power scale factor at which the rated power, with some headroom for
 * noise, fits W's int16. */
static int power_sf(double rated_w)
{
	int sf = 0;
	while (sf < 6 && rated_w * 1.1 / pow(10.0, sf) > 32767.0)
		sf++;
	return sf;
}

struct sim_device *sim_sunspec_new(const char *display_name, uint8_t unit_id, double rated_w,
				   int scenario, uint64_t seed, int64_t start_ms, char *err,
				   size_t errlen)
{
	struct point_def pts[SS_N];
	struct sim_device *d;
	char sn[32];

	if (rated_w <= 0 || !isfinite(rated_w))
		rated_w = SIM_RATED_POWER_W;
	int sfw = power_sf(rated_w);
	memset(pts, 0, sizeof pts);
	for (size_t i = 0; i < SS_N; i++) {
		const struct ss_pt *s = &ss_map[i];
		struct point_def *p = &pts[i];
		snprintf(p->name, sizeof p->name, "%s", s->name);
		p->table = MB_HOLDING;
		p->address = (uint16_t)(SIM_SUNSPEC_BASE + s->off);
		p->type = s->type;
		p->bit = -1;
		p->length = s->len;
		p->scale = pow(10.0, s->sf == SF_W ? sfw : s->sf);
	}
	if (!(d = sim_device_new(pts, SS_N, display_name, scenario, seed, start_ms, err, errlen)))
		return NULL;
	sim_device_set_rated(d, rated_w);
	snprintf(sn, sizeof sn, "SIM-%03u-%08llx", unit_id,
		 (unsigned long long)(seed & 0xffffffffULL));
	for (size_t i = 0; i < SS_N; i++) {
		const struct ss_pt *s = &ss_map[i];
		int rc = 0;
		switch (s->kind) {
		case K_SF_W:
			sim_device_set_const(d, i, sfw);
			break;
		case K_TEXT:
			rc = sim_device_set_string(d, i, strcmp(s->name, "Mn") == 0 ? "sluice"
							  : strcmp(s->name, "Vr") == 0 ? "sim"
							  : strcmp(s->name, "SN") == 0 ? sn : "");
			break;
		case SIM_K_CONST:
			sim_device_set_const(d, i, strcmp(s->name, "DA") == 0 ? unit_id : s->arg);
			break;
		case SIM_K_STRING:
			sim_device_set_kind(d, i, SIM_K_STRING, 0);
			break;
		case SIM_K_ENERGY:
			/* the counter's unit is Wh whatever the point's name suggests */
			sim_device_set_kind(d, i, SIM_K_ENERGY, s->arg);
			break;
		default:
			sim_device_set_kind(d, i, s->kind, s->arg);
			break;
		}
		if (rc < 0) {
			snprintf(err, errlen, "out of memory");
			sim_device_free(d);
			return NULL;
		}
	}
	return d;
}
