/* Optional native kernels for the bicubic evaluation pair (loaded with ctypes by odesr.native).
 *
 * Conventions (the torch path of odesr.degrade / odesr.metrics, which stays the reference):
 *  - images are float32 planes in [0, 1], row-major, one plane per channel;
 *  - a separable resize is given per axis as CSR taps: output o takes
 *    sum_{k in ptr[o]..ptr[o+1]} val[k] * in[col[k]] (the non-zero weights of
 *    odesr.resize._weights_np, cast to float32); float32 accumulation;
 *  - quantise = floor(clip(x, 0, 1) * 255 + 0.5), kept as an integer 0..255;
 *  - luma = floor(16 + (65.481 R + 128.553 G + 24.966 B) / 255 + 0.5) for 8-bit R, G, B, computed
 *    exactly in integers (MATLAB rgb2ycbcr on uint8), scored centred (luma - 128);
 *  - SSIM: 11x11 Gaussian (sigma 1.5, taps given by the caller), 'valid' region, filtered vertically
 *    then horizontally in float32 and averaged in float64, against prepared HR statistics.
 * No Python C-API is used beyond an empty module stub, so `import odesr._native` finds the file.
 */
#include <Python.h>

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define HOT
#endif

#define SSIM_WIN 11

typedef struct {
    int32_t in_len;
    int32_t out_len;
    const int32_t *ptr; /* out_len + 1 */
    const int32_t *col;
    const float *val;
} odesr_taps;

typedef struct {
    const float *plane;      /* centred HR luma at the scored window's top-left */
    const float *mean;       /* the HR statistics at the same top-left (valid-filtered frame) */
    const float *twice_mean;
    const float *lum_den;
    const float *var_c2;
    int64_t plane_stride;    /* elements between rows */
    int64_t stats_stride;
} odesr_reference;

/* ---- scratch: one growing buffer per thread (the evaluation runs one pair at a time) ---- */

static _Thread_local float *scratch = NULL;
static _Thread_local size_t scratch_len = 0;

static float *workspace(size_t n) {
    if (n == 0) n = 1; /* an empty request still gets a buffer: NULL means out of memory */
    if (n > scratch_len) {
        free(scratch);
        scratch = (float *)malloc(n * sizeof(float));
        scratch_len = scratch ? n : 0;
    }
    return scratch;
}

/* Taps that the passes can follow without reading outside their arrays: lengths positive,
 * ptr[0] == 0, every output with at least one tap, every column inside the input. */
static int taps_ok(const odesr_taps *t) {
    if (!t || t->in_len < 1 || t->out_len < 1 || !t->ptr || !t->col || !t->val) return 0;
    if (t->ptr[0] != 0) return 0;
    for (int32_t o = 0; o < t->out_len; o++)
        if (t->ptr[o + 1] <= t->ptr[o]) return 0;
    for (int32_t k = 0; k < t->ptr[t->out_len]; k++)
        if (t->col[k] < 0 || t->col[k] >= t->in_len) return 0;
    return 1;
}

/* ---- resize along the row axis: out rows o in [o0, o1) of n columns each ---- */

