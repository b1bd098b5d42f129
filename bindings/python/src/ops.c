/* Thin wrappers of the libhla entry points: convert the arguments, call with the GIL released,
 * release the arguments, map a failure to its exception. The Python layer (hla/__init__.py,
 * hla/_state.py) allocates outputs and states and passes them in. */
#include "ext.h"

#include <string.h>

#include <structmember.h>

#define MAX_ARGS 12
#define MESSAGE_SIZE 4096

typedef struct {
    const char *name;
    int mode;
    int optional;
} argspec;

typedef struct {
    hla_status status;
    char message[MESSAGE_SIZE];
} outcome;

/* Record a call's status and, on failure, the calling thread's message (safe without the GIL). */
static void
record(outcome *r, hla_status status)
{
    r->status = status;
    r->message[0] = '\0';
    if (status != HLA_OK) {
        const char *m = hla_last_error();
        if (m != NULL) {
            strncpy(r->message, m, MESSAGE_SIZE - 1);
            r->message[MESSAGE_SIZE - 1] = '\0';
        }
    }
}

static void
release_all(hla_ext_tensor *t, int n)
{
    int i;
    for (i = 0; i < n; i++) hla_ext_tensor_release(&t[i]);
}

static int
convert_all(PyObject *const *objs, const argspec *spec, int n, hla_ext_tensor *t)
{
    int i;
    for (i = 0; i < n; i++) {
        if (hla_ext_tensor_from_py(objs[i], spec[i].name, spec[i].mode, spec[i].optional, &t[i]) < 0) {
            release_all(t, i);
            return -1;
        }
    }
    return 0;
}

/* Byte range [*lo, *hi) the elements of a present tensor span (empty when a size is 0); 0, or -1 when
 * the range does not fit in 64 bits or leaves the user address space (below 2^57 on every 64-bit Linux):
 * no real memory is described, and the library refuses the tensor itself, with its own status. */
static int
tensor_bounds(const hla_tensor *x, int64_t *lo, int64_t *hi)
{
    int64_t item = (x->dtype == HLA_FLOAT64 || x->dtype == HLA_INT64) ? 8
                 : (x->dtype == HLA_FLOAT32 || x->dtype == HLA_INT32) ? 4 : 2;
    int64_t below = 0, above = 0, span;
    int i;
    if (x->ndim < 0 || x->ndim > HLA_MAX_NDIM) return -1;
    for (i = 0; i < x->ndim; i++) {
        if (x->shape[i] == 0) { *lo = *hi = (int64_t)(intptr_t)x->data; return 0; }
        if (x->shape[i] < 0 || __builtin_mul_overflow(x->shape[i] - 1, x->strides[i], &span)) return -1;
        if (span < 0 ? __builtin_add_overflow(below, span, &below) : __builtin_add_overflow(above, span, &above))
            return -1;
    }
    if (__builtin_mul_overflow(below, item, &below) || __builtin_add_overflow(above, 1, &above) ||
        __builtin_mul_overflow(above, item, &above) ||
        __builtin_add_overflow((int64_t)(intptr_t)x->data, below, lo) ||
        __builtin_add_overflow((int64_t)(intptr_t)x->data, above, hi)) return -1;
    return *lo < 0 || *hi > ((int64_t)1 << 57) ? -1 : 0;
}

/* ValueError when the tensor t[w] (one the call writes) may share memory with any present t[others[i]] (NULL:
 * absent): the bounds test of numpy.may_share_memory. libhla reads its inputs while it writes its outputs, so an
 * output over an input would read values it has already overwritten (include/hla.h: "Tensors a call writes must
 * not overlap its inputs"; the library does not check it). */
static int
apart(const hla_tensor *const *t, const argspec *spec, int w, const int *others, int n)
{
    int64_t a0, a1, b0, b1;
    int i;
    if (t[w] == NULL || tensor_bounds(t[w], &a0, &a1) < 0 || a0 == a1) return 0;
    for (i = 0; i < n; i++) {
        const hla_tensor *x = t[others[i]];
        if (x == NULL || tensor_bounds(x, &b0, &b1) < 0 || b0 == b1) continue;
        if (a0 < b1 && b0 < a1) {
            PyErr_Format(PyExc_ValueError, "%s shares memory with %s (libhla writes %s while it reads %s)",
                         spec[w].name, spec[others[i]].name, spec[w].name, spec[others[i]].name);
            return -1;
        }
    }
    return 0;
}

/* apart() for converted arguments. */
static int
check_apart(const hla_ext_tensor *t, const argspec *spec, int w, const int *others, int n)
{
    const hla_tensor *p[MAX_ARGS];
    int i, m = w;
    for (i = 0; i < n; i++) m = others[i] > m ? others[i] : m;
    for (i = 0; i <= m; i++) p[i] = hla_ext_ptr(&t[i]);
    return apart(p, spec, w, others, n);
}

/* A step's output apart from q, k, v and the state, and the state apart from q, k, v. */
static int
step_apart(const hla_tensor *const *p, const argspec *spec)
{
    static const int out_apart[] = {0, 1, 2, 4}, qkv[] = {0, 1, 2};
    return apart(p, spec, 3, out_apart, 4) < 0 || apart(p, spec, 4, qkv, 3) < 0 ? -1 : 0;
}

static PyObject *
finish(const outcome *r)
{
    if (r->status != HLA_OK) return hla_ext_raise(r->status, r->message);
    Py_RETURN_NONE;
}

#define P(i) hla_ext_ptr(&t[i])

/* forward(cfg, path, q, k, v, output, cu_seqlens, initial, final, rows[, checkpoints[, checkpoint_every]])
 * -> None (hla_forward; hla_forward_checkpoints when checkpoints is given and not None: path must be
 * chunked; checkpoint_every, default 0 = automatic, is written into cfg.checkpoint_every) */
