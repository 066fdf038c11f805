/*
 * An example engine in C on transformer-kernels' C API
 * (include/transformer_kernels.h):
 *   1. three kernels through the raw API on buffers and the stream of its
 *      own device handle: residual + LayerNorm, a GEMM with bias (linear)
 *      and multi-head attention, each checked against a plain C loop;
 *   2. two sentences through the translator API;
 *   3. the error contract: a missing model directory and a provoked panic
 *      come back as status codes with messages.
 *
 * Usage: c_engine KERNEL_DEVICE MODEL_DIR TRANSLATOR_DEVICE DTYPE SENTENCE SENTENCE
 *   KERNEL_DEVICE: emu or cuda; TRANSLATOR_DEVICE: cpu, emu, cuda or auto;
 *   DTYPE: f32, f16, bf16 or default (the checkpoint's 16-bit dtype, else bf16).
 * Prints one line per check ("ok" or "FAIL") and one per translation
 * ("translation N: TEXT"); exits 0 only if every check passed.
 * Built and run by tests/c_api.rs (the test command).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transformer_kernels.h"

static int failures = 0;

#define CHECK(call)                                                                    \
    do {                                                                               \
        TkStatus s_ = (call);                                                          \
        if (s_ != TK_STATUS_OK) {                                                      \
            printf("FAIL %s: status %d: %s\n", #call, (int)s_, tk_last_error());      \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

static void report(const char *what, float err, float tol) {
    int ok = err <= tol;
    printf("%s %s max_err=%.3g tol=%.3g\n", ok ? "ok" : "FAIL", what, err, tol);
    if (!ok) failures++;
}

/* A small deterministic generator (xorshift32), values in [-1, 1). */
static unsigned state = 12345u;
static float rnd(void) {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    return (float)(state % 20000u) / 10000.0f - 1.0f;
}

static void *upload(TkDevice *dev, const float *host, size_t n) {
    void *p = NULL;
    CHECK(tk_malloc(dev, n * sizeof(float), &p));
    CHECK(tk_memcpy_htod(dev, p, host, n * sizeof(float)));
    return p;
}

static void layer_norm(TkDevice *dev) {
    enum { ROWS = 5, H = 48 };
    float x[ROWS * H], r[ROWS * H], g[H], b[H], y[ROWS * H], want[ROWS * H];
    for (int i = 0; i < ROWS * H; i++) { x[i] = rnd(); r[i] = rnd(); }
    for (int i = 0; i < H; i++) { g[i] = 1.0f + 0.5f * rnd(); b[i] = 0.1f * rnd(); }
    for (int row = 0; row < ROWS; row++) {
        double mean = 0, var = 0;
        for (int i = 0; i < H; i++) mean += x[row * H + i] + r[row * H + i];
        mean /= H;
        for (int i = 0; i < H; i++) {
            double d = x[row * H + i] + r[row * H + i] - mean;
            var += d * d;
        }
        var /= H;
        for (int i = 0; i < H; i++)
            want[row * H + i] =
                (float)((x[row * H + i] + r[row * H + i] - mean) / sqrt(var + 1e-5) * g[i] + b[i]);
    }
    void *dx = upload(dev, x, ROWS * H), *dr = upload(dev, r, ROWS * H);
    void *dg = upload(dev, g, H), *db = upload(dev, b, H), *dy = NULL;
    CHECK(tk_malloc(dev, sizeof y, &dy));
    LayerNormParams p = {dx, dr, dg, db, dy, ROWS, H, 1e-5f};
    CHECK(tk_layer_norm(dev, TK_DTYPE_F32, &p));
    CHECK(tk_memcpy_dtoh(dev, y, dy, sizeof y));
    float err = 0;
    for (int i = 0; i < ROWS * H; i++) err = fmaxf(err, fabsf(y[i] - want[i]));
    report("layer_norm", err, 1e-4f);
    tk_free(dev, dx); tk_free(dev, dr); tk_free(dev, dg); tk_free(dev, db); tk_free(dev, dy);
}

static void linear(TkDevice *dev) {
    enum { M = 7, N = 9, K = 13 };
    float x[M * K], w[N * K], bias[N], y[M * N], want[M * N];
    for (int i = 0; i < M * K; i++) x[i] = rnd();
    for (int i = 0; i < N * K; i++) w[i] = rnd();
    for (int i = 0; i < N; i++) bias[i] = rnd();
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double acc = bias[n];
            for (int k = 0; k < K; k++) acc += (double)x[m * K + k] * w[n * K + k];
            want[m * N + n] = (float)acc;
        }
    void *dx = upload(dev, x, M * K), *dw = upload(dev, w, N * K), *db = upload(dev, bias, N);
    void *dy = NULL;
    CHECK(tk_malloc(dev, sizeof y, &dy));
    LinearParams p;
    memset(&p, 0, sizeof p);
    p.x = dx; p.w = dw; p.bias = db; p.out = dy;
    p.m = M; p.n = N; p.k = K;
    p.activation = -1; /* none */
    CHECK(tk_linear(dev, TK_DTYPE_F32, &p));
    CHECK(tk_memcpy_dtoh(dev, y, dy, sizeof y));
    float err = 0;
    for (int i = 0; i < M * N; i++) err = fmaxf(err, fabsf(y[i] - want[i]));
    report("linear", err, 1e-5f);
    tk_free(dev, dx); tk_free(dev, dw); tk_free(dev, db); tk_free(dev, dy);
}

