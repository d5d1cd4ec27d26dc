/* checks32.h -- harness checks of the types ignis/simd/defs32.h defines (included by
 * harness.c after its helpers): Q4_0, Q5_1, IQ4_NL against Q8_0 activations, F32/F16/BF16
 * weights against float activations. Every dot and every tile shape of the level must give
 * the scalar bits; the scalar definition must match dequantize-then-dot (within rounding)
 * and, with unit scales, the exact integer dot. */

static int b32_bytes(int type) { return type == 7 ? 24 : 18; }

/* random blocks with sane f16 scales (Q5_1: a negative min, as real files have) */
static void make_weights32(int type, uint8_t *w, int nblk) {
    random_bytes(w, (size_t)nblk * b32_bytes(type));
    for (int s = 0; s < nblk; s++) {
        uint8_t *b = w + (size_t)s * b32_bytes(type);
        put_f16(b, rndu() * 0.01f);
        if (type == 7) put_f16(b + 2, (rndu() - 0.6f) * 0.1f);
    }
}

/* random float weight row of k elements (F32 / F16 / BF16 encodings of rndn() * s) */
static void make_wfloat(int type, uint8_t *w, int k) {
    float s = powf(2.0f, (float)rndi(-6, 6));
    for (int i = 0; i < k; i++) {
        float v = rndn() * s;
        if (type == 0) memcpy(w + 4 * i, &v, 4);
        else if (type == 1) { uint16_t h = ignis_scalar_f32_to_f16(v); memcpy(w + 2 * i, &h, 2); }
        else { uint16_t h = (uint16_t)(ignis_f32_bits(v) >> 16); memcpy(w + 2 * i, &h, 2); }
    }
    if (rndi(0, 9) == 0) memset(w, 0, (size_t)(type == 0 ? 4 : 2) * (k < 5 ? k : 5));   /* some zeros */
}

static void check_dots32(const char *name, int type) {
    enum { MAXB = 48, MAXK = 700 };
    static uint8_t w[8][MAXK * 4], x[8][MAXK * 4];
    const uint8_t *wp[8], *xp[8];
    const int is_float = type == 0 || type == 1 || type == 30;
    int bad_dot = 0, bad_tile = 0, tiles = 0;
    char nm[64];
    for (int it = 0; it < 60; it++) {
        int n = is_float ? rndi(1, MAXK) : rndi(1, MAXB);         /* elements (float) or blocks */
        if (is_float && it % 3 == 0) n = (n + 15) / 16 * 16;         /* no tail: the tiles' tree path */
        for (int r = 0; r < 8; r++) {
            if (is_float) {
                make_wfloat(type, w[r], n);
                float *xf = (float *)x[r];
                for (int i = 0; i < n; i++) xf[i] = rndn();
            } else {
                make_weights32(type, w[r], n);
                make_act(x[r], n, it % 4 == 0 ? 127 : 0);
            }
            wp[r] = w[r];
            xp[r] = x[r];
        }
        float ref[8][8];
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 8; j++) ref[i][j] = ignis_scalar_vec_dot(type, n, w[i], x[j]);
        for (int i = 0; i < 8; i++) {
            float v = SIMD(vec_dot)(type, n, w[i], x[i]);
            if (ignis_f32_bits(v) != ignis_f32_bits(ref[i][i])) bad_dot++;
        }
        float out[64];
        for (int rm = 1; rm <= 8; rm++)
            for (int rn = 1; rn <= 8; rn++) {
                SIMD(tile)(type, n, wp, rm, xp, rn, out);
                tiles++;
                bad_tile += tile_differs(out, ref, rm, rn);
            }
    }
    snprintf(nm, sizeof nm, "vec_dot_%s", name);
    report(nm, bad_dot == 0, "480 dots, %d differ from the scalar bits", bad_dot);
    snprintf(nm, sizeof nm, "tile_%s", name);
    report(nm, bad_tile == 0, "%d tiles (all shapes up to 8x8), %d differ from the scalar bits", tiles, bad_tile);
}

/* The scalar definitions vs dequantize-then-dot in double; quantized types with unit scales
 * and small activations: every float step is exact, the result is the integer dot. Float
 * weights with small integer values: exact too. */
static void check_dot_definition32(void) {
    static uint8_t w[16 * 24 * 8], x[16 * 34 * 8];
    static float wf[4096], xf[4096];
    int bad = 0, bad_int = 0;
    for (int it = 0; it < 600; it++) {
        const int type = (int[]){2, 7, 20, 0, 1, 30}[it % 6];
        const int is_float = type == 0 || type == 1 || type == 30;
        const int n = is_float ? rndi(1, 500) : rndi(1, 16);
        const int k = is_float ? n : n * 32;
        if (is_float) {
            make_wfloat(type, w, k);
            for (int i = 0; i < k; i++) ((float *)x)[i] = xf[i] = rndn();
        } else {
            make_weights32(type, w, n);
            make_act(x, n, 0);
            ignis_dequant_row_q8_0(x, xf, k);
        }
        ignis_dequant_row_32x(type, w, wf, k);
        const float s = ignis_scalar_vec_dot(type, n, w, x);
        double ref = 0, mag = 0;
        for (int i = 0; i < k; i++) { ref += (double)wf[i] * xf[i]; mag += fabs((double)wf[i] * xf[i]); }
        if (fabs(ref - s) > 1e-5 * mag + 1e-30) bad++;
        /* exact case */
        if (is_float) {
            for (int i = 0; i < k; i++) {
                float v = (float)rndi(-8, 8);
                if (type == 0) memcpy(w + 4 * i, &v, 4);
                else if (type == 1) { uint16_t h = ignis_scalar_f32_to_f16(v); memcpy(w + 2 * i, &h, 2); }
                else { uint16_t h = (uint16_t)(ignis_f32_bits(v) >> 16); memcpy(w + 2 * i, &h, 2); }
                ((float *)x)[i] = xf[i] = (float)rndi(-100, 100);
            }
        } else {
            for (int b = 0; b < n; b++) {
                uint8_t *blk = w + (size_t)b * b32_bytes(type);
                put_f16(blk, 1.0f);
                if (type == 7) put_f16(blk + 2, -8.0f);
            }
            make_act(x, n, 7);
            ignis_dequant_row_q8_0(x, xf, k);
        }
        ignis_dequant_row_32x(type, w, wf, k);
        double exact = 0;
        for (int i = 0; i < k; i++) exact += (double)wf[i] * xf[i];
        if ((double)ignis_scalar_vec_dot(type, n, w, x) != exact || (double)SIMD(vec_dot)(type, n, w, x) != exact) bad_int++;
    }
    report("dot_definition_32x", bad == 0, "600 scalar dots (Q4_0, Q5_1, IQ4_NL, F32, F16, BF16) vs dequantize-then-dot, %d off", bad);
    report("dot_int_32x", bad_int == 0, "600 dots with unit scales / integer values, %d not the exact dot", bad_int);
}

static void check_all32(void) {
    check_dots32("q4_0", 2);
    check_dots32("q5_1", 7);
    check_dots32("iq4_nl", 20);
    check_dots32("f32", 0);
    check_dots32("f16", 1);
    check_dots32("bf16", 30);
    check_dot_definition32();
}