static PyObject *
py_forward(PyObject *m, PyObject *args)
{
    static const argspec spec[] = {
        {"q", HLA_EXT_READ, 0}, {"k", HLA_EXT_READ, 0}, {"v", HLA_EXT_READ, 0},
        {"output", HLA_EXT_WRITE, 0}, {"cu_seqlens", HLA_EXT_READ, 1},
        {"initial_state", HLA_EXT_READ, 1}, {"final_state", HLA_EXT_WRITE, 1}, {"rows", HLA_EXT_READ, 1},
        {"checkpoints", HLA_EXT_WRITE, 1}};
    PyObject *cfgo, *patho, *o[9], *every = Py_None;
    hla_ext_tensor t[MAX_ARGS];
    hla_config cfg;
    int32_t path;
    int saving;
    outcome r;
    (void)m;
    o[8] = Py_None;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOO|OO:forward", &cfgo, &patho, &o[0], &o[1], &o[2], &o[3],
                          &o[4], &o[5], &o[6], &o[7], &o[8], &every)) return NULL;
    if (hla_ext_config_from_py(cfgo, &cfg) < 0 ||
        hla_ext_parse_int(every, "checkpoint_every", 1, &cfg.checkpoint_every) < 0 ||
        hla_ext_path_from_py(patho, &path) < 0) return NULL;
    saving = o[8] != Py_None;
    if (saving && path != HLA_PATH_CHUNKED) {
        PyErr_SetString(PyExc_ValueError, "checkpoints are written by the chunked path only (path=\"chunked\")");
        return NULL;
    }
    if (convert_all(o, spec, 9, t) < 0) return NULL;
    {
        static const int out_apart[] = {0, 1, 2, 5, 6, 8}, qkv[] = {0, 1, 2};
        if (check_apart(t, spec, 3, out_apart, 6) < 0 || check_apart(t, spec, 6, qkv, 3) < 0 ||
            check_apart(t, spec, 8, qkv, 3) < 0) {
            release_all(t, 9);
            return NULL;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    if (saving) record(&r, hla_forward_checkpoints(&cfg, P(0), P(1), P(2), P(3), P(4), P(5), P(6), P(7), P(8)));
    else record(&r, hla_forward(&cfg, path, P(0), P(1), P(2), P(3), P(4), P(5), P(6), P(7)));
    Py_END_ALLOW_THREADS
    release_all(t, 9);
    return finish(&r);
}

/* backward(cfg, path, q, k, v, d_out, dq, dk, dv, cu_seqlens, initial, d_final, d_initial[, checkpoints[,
 * checkpoint_every]]) -> None (hla_backward; hla_backward_checkpoints when checkpoints is given and not
 * None: path chunked; checkpoint_every, default 0, is written into cfg.checkpoint_every either way: plain
 * hla_backward's chunked path keeps its own carries that far apart) */
static PyObject *
py_backward(PyObject *m, PyObject *args)
{
    static const argspec spec[] = {
        {"q", HLA_EXT_READ, 0}, {"k", HLA_EXT_READ, 0}, {"v", HLA_EXT_READ, 0}, {"do", HLA_EXT_READ, 0},
        {"dq", HLA_EXT_WRITE, 0}, {"dk", HLA_EXT_WRITE, 0}, {"dv", HLA_EXT_WRITE, 0},
        {"cu_seqlens", HLA_EXT_READ, 1}, {"initial_state", HLA_EXT_READ, 1},
        {"d_final_state", HLA_EXT_READ, 1}, {"d_initial_state", HLA_EXT_WRITE, 1},
        {"checkpoints", HLA_EXT_READ, 1}};
    PyObject *cfgo, *patho, *o[12], *every = Py_None;
    hla_ext_tensor t[MAX_ARGS];
    hla_config cfg;
    int32_t path;
    int saved;
    outcome r;
    (void)m;
    o[11] = Py_None;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOOO|OO:backward", &cfgo, &patho, &o[0], &o[1], &o[2], &o[3],
                          &o[4], &o[5], &o[6], &o[7], &o[8], &o[9], &o[10], &o[11], &every)) return NULL;
    if (hla_ext_config_from_py(cfgo, &cfg) < 0 ||
        hla_ext_parse_int(every, "checkpoint_every", 1, &cfg.checkpoint_every) < 0 ||
        hla_ext_path_from_py(patho, &path) < 0) return NULL;
    saved = o[11] != Py_None;
    if (saved && path != HLA_PATH_CHUNKED) {
        PyErr_SetString(PyExc_ValueError, "checkpoints are read by the chunked path only (path=\"chunked\")");
        return NULL;
    }
    if (convert_all(o, spec, 12, t) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    if (saved) record(&r, hla_backward_checkpoints(&cfg, P(0), P(1), P(2), P(3), P(4), P(5), P(6), P(7), P(8), P(9),
                                                   P(10), P(11)));
    else record(&r, hla_backward(&cfg, path, P(0), P(1), P(2), P(3), P(4), P(5), P(6), P(7), P(8), P(9), P(10)));
    Py_END_ALLOW_THREADS
    release_all(t, 12);
    return finish(&r);
}