static void attention(TkDevice *dev) {
    enum { ROWS = 2, HEADS = 2, QL = 3, KL = 5, D = 8, W = HEADS * D };
    float q[ROWS * QL * W], k[ROWS * KL * W], v[ROWS * KL * W], o[ROWS * QL * W], want[ROWS * QL * W];
    for (int i = 0; i < ROWS * QL * W; i++) q[i] = rnd();
    for (int i = 0; i < ROWS * KL * W; i++) { k[i] = rnd(); v[i] = rnd(); }
    const float scale = 1.0f / sqrtf((float)D);
    for (int b = 0; b < ROWS; b++)
        for (int h = 0; h < HEADS; h++)
            for (int i = 0; i < QL; i++) {
                double s[KL], mx = -1e30, sum = 0;
                for (int j = 0; j < KL; j++) {
                    double dot = 0;
                    for (int c = 0; c < D; c++)
                        dot += (double)q[(b * QL + i) * W + h * D + c] * k[(b * KL + j) * W + h * D + c];
                    s[j] = dot * scale;
                    if (s[j] > mx) mx = s[j];
                }
                for (int j = 0; j < KL; j++) { s[j] = exp(s[j] - mx); sum += s[j]; }
                for (int c = 0; c < D; c++) {
                    double acc = 0;
                    for (int j = 0; j < KL; j++) acc += s[j] / sum * v[(b * KL + j) * W + h * D + c];
                    want[(b * QL + i) * W + h * D + c] = (float)acc;
                }
            }
    void *dq = upload(dev, q, ROWS * QL * W), *dk = upload(dev, k, ROWS * KL * W);
    void *dv = upload(dev, v, ROWS * KL * W), *dout = NULL;
    CHECK(tk_malloc(dev, sizeof o, &dout));
    AttentionParams p;
    memset(&p, 0, sizeof p);
    p.q = dq; p.k = dk; p.v = dv; p.out = dout;
    p.rows = ROWS; p.heads = HEADS; p.q_len = QL; p.k_len = KL; p.head_dim = D;
    p.q_batch_stride = QL * W; p.q_pos_stride = W;
    p.k_batch_stride = KL * W; p.k_pos_stride = W;
    p.v_batch_stride = KL * W; p.v_pos_stride = W;
    p.o_batch_stride = QL * W; p.o_pos_stride = W;
    p.scale = scale;
    p.causal = 0;
    CHECK(tk_attention(dev, TK_DTYPE_F32, &p));
    CHECK(tk_memcpy_dtoh(dev, o, dout, sizeof o));
    float err = 0;
    for (int i = 0; i < ROWS * QL * W; i++) err = fmaxf(err, fabsf(o[i] - want[i]));
    report("attention", err, 1e-5f);
    tk_free(dev, dq); tk_free(dev, dk); tk_free(dev, dv); tk_free(dev, dout);
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s emu|cuda MODEL_DIR cpu|emu|cuda|auto f32|f16|bf16|default SENTENCE SENTENCE\n",
                argv[0]);
        return 2;
    }
    const char *dtype = strcmp(argv[4], "default") == 0 ? NULL : argv[4];
    printf("transformer-kernels %s\n", tk_version());
    TkDevice *dev = NULL;
    if (strcmp(argv[1], "emu") == 0) {
        CHECK(tk_device_open_emulator(&dev));
    } else {
        CHECK(tk_device_open(0, &dev));
    }
    layer_norm(dev);
    linear(dev);
    attention(dev);
    CHECK(tk_device_synchronize(dev));
    tk_device_free(dev);

    TkTranslator *tr = NULL;
    CHECK(tk_translator_new(argv[2], argv[3], dtype, &tr));
    const char *sentences[2] = {argv[5], argv[6]};
    TkTranslateOptions opts = {0, 0, 2}; /* the checkpoint's beam and max_length, batch 2 */
    TkTranslations *out = NULL;
    CHECK(tk_translate_batch(tr, sentences, 2, &opts, &out));
    for (size_t i = 0; i < tk_translations_count(out); i++)
        printf("translation %zu: %s\n", i, tk_translations_get(out, i));
    tk_translations_free(out);
    tk_translator_free(tr);

    TkTranslator *none = NULL;
    TkStatus s = tk_translator_new("/nonexistent/model", argv[3], NULL, &none);
    int io_ok = s == TK_STATUS_IO && strstr(tk_last_error(), "/nonexistent/model") != NULL;
    printf("%s missing model: status %d: %s\n", io_ok ? "ok" : "FAIL", (int)s, tk_last_error());
    if (!io_ok) failures++;
    s = tk_debug_panic();
    int panic_ok = s == TK_STATUS_PANIC && strstr(tk_last_error(), "deliberate") != NULL;
    printf("%s panic: status %d: %s\n", panic_ok ? "ok" : "FAIL", (int)s, tk_last_error());
    if (!panic_ok) failures++;
    printf("%d failed\n", failures);
    return failures == 0 ? 0 : 1;
}
