/* Private helpers of libhla.so written in C (not part of the public header). */
#ifndef HLA_PRIVATE_H
#define HLA_PRIVATE_H
#include "hla_types.h"

__attribute__((visibility("hidden"))) void hla_private_set_error(const char *message);
__attribute__((visibility("hidden"))) const char *hla_private_get_error(void);

/* Up to max CPUs this process may run on, the calling thread's current CPU last; returns the count. */
__attribute__((visibility("hidden"))) int hla_private_allowed_cpus(int *cpus, int max);
/* Restrict the calling thread to one CPU; 0 on success. */
__attribute__((visibility("hidden"))) int hla_private_pin_self(int cpu);

#endif
