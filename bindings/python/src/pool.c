/* hla._hla: the output pool -- large outputs' memory kept for the next call of the same size.
 *
 * A fresh numpy output of tens of MiB is fresh pages: the kernel zeroes each page when the forward
 * first writes it, a tenth of a two-thread chunked forward at d = 64 (docs/benchmarks.md). Outputs
 * made by `empty` below (the package's numpy outputs: forward, backward, reference, State.prefill)
 * are allocated through a numpy memory handler (NEP 49) whose free keeps buffers of at least POOL_MIN
 * bytes, up to `limit` bytes in all, and whose malloc hands a kept buffer to a request of its size
 * (up to a quarter smaller). The arrays are ordinary numpy arrays owning their data; a buffer is kept
 * only after numpy freed its array, so no live array's memory is ever handed out twice. Other numpy
 * allocations never see this handler (it is set only around `empty`'s own PyArray_Empty).
 *
 * Every buffer of the handler carries a 64-byte header with its capacity, so free and realloc do not
 * depend on the size numpy passes back. The pool's bookkeeping is under a mutex (the handler runs
 * with the GIL held in CPython's default build; the mutex keeps it right without that).
 */
#include "ext.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* NEP 49 memory handlers came with numpy 1.22; built against older headers the pool is off (limit 0). */
#if defined(NPY_1_22_API_VERSION) && NPY_FEATURE_VERSION >= NPY_1_22_API_VERSION
#define HLA_EXT_POOL 1
#else
#define HLA_EXT_POOL 0
#endif

#if NPY_ABI_VERSION < 0x02000000
#define PyDataType_ELSIZE(descr) ((descr)->elsize)   /* numpy 1.x headers */
#endif

#define POOL_MIN ((size_t)1 << 20)      /* smaller buffers: plain malloc/free (glibc reuses them) */
#define POOL_SLOTS 8                    /* buffers kept at most */
#define HUGE_MIN ((size_t)1 << 22)      /* numpy's threshold for MADV_HUGEPAGE on its own buffers */
#define HEADER 64                       /* keeps the data 64-byte aligned */

typedef struct {
    uint64_t capacity;                  /* bytes of data after the header */
} header;

static struct {
    pthread_mutex_t lock;
    void *base[POOL_SLOTS];             /* kept buffers (header first), oldest first */
    size_t capacity[POOL_SLOTS];
    int count;
    size_t held;                        /* sum of capacity[] */
    size_t limit;                       /* held never exceeds it; 0 keeps nothing */
} pool = {PTHREAD_MUTEX_INITIALIZER, {0}, {0}, 0, 0, HLA_EXT_POOL ? (size_t)256 << 20 : 0};

/* Remove kept buffer i from the pool and return it (the lock held). */
static void *
take(int i)
{
    void *base = pool.base[i];
    pool.held -= pool.capacity[i];
    memmove(&pool.base[i], &pool.base[i + 1], (size_t)(pool.count - i - 1) * sizeof(void *));
    memmove(&pool.capacity[i], &pool.capacity[i + 1], (size_t)(pool.count - i - 1) * sizeof(size_t));
    pool.count--;
    return base;
}

/* Release buffers [0, n) of `bases` (outside the lock). */
static void
release_all(void **bases, int n)
{
    for (int i = 0; i < n; i++) free(bases[i]);
}

#if HLA_EXT_POOL
static void *
data_of(void *base)
{
    return (char *)base + HEADER;
}

static header *
header_of(void *data)
{
    return (header *)((char *)data - HEADER);
}

/* A new buffer of `size` bytes (its header written), or NULL. */
static void *
fresh(size_t size)
{
    void *base = NULL;
    header *h;
    if (size > SIZE_MAX - HEADER || posix_memalign(&base, 64, size + HEADER) != 0) return NULL;
    h = (header *)base;
    h->capacity = size;
#ifdef MADV_HUGEPAGE
    if (size >= HUGE_MIN) {             /* as numpy does for its own large buffers */
        uintptr_t p = (uintptr_t)data_of(base), page = 4096, start = (p + page - 1) & ~(page - 1);
        if (start < p + size) (void)madvise((void *)start, p + size - start, MADV_HUGEPAGE);
    }
#endif
    return data_of(base);
}

static void *
pool_malloc(void *ctx, size_t size)
{
    int best = -1;
    if (size == 0) size = 1;
    if (size >= POOL_MIN) {
        pthread_mutex_lock(&pool.lock);
        for (int i = 0; i < pool.count; i++)
            if (pool.capacity[i] >= size && pool.capacity[i] - size <= pool.capacity[i] / 4 &&
                (best < 0 || pool.capacity[i] < pool.capacity[best]))
                best = i;
        if (best >= 0) {
            void *base = take(best);
            pthread_mutex_unlock(&pool.lock);
            return data_of(base);
        }
        pthread_mutex_unlock(&pool.lock);
    }
    return fresh(size);
}

static void *
pool_calloc(void *ctx, size_t nelem, size_t elsize)
{
    void *p;
    if (elsize != 0 && nelem > SIZE_MAX / elsize) return NULL;
    p = pool_malloc(ctx, nelem * elsize);
    if (p != NULL) memset(p, 0, nelem * elsize);
    return p;
}

