/* Independent brute-force evaluation of the operators of SPEC.md section 2 (double precision). */
#ifndef HLA_TEST_NAIVE_REF_H
#define HLA_TEST_NAIVE_REF_H
#include <hla.h>
#include <stdint.h>

/* q [B,T,H,dk], k [B,T,Hkv,dk], v [B,T,Hkv,dv] contiguous doubles; out [B,T,H,dv] (B independent
 * sequences of T tokens each; a packed batch is evaluated one sequence at a time by the caller).
 * Uses op, masked, normalize, heads, kv_heads, dk, dv, scale, decay, ridge, eps of c (the 1.0
 * hla_config carries neither batch nor element type: both belong to the tensors).
 * Returns 0, or -1 if out of memory. */
int naive_ref(const hla_config *c, int64_t B, int64_t T, const double *q, const double *k, const double *v,
              double *out);

#endif
