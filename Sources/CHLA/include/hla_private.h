/* Private helpers of libhla.so written in C (not part of the public header). */
#ifndef HLA_PRIVATE_H
#define HLA_PRIVATE_H
#include "hla_types.h"

__attribute__((visibility("hidden"))) void hla_private_set_error(const char *message);
__attribute__((visibility("hidden"))) const char *hla_private_get_error(void);
/* The fork gate (fork_gate.c): held shared by the entry points while they run. */
__attribute__((visibility("hidden"))) void hla_private_fork_enter(void);
__attribute__((visibility("hidden"))) void hla_private_fork_leave(void);

/* Hint that the cache line holding p will be read soon (into L2 and outward; never faults). */
static inline void hla_private_prefetch(const void *p) { __builtin_prefetch(p, 0, 2); }

#endif