static void
pool_free(void *ctx, void *data, size_t size)
{
    void *evicted[POOL_SLOTS];
    int n = 0;
    void *base;
    size_t capacity;
    if (data == NULL) return;
    base = header_of(data);
    capacity = header_of(data)->capacity;
    if (capacity < POOL_MIN) {
        free(base);
        return;
    }
    pthread_mutex_lock(&pool.lock);
    if (capacity > pool.limit) {
        pthread_mutex_unlock(&pool.lock);
        free(base);
        return;
    }
    while (pool.count > 0 && (pool.count == POOL_SLOTS || pool.held + capacity > pool.limit))
        evicted[n++] = take(0);         /* the oldest goes first */
    pool.base[pool.count] = base;
    pool.capacity[pool.count] = capacity;
    pool.count++;
    pool.held += capacity;
    pthread_mutex_unlock(&pool.lock);
    release_all(evicted, n);
}

static void *
pool_realloc(void *ctx, void *data, size_t size)
{
    void *moved;
    size_t capacity;
    if (data == NULL) return pool_malloc(ctx, size);
    capacity = header_of(data)->capacity;
    if (size <= capacity) return data;
    moved = pool_malloc(ctx, size);
    if (moved == NULL) return NULL;
    memcpy(moved, data, capacity);
    pool_free(ctx, data, capacity);
    return moved;
}

static PyDataMem_Handler handler = {
    "hla_output_pool", 1, {NULL, pool_malloc, pool_calloc, pool_realloc, pool_free}};

static PyObject *handler_capsule;       /* owned by the module for the process's life */
#endif

/* empty(shape, dtype) -> an uninitialised C-contiguous numpy array (shape a tuple of ints >= 0); of
 * POOL_MIN bytes or more, its memory comes from the pool (and returns to it when the array is freed). */
static PyObject *
ext_empty(PyObject *self, PyObject *args)
{
    PyObject *shape;
    PyArray_Descr *descr = NULL;
    npy_intp dims[NPY_MAXDIMS];
    size_t bytes;
    int nd;
    if (!PyArg_ParseTuple(args, "O!O&", &PyTuple_Type, &shape, PyArray_DescrConverter, &descr)) return NULL;
    nd = (int)PyTuple_GET_SIZE(shape);
    if (nd > NPY_MAXDIMS) {
        Py_DECREF(descr);
        PyErr_SetString(PyExc_ValueError, "empty: too many dimensions");
        return NULL;
    }
    bytes = (size_t)PyDataType_ELSIZE(descr);
    for (int i = 0; i < nd; i++) {
        dims[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(shape, i));
        if (dims[i] < 0) {
            Py_DECREF(descr);
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "empty: negative dimension");
            return NULL;
        }
        bytes = dims[i] != 0 && bytes > SIZE_MAX / (size_t)dims[i] ? SIZE_MAX : bytes * (size_t)dims[i];
    }
#if HLA_EXT_POOL
    if (bytes < POOL_MIN || handler_capsule == NULL)
#endif
        return PyArray_Empty(nd, dims, descr, 0);              /* steals descr; raises when too large */
#if HLA_EXT_POOL
    PyObject *old = PyDataMem_SetHandler(handler_capsule), *arr, *restored;
    if (old == NULL) {
        Py_DECREF(descr);
        return NULL;
    }
    arr = PyArray_Empty(nd, dims, descr, 0);
    restored = PyDataMem_SetHandler(old);
    Py_DECREF(old);
    if (restored == NULL) {
        Py_XDECREF(arr);
        return NULL;
    }
    Py_DECREF(restored);
    return arr;
#endif
}

/* output_pool(limit=None) -> (limit, held bytes, buffers held); a new limit (bytes, >= 0) first
 * releases what no longer fits (0 releases everything and keeps nothing). */
static PyObject *
ext_output_pool(PyObject *self, PyObject *args)
{
    PyObject *limit_obj = Py_None;
    void *evicted[POOL_SLOTS];
    int n = 0;
    size_t limit, held;
    int count;
    if (!PyArg_ParseTuple(args, "|O", &limit_obj)) return NULL;
    if (limit_obj != Py_None) {
        int64_t v;
        if (hla_ext_parse_int(limit_obj, "limit", 0, &v) < 0) return NULL;
        if (v < 0) {
            PyErr_SetString(PyExc_ValueError, "output pool limit must be >= 0 bytes");
            return NULL;
        }
        pthread_mutex_lock(&pool.lock);
        pool.limit = HLA_EXT_POOL ? (size_t)v : 0;
        while (pool.count > 0 && pool.held > pool.limit) evicted[n++] = take(0);
        pthread_mutex_unlock(&pool.lock);
        release_all(evicted, n);
    }
    pthread_mutex_lock(&pool.lock);
    limit = pool.limit;
    held = pool.held;
    count = pool.count;
    pthread_mutex_unlock(&pool.lock);
    return Py_BuildValue("(nni)", (Py_ssize_t)limit, (Py_ssize_t)held, count);
}

static PyMethodDef pool_methods[] = {
    {"empty", ext_empty, METH_VARARGS,
     "empty(shape, dtype) -> uninitialised C-contiguous array; 1 MiB or more from the output pool"},
    {"output_pool", ext_output_pool, METH_VARARGS,
     "output_pool(limit=None) -> (limit, held bytes, buffers held); sets the limit first when given"},
    {NULL, NULL, 0, NULL}};

int
hla_ext_pool_init(PyObject *module)
{
#if HLA_EXT_POOL
    if (handler_capsule == NULL) {
        handler_capsule = PyCapsule_New(&handler, "mem_handler", NULL);
        if (handler_capsule == NULL) return -1;
    }
#endif
    if (PyModule_AddIntConstant(module, "OUTPUT_POOL", HLA_EXT_POOL) < 0) return -1;
    return PyModule_AddFunctions(module, pool_methods);
}
