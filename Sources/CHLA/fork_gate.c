/* The fork gate of libhla.so: fork() at any moment (see the fork paragraph of include/hla.h).
 *
 * A process-wide rwlock. Every entry point but hla_status_string and hla_last_error (which touch no
 * shared state) holds it shared for its whole body (hla_private_fork_enter/leave, from `working` in
 * Sources/HLA/CAPI/CSupport.swift). The
 * pthread_atfork prepare handler takes it exclusively: that waits for the calls in flight to return
 * and, as the lock prefers writers, holds new calls back until the fork is done. So when fork() copies
 * the process no thread is inside libhla's code, its pool's jobs or the OpenBLAS calls libhla makes,
 * and the child inherits none of their locks held (OpenBLAS's blas_memory_alloc mutex, the pool's) nor
 * a half-written output. The parent handler releases the lock; the child re-initialises it (its writer
 * is recorded under the forking thread's parent tid, which unlock would take for a reader), and the
 * thread pool restarts itself on its first job (ThreadPool.run compares the fork generation the child
 * handler advances).
 *
 * In C, with static storage, because the path to the lock must take no lock itself: a Swift lazy global
 * goes through swift_once, which under ThreadSanitizer takes a lock on every access, so a parent thread
 * caught in that accessor at the fork would leave it held in the child. The handlers are registered
 * once (pthread_once, fork-aware in glibc) before the first use of the lock. No entry point calls
 * another, which the non-recursive writer preference requires (a reader that re-entered while a fork
 * waits would deadlock). */
#define _GNU_SOURCE
#include "hla_private.h"
#include <pthread.h>

static pthread_rwlock_t gate = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
static pthread_once_t registered = PTHREAD_ONCE_INIT;

static void prepare(void) { pthread_rwlock_wrlock(&gate); }
static void parent(void) { pthread_rwlock_unlock(&gate); }

/* Forks this process's children have gone through (each child counts its own): the thread pool restarts itself
 * when it sees a new value (a getpid() system call per job cost about 0.1 us on the reference VM). */
static unsigned long generation;

static void child(void)
{
    generation++;
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&gate, &a);
    pthread_rwlockattr_destroy(&a);
}

/* pthread_atfork fails only without memory for the entry; libhla then works as before, without the
 * fork guarantee. */
static void register_handlers(void) { (void)pthread_atfork(prepare, parent, child); }

void hla_private_fork_enter(void)
{
    pthread_once(&registered, register_handlers);
    pthread_rwlock_rdlock(&gate);
}

void hla_private_fork_leave(void) { pthread_rwlock_unlock(&gate); }

unsigned long hla_private_fork_generation(void) { return generation; }
