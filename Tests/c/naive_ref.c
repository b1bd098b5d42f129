#include "naive_ref.h"

#include <stdlib.h>

int naive_ref(const hla_config *c, int64_t B, int64_t T, const double *q, const double *k, const double *v,
              double *out)
{
    const int64_t H = c->heads, Hkv = c->kv_heads ? c->kv_heads : c->heads;
    const int64_t dk = c->dk, dv = c->dv, G = H / Hkv;
    double *pw = malloc((size_t)(3 * T + 1) * sizeof(double));
    double *Q = malloc((size_t)(T * dk) * sizeof(double));
    double *K = malloc((size_t)(T * dk) * sizeof(double));
    double *V = malloc((size_t)(T * dv) * sizeof(double));
    double *A = malloc((size_t)(T * T) * sizeof(double));  /* A[t][i] = q_t . k_i */
    double *QQ = malloc((size_t)(T * T) * sizeof(double)); /* QQ[t][j] = q_t . q_j */
    double *num = malloc((size_t)dv * sizeof(double));
    double *rv = malloc((size_t)dv * sizeof(double));
    int64_t b, h, t, i, j, u, d, e;
    int rc = -1;
    if (!pw || !Q || !K || !V || !A || !QQ || !num || !rv) goto done;
    pw[0] = 1.0;
    for (i = 1; i <= 3 * T; i++) pw[i] = pw[i - 1] * c->decay;
    for (b = 0; b < B; b++)
        for (h = 0; h < H; h++) {
            const int64_t kh = h / G;
            for (t = 0; t < T; t++) {
                for (d = 0; d < dk; d++) {
                    Q[t * dk + d] = c->scale * q[((b * T + t) * H + h) * dk + d];
                    K[t * dk + d] = k[((b * T + t) * Hkv + kh) * dk + d];
                }
                for (d = 0; d < dv; d++) V[t * dv + d] = v[((b * T + t) * Hkv + kh) * dv + d];
            }
            for (t = 0; t < T; t++)
                for (i = 0; i < T; i++) {
                    double s1 = 0, s2 = 0;
                    for (d = 0; d < dk; d++) {
                        s1 += Q[t * dk + d] * K[i * dk + d];
                        s2 += Q[t * dk + d] * Q[i * dk + d];
                    }
                    A[t * T + i] = s1;
                    QQ[t * T + i] = s2;
                }
            for (t = 0; t < T; t++) {
                double den = 0.0;
                for (e = 0; e < dv; e++) num[e] = 0.0;
                if (c->op == HLA_OP_HLA2) {
                    /* sum_{i<=j<=t} g^{(t-i)+(t-j)} (q_t.k_i)(k_i.q_j) v_j  (+ all i,j<=t unmasked) */
                    for (j = 0; j <= t; j++)
                        for (i = 0; i <= t; i++) {
                            double w;
                            if (c->masked && i > j) continue;
                            w = pw[(t - i) + (t - j)] * A[t * T + i] * A[j * T + i];
                            for (e = 0; e < dv; e++) num[e] += w * V[j * dv + e];
                            den += w;
                        }
                    if (c->ridge != 0.0)
                        for (j = 0; j <= t; j++) {
                            double w = c->ridge * pw[t - j] * QQ[t * T + j];
                            for (e = 0; e < dv; e++) num[e] += w * V[j * dv + e];
                            den += w;
                        }
                } else if (c->op == HLA_OP_AHLA) {
                    /* masked: sum_{j<=i<=t} g^{t-j} (q_t.k_i)(q_i.k_j) v_j; unmasked: g^{(t-i)+(t-j)} */
                    for (i = 0; i <= t; i++)
                        for (j = 0; j <= t; j++) {
                            double w;
                            if (c->masked) {
                                if (j > i) continue;
                                w = pw[t - j];
                            } else {
                                w = pw[(t - i) + (t - j)];
                            }
                            w *= A[t * T + i] * A[i * T + j];
                            for (e = 0; e < dv; e++) num[e] += w * V[j * dv + e];
                            den += w;
                        }
                } else {
                    /* sum_{u<=t} sum_{a<=u} sum_{c<=u} g^{(t-a)+(t-u)+(t-c)} (q_t.k_a)(k_a.q_u)(q_u.k_c) v_c
                     * (a, c <= t when unmasked), factorised over a and c for fixed (t, u). */
                    for (u = 0; u <= t; u++) {
                        const int64_t lim = c->masked ? u : t;
                        double L = 0.0, r1 = 0.0, w;
                        for (e = 0; e < dv; e++) rv[e] = 0.0;
                        for (i = 0; i <= lim; i++) {
                            double wc = pw[t - i] * A[u * T + i];
                            L += pw[t - i] * A[t * T + i] * A[u * T + i];
                            for (e = 0; e < dv; e++) rv[e] += wc * V[i * dv + e];
                            r1 += wc;
                        }
                        w = pw[t - u] * L;
                        for (e = 0; e < dv; e++) num[e] += w * rv[e];
                        den += w * r1;
                    }
                }
                for (e = 0; e < dv; e++)
                    out[((b * T + t) * H + h) * dv + e] = c->normalize ? num[e] / (den + c->eps) : num[e];
            }
        }
    rc = 0;
done:
    free(pw);
    free(Q);
    free(K);
    free(V);
    free(A);
    free(QQ);
    free(num);
    free(rv);
    return rc;
}