/* reference(cfg, q, k, v, output, cu_seqlens) -> None */
static PyObject *
py_reference(PyObject *m, PyObject *args)
{
    static const argspec spec[] = {
        {"q", HLA_EXT_READ, 0}, {"k", HLA_EXT_READ, 0}, {"v", HLA_EXT_READ, 0},
        {"output", HLA_EXT_WRITE, 0}, {"cu_seqlens", HLA_EXT_READ, 1}};
    PyObject *cfgo, *o[5];
    hla_ext_tensor t[MAX_ARGS];
    hla_config cfg;
    outcome r;
    (void)m;
    if (!PyArg_ParseTuple(args, "OOOOOO:reference", &cfgo, &o[0], &o[1], &o[2], &o[3], &o[4])) return NULL;
    if (hla_ext_config_from_py(cfgo, &cfg) < 0) return NULL;
    if (convert_all(o, spec, 5, t) < 0) return NULL;
    {
        static const int qkv[] = {0, 1, 2};
        if (check_apart(t, spec, 3, qkv, 3) < 0) {
            release_all(t, 5);
            return NULL;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    record(&r, hla_reference(&cfg, P(0), P(1), P(2), P(3), P(4)));
    Py_END_ALLOW_THREADS
    release_all(t, 5);
    return finish(&r);
}

static const argspec step_spec[] = {
    {"q_t", HLA_EXT_READ, 0}, {"k_t", HLA_EXT_READ, 0}, {"v_t", HLA_EXT_READ, 0},
    {"output", HLA_EXT_WRITE, 0}, {"state", HLA_EXT_WRITE, 0}, {"rows", HLA_EXT_READ, 1}};

/* step(cfg, q, k, v, output, state, rows) -> None */
static PyObject *
py_step(PyObject *m, PyObject *args)
{
    PyObject *cfgo, *o[6];
    hla_ext_tensor t[MAX_ARGS];
    hla_config cfg;
    outcome r;
    (void)m;
    if (!PyArg_ParseTuple(args, "OOOOOOO:step", &cfgo, &o[0], &o[1], &o[2], &o[3], &o[4], &o[5])) return NULL;
    if (hla_ext_config_from_py(cfgo, &cfg) < 0) return NULL;
    if (convert_all(o, step_spec, 6, t) < 0) return NULL;
    {
        const hla_tensor *p[6] = {P(0), P(1), P(2), P(3), P(4), P(5)};
        if (step_apart(p, step_spec) < 0) {
            release_all(t, 6);
            return NULL;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    record(&r, hla_step(&cfg, P(0), P(1), P(2), P(3), P(4), P(5)));
    Py_END_ALLOW_THREADS
    release_all(t, 6);
    return finish(&r);
}

/* The rest of a one-call step: p the six tensors (rows NULL when absent), t their conversion records when
 * `converted` (released here), `out` the output to return (a reference this takes over: returned, or dropped on
 * failure); `keep`, when not NULL, the numpy array the lock keeps for reuse after a successful call (the
 * output's memory). */
static PyObject *
step_call(const hla_config *cfg, const hla_tensor *const *p, hla_ext_tensor *t, int converted, PyObject *lock,
          PyObject *out, PyObject *keep)
{
    outcome r;
    if (step_apart(p, step_spec) < 0 || hla_ext_lock_acquire(lock, 1) < 0) {
        if (converted) release_all(t, 6);
        Py_DECREF(out);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    record(&r, hla_step(cfg, p[0], p[1], p[2], p[3], p[4], p[5]));
    Py_END_ALLOW_THREADS
    if (converted) release_all(t, 6);
    if (hla_ext_lock_release(lock) < 0) {   /* another thread released it meanwhile: the host broke the lock */
        Py_DECREF(out);
        return NULL;
    }
    if (r.status != HLA_OK) {
        Py_DECREF(out);
        return hla_ext_raise(r.status, r.message);
    }
    if (keep != NULL) hla_ext_lock_keep_output(lock, keep);
    return out;
}

/* The output [dims[0], H, dv] of a step: dims[0] given, the rest from the configuration (ValueError when they
 * do not fit npy_intp). 0, or -1 with an exception set. */
static int
step_dims(const hla_config *cfg, npy_intp *dims)
{
    dims[1] = (npy_intp)cfg->heads;
    dims[2] = (npy_intp)cfg->dv;
    if (dims[1] < 0 || dims[2] < 0 || (npy_int64)dims[1] != cfg->heads || (npy_int64)dims[2] != cfg->dv) {
        PyErr_SetString(PyExc_ValueError, "heads and dv must be non-negative sizes");
        return -1;
    }
    return 0;
}

/* step_numpy's torch case: q, k, v torch tensors that do not require grad (hla_ext_torch_tensor), out such a
 * tensor or absent, rows None, a numpy array or such a tensor; else NotImplemented. Tensors go through torch's
 * C DLPack exporter (convert.c). Without out, a float16, float32 or float64 step writes a numpy array (the lock's kept
 * one when the host has dropped every tensor over it, as step_numpy's outputs) and returns torch.from_numpy of
 * it; bfloat16 gets torch.empty. A float32 step at H = 1, d = 8 took 33-40 µs through the general path
 * (Tensor.__dlpack__ four times, the Python layer's checks, torch.empty from Python). */
static PyObject *
step_torch(const hla_config *cfg, PyObject *const *in, PyObject *lock, PyObject *given)
{
    PyObject *o[6], *c[3], *arr = NULL, *res;
    PyArray_Descr *descr;
    hla_ext_tensor t[MAX_ARGS];
    const hla_tensor *p[6];
    npy_intp dims[3];
    int i;
    if (given != NULL && !hla_ext_torch_tensor(given)) Py_RETURN_NOTIMPLEMENTED;
    for (i = 0; i < 6; i++) o[i] = in[i];
    for (i = 0; i < 3; i++) {                                            /* q, k, v */
        if (hla_ext_tensor_from_torch(o[i], step_spec[i].name, HLA_EXT_READ, &t[i]) < 0) {
            release_all(t, i);
            return NULL;
        }
    }
    if (given != NULL) {
        Py_INCREF(given);
        o[3] = given;
    } else {
        dims[0] = t[0].t.ndim ? (npy_intp)t[0].t.shape[0] : 1;
        o[3] = NULL;
        if (step_dims(cfg, dims) == 0) {
            if (t[0].t.dtype == HLA_BFLOAT16) {
                o[3] = hla_ext_torch_empty(dims, 3, o[0]);
            } else if ((descr = PyArray_DescrFromType(hla_ext_typenum(t[0].t.dtype))) != NULL) {
                arr = hla_ext_lock_reuse_output(lock, descr, dims);
                if (arr != NULL) Py_DECREF(descr);
                else arr = PyArray_Empty(3, dims, descr, 0);                /* steals descr */
                o[3] = arr ? hla_ext_torch_from_numpy(arr) : NULL;
            }
        }
        if (o[3] == NULL) {
            Py_XDECREF(arr);
            release_all(t, 3);
            return NULL;
        }
    }
    c[0] = arr ? arr : o[3]; c[1] = o[4]; c[2] = o[5];                    /* output (its memory), state, rows */
    if (convert_all(c, step_spec + 3, 3, t + 3) < 0) {
        release_all(t, 3);
        Py_DECREF(o[3]);
        Py_XDECREF(arr);
        return NULL;
    }
    for (i = 0; i < 6; i++) p[i] = P(i);
    res = step_call(cfg, p, t, 1, lock, o[3], arr);
    Py_XDECREF(arr);
    return res;
}

/* step_numpy(cfg, q, k, v, state, lock[, out[, rows]]) -> o, or NotImplemented: State.step's common case in
 * one call. q, k, v exact numpy arrays, q of a float dtype the library takes (float16, float32, float64, or
 * ml_dtypes' bfloat16: through the general path a bfloat16 step cost 4 µs more per call than float32);
 * writes `out` (an exact numpy array; the library checks its shape and dtype, and k's and v's) or, when it is
 * absent or None, allocates the output [R, H, dv] (R = q.shape[0]; 1 for a 0-d q, which the library then
 * refuses) of q's dtype; `rows` absent or None (sequence i is row i), or an exact numpy array (or a torch tensor
 * that does not require grad) of row indices (the library checks its dtype, length, range and distinctness;
 * through the general path a row-indexed step cost 6 µs more per call); holds `lock` (the State's
 * hla._hla.Lock, taken directly: lock.c) around hla_step, which runs with the GIL released. q, k, v (and out)
 * torch tensors take step_torch instead. Anything else (other array kinds, a mix, rows or out of another kind)
 * returns NotImplemented and the Python layer takes its general path. */
static PyObject *
step_numpy(PyObject *cfgo, PyObject *q, PyObject *k, PyObject *v, PyObject *state, PyObject *lock,
           PyObject *given, PyObject *rows)
{
    PyObject *o[6];
    PyArray_Descr *descr;
    hla_ext_tensor t[MAX_ARGS];
    hla_tensor d[6];
    const hla_tensor *p[6];
    hla_config cfg;
    npy_intp dims[3];
    int typenum, builtin, direct, i;
    o[0] = q; o[1] = k; o[2] = v; o[4] = state; o[5] = rows;
    if (!hla_ext_lock_check(lock)) {
        PyErr_SetString(PyExc_TypeError, "step_numpy: lock must be an hla._hla.Lock");
        return NULL;
    }
    if (o[5] != Py_None && !PyArray_CheckExact(o[5]) && !hla_ext_torch_tensor(o[5])) Py_RETURN_NOTIMPLEMENTED;
    if (!PyArray_CheckExact(o[0]) || !PyArray_CheckExact(o[1]) || !PyArray_CheckExact(o[2])) {
        if (!hla_ext_torch_tensor(o[0]) || !hla_ext_torch_tensor(o[1]) || !hla_ext_torch_tensor(o[2]))
            Py_RETURN_NOTIMPLEMENTED;
        if (hla_ext_config_from_py(cfgo, &cfg) < 0) return NULL;
        return step_torch(&cfg, o, lock, given);
    }
    if (given != NULL && !PyArray_CheckExact(given)) Py_RETURN_NOTIMPLEMENTED;
    typenum = PyArray_TYPE((PyArrayObject *)o[0]);
    builtin = typenum == NPY_HALF || typenum == NPY_FLOAT || typenum == NPY_DOUBLE;
    if (!builtin && !hla_ext_is_bfloat16((PyArrayObject *)o[0])) Py_RETURN_NOTIMPLEMENTED;
    if (hla_ext_config_from_py(cfgo, &cfg) < 0) return NULL;
    if (given != NULL) {
        Py_INCREF(given);
        o[3] = given;
    } else {
        dims[0] = PyArray_NDIM((PyArrayObject *)o[0]) ? PyArray_DIM((PyArrayObject *)o[0], 0) : 1;
        if (step_dims(&cfg, dims) < 0) return NULL;
        /* q's float kind in native byte order (bfloat16's dtype is ml_dtypes', not a built-in typenum) */
        descr = builtin ? PyArray_DescrFromType(typenum)
                        : PyArray_DescrNewByteorder(PyArray_DESCR((PyArrayObject *)o[0]), NPY_NATIVE);
        if (descr == NULL) return NULL;
        /* the output of the State's last step if the host dropped it (lock.c), else a new array */
        o[3] = hla_ext_lock_reuse_output(lock, descr, dims);
        if (o[3] != NULL) {
            Py_DECREF(descr);
        } else {
            o[3] = PyArray_Empty(3, dims, descr, 0);      /* steals descr */
            if (o[3] == NULL) return NULL;
        }
    }
    /* the arrays as they lie (the common case: no references taken, nothing to release), else converted */
    direct = hla_ext_tensor_direct(o[0], HLA_EXT_READ, &d[0]) && hla_ext_tensor_direct(o[1], HLA_EXT_READ, &d[1]) &&
             hla_ext_tensor_direct(o[2], HLA_EXT_READ, &d[2]) && hla_ext_tensor_direct(o[3], HLA_EXT_WRITE, &d[3]) &&
             hla_ext_tensor_direct(o[4], HLA_EXT_WRITE, &d[4]) &&
             (o[5] == Py_None || hla_ext_tensor_direct(o[5], HLA_EXT_READ, &d[5]));
    if (direct) {
        for (i = 0; i < 6; i++) p[i] = &d[i];
        if (o[5] == Py_None) p[5] = NULL;
    } else {
        if (convert_all(o, step_spec, 6, t) < 0) {
            Py_DECREF(o[3]);
            return NULL;
        }
        for (i = 0; i < 6; i++) p[i] = P(i);
    }
    return step_call(&cfg, p, t, !direct, lock, o[3], given == NULL ? o[3] : NULL);
}

static PyObject *
py_step_numpy(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    (void)m;
    if (nargs < 6 || nargs > 8) {
        PyErr_Format(PyExc_TypeError, "step_numpy takes 6 to 8 arguments, got %zd", nargs);
        return NULL;
    }
    return step_numpy(args[0], args[1], args[2], args[3], args[4], args[5],
                      nargs >= 7 && args[6] != Py_None ? args[6] : NULL, nargs == 8 ? args[7] : Py_None);
}

/* State.step as a C method (state_method below): the decode loop's call goes from the bound method straight to
 * step_numpy, without a Python frame in between. The State's configuration, array and lock are read from its
 * slots (_cfg, _array, _lock of hla._state._Rows) at the offsets state_method found. Every call it does not
 * take (keywords other than rows and out, a missing or extra argument, a slot not set, rows or out of another
 * kind than it runs, q, k, v neither numpy arrays of a float dtype nor torch tensors) goes, with its arguments
 * as given, to the method `_step` of the instance's type (State._step: State.step's whole definition in
 * Python), so the two behave alike, errors included. */
static Py_ssize_t slot_cfg = -1, slot_array = -1, slot_lock = -1;

static PyObject *
call_fallback(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *stack[8], **all = stack, *res, *fallback;
    Py_ssize_t n = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0), i;
    fallback = PyObject_GetAttrString((PyObject *)Py_TYPE(self), "_step");
    if (fallback == NULL) return NULL;
    if (n + 1 > (Py_ssize_t)(sizeof stack / sizeof stack[0])) {
        all = PyMem_Malloc((size_t)(n + 1) * sizeof *all);
        if (all == NULL) {
            Py_DECREF(fallback);
            return PyErr_NoMemory();
        }
    }
    all[0] = self;
    for (i = 0; i < n; i++) all[i + 1] = args[i];
    res = PyObject_Vectorcall(fallback, all, (size_t)(nargs + 1), kwnames);
    if (all != stack) PyMem_Free(all);
    Py_DECREF(fallback);
    return res;
}

static PyObject *
state_step(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *rows = nargs == 4 ? args[3] : Py_None, *out = Py_None, *made = NULL, *cfg, *array, *lock, *res;
    Py_ssize_t i, nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    int fast = (nargs == 3 || nargs == 4) && slot_cfg >= 0;
    for (i = 0; fast && i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        if (nargs == 3 && PyUnicode_CompareWithASCIIString(name, "rows") == 0) rows = args[nargs + i];
        else if (PyUnicode_CompareWithASCIIString(name, "out") == 0) out = args[nargs + i];
        else fast = 0;
    }
    if (fast) {
        cfg = *(PyObject **)((char *)self + slot_cfg);
        array = *(PyObject **)((char *)self + slot_array);
        lock = *(PyObject **)((char *)self + slot_lock);
        fast = cfg != NULL && array != NULL && lock != NULL;
        if (fast && (PyList_CheckExact(rows) || PyTuple_CheckExact(rows))) {
            /* rows as a list or tuple: a numpy array of them, as State._step makes it (int64 when empty); what
             * numpy cannot make one of is State._step's to report */
            made = PyArray_FROM_O(rows);
            if (made != NULL && PyArray_SIZE((PyArrayObject *)made) == 0)
                Py_SETREF(made, PyArray_CastToType((PyArrayObject *)made, PyArray_DescrFromType(NPY_INT64), 0));
            if (made == NULL) PyErr_Clear();
            rows = made;
            fast = made != NULL;
        }
        fast = fast && (rows == Py_None || PyArray_CheckExact(rows) || hla_ext_torch_tensor(rows));
    }
    if (!fast) {
        Py_XDECREF(made);
        return call_fallback(self, args, nargs, kwnames);
    }
    /* the slots' objects held through the call: another thread may set the slots while the GIL is released */
    Py_INCREF(cfg);
    Py_INCREF(array);
    Py_INCREF(lock);
    res = step_numpy(cfg, args[0], args[1], args[2], array, lock, out == Py_None ? NULL : out, rows);
    Py_DECREF(cfg);
    Py_DECREF(array);
    Py_DECREF(lock);
    Py_XDECREF(made);
    if (res != Py_NotImplemented) return res;
    Py_DECREF(res);
    return call_fallback(self, args, nargs, kwnames);
}

static PyMethodDef state_step_def = {
    "step", (PyCFunction)(void (*)(void))state_step, METH_FASTCALL | METH_KEYWORDS,
    "step($self, q_t, k_t, v_t, rows=None, *, out=None)\n--\n\n"
    "Consume one token of R sequences: q_t [R, H, Dk], k_t [R, Hkv, Dk], v_t [R, Hkv, Dv]\n"
    "(one floating dtype; float64 needs a float64 state, the others float32). rows: None\n"
    "(sequence i is row i) or R distinct row indices to read and advance. Returns o_t [R, H, Dv]\n"
    "of q_t's kind and dtype; or out: a writable [R, H, Dv] array of q_t's dtype that receives it\n"
    "and is returned (a decoding loop can reuse one buffer), sharing no memory with the inputs or\n"
    "the state (ValueError)."};

/* The offset of cls's slot `name` (a member descriptor of an object reference), or -1 with an exception set. */
static Py_ssize_t
slot_offset(PyObject *cls, const char *name)
{
    PyObject *d = PyObject_GetAttrString(cls, name);
    Py_ssize_t off = -1;
    if (d == NULL) return -1;
    if (Py_IS_TYPE(d, &PyMemberDescr_Type) && ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX)
        off = ((PyMemberDescrObject *)d)->d_member->offset;
    else
        PyErr_Format(PyExc_TypeError, "state_method: %s is not a slot of an object", name);
    Py_DECREF(d);
    return off;
}

/* state_method(cls) -> the method descriptor of State.step for cls (instances of cls and its subclasses).
 * Called once, by hla._state; the slots' offsets are the module's, so another class must have them at the
 * same offsets (ValueError otherwise). */
static PyObject *
py_state_method(PyObject *m, PyObject *args)
{
    PyObject *cls;
    Py_ssize_t c, a, l;
    (void)m;
    if (!PyArg_ParseTuple(args, "O!:state_method", &PyType_Type, &cls)) return NULL;
    if ((c = slot_offset(cls, "_cfg")) < 0 || (a = slot_offset(cls, "_array")) < 0 ||
        (l = slot_offset(cls, "_lock")) < 0) return NULL;
    if (slot_cfg >= 0 && (c != slot_cfg || a != slot_array || l != slot_lock)) {
        PyErr_SetString(PyExc_ValueError, "state_method: the slots are at other offsets than the State's");
        return NULL;
    }
    slot_cfg = c; slot_array = a; slot_lock = l;
    return PyDescr_NewMethod((PyTypeObject *)cls, &state_step_def);
}

/* summarize(cfg, q, k, v, cu_seqlens, summary, lengths) -> None */
static PyObject *
py_summarize(PyObject *m, PyObject *args)
{
    static const argspec spec[] = {
        {"q", HLA_EXT_READ, 0}, {"k", HLA_EXT_READ, 0}, {"v", HLA_EXT_READ, 0},
        {"cu_seqlens", HLA_EXT_READ, 1}, {"summary", HLA_EXT_WRITE, 0}, {"lengths", HLA_EXT_WRITE, 1}};
    PyObject *cfgo, *o[6];
    hla_ext_tensor t[MAX_ARGS];
    hla_config cfg;
    outcome r;
    (void)m;
    if (!PyArg_ParseTuple(args, "OOOOOOO:summarize", &cfgo, &o[0], &o[1], &o[2], &o[3], &o[4], &o[5])) return NULL;
    if (hla_ext_config_from_py(cfgo, &cfg) < 0) return NULL;
    if (convert_all(o, spec, 6, t) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    record(&r, hla_summarize(&cfg, P(0), P(1), P(2), P(3), P(4), P(5)));
    Py_END_ALLOW_THREADS
    release_all(t, 6);
    return finish(&r);
}

/* summary_combine(cfg, a, a_lengths, b, b_lengths, result, result_lengths) -> None */
static PyObject *
py_summary_combine(PyObject *m, PyObject *args)
{
    static const argspec spec[] = {
        {"a", HLA_EXT_READ, 0}, {"a_lengths", HLA_EXT_READ, 0}, {"b", HLA_EXT_READ, 0},
        {"b_lengths", HLA_EXT_READ, 0}, {"result", HLA_EXT_WRITE, 0}, {"result_lengths", HLA_EXT_WRITE, 1}};
    PyObject *cfgo, *o[6];
    hla_ext_tensor t[MAX_ARGS];
    hla_config cfg;
    outcome r;
    (void)m;
    if (!PyArg_ParseTuple(args, "OOOOOOO:summary_combine", &cfgo, &o[0], &o[1], &o[2], &o[3], &o[4], &o[5])) return NULL;
    if (hla_ext_config_from_py(cfgo, &cfg) < 0) return NULL;
    if (convert_all(o, spec, 6, t) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    record(&r, hla_summary_combine(&cfg, P(0), P(1), P(2), P(3), P(4), P(5)));
    Py_END_ALLOW_THREADS
    release_all(t, 6);
    return finish(&r);
}

/* summary_to_state(cfg, summary, state, rows) -> None */
static PyObject *
py_summary_to_state(PyObject *m, PyObject *args)
{
    static const argspec spec[] = {
        {"summary", HLA_EXT_READ, 0}, {"state", HLA_EXT_WRITE, 0}, {"rows", HLA_EXT_READ, 1}};
    PyObject *cfgo, *o[3];
    hla_ext_tensor t[MAX_ARGS];
    hla_config cfg;
    outcome r;
    (void)m;
    if (!PyArg_ParseTuple(args, "OOOO:summary_to_state", &cfgo, &o[0], &o[1], &o[2])) return NULL;
    if (hla_ext_config_from_py(cfgo, &cfg) < 0) return NULL;
    if (convert_all(o, spec, 3, t) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    record(&r, hla_summary_to_state(&cfg, P(0), P(1), P(2)));
    Py_END_ALLOW_THREADS
    release_all(t, 3);
    return finish(&r);
}

/* state_reset_rows(cfg, state, rows) -> None */
static PyObject *
py_state_reset_rows(PyObject *m, PyObject *args)
{
    static const argspec spec[] = {{"state", HLA_EXT_WRITE, 0}, {"rows", HLA_EXT_READ, 1}};
    PyObject *cfgo, *o[2];
    hla_ext_tensor t[MAX_ARGS];
    hla_config cfg;
    outcome r;
    (void)m;
    if (!PyArg_ParseTuple(args, "OOO:state_reset_rows", &cfgo, &o[0], &o[1])) return NULL;
    if (hla_ext_config_from_py(cfgo, &cfg) < 0) return NULL;
    if (convert_all(o, spec, 2, t) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    record(&r, hla_state_reset_rows(&cfg, P(0), P(1)));
    Py_END_ALLOW_THREADS
    release_all(t, 2);
    return finish(&r);
}

/* state_copy_rows(cfg, state, src_rows, dst_rows) -> None */
static PyObject *
py_state_copy_rows(PyObject *m, PyObject *args)
{
    static const argspec spec[] = {
        {"state", HLA_EXT_WRITE, 0}, {"src_rows", HLA_EXT_READ, 0}, {"dst_rows", HLA_EXT_READ, 0}};
    PyObject *cfgo, *o[3];
    hla_ext_tensor t[MAX_ARGS];
    hla_config cfg;
    outcome r;
    (void)m;
    if (!PyArg_ParseTuple(args, "OOOO:state_copy_rows", &cfgo, &o[0], &o[1], &o[2])) return NULL;
    if (hla_ext_config_from_py(cfgo, &cfg) < 0) return NULL;
    if (convert_all(o, spec, 3, t) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    record(&r, hla_state_copy_rows(&cfg, P(0), P(1), P(2)));
    Py_END_ALLOW_THREADS
    release_all(t, 3);
    return finish(&r);
}

/* ---- serialization ----------------------------------------------------------------------- */

/* Query the size, allocate bytes, write them. `summary` selects the entry point; t[0] is the state or
 * summary, t[1] the rows (state) or lengths (summary). */
static PyObject *
serialize(const hla_config *cfg, int summary, hla_ext_tensor *t)
{
    size_t need = 0, written = 0;
    outcome r;
    PyObject *b;
    if (summary) record(&r, hla_summary_serialize(cfg, P(0), P(1), NULL, 0, &need));
    else record(&r, hla_state_serialize(cfg, P(0), P(1), NULL, 0, &need));
    if (r.status != HLA_OK) return hla_ext_raise(r.status, r.message);
    if (need > (size_t)PY_SSIZE_T_MAX) return PyErr_NoMemory();
    b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)need);
    if (b == NULL) return NULL;
    Py_BEGIN_ALLOW_THREADS
    if (summary) record(&r, hla_summary_serialize(cfg, P(0), P(1), PyBytes_AS_STRING(b), need, &written));
    else record(&r, hla_state_serialize(cfg, P(0), P(1), PyBytes_AS_STRING(b), need, &written));
    Py_END_ALLOW_THREADS
    if (r.status != HLA_OK) {
        Py_DECREF(b);
        return hla_ext_raise(r.status, r.message);
    }
    if (written != need) {
        Py_DECREF(b);
        PyErr_Format(PyExc_RuntimeError, "libhla announced %zu serialized bytes and wrote %zu", need, written);
        return NULL;
    }
    return b;
}

/* state_serialize(cfg, state, rows) -> bytes */
static PyObject *
py_state_serialize(PyObject *m, PyObject *args)
{
    static const argspec spec[] = {{"state", HLA_EXT_READ, 0}, {"rows", HLA_EXT_READ, 1}};
    PyObject *cfgo, *o[2], *res;
    hla_ext_tensor t[MAX_ARGS];
    hla_config cfg;
    (void)m;
    if (!PyArg_ParseTuple(args, "OOO:state_serialize", &cfgo, &o[0], &o[1])) return NULL;
    if (hla_ext_config_from_py(cfgo, &cfg) < 0) return NULL;
    if (convert_all(o, spec, 2, t) < 0) return NULL;
    res = serialize(&cfg, 0, t);
    release_all(t, 2);
    return res;
}

/* summary_serialize(cfg, summary, lengths) -> bytes */
static PyObject *
py_summary_serialize(PyObject *m, PyObject *args)
{
    static const argspec spec[] = {{"summary", HLA_EXT_READ, 0}, {"lengths", HLA_EXT_READ, 0}};
    PyObject *cfgo, *o[2], *res;
    hla_ext_tensor t[MAX_ARGS];
    hla_config cfg;
    (void)m;
    if (!PyArg_ParseTuple(args, "OOO:summary_serialize", &cfgo, &o[0], &o[1])) return NULL;
    if (hla_ext_config_from_py(cfgo, &cfg) < 0) return NULL;
    if (convert_all(o, spec, 2, t) < 0) return NULL;
    res = serialize(&cfg, 1, t);
    release_all(t, 2);
    return res;
}

/* A new C-contiguous numpy array for a tensor the library described (data NULL); points t at it. */
static PyObject *
allocate_described(hla_tensor *t)
{
    npy_intp dims[HLA_MAX_NDIM];
    int i, typenum = hla_ext_typenum(t->dtype);
    PyObject *arr;
    int64_t run = 1;
    if (typenum < 0 || t->ndim < 1 || t->ndim > HLA_MAX_NDIM) {
        PyErr_Format(PyExc_RuntimeError, "libhla described a tensor of dtype %d and ndim %d",
                     (int)t->dtype, (int)t->ndim);
        return NULL;
    }
    for (i = 0; i < t->ndim; i++) dims[i] = (npy_intp)t->shape[i];
    arr = PyArray_EMPTY(t->ndim, dims, typenum, 0);   /* every element is written by the copy */
    if (arr == NULL) return NULL;
    t->data = PyArray_DATA((PyArrayObject *)arr);
    for (i = t->ndim - 1; i >= 0; i--) {
        t->strides[i] = run;
        run *= t->shape[i] > 1 ? t->shape[i] : 1;
    }
    return arr;
}

/* Read bytes: describe, allocate, copy. summary: also the lengths. -> (cfg, array[, lengths]) */
static PyObject *
deserialize(PyObject *data, int summary)
{
    static const unsigned char empty[1] = {0};
    Py_buffer view;
    hla_config cfg;
    hla_tensor st, len;
    outcome r;
    PyObject *arr = NULL, *larr = NULL, *res = NULL;
    const void *buf;

    if (PyUnicode_Check(data) || PyObject_GetBuffer(data, &view, PyBUF_C_CONTIGUOUS) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "data must be a bytes-like object, got %.100s", Py_TYPE(data)->tp_name);
        return NULL;
    }
    buf = view.len > 0 ? view.buf : (const void *)empty;
    memset(&st, 0, sizeof st);
    memset(&len, 0, sizeof len);
    record(&r, hla_config_init(&cfg, sizeof cfg));
    if (r.status == HLA_OK) {
        if (summary) record(&r, hla_summary_deserialize(buf, (size_t)view.len, &cfg, &st, &len));
        else record(&r, hla_state_deserialize(buf, (size_t)view.len, &cfg, &st));
    }
    if (r.status != HLA_OK) {
        hla_ext_raise(r.status, r.message);
        goto done;
    }
    arr = allocate_described(&st);
    if (arr == NULL) goto done;
    if (summary) {
        larr = allocate_described(&len);
        if (larr == NULL) goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    if (summary) record(&r, hla_summary_deserialize(buf, (size_t)view.len, &cfg, &st, &len));
    else record(&r, hla_state_deserialize(buf, (size_t)view.len, &cfg, &st));
    Py_END_ALLOW_THREADS
    if (r.status != HLA_OK) {
        hla_ext_raise(r.status, r.message);
        goto done;
    }
    res = summary ? Py_BuildValue("(NOO)", hla_ext_config_to_py(&cfg), arr, larr)
                  : Py_BuildValue("(NO)", hla_ext_config_to_py(&cfg), arr);
done:
    Py_XDECREF(arr);
    Py_XDECREF(larr);
    PyBuffer_Release(&view);
    return res;
}

static PyObject *
py_state_deserialize(PyObject *m, PyObject *data)
{
    (void)m;
    return deserialize(data, 0);
}

static PyObject *
py_summary_deserialize(PyObject *m, PyObject *data)
{
    (void)m;
    return deserialize(data, 1);
}

/* ---- sizes and version ------------------------------------------------------------------- */

static PyObject *
elements(PyObject *cfgo, int summary)
{
    hla_config cfg;
    int64_t n = 0;
    outcome r;
    if (hla_ext_config_from_py(cfgo, &cfg) < 0) return NULL;
    if (summary) record(&r, hla_summary_elements(&cfg, &n));
    else record(&r, hla_state_elements(&cfg, &n));
    if (r.status != HLA_OK) return hla_ext_raise(r.status, r.message);
    return PyLong_FromLongLong((long long)n);
}

/* checkpoint_rows(cfg, batch, tokens, sequences[, checkpoint_every]) -> (rows, stride) (hla_checkpoint_rows) */
static PyObject *
py_checkpoint_rows(PyObject *m, PyObject *args)
{
    PyObject *cfgo, *every = Py_None;
    long long batch, tokens, sequences;
    int64_t rows = 0, stride = 0;
    hla_config cfg;
    outcome r;
    (void)m;
    if (!PyArg_ParseTuple(args, "OLLL|O:checkpoint_rows", &cfgo, &batch, &tokens, &sequences, &every))
        return NULL;
    if (hla_ext_config_from_py(cfgo, &cfg) < 0 ||
        hla_ext_parse_int(every, "checkpoint_every", 1, &cfg.checkpoint_every) < 0) return NULL;
    record(&r, hla_checkpoint_rows(&cfg, (int64_t)batch, (int64_t)tokens, (int64_t)sequences, &rows, &stride));
    if (r.status != HLA_OK) return hla_ext_raise(r.status, r.message);
    return Py_BuildValue("(LL)", (long long)rows, (long long)stride);
}

static PyObject *
py_state_elements(PyObject *m, PyObject *cfgo)
{
    (void)m;
    return elements(cfgo, 0);
}

static PyObject *
py_summary_elements(PyObject *m, PyObject *cfgo)
{
    (void)m;
    return elements(cfgo, 1);
}

/* config(cfg) -> the same 12 items after conversion to an hla_config (canonical Python values) */
static PyObject *
py_config(PyObject *m, PyObject *cfgo)
{
    hla_config cfg;
    (void)m;
    if (hla_ext_config_from_py(cfgo, &cfg) < 0) return NULL;
    return hla_ext_config_to_py(&cfg);
}

/* state_serialized_size(cfg, state, rows) / summary_serialized_size(cfg, summary, lengths) -> int:
 * the size query of hla_state_serialize / hla_summary_serialize, which validates the tensors against
 * the configuration without writing anything. */
static PyObject *
serialized_size(PyObject *args, int summary)
{
    static const argspec state_spec[] = {{"array", HLA_EXT_READ, 0}, {"rows", HLA_EXT_READ, 1}};
    static const argspec summary_spec[] = {{"array", HLA_EXT_READ, 0}, {"length", HLA_EXT_READ, 0}};
    PyObject *cfgo, *o[2];
    hla_ext_tensor t[MAX_ARGS];
    hla_config cfg;
    size_t need = 0;
    outcome r;
    if (!PyArg_ParseTuple(args, "OOO:serialized_size", &cfgo, &o[0], &o[1])) return NULL;
    if (hla_ext_config_from_py(cfgo, &cfg) < 0) return NULL;
    if (convert_all(o, summary ? summary_spec : state_spec, 2, t) < 0) return NULL;
    if (summary) record(&r, hla_summary_serialize(&cfg, P(0), P(1), NULL, 0, &need));
    else record(&r, hla_state_serialize(&cfg, P(0), P(1), NULL, 0, &need));
    release_all(t, 2);
    if (r.status != HLA_OK) return hla_ext_raise(r.status, r.message);
    return PyLong_FromSize_t(need);
}

static PyObject *
py_state_serialized_size(PyObject *m, PyObject *args)
{
    (void)m;
    return serialized_size(args, 0);
}

static PyObject *
py_summary_serialized_size(PyObject *m, PyObject *args)
{
    (void)m;
    return serialized_size(args, 1);
}

static PyObject *
py_version(PyObject *m, PyObject *Py_UNUSED(ignored))
{
    const char *v = hla_version();
    (void)m;
    return PyUnicode_FromString(v ? v : "");
}

PyMethodDef hla_ext_ops_methods[] = {
    {"forward", py_forward, METH_VARARGS,
     "forward(cfg, path, q, k, v, output, cu_seqlens, initial, final, rows[, checkpoints[, checkpoint_every]])"
     " -> None (checkpoint_every: int or None, default 0 = automatic; cfg.checkpoint_every)"},
    {"backward", py_backward, METH_VARARGS,
     "backward(cfg, path, q, k, v, do, dq, dk, dv, cu_seqlens, initial, d_final, d_initial[, checkpoints[, "
     "checkpoint_every]]) -> None (checkpoint_every as for forward; also without checkpoints)"},
    {"reference", py_reference, METH_VARARGS,
     "reference(cfg, q, k, v, output, cu_seqlens) -> None (hla_reference)"},
    {"step", py_step, METH_VARARGS, "step(cfg, q, k, v, output, state, rows) -> None (hla_step)"},
    {"step_numpy", (PyCFunction)(void (*)(void))py_step_numpy, METH_FASTCALL,
     "step_numpy(cfg, q, k, v, state, lock[, out[, rows]]) -> o, or NotImplemented (numpy arrays only)"},
    {"state_method", py_state_method, METH_VARARGS,
     "state_method(cls) -> State.step as a C method of cls (other calls go to cls._step)"},
    {"summarize", py_summarize, METH_VARARGS,
     "summarize(cfg, q, k, v, cu_seqlens, summary, lengths) -> None (hla_summarize)"},
    {"summary_combine", py_summary_combine, METH_VARARGS,
     "summary_combine(cfg, a, a_lengths, b, b_lengths, result, result_lengths) -> None"},
    {"summary_to_state", py_summary_to_state, METH_VARARGS,
     "summary_to_state(cfg, summary, state, rows) -> None (hla_summary_to_state)"},
    {"state_reset_rows", py_state_reset_rows, METH_VARARGS,
     "state_reset_rows(cfg, state, rows) -> None (hla_state_reset_rows)"},
    {"state_copy_rows", py_state_copy_rows, METH_VARARGS,
     "state_copy_rows(cfg, state, src_rows, dst_rows) -> None (hla_state_copy_rows)"},
    {"state_serialize", py_state_serialize, METH_VARARGS, "state_serialize(cfg, state, rows) -> bytes"},
    {"state_deserialize", py_state_deserialize, METH_O, "state_deserialize(data) -> (cfg, array)"},
    {"summary_serialize", py_summary_serialize, METH_VARARGS,
     "summary_serialize(cfg, summary, lengths) -> bytes"},
    {"summary_deserialize", py_summary_deserialize, METH_O,
     "summary_deserialize(data) -> (cfg, summary, lengths)"},
    {"state_elements", py_state_elements, METH_O, "state_elements(cfg) -> int"},
    {"checkpoint_rows", py_checkpoint_rows, METH_VARARGS,
     "checkpoint_rows(cfg, batch, tokens, sequences[, checkpoint_every]) -> (rows, stride) (hla_checkpoint_rows)"},
    {"summary_elements", py_summary_elements, METH_O, "summary_elements(cfg) -> int"},
    {"config", py_config, METH_O, "config(cfg) -> tuple: the options as an hla_config holds them"},
    {"state_serialized_size", py_state_serialized_size, METH_VARARGS,
     "state_serialized_size(cfg, state, rows) -> int (validates the state tensor)"},
    {"summary_serialized_size", py_summary_serialized_size, METH_VARARGS,
     "summary_serialized_size(cfg, summary, lengths) -> int (validates the summary tensors)"},
    {"version", py_version, METH_NOARGS, "version() -> str: version of the loaded libhla"},
    {NULL, NULL, 0, NULL}};