HOT static void vpass(const float *restrict in, ptrdiff_t is, int n, const odesr_taps *t, int o0,
                      int o1, float *restrict out, ptrdiff_t os) {
    for (int o = o0; o < o1; o++) {
        float *restrict dst = out + (ptrdiff_t)(o - o0) * os;
        int a = t->ptr[o], b = t->ptr[o + 1];
        int k = a;
        {
            const float *restrict s0 = in + (ptrdiff_t)t->col[k] * is;
            float w0 = t->val[k];
            if (b - a >= 2) {
                const float *restrict s1 = in + (ptrdiff_t)t->col[k + 1] * is;
                float w1 = t->val[k + 1];
                for (int j = 0; j < n; j++) dst[j] = w0 * s0[j] + w1 * s1[j];
                k += 2;
            } else {
                for (int j = 0; j < n; j++) dst[j] = w0 * s0[j];
                k += 1;
            }
        }
        for (; k + 3 < b; k += 4) {
            const float *restrict s0 = in + (ptrdiff_t)t->col[k] * is;
            const float *restrict s1 = in + (ptrdiff_t)t->col[k + 1] * is;
            const float *restrict s2 = in + (ptrdiff_t)t->col[k + 2] * is;
            const float *restrict s3 = in + (ptrdiff_t)t->col[k + 3] * is;
            float w0 = t->val[k], w1 = t->val[k + 1], w2 = t->val[k + 2], w3 = t->val[k + 3];
            for (int j = 0; j < n; j++)
                dst[j] = dst[j] + w0 * s0[j] + w1 * s1[j] + w2 * s2[j] + w3 * s3[j];
        }
        for (; k + 1 < b; k += 2) {
            const float *restrict s0 = in + (ptrdiff_t)t->col[k] * is;
            const float *restrict s1 = in + (ptrdiff_t)t->col[k + 1] * is;
            float w0 = t->val[k], w1 = t->val[k + 1];
            for (int j = 0; j < n; j++) dst[j] = dst[j] + w0 * s0[j] + w1 * s1[j];
        }
        for (; k < b; k++) {
            const float *restrict s0 = in + (ptrdiff_t)t->col[k] * is;
            float w0 = t->val[k];
            for (int j = 0; j < n; j++) dst[j] += w0 * s0[j];
        }
    }
}

/* out (cols x rows) = in (rows x cols) transposed */
HOT static void transpose(const float *restrict in, int rows, int cols, ptrdiff_t is,
                          float *restrict out, ptrdiff_t os) {
    enum { B = 16 };
    for (int i0 = 0; i0 < rows; i0 += B) {
        int i1 = i0 + B < rows ? i0 + B : rows;
        for (int j0 = 0; j0 < cols; j0 += B) {
            int j1 = j0 + B < cols ? j0 + B : cols;
            for (int j = j0; j < j1; j++)
                for (int i = i0; i < i1; i++) out[(ptrdiff_t)j * os + i] = in[(ptrdiff_t)i * is + j];
        }
    }
}

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef double v4d __attribute__((vector_size(32)));

