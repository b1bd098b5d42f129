/* Streaming decode with libhla: one token at a time through a state (hla2, default configuration
 * with B = 1, H = 8, dk = dv = 64, float32), the query of each step fed back from the previous
 * step's output as in an autoregressive loop. Prints the decode throughput.
 *
 *   build/decode [steps]        (default 4000) */
#define _POSIX_C_SOURCE 200809L
#include <hla.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define POOL 64 /* distinct key/value tokens, cycled */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static float randn(void)
{
    double u1, u2;
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    u1 = ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    u2 = ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static int die(const char *what, hla_status st)
{
    fprintf(stderr, "decode: %s failed: %s: %s\n", what, hla_status_string(st), hla_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    const long steps = argc > 1 ? atol(argv[1]) : 4000;
    hla_config cfg;
    hla_state *state = NULL;
    hla_status st;
    float *q, *k, *v, *out;
    int64_t B, H, dk, dv, nbytes = 0, tokens = 0, i;
    long t;
    double t0, secs, norm = 0.0;

    if (steps < 1) {
        fprintf(stderr, "usage: decode [steps >= 1]\n");
        return 2;
    }
    hla_config_init(&cfg); /* hla2, float32, masked, dk = dv = 64 */
    cfg.heads = 8;
    cfg.scale = 1.0 / sqrt((double)cfg.dk);
    B = cfg.batch, H = cfg.heads, dk = cfg.dk, dv = cfg.dv;
    if ((st = hla_state_create(&cfg, &state)) != HLA_OK) return die("hla_state_create", st);

    q = malloc(sizeof(float) * (size_t)(B * H * dk));
    k = malloc(sizeof(float) * (size_t)(POOL * B * H * dk));
    v = malloc(sizeof(float) * (size_t)(POOL * B * H * dv));
    out = malloc(sizeof(float) * (size_t)(B * H * dv));
    if (!q || !k || !v || !out) {
        fprintf(stderr, "decode: out of memory\n");
        return 1;
    }
    for (i = 0; i < B * H * dk; i++) q[i] = randn();
    for (i = 0; i < POOL * B * H * dk; i++) k[i] = randn();
    for (i = 0; i < POOL * B * H * dv; i++) v[i] = randn();

    t0 = now_s();
    for (t = 0; t < steps; t++) {
        const int64_t slot = t % POOL;
        st = hla_state_step(state, q, NULL, k + slot * B * H * dk, NULL, v + slot * B * H * dv, NULL, out, NULL);
        if (st != HLA_OK) return die("hla_state_step", st);
        /* next query from this output (dv == dk here): q = tanh(out / (1 + |out|_inf)) */
        {
            float m = 0.0f;
            for (i = 0; i < B * H * dv; i++) m = fabsf(out[i]) > m ? fabsf(out[i]) : m;
            for (i = 0; i < B * H * dk; i++) q[i] = tanhf(4.0f * out[i % (B * H * dv)] / (1.0f + m));
        }
    }
    secs = now_s() - t0;
    for (i = 0; i < B * H * dv; i++) norm += (double)out[i] * out[i];
    hla_state_tokens(state, &tokens);
    hla_state_nbytes(state, &nbytes);
    printf("decode: hla2 B=%lld H=%lld dk=%lld dv=%lld float32, %ld steps in %.3f s\n", (long long)B, (long long)H,
           (long long)dk, (long long)dv, steps, secs);
    printf("  %.0f tokens/s  (%.0f head-tokens/s, %.2f us/token)\n", (double)(steps * B) / secs,
           (double)(steps * B * H) / secs, 1e6 * secs / (double)steps);
    printf("  state: %lld tokens, %lld bytes (independent of length); |last output| = %.4g\n", (long long)tokens,
           (long long)nbytes, sqrt(norm));
    hla_state_destroy(state);
    free(q);
    free(k);
    free(v);
    free(out);
    if (!(norm == norm) || tokens != steps) {
        fprintf(stderr, "decode: unexpected result (tokens %lld, norm %g)\n", (long long)tokens, norm);
        return 1;
    }
    return 0;
}
