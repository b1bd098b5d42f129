/* CPU placement helpers for the engine's thread pool (GNU extensions Swift's Glibc module does not
 * expose). Private to libhla.so. */
#define _GNU_SOURCE
#include <sched.h>
#include <pthread.h>
#include "hla_private.h"

int hla_private_allowed_cpus(int *cpus, int max) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
    int me = sched_getcpu(), n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < max; c++)
        if (CPU_ISSET(c, &set) && c != me) cpus[n++] = c;
    if (me >= 0 && CPU_ISSET(me, &set) && n < max) cpus[n++] = me;   /* the caller's CPU last */
    return n;
}

int hla_private_pin_self(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}