static inline v8f ld8(const float *p) {
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void st8(float *p, v8f v) { memcpy(p, &v, sizeof v); }

/* x -> floor(clip(x, 0, 1) * 255 + 0.5) (non-negative: truncation is floor; NaN -> 0) */
static inline v8i level8(v8f x) {
    const v8f zero = {0}, one = zero + 1.0f;
    v8i pos = x > zero;
    x = (v8f)((v8i)x & pos);
    v8i big = x > one;
    x = (v8f)(((v8i)x & ~big) | ((v8i)one & big));
    return __builtin_convertvector(x * 255.0f + 0.5f, v8i);
}

static inline int32_t level(float x) {
    float v = x > 0.0f ? x : 0.0f;
    v = v < 1.0f ? v : 1.0f;
    return (int32_t)(v * 255.0f + 0.5f);
}

HOT static void quantize_f(float *restrict x, ptrdiff_t n) {
    ptrdiff_t n8 = n - n % 8;
    for (ptrdiff_t i = 0; i < n8; i += 8)
        st8(x + i, __builtin_convertvector(level8(ld8(x + i)), v8f) / 255.0f);
    for (ptrdiff_t i = n8; i < n; i++) x[i] = (float)level(x[i]) / 255.0f;
}

HOT static void quantize_i32(const float *restrict x, int n, int32_t *restrict q) {
    int n8 = n - n % 8;
    for (int i = 0; i < n8; i += 8) {
        v8i v = level8(ld8(x + i));
        memcpy(q + i, &v, sizeof v);
    }
    for (int i = n8; i < n; i++) q[i] = level(x[i]);
}

/* centred MATLAB luma of 8-bit planes: floor(16.5 + (65481 r + 128553 g + 24966 b) / 255000) - 128,
 * exact: a float estimate of the quotient, then an integer correction */
HOT static void luma(const int32_t *restrict r, const int32_t *restrict g, const int32_t *restrict b,
                     ptrdiff_t n, float *restrict y) {
    for (ptrdiff_t i = 0; i < n; i++) {
        int32_t num = 65481 * r[i] + 128553 * g[i] + 24966 * b[i] + 4207500;
        int32_t q = (int32_t)((float)num * (1.0f / 255000.0f));
        int32_t rem = num - q * 255000;
        q += (rem >= 255000) - (rem < 0);
        y[i] = (float)(q - 128);
    }
}

/* Resize one plane (in_h x in_w, row stride `is`) with taps `tv` (rows) and `th` (columns) into
 * `out` (tv->out_len x th->out_len, contiguous): rows first, float32. Returns 0, -1 without
 * memory, -3 for taps that do not fit (see taps_ok) or a row stride shorter than a row. */
int odesr_resize_plane(const float *in, int64_t is, const odesr_taps *tv, const odesr_taps *th,
                       float *out) {
    if (!taps_ok(tv) || !taps_ok(th) || is < th->in_len) return -3;
    int oh = tv->out_len, ow = th->out_len, iw = th->in_len;
    size_t a = (size_t)oh * iw, b = (size_t)ow * oh;
    float *buf = workspace(2 * a + b);
    if (!buf) return -1;
    float *rows = buf, *tr = buf + a, *res = buf + 2 * a;
    vpass(in, is, iw, tv, 0, oh, rows, iw);
    transpose(rows, oh, iw, iw, tr, oh);
    vpass(tr, oh, oh, th, 0, ow, res, oh);
    transpose(res, ow, oh, oh, out, ow);
    return 0;
}

/* ---- SSIM / PSNR of a centred SR luma plane (h x w, contiguous) against a reference ---- */

static inline double hsum8(v8f v) { /* float lanes summed in float64 */
    v4d lo = {v[0], v[1], v[2], v[3]}, hi = {v[4], v[5], v[6], v[7]};
    v4d s = lo + hi;
    return (s[0] + s[1]) + (s[2] + s[3]);
}

static inline float ssim_px(float mx, float sxx, float sxy, float mean, float twice, float lum,
                            float var, float c1, float c2) {
    sxx = sxx - mx * mx;
    sxy = sxy - mx * mean;
    mx = mx + 128.0f;
    float num = (mx * twice + c1) * (sxy * 2.0f + c2);
    float den = (lum + mx * mx) * (sxx + var);
    return num / den;
}

HOT static void score_plane(const float *restrict y, int h, int w, const odesr_reference *ref,
                            const float *restrict g, float *restrict vbuf, double *psnr,
                            double *ssim) {
    const float c1 = (float)((0.01 * 255) * (0.01 * 255));
    const float c2 = (float)((0.03 * 255) * (0.03 * 255));
    const ptrdiff_t ps = ref->plane_stride, ss = ref->stats_stride;
    const int w8 = w - w % 8;
    double sq = 0.0; /* squared errors are integers: the float lanes sum them exactly per row */
    for (int i = 0; i < h; i++) {
        const float *yr = y + (ptrdiff_t)i * w, *hr = ref->plane + (ptrdiff_t)i * ps;
        v8f acc = {0};
        for (int j = 0; j < w8; j += 8) {
            v8f d = ld8(yr + j) - ld8(hr + j);
            acc += d * d;
        }
        double row = hsum8(acc);
        for (int j = w8; j < w; j++) row += (double)((yr[j] - hr[j]) * (yr[j] - hr[j]));
        sq += row;
    }
    *psnr = 10.0 * log10(255.0 * 255.0 / (sq / ((double)h * w)));

    const int oh = h - SSIM_WIN + 1, ow = w - SSIM_WIN + 1, ow8 = ow - ow % 8;
    float *vx = vbuf, *vxx = vbuf + w, *vxy = vbuf + 2 * (ptrdiff_t)w;
    float gk[SSIM_WIN];
    for (int k = 0; k < SSIM_WIN; k++) gk[k] = g[k];
    double total = 0.0;
    for (int i = 0; i < oh; i++) {
        const float *y0 = y + (ptrdiff_t)i * w, *h0 = ref->plane + (ptrdiff_t)i * ps;
        for (int j = 0; j < w8; j += 8) { /* vertical: x, x^2, x*hr over 11 rows */
            v8f x = ld8(y0 + j), hh = ld8(h0 + j);
            v8f ax = gk[0] * x, axx = gk[0] * (x * x), axy = gk[0] * (x * hh);
            for (int k = 1; k < SSIM_WIN; k++) {
                x = ld8(y0 + (ptrdiff_t)k * w + j);
                hh = ld8(h0 + (ptrdiff_t)k * ps + j);
                ax += gk[k] * x;
                axx += gk[k] * (x * x);
                axy += gk[k] * (x * hh);
            }
            st8(vx + j, ax);
            st8(vxx + j, axx);
            st8(vxy + j, axy);
        }
        for (int j = w8; j < w; j++) {
            float x = y0[j];
            float ax = gk[0] * x, axx = gk[0] * (x * x), axy = gk[0] * (x * h0[j]);
            for (int k = 1; k < SSIM_WIN; k++) {
                float xk = y0[(ptrdiff_t)k * w + j], hk = h0[(ptrdiff_t)k * ps + j];
                ax += gk[k] * xk;
                axx += gk[k] * (xk * xk);
                axy += gk[k] * (xk * hk);
            }
            vx[j] = ax;
            vxx[j] = axx;
            vxy[j] = axy;
        }
        const float *mean = ref->mean + (ptrdiff_t)i * ss;
        const float *twice = ref->twice_mean + (ptrdiff_t)i * ss;
        const float *lum = ref->lum_den + (ptrdiff_t)i * ss;
        const float *var = ref->var_c2 + (ptrdiff_t)i * ss;
        v4d acc_lo = {0}, acc_hi = {0};
        for (int j = 0; j < ow8; j += 8) { /* horizontal, then the SSIM map */
            v8f mx = gk[0] * ld8(vx + j), sxx = gk[0] * ld8(vxx + j), sxy = gk[0] * ld8(vxy + j);
            for (int k = 1; k < SSIM_WIN; k++) {
                mx += gk[k] * ld8(vx + j + k);
                sxx += gk[k] * ld8(vxx + j + k);
                sxy += gk[k] * ld8(vxy + j + k);
            }
            sxx = sxx - mx * mx;
            sxy = sxy - mx * ld8(mean + j);
            mx = mx + 128.0f;
            v8f num = (mx * ld8(twice + j) + c1) * (sxy * 2.0f + c2);
            v8f den = (ld8(lum + j) + mx * mx) * (sxx + ld8(var + j));
            v8f r = num / den;
            v4d lo = {r[0], r[1], r[2], r[3]}, hi = {r[4], r[5], r[6], r[7]};
            acc_lo += lo;
            acc_hi += hi;
        }
        v4d acc = acc_lo + acc_hi;
        double row = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        for (int j = ow8; j < ow; j++) {
            float mx = gk[0] * vx[j], sxx = gk[0] * vxx[j], sxy = gk[0] * vxy[j];
            for (int k = 1; k < SSIM_WIN; k++) {
                mx += gk[k] * vx[j + k];
                sxx += gk[k] * vxx[j + k];
                sxy += gk[k] * vxy[j + k];
            }
            row += (double)ssim_px(mx, sxx, sxy, mean[j], twice[j], lum[j], var[j], c1, c2);
        }
        total += row;
    }
    *ssim = total / ((double)oh * ow);
}

/* The HR side of SSIM with the arithmetic score_plane uses on the SR side (so float32 rounding
 * biases of the two sides cancel as in the torch path): for a centred plane (H x W, contiguous),
 * per pixel of the valid-filtered map, mean = mu, twice = 2 (mu + 128),
 * lum = (mu + 128)^2 + C1, var = E[x^2] - mu^2 + C2. Returns 0, or -1 without memory. */
HOT int odesr_hr_stats(const float *plane, int64_t H, int64_t W, const float *g, float *mean,
                       float *twice, float *lum, float *var) {
    const float c1 = (float)((0.01 * 255) * (0.01 * 255));
    const float c2 = (float)((0.03 * 255) * (0.03 * 255));
    const int h = (int)H, w = (int)W, w8 = w - w % 8;
    const int oh = h - SSIM_WIN + 1, ow = w - SSIM_WIN + 1, ow8 = ow - ow % 8;
    float *vbuf = (float *)malloc(2 * (size_t)w * sizeof(float));
    if (!vbuf) return -1;
    float *vx = vbuf, *vxx = vbuf + w;
    float gk[SSIM_WIN];
    for (int k = 0; k < SSIM_WIN; k++) gk[k] = g[k];
    for (int i = 0; i < oh; i++) {
        const float *y0 = plane + (ptrdiff_t)i * w;
        for (int j = 0; j < w8; j += 8) {
            v8f x = ld8(y0 + j);
            v8f ax = gk[0] * x, axx = gk[0] * (x * x);
            for (int k = 1; k < SSIM_WIN; k++) {
                x = ld8(y0 + (ptrdiff_t)k * w + j);
                ax += gk[k] * x;
                axx += gk[k] * (x * x);
            }
            st8(vx + j, ax);
            st8(vxx + j, axx);
        }
        for (int j = w8; j < w; j++) {
            float x = y0[j];
            float ax = gk[0] * x, axx = gk[0] * (x * x);
            for (int k = 1; k < SSIM_WIN; k++) {
                float xk = y0[(ptrdiff_t)k * w + j];
                ax += gk[k] * xk;
                axx += gk[k] * (xk * xk);
            }
            vx[j] = ax;
            vxx[j] = axx;
        }
        float *m = mean + (ptrdiff_t)i * ow, *tw = twice + (ptrdiff_t)i * ow;
        float *lu = lum + (ptrdiff_t)i * ow, *va = var + (ptrdiff_t)i * ow;
        for (int j = 0; j < ow8; j += 8) {
            v8f mx = gk[0] * ld8(vx + j), sxx = gk[0] * ld8(vxx + j);
            for (int k = 1; k < SSIM_WIN; k++) {
                mx += gk[k] * ld8(vx + j + k);
                sxx += gk[k] * ld8(vxx + j + k);
            }
            v8f full = mx + 128.0f;
            st8(m + j, mx);
            st8(va + j, (sxx - mx * mx) + c2);
            st8(tw + j, full * 2.0f);
            st8(lu + j, full * full + c1);
        }
        for (int j = ow8; j < ow; j++) {
            float mx = gk[0] * vx[j], sxx = gk[0] * vxx[j];
            for (int k = 1; k < SSIM_WIN; k++) {
                mx += gk[k] * vx[j + k];
                sxx += gk[k] * vxx[j + k];
            }
            float full = mx + 128.0f;
            m[j] = mx;
            va[j] = (sxx - mx * mx) + c2;
            tw[j] = full * 2.0f;
            lu[j] = full * full + c1;
        }
    }
    free(vbuf);
    return 0;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One bicubic evaluation pair on an RGB HR image (3 x H x W, contiguous, float32 in [0, 1]):
 * LR = quantise(resize(crop, down taps)); SR = quantise(resize(LR, up taps)); the SR luma,
 * shaved by `shave` on every side, scored against `ref` (which points at the HR frame's
 * (shave, shave) pixel); `sr_out`, unless NULL, gets the shaved 8-bit SR (3 x (H' - 2 shave) x
 * (W' - 2 shave)). dv/dh: crop rows/cols -> LR; uv/uh: LR -> SR. `seconds` gets the time of
 * the enlargement (the model's part). Returns 0, -1 without memory, -2 if the shaved SR is smaller
 * than the SSIM window, -3 for taps that do not fit the image or each other. */
int odesr_bicubic_pair(const float *hr, int64_t H, int64_t W, const odesr_taps *dv,
                       const odesr_taps *dh, const odesr_taps *uv, const odesr_taps *uh,
                       int shave, const odesr_reference *ref, const float *gauss, double *psnr,
                       double *ssim, double *seconds, uint8_t *sr_out) {
    if (!taps_ok(dv) || !taps_ok(dh) || !taps_ok(uv) || !taps_ok(uh) || dv->in_len > H ||
        dh->in_len > W || uv->in_len != dv->out_len || uh->in_len != dh->out_len || shave < 0 ||
        H > INT32_MAX || W > INT32_MAX)
        return -3;
    int cw = dh->in_len, lh = dv->out_len, lw = dh->out_len;
    int sh = uv->out_len, sw = uh->out_len;
    int hs = sh - 2 * shave, ws = sw - 2 * shave;
    if (hs < SSIM_WIN || ws < SSIM_WIN) return -2;
    size_t na = (size_t)lh * cw;                           /* rows resized */
    size_t nb = na;                                        /* ... transposed */
    size_t nc = (size_t)lw * lh;                           /* LR, transposed */
    size_t nd = (size_t)ws * lh;                           /* SR columns, LR rows */
    size_t ne = nd;                                        /* ... transposed */
    size_t nf = (size_t)ws;                                /* one SR row */
    size_t ny = (size_t)hs * ws;                           /* luma */
    size_t nq = 3 * (size_t)hs * ws;                       /* 8-bit SR (int32) */
    size_t nv = 3 * (size_t)ws;
    float *buf = workspace(na + nb + nc + nd + ne + nf + ny + nq + nv);
    if (!buf) return -1;
    float *A = buf, *B = A + na, *C = B + nb, *D = C + nc, *E = D + nd, *F = E + ne, *Y = F + nf;
    int32_t *Q = (int32_t *)(Y + ny);
    float *V = Y + ny + nq;
    double up = 0.0;
    for (int c = 0; c < 3; c++) {
        const float *src = hr + (ptrdiff_t)c * H * W;
        vpass(src, W, cw, dv, 0, lh, A, cw);
        transpose(A, lh, cw, cw, B, lh);
        vpass(B, lh, lh, dh, 0, lw, C, lh);
        quantize_f(C, (ptrdiff_t)nc);
        double t0 = now();
        vpass(C, lh, lh, uh, shave, sw - shave, D, lh);
        transpose(D, ws, lh, lh, E, ws);
        int32_t *q = Q + (ptrdiff_t)c * hs * ws;
        for (int o = shave; o < sh - shave; o++) {
            vpass(E, ws, ws, uv, o, o + 1, F, ws);
            quantize_i32(F, ws, q + (ptrdiff_t)(o - shave) * ws);
        }
        up += now() - t0;
    }
    luma(Q, Q + ny, Q + 2 * ny, (ptrdiff_t)ny, Y);
    if (sr_out)
        for (size_t i = 0; i < 3 * ny; i++) sr_out[i] = (uint8_t)Q[i];
    score_plane(Y, hs, ws, ref, gauss, V, psnr, ssim);
    *seconds = up;
    return 0;
}

/* ---- an empty module, so the shared library is an importable extension ---- */

static struct PyModuleDef native_module = {PyModuleDef_HEAD_INIT, "_native",
                                           "ctypes kernels for odesr.native", -1, NULL};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&native_module); }
