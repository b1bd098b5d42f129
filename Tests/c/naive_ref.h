/* Independent brute-force evaluation of the operators of SPEC.md section 2 (double precision). */
#ifndef HLA_TEST_NAIVE_REF_H
#define HLA_TEST_NAIVE_REF_H
#include <hla.h>
#include <stdint.h>

/* q [B,T,H,dk], k [B,T,Hkv,dk], v [B,T,Hkv,dv] contiguous doubles; out [B,T,H,dv].
 * Uses op, masked, normalize, batch, heads, kv_heads, dk, dv, scale, decay, ridge, eps of c.
 * Returns 0, or -1 if out of memory. */
int naive_ref(const hla_config *c, int64_t T, const double *q, const double *k, const double *v, double *out);

#endif
