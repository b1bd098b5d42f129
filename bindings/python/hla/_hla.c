/*
 * hla._hla -- CPython extension over the libhla C ABI (plain C, Python.h + numpy C API).
 *
 * The public, documented Python API lives in hla/__init__.py; this module does the work:
 * argument validation (every message names the offending argument), conversion of numpy
 * arrays to (pointer, element strides) pairs, and calls into libhla with the GIL released.
 *
 * Handles (hla_state*, hla_segment*) are owned by State / Segment objects. libhla forbids
 * using one handle from two threads at once; since compute runs without the GIL, every
 * object carries a lock that is held for the duration of any library call on its handle.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "hla.h"

/* ------------------------------------------------------------------------------------------ */
/* Library status -> Python exception                                                          */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    hla_status status;
    char message[1024];
} call_result;

/* Record the status of a library call; must run on the calling thread right after the call
 * (hla_last_error is thread-local). Safe without the GIL. */
static void
capture(call_result *r, hla_status status)
{
    r->status = status;
    r->message[0] = '\0';
    if (status != HLA_OK) {
        const char *m = hla_last_error();
        if (m != NULL) {
            snprintf(r->message, sizeof r->message, "%s", m);
        }
    }
}

/* Raise the exception for a failed call. `what` names the operation (and argument, if any). */
static PyObject *
raise_status(const char *what, const call_result *r)
{
    PyObject *exc = PyExc_ValueError;
    const char *name = hla_status_string(r->status);
    if (r->status == HLA_ERR_OUT_OF_MEMORY) {
        exc = PyExc_MemoryError;
    }
    else if (r->status == HLA_ERR_MISMATCH &&
             (strstr(r->message, "dtype") != NULL || strstr(r->message, "element type") != NULL)) {
        exc = PyExc_TypeError;
    }
    PyErr_Format(exc, "%s failed (%s)%s%s", what, name ? name : "HLA_ERR_UNKNOWN",
                 r->message[0] ? ": " : "", r->message);
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Per-object lock (one handle is never used by two threads at once)                           */
/* ------------------------------------------------------------------------------------------ */

static void
lock_acquire(PyThread_type_lock lock)
{
    if (!PyThread_acquire_lock(lock, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(lock, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
}

static void
lock_release(PyThread_type_lock lock)
{
    PyThread_release_lock(lock);
}

/* ------------------------------------------------------------------------------------------ */
/* Names                                                                                       */
/* ------------------------------------------------------------------------------------------ */

static const char *
op_name(int32_t op)
{
    switch (op) {
    case HLA_OP_HLA2: return "hla2";
    case HLA_OP_AHLA: return "ahla";
    case HLA_OP_HLA3: return "hla3";
    default: return "?";
    }
}

static const char *
dtype_name(int32_t dtype)
{
    switch (dtype) {
    case HLA_FLOAT32: return "float32";
    case HLA_FLOAT64: return "float64";
    default: return "?";
    }
}

static int
dtype_typenum(int32_t dtype)
{
    return dtype == HLA_FLOAT64 ? NPY_DOUBLE : NPY_FLOAT;
}

/* ------------------------------------------------------------------------------------------ */
/* Scalar argument parsing                                                                     */
/* ------------------------------------------------------------------------------------------ */

static int
parse_op(PyObject *obj, int32_t *op)
{
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "op must be a str ('hla2', 'ahla' or 'hla3'), got %.100s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (PyUnicode_CompareWithASCIIString(obj, "hla2") == 0) { *op = HLA_OP_HLA2; return 0; }
    if (PyUnicode_CompareWithASCIIString(obj, "ahla") == 0) { *op = HLA_OP_AHLA; return 0; }
    if (PyUnicode_CompareWithASCIIString(obj, "hla3") == 0) { *op = HLA_OP_HLA3; return 0; }
    PyErr_Format(PyExc_ValueError, "op must be one of 'hla2', 'ahla', 'hla3', got %R", obj);
    return -1;
}

static int
parse_path(PyObject *obj, int32_t *path)
{
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError,
                     "path must be a str ('chunked', 'serial' or 'scan'), got %.100s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (PyUnicode_CompareWithASCIIString(obj, "chunked") == 0) { *path = HLA_PATH_CHUNKED; return 0; }
    if (PyUnicode_CompareWithASCIIString(obj, "serial") == 0) { *path = HLA_PATH_SERIAL; return 0; }
    if (PyUnicode_CompareWithASCIIString(obj, "scan") == 0) { *path = HLA_PATH_SCAN; return 0; }
    PyErr_Format(PyExc_ValueError, "path must be one of 'chunked', 'serial', 'scan', got %R", obj);
    return -1;
}

static int
parse_bool(PyObject *obj, const char *name, int32_t *out)
{
    int v = PyObject_IsTrue(obj);
    if (v < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be a bool, got %.100s", name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    *out = v ? 1 : 0;
    return 0;
}

static int
parse_double(PyObject *obj, const char *name, double *out)
{
    double d;
    if (PyUnicode_Check(obj) || PyBytes_Check(obj) || obj == Py_None) {
        PyErr_Format(PyExc_TypeError, "%s must be a real number, got %.100s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    d = PyFloat_AsDouble(obj);
    if (d == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be a real number, got %.100s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    *out = d;
    return 0;
}

/* Integer >= minimum (no floats, no bools' surprises beyond int semantics). */
static int
parse_int(PyObject *obj, const char *name, long long minimum, int64_t *out)
{
    PyObject *idx;
    long long v;
    int overflow = 0;
    if (PyFloat_Check(obj) || PyUnicode_Check(obj) || obj == Py_None) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, got %.100s", name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    idx = PyNumber_Index(obj);
    if (idx == NULL) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be an int, got %.100s", name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    v = PyLong_AsLongLongAndOverflow(idx, &overflow);
    Py_DECREF(idx);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow != 0) {
        PyErr_Format(PyExc_ValueError, "%s is out of range: %R", name, obj);
        return -1;
    }
    if (v < minimum) {
        PyErr_Format(PyExc_ValueError, "%s must be >= %lld, got %lld", name, minimum, v);
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

static PyObject *
format_double(double d)
{
    char *s = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    PyObject *r;
    if (s == NULL) {
        return NULL;
    }
    r = PyUnicode_FromString(s);
    PyMem_Free(s);
    return r;
}

/* Options shared by forward / reference / summarize / State(). Fills cfg (from
 * hla_config_init) and validates the parameters with messages naming the argument. */
static int
parse_options(hla_config *cfg, PyObject *op, PyObject *masked, PyObject *normalize,
              PyObject *decay, PyObject *ridge, PyObject *eps, PyObject *scale)
{
    call_result r;
    capture(&r, hla_config_init(cfg));
    if (r.status != HLA_OK) {
        raise_status("hla_config_init", &r);
        return -1;
    }
    if (parse_op(op, &cfg->op) < 0) return -1;
    if (parse_bool(masked, "masked", &cfg->masked) < 0) return -1;
    if (parse_bool(normalize, "normalize", &cfg->normalize) < 0) return -1;
    if (parse_double(decay, "decay", &cfg->decay) < 0) return -1;
    if (parse_double(ridge, "ridge", &cfg->ridge) < 0) return -1;
    if (parse_double(eps, "eps", &cfg->eps) < 0) return -1;
    if (parse_double(scale, "scale", &cfg->scale) < 0) return -1;
    if (!(cfg->decay > 0.0 && cfg->decay <= 1.0)) {
        PyErr_Format(PyExc_ValueError, "decay must be in (0, 1], got %R", decay);
        return -1;
    }
    if (!(isfinite(cfg->eps) && cfg->eps > 0.0)) {
        PyErr_Format(PyExc_ValueError, "eps must be a finite number > 0, got %R", eps);
        return -1;
    }
    if (!(isfinite(cfg->ridge) && cfg->ridge >= 0.0)) {
        PyErr_Format(PyExc_ValueError, "ridge must be a finite number >= 0, got %R", ridge);
        return -1;
    }
    if (cfg->ridge != 0.0 && cfg->op != HLA_OP_HLA2) {
        PyErr_Format(PyExc_ValueError, "ridge is only supported with op='hla2' (op=%R, ridge=%R)",
                     op, ridge);
        return -1;
    }
    if (!isfinite(cfg->scale)) {
        PyErr_Format(PyExc_ValueError, "scale must be finite, got %R", scale);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* numpy arrays                                                                                */
/* ------------------------------------------------------------------------------------------ */

#define MAXDIM 4

typedef struct {
    PyArrayObject *arr;       /* owned reference: the array handed to the library */
    int nd;
    int64_t dims[MAXDIM];
    int64_t strides[MAXDIM];  /* element strides */
    int typenum;              /* NPY_FLOAT or NPY_DOUBLE */
} array_arg;

static void
array_arg_clear(array_arg *a)
{
    Py_CLEAR(a->arr);
}

/* Check that obj is a float32/float64 ndarray of rank nd; convert it (copy) if its memory
 * cannot be described by element strides (misaligned, non-native byte order, or a byte stride
 * not divisible by the item size). `layout` is used in messages, e.g. "[B, T, H, Dk]". */
static int
get_array(PyObject *obj, const char *name, int nd, const char *layout, array_arg *out)
{
    PyArrayObject *arr;
    PyArray_Descr *descr;
    int typenum, i, need_copy = 0;
    npy_intp itemsize;

    memset(out, 0, sizeof *out);
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy.ndarray of float32 or float64, got %.100s",
                     name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    arr = (PyArrayObject *)obj;
    descr = PyArray_DESCR(arr);
    if (descr->kind == 'f' && PyArray_ITEMSIZE(arr) == 4) {
        typenum = NPY_FLOAT;
    }
    else if (descr->kind == 'f' && PyArray_ITEMSIZE(arr) == 8) {
        typenum = NPY_DOUBLE;
    }
    else {
        PyObject *s = PyObject_Str((PyObject *)descr);
        PyErr_Format(PyExc_TypeError, "%s must have dtype float32 or float64, got %S", name,
                     s ? s : Py_None);
        Py_XDECREF(s);
        return -1;
    }
    if (PyArray_NDIM(arr) != nd) {
        PyErr_Format(PyExc_ValueError, "%s must have %d dimensions %s, got %d", name, nd, layout,
                     PyArray_NDIM(arr));
        return -1;
    }
    for (i = 0; i < nd; i++) {
        if (PyArray_DIM(arr, i) < 1) {
            PyErr_Format(PyExc_ValueError, "%s %s must have no empty dimension, got size 0 in axis %d",
                         name, layout, i);
            return -1;
        }
    }
    itemsize = (npy_intp)PyArray_ITEMSIZE(arr);
    if (!PyArray_ISNBO(descr->byteorder) || !PyArray_ISALIGNED(arr)) {
        need_copy = 1;
    }
    for (i = 0; i < nd; i++) {
        if (PyArray_DIM(arr, i) > 1 && PyArray_STRIDE(arr, i) % itemsize != 0) {
            need_copy = 1;
        }
    }
    if (need_copy) {
        PyArray_Descr *native = PyArray_DescrFromType(typenum); /* new ref, stolen below */
        arr = (PyArrayObject *)PyArray_FromArray(arr, native,
                                                 NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED |
                                                 NPY_ARRAY_ENSURECOPY);
        if (arr == NULL) {
            return -1;
        }
    }
    else {
        Py_INCREF(arr);
    }
    out->arr = arr;
    out->nd = nd;
    out->typenum = typenum;
    for (i = 0; i < nd; i++) {
        out->dims[i] = (int64_t)PyArray_DIM(arr, i);
        out->strides[i] = out->dims[i] > 1 ? (int64_t)(PyArray_STRIDE(arr, i) / itemsize) : 0;
    }
    return 0;
}

static int
check_same_dtype(const array_arg *a, const char *aname, const array_arg *ref, const char *refname)
{
    if (a->typenum != ref->typenum) {
        PyErr_Format(PyExc_TypeError,
                     "%s has dtype %s but %s has dtype %s (inputs must share one dtype)", aname,
                     a->typenum == NPY_DOUBLE ? "float64" : "float32", refname,
                     ref->typenum == NPY_DOUBLE ? "float64" : "float32");
        return -1;
    }
    return 0;
}

/* q [B,T,H,Dk], k [B,T,Hkv,Dk], v [B,T,Hkv,Dv]. Fills the shape fields of cfg and *T. */
static int
get_qkv(PyObject *q, PyObject *k, PyObject *v, hla_config *cfg, int64_t *T, array_arg a[3])
{
    if (get_array(q, "q", 4, "[B, T, H, Dk]", &a[0]) < 0) goto fail;
    if (get_array(k, "k", 4, "[B, T, Hkv, Dk]", &a[1]) < 0) goto fail;
    if (get_array(v, "v", 4, "[B, T, Hkv, Dv]", &a[2]) < 0) goto fail;
    if (check_same_dtype(&a[1], "k", &a[0], "q") < 0) goto fail;
    if (check_same_dtype(&a[2], "v", &a[0], "q") < 0) goto fail;
    {
        const int64_t *qd = a[0].dims, *kd = a[1].dims, *vd = a[2].dims;
        if (kd[0] != qd[0] || vd[0] != qd[0]) {
            PyErr_Format(PyExc_ValueError,
                         "batch sizes differ: q.shape[0]=%lld, k.shape[0]=%lld, v.shape[0]=%lld",
                         (long long)qd[0], (long long)kd[0], (long long)vd[0]);
            goto fail;
        }
        if (kd[1] != qd[1] || vd[1] != qd[1]) {
            PyErr_Format(PyExc_ValueError,
                         "sequence lengths differ: q.shape[1]=%lld, k.shape[1]=%lld, v.shape[1]=%lld",
                         (long long)qd[1], (long long)kd[1], (long long)vd[1]);
            goto fail;
        }
        if (vd[2] != kd[2]) {
            PyErr_Format(PyExc_ValueError, "k and v must have the same number of heads: "
                         "k.shape[2]=%lld, v.shape[2]=%lld", (long long)kd[2], (long long)vd[2]);
            goto fail;
        }
        if (qd[2] % kd[2] != 0) {
            PyErr_Format(PyExc_ValueError, "query heads q.shape[2]=%lld must be a multiple of the "
                         "key/value heads k.shape[2]=%lld", (long long)qd[2], (long long)kd[2]);
            goto fail;
        }
        if (kd[3] != qd[3]) {
            PyErr_Format(PyExc_ValueError, "q and k must have the same feature size: "
                         "q.shape[3]=%lld, k.shape[3]=%lld", (long long)qd[3], (long long)kd[3]);
            goto fail;
        }
        cfg->dtype = a[0].typenum == NPY_DOUBLE ? HLA_FLOAT64 : HLA_FLOAT32;
        cfg->batch = qd[0];
        cfg->heads = qd[2];
        cfg->kv_heads = kd[2];
        cfg->dk = qd[3];
        cfg->dv = vd[3];
        *T = qd[1];
    }
    return 0;
fail:
    array_arg_clear(&a[0]);
    array_arg_clear(&a[1]);
    array_arg_clear(&a[2]);
    return -1;
}

#define DATA(a) ((const void *)PyArray_DATA((a).arr))

/* ------------------------------------------------------------------------------------------ */
/* Configuration comparison                                                                    */
/* ------------------------------------------------------------------------------------------ */

static int64_t
kvh(const hla_config *c)
{
    return c->kv_heads == 0 ? c->heads : c->kv_heads;
}

/* have: configuration of a state/segment passed as `name`; want: the call's. */
static int
check_same_config(const hla_config *want, const hla_config *have, const char *name)
{
    char buf[256];
    if (want->dtype != have->dtype) {
        PyErr_Format(PyExc_TypeError, "%s holds dtype %s but the inputs have dtype %s", name,
                     dtype_name(have->dtype), dtype_name(want->dtype));
        return -1;
    }
    buf[0] = '\0';
#define CMP_INT(field, label)                                                                  \
    if (buf[0] == '\0' && want->field != have->field)                                          \
        snprintf(buf, sizeof buf, "%s=%lld, but this call has %s=%lld", label,                 \
                 (long long)have->field, label, (long long)want->field);
#define CMP_DBL(field, label)                                                                  \
    if (buf[0] == '\0' && !(want->field == have->field))                                       \
        snprintf(buf, sizeof buf, "%s=%.17g, but this call has %s=%.17g", label, have->field,  \
                 label, want->field);
    if (want->op != have->op) {
        snprintf(buf, sizeof buf, "op='%s', but this call has op='%s'", op_name(have->op),
                 op_name(want->op));
    }
    CMP_INT(masked, "masked")
    CMP_INT(normalize, "normalize")
    CMP_INT(batch, "batch")
    CMP_INT(heads, "heads")
    if (buf[0] == '\0' && kvh(want) != kvh(have)) {
        snprintf(buf, sizeof buf, "kv_heads=%lld, but this call has kv_heads=%lld",
                 (long long)kvh(have), (long long)kvh(want));
    }
    CMP_INT(dk, "dk")
    CMP_INT(dv, "dv")
    CMP_DBL(decay, "decay")
    CMP_DBL(ridge, "ridge")
    CMP_DBL(eps, "eps")
    CMP_DBL(scale, "scale")
#undef CMP_INT
#undef CMP_DBL
    if (buf[0] != '\0') {
        PyErr_Format(PyExc_ValueError, "%s has another configuration: it has %s", name, buf);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* State and Segment objects                                                                   */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    hla_state *handle;
    hla_config cfg;            /* immutable for the handle's lifetime */
    PyThread_type_lock lock;
} StateObject;

typedef struct {
    PyObject_HEAD
    hla_segment *handle;
    hla_config cfg;
    PyThread_type_lock lock;
} SegmentObject;

static PyTypeObject StateType;
static PyTypeObject SegmentType;

#define State_Check(o) PyObject_TypeCheck((o), &StateType)
#define Segment_Check(o) PyObject_TypeCheck((o), &SegmentType)

/* Wrap a handle (takes ownership; destroys it on failure). */
static PyObject *
state_wrap(hla_state *h)
{
    StateObject *self;
    call_result r;
    hla_config cfg;
    capture(&r, hla_state_get_config(h, &cfg));
    if (r.status != HLA_OK) {
        hla_state_destroy(h);
        return raise_status("hla_state_get_config", &r);
    }
    self = PyObject_New(StateObject, &StateType);
    if (self == NULL) {
        hla_state_destroy(h);
        return NULL;
    }
    self->handle = h;
    self->cfg = cfg;
    self->lock = PyThread_allocate_lock();
    if (self->lock == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static PyObject *
segment_wrap(hla_segment *h)
{
    SegmentObject *self;
    call_result r;
    hla_config cfg;
    capture(&r, hla_segment_get_config(h, &cfg));
    if (r.status != HLA_OK) {
        hla_segment_destroy(h);
        return raise_status("hla_segment_get_config", &r);
    }
    self = PyObject_New(SegmentObject, &SegmentType);
    if (self == NULL) {
        hla_segment_destroy(h);
        return NULL;
    }
    self->handle = h;
    self->cfg = cfg;
    self->lock = PyThread_allocate_lock();
    if (self->lock == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static void
State_dealloc(StateObject *self)
{
    if (self->handle != NULL) {
        hla_state_destroy(self->handle);
        self->handle = NULL;
    }
    if (self->lock != NULL) {
        PyThread_free_lock(self->lock);
        self->lock = NULL;
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static void
Segment_dealloc(SegmentObject *self)
{
    if (self->handle != NULL) {
        hla_segment_destroy(self->handle);
        self->handle = NULL;
    }
    if (self->lock != NULL) {
        PyThread_free_lock(self->lock);
        self->lock = NULL;
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* State(op="hla2", *, batch, heads, dk, dv, kv_heads=None, masked=True, normalize=False,
 *       decay=1.0, ridge=0.0, eps=1e-6, scale=1.0, dtype="float32") */
static PyObject *
State_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"op", "batch", "heads", "dk", "dv", "kv_heads", "masked",
                             "normalize", "decay", "ridge", "eps", "scale", "dtype", NULL};
    PyObject *op = NULL, *batch = NULL, *heads = NULL, *dk = NULL, *dv = NULL, *kv_heads = Py_None;
    PyObject *masked = Py_True, *normalize = Py_False, *decay = NULL, *ridge = NULL, *eps = NULL;
    PyObject *scale = NULL, *dtype = NULL;
    PyObject *defaults[4] = {NULL, NULL, NULL, NULL};
    PyObject *result = NULL;
    hla_config cfg;
    hla_state *h = NULL;
    call_result r;
    PyArray_Descr *descr = NULL;

    (void)type;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O$OOOOOOOOOOOO:State", kwlist, &op, &batch,
                                     &heads, &dk, &dv, &kv_heads, &masked, &normalize, &decay,
                                     &ridge, &eps, &scale, &dtype)) {
        return NULL;
    }
    {
        const char *names[4] = {"batch", "heads", "dk", "dv"};
        PyObject *vals[4] = {batch, heads, dk, dv};
        int i;
        for (i = 0; i < 4; i++) {
            if (vals[i] == NULL) {
                PyErr_Format(PyExc_TypeError, "State() missing required keyword argument '%s'",
                             names[i]);
                return NULL;
            }
        }
    }
    defaults[0] = PyFloat_FromDouble(1.0);
    defaults[1] = PyFloat_FromDouble(0.0);
    defaults[2] = PyFloat_FromDouble(1e-6);
    defaults[3] = PyUnicode_FromString("hla2");
    if (!defaults[0] || !defaults[1] || !defaults[2] || !defaults[3]) goto done;
    if (parse_options(&cfg, op ? op : defaults[3], masked, normalize, decay ? decay : defaults[0],
                      ridge ? ridge : defaults[1], eps ? eps : defaults[2],
                      scale ? scale : defaults[0]) < 0) {
        goto done;
    }
    if (parse_int(batch, "batch", 1, &cfg.batch) < 0) goto done;
    if (parse_int(heads, "heads", 1, &cfg.heads) < 0) goto done;
    if (parse_int(dk, "dk", 1, &cfg.dk) < 0) goto done;
    if (parse_int(dv, "dv", 1, &cfg.dv) < 0) goto done;
    if (kv_heads == Py_None) {
        cfg.kv_heads = cfg.heads;
    }
    else {
        if (parse_int(kv_heads, "kv_heads", 1, &cfg.kv_heads) < 0) goto done;
        if (cfg.heads % cfg.kv_heads != 0) {
            PyErr_Format(PyExc_ValueError, "heads=%lld must be a multiple of kv_heads=%lld",
                         (long long)cfg.heads, (long long)cfg.kv_heads);
            goto done;
        }
    }
    if (dtype == NULL) {
        cfg.dtype = HLA_FLOAT32;
    }
    else {
        if (!PyArray_DescrConverter(dtype, &descr)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "dtype must be 'float32' or 'float64', got %R", dtype);
            goto done;
        }
        if (descr->type_num == NPY_FLOAT) {
            cfg.dtype = HLA_FLOAT32;
        }
        else if (descr->type_num == NPY_DOUBLE) {
            cfg.dtype = HLA_FLOAT64;
        }
        else {
            PyErr_Format(PyExc_TypeError, "dtype must be 'float32' or 'float64', got %R", dtype);
            goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    capture(&r, hla_state_create(&cfg, &h));
    Py_END_ALLOW_THREADS
    if (r.status != HLA_OK) {
        raise_status("State(): hla_state_create", &r);
        goto done;
    }
    result = state_wrap(h);
done:
    Py_XDECREF(descr);
    Py_XDECREF(defaults[0]);
    Py_XDECREF(defaults[1]);
    Py_XDECREF(defaults[2]);
    Py_XDECREF(defaults[3]);
    return result;
}

/* Step-tensor check: rank 3 [B, X, D] with the given sizes. */
static int
check_step_array(const array_arg *a, const char *name, const char *layout, int64_t d0, int64_t d1,
                 int64_t d2, const char *n1, const char *n2)
{
    if (a->dims[0] != d0 || a->dims[1] != d1 || a->dims[2] != d2) {
        PyErr_Format(PyExc_ValueError,
                     "%s must have shape %s = (%lld, %lld, %lld) for this state (batch, %s, %s), "
                     "got (%lld, %lld, %lld)", name, layout, (long long)d0, (long long)d1,
                     (long long)d2, n1, n2, (long long)a->dims[0], (long long)a->dims[1],
                     (long long)a->dims[2]);
        return -1;
    }
    return 0;
}

static PyObject *
State_step(StateObject *self, PyObject *args)
{
    PyObject *q, *k, *v;
    array_arg a[3];
    PyObject *out = NULL;
    call_result r;
    const hla_config *c = &self->cfg;
    int want = dtype_typenum(c->dtype);
    int i;
    npy_intp odims[3];

    memset(a, 0, sizeof a);
    if (!PyArg_ParseTuple(args, "OOO:step", &q, &k, &v)) return NULL;
    if (get_array(q, "q_t", 3, "[B, H, Dk]", &a[0]) < 0) goto fail;
    if (get_array(k, "k_t", 3, "[B, Hkv, Dk]", &a[1]) < 0) goto fail;
    if (get_array(v, "v_t", 3, "[B, Hkv, Dv]", &a[2]) < 0) goto fail;
    {
        const char *names[3] = {"q_t", "k_t", "v_t"};
        for (i = 0; i < 3; i++) {
            if (a[i].typenum != want) {
                PyErr_Format(PyExc_TypeError, "%s has dtype %s but the state holds %s", names[i],
                             a[i].typenum == NPY_DOUBLE ? "float64" : "float32",
                             dtype_name(c->dtype));
                goto fail;
            }
        }
    }
    if (check_step_array(&a[0], "q_t", "[B, H, Dk]", c->batch, c->heads, c->dk, "heads", "dk") < 0)
        goto fail;
    if (check_step_array(&a[1], "k_t", "[B, Hkv, Dk]", c->batch, kvh(c), c->dk, "kv_heads", "dk") < 0)
        goto fail;
    if (check_step_array(&a[2], "v_t", "[B, Hkv, Dv]", c->batch, kvh(c), c->dv, "kv_heads", "dv") < 0)
        goto fail;
    odims[0] = (npy_intp)c->batch;
    odims[1] = (npy_intp)c->heads;
    odims[2] = (npy_intp)c->dv;
    out = PyArray_SimpleNew(3, odims, want);
    if (out == NULL) goto fail;

    lock_acquire(self->lock);
    Py_BEGIN_ALLOW_THREADS
    capture(&r, hla_state_step(self->handle, DATA(a[0]), a[0].strides, DATA(a[1]), a[1].strides,
                               DATA(a[2]), a[2].strides, PyArray_DATA((PyArrayObject *)out), NULL));
    Py_END_ALLOW_THREADS
    lock_release(self->lock);
    if (r.status != HLA_OK) {
        raise_status("State.step: hla_state_step", &r);
        goto fail;
    }
    for (i = 0; i < 3; i++) array_arg_clear(&a[i]);
    return out;
fail:
    Py_XDECREF(out);
    for (i = 0; i < 3; i++) array_arg_clear(&a[i]);
    return NULL;
}

static PyObject *
State_copy(StateObject *self, PyObject *Py_UNUSED(ignored))
{
    hla_state *h = NULL;
    call_result r;
    lock_acquire(self->lock);
    Py_BEGIN_ALLOW_THREADS
    capture(&r, hla_state_clone(self->handle, &h));
    Py_END_ALLOW_THREADS
    lock_release(self->lock);
    if (r.status != HLA_OK) return raise_status("State.copy: hla_state_clone", &r);
    return state_wrap(h);
}

static PyObject *
State_deepcopy(StateObject *self, PyObject *Py_UNUSED(memo))
{
    return State_copy(self, NULL);
}

static PyObject *
State_reset(StateObject *self, PyObject *Py_UNUSED(ignored))
{
    call_result r;
    lock_acquire(self->lock);
    Py_BEGIN_ALLOW_THREADS
    capture(&r, hla_state_reset(self->handle));
    Py_END_ALLOW_THREADS
    lock_release(self->lock);
    if (r.status != HLA_OK) return raise_status("State.reset: hla_state_reset", &r);
    Py_RETURN_NONE;
}

/* Serialization without holding the object's lock across Python allocations (an allocation
 * may run the garbage collector and arbitrary finalizers, which might use the same object). */
typedef hla_status (*serialize_fn)(const void *handle, void *buffer, size_t capacity,
                                   size_t *written);

static hla_status
serialize_state(const void *h, void *buffer, size_t capacity, size_t *written)
{
    return hla_state_serialize((const hla_state *)h, buffer, capacity, written);
}

static hla_status
serialize_segment(const void *h, void *buffer, size_t capacity, size_t *written)
{
    return hla_segment_serialize((const hla_segment *)h, buffer, capacity, written);
}

static PyObject *
serialize_handle(const void *h, PyThread_type_lock lock, serialize_fn fn, const char *what)
{
    size_t need = 0, written = 0;
    PyObject *b;
    call_result r;
    int attempt;

    lock_acquire(lock);
    capture(&r, fn(h, NULL, 0, &need));
    lock_release(lock);
    for (attempt = 0; attempt < 4; attempt++) {
        if (r.status != HLA_OK && r.status != HLA_ERR_BUFFER_TOO_SMALL) {
            return raise_status(what, &r);
        }
        if (need > (size_t)PY_SSIZE_T_MAX) {
            return PyErr_NoMemory();
        }
        b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)need);
        if (b == NULL) {
            return NULL;
        }
        written = 0;
        lock_acquire(lock);
        Py_BEGIN_ALLOW_THREADS
        capture(&r, fn(h, PyBytes_AS_STRING(b), need, &written));
        Py_END_ALLOW_THREADS
        lock_release(lock);
        if (r.status == HLA_OK && written == need) {
            return b;
        }
        Py_DECREF(b);
        if (r.status == HLA_OK) {
            PyErr_Format(PyExc_RuntimeError, "%s: wrote %zu bytes, announced %zu", what, written,
                         need);
            return NULL;
        }
        need = written;   /* HLA_ERR_BUFFER_TOO_SMALL: retry with the size now required */
    }
    PyErr_Format(PyExc_RuntimeError, "%s: the serialized size keeps changing", what);
    return NULL;
}

static PyObject *
State_to_bytes(StateObject *self, PyObject *Py_UNUSED(ignored))
{
    return serialize_handle(self->handle, self->lock, serialize_state,
                            "State.to_bytes: hla_state_serialize");
}

/* Borrow a contiguous byte buffer from a bytes-like object. */
static int
get_bytes(PyObject *obj, const char *name, Py_buffer *view)
{
    if (PyUnicode_Check(obj) || PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be a bytes-like object, got %.100s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    return 0;
}

static PyObject *
state_from_bytes(PyObject *obj)
{
    Py_buffer view;
    hla_state *h = NULL;
    call_result r;
    static const unsigned char empty[1] = {0};
    const void *data;
    if (get_bytes(obj, "data", &view) < 0) return NULL;
    data = view.len > 0 ? view.buf : (const void *)empty;
    Py_BEGIN_ALLOW_THREADS
    capture(&r, hla_state_deserialize(data, (size_t)view.len, &h));
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (r.status != HLA_OK) return raise_status("State.from_bytes: hla_state_deserialize", &r);
    return state_wrap(h);
}

static PyObject *
State_from_bytes(PyObject *cls, PyObject *obj)
{
    (void)cls;
    return state_from_bytes(obj);
}

static PyObject *
module_state_from_bytes(PyObject *m, PyObject *obj)
{
    (void)m;
    return state_from_bytes(obj);
}

static PyObject *mod_state_from_bytes_fn = NULL;   /* hla._hla._state_from_bytes */
static PyObject *mod_segment_from_bytes_fn = NULL; /* hla._hla._segment_from_bytes */

static PyObject *
State_reduce(StateObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *b = State_to_bytes(self, NULL);
    PyObject *r;
    if (b == NULL) return NULL;
    r = Py_BuildValue("O(N)", mod_state_from_bytes_fn, b);
    return r;
}

static PyObject *
State_get_nbytes(StateObject *self, void *Py_UNUSED(closure))
{
    int64_t n = 0;
    call_result r;
    lock_acquire(self->lock);
    capture(&r, hla_state_nbytes(self->handle, &n));
    lock_release(self->lock);
    if (r.status != HLA_OK) return raise_status("State.nbytes: hla_state_nbytes", &r);
    return PyLong_FromLongLong((long long)n);
}

static PyObject *
State_get_tokens(StateObject *self, void *Py_UNUSED(closure))
{
    int64_t n = 0;
    call_result r;
    lock_acquire(self->lock);
    capture(&r, hla_state_tokens(self->handle, &n));
    lock_release(self->lock);
    if (r.status != HLA_OK) return raise_status("State.tokens: hla_state_tokens", &r);
    return PyLong_FromLongLong((long long)n);
}

/* Config getters shared by State and Segment: closure selects the field. Both object
 * layouts start with PyObject_HEAD, a handle pointer, then the config, so offsetof agrees;
 * we nevertheless dispatch on the type to stay strictly correct. */
static const hla_config *
obj_cfg(PyObject *self)
{
    if (State_Check(self)) return &((StateObject *)self)->cfg;
    return &((SegmentObject *)self)->cfg;
}

enum {
    F_OP, F_BATCH, F_HEADS, F_KV_HEADS, F_DK, F_DV, F_DTYPE, F_MASKED, F_NORMALIZE, F_DECAY,
    F_RIDGE, F_EPS, F_SCALE
};

static PyObject *
cfg_get(PyObject *self, void *closure)
{
    const hla_config *c = obj_cfg(self);
    switch ((int)(intptr_t)closure) {
    case F_OP: return PyUnicode_FromString(op_name(c->op));
    case F_BATCH: return PyLong_FromLongLong((long long)c->batch);
    case F_HEADS: return PyLong_FromLongLong((long long)c->heads);
    case F_KV_HEADS: return PyLong_FromLongLong((long long)kvh(c));
    case F_DK: return PyLong_FromLongLong((long long)c->dk);
    case F_DV: return PyLong_FromLongLong((long long)c->dv);
    case F_DTYPE: return (PyObject *)PyArray_DescrFromType(dtype_typenum(c->dtype));
    case F_MASKED: return PyBool_FromLong(c->masked);
    case F_NORMALIZE: return PyBool_FromLong(c->normalize);
    case F_DECAY: return PyFloat_FromDouble(c->decay);
    case F_RIDGE: return PyFloat_FromDouble(c->ridge);
    case F_EPS: return PyFloat_FromDouble(c->eps);
    case F_SCALE: return PyFloat_FromDouble(c->scale);
    default: Py_RETURN_NONE;
    }
}

#define CFG_GETSETS                                                                            \
    {"op", (getter)cfg_get, NULL, "Operator: 'hla2', 'ahla' or 'hla3'.", (void *)F_OP},        \
    {"batch", (getter)cfg_get, NULL, "Batch size B.", (void *)F_BATCH},                        \
    {"heads", (getter)cfg_get, NULL, "Query heads H.", (void *)F_HEADS},                       \
    {"kv_heads", (getter)cfg_get, NULL, "Key/value heads Hkv.", (void *)F_KV_HEADS},           \
    {"dk", (getter)cfg_get, NULL, "Query/key features Dk.", (void *)F_DK},                     \
    {"dv", (getter)cfg_get, NULL, "Value features Dv.", (void *)F_DV},                         \
    {"dtype", (getter)cfg_get, NULL, "Element type (numpy.dtype).", (void *)F_DTYPE},          \
    {"masked", (getter)cfg_get, NULL, "Strictly causal (masked) operator.", (void *)F_MASKED}, \
    {"normalize", (getter)cfg_get, NULL, "Outputs divided by the value-free sum + eps.",       \
     (void *)F_NORMALIZE},                                                                     \
    {"decay", (getter)cfg_get, NULL, "Decay gamma in (0, 1].", (void *)F_DECAY},               \
    {"ridge", (getter)cfg_get, NULL, "Ridge lambda (hla2 only).", (void *)F_RIDGE},            \
    {"eps", (getter)cfg_get, NULL, "Normalization epsilon.", (void *)F_EPS},                   \
    {"scale", (getter)cfg_get, NULL, "Query scale.", (void *)F_SCALE}

/* "op='hla2', batch=.., ..." */
static PyObject *
cfg_repr_body(const hla_config *c)
{
    PyObject *decay = format_double(c->decay), *ridge = format_double(c->ridge);
    PyObject *eps = format_double(c->eps), *scale = format_double(c->scale);
    PyObject *r = NULL;
    if (decay && ridge && eps && scale) {
        r = PyUnicode_FromFormat(
            "op='%s', batch=%lld, heads=%lld, kv_heads=%lld, dk=%lld, dv=%lld, dtype='%s', "
            "masked=%s, normalize=%s, decay=%U, ridge=%U, eps=%U, scale=%U",
            op_name(c->op), (long long)c->batch, (long long)c->heads, (long long)kvh(c),
            (long long)c->dk, (long long)c->dv, dtype_name(c->dtype), c->masked ? "True" : "False",
            c->normalize ? "True" : "False", decay, ridge, eps, scale);
    }
    Py_XDECREF(decay);
    Py_XDECREF(ridge);
    Py_XDECREF(eps);
    Py_XDECREF(scale);
    return r;
}

static PyObject *
State_repr(StateObject *self)
{
    PyObject *body = cfg_repr_body(&self->cfg), *tokens, *r;
    if (body == NULL) return NULL;
    tokens = State_get_tokens(self, NULL);
    if (tokens == NULL) {
        Py_DECREF(body);
        return NULL;
    }
    r = PyUnicode_FromFormat("hla.State(%U; tokens=%S)", body, tokens);
    Py_DECREF(body);
    Py_DECREF(tokens);
    return r;
}

static PyMethodDef State_methods[] = {
    {"step", (PyCFunction)State_step, METH_VARARGS,
     "step(q_t, k_t, v_t) -> o_t\n\nConsume one token per (batch, head): q_t [B, H, Dk],\n"
     "k_t [B, Hkv, Dk], v_t [B, Hkv, Dv] of the state's dtype; returns o_t [B, H, Dv]."},
    {"copy", (PyCFunction)State_copy, METH_NOARGS, "copy() -> State\n\nDeep copy."},
    {"__copy__", (PyCFunction)State_copy, METH_NOARGS, "Deep copy."},
    {"__deepcopy__", (PyCFunction)State_deepcopy, METH_O, "Deep copy."},
    {"reset", (PyCFunction)State_reset, METH_NOARGS,
     "reset() -> None\n\nZero the statistics (as if newly created)."},
    {"to_bytes", (PyCFunction)State_to_bytes, METH_NOARGS,
     "to_bytes() -> bytes\n\nVersioned, checksummed serialization (configuration included)."},
    {"from_bytes", (PyCFunction)State_from_bytes, METH_O | METH_CLASS,
     "State.from_bytes(data) -> State\n\nRebuild a state from to_bytes() output; raises\n"
     "ValueError on truncated, corrupt or foreign bytes."},
    {"__reduce__", (PyCFunction)State_reduce, METH_NOARGS, "Pickle support (via to_bytes)."},
    {NULL, NULL, 0, NULL}
};

static PyGetSetDef State_getsets[] = {
    CFG_GETSETS,
    {"nbytes", (getter)State_get_nbytes, NULL, "Bytes of prefix statistics held in memory.", NULL},
    {"tokens", (getter)State_get_tokens, NULL,
     "Tokens consumed since creation or reset (including those of a segment it came from).", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

/* ---- Segment ---- */

static PyObject *
Segment_get_length(SegmentObject *self, void *Py_UNUSED(closure))
{
    int64_t n = 0;
    call_result r;
    lock_acquire(self->lock);
    capture(&r, hla_segment_length(self->handle, &n));
    lock_release(self->lock);
    if (r.status != HLA_OK) return raise_status("Segment.length: hla_segment_length", &r);
    return PyLong_FromLongLong((long long)n);
}

static PyObject *
Segment_get_nbytes(SegmentObject *self, void *Py_UNUSED(closure))
{
    int64_t n = 0;
    call_result r;
    lock_acquire(self->lock);
    capture(&r, hla_segment_nbytes(self->handle, &n));
    lock_release(self->lock);
    if (r.status != HLA_OK) return raise_status("Segment.nbytes: hla_segment_nbytes", &r);
    return PyLong_FromLongLong((long long)n);
}

static PyObject *
Segment_to_bytes(SegmentObject *self, PyObject *Py_UNUSED(ignored))
{
    return serialize_handle(self->handle, self->lock, serialize_segment,
                            "Segment.to_bytes: hla_segment_serialize");
}

static PyObject *
segment_from_bytes(PyObject *obj)
{
    Py_buffer view;
    hla_segment *h = NULL;
    call_result r;
    static const unsigned char empty[1] = {0};
    const void *data;
    if (get_bytes(obj, "data", &view) < 0) return NULL;
    data = view.len > 0 ? view.buf : (const void *)empty;
    Py_BEGIN_ALLOW_THREADS
    capture(&r, hla_segment_deserialize(data, (size_t)view.len, &h));
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (r.status != HLA_OK) return raise_status("Segment.from_bytes: hla_segment_deserialize", &r);
    return segment_wrap(h);
}

static PyObject *
Segment_from_bytes(PyObject *cls, PyObject *obj)
{
    (void)cls;
    return segment_from_bytes(obj);
}

static PyObject *
module_segment_from_bytes(PyObject *m, PyObject *obj)
{
    (void)m;
    return segment_from_bytes(obj);
}

static PyObject *
Segment_reduce(SegmentObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *b = Segment_to_bytes(self, NULL);
    if (b == NULL) return NULL;
    return Py_BuildValue("O(N)", mod_segment_from_bytes_fn, b);
}

static PyObject *
Segment_identity(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    /* Segments are immutable: copies may share the object. */
    Py_INCREF(self);
    return self;
}

static PyObject *
Segment_repr(SegmentObject *self)
{
    PyObject *body = cfg_repr_body(&self->cfg), *len, *r;
    if (body == NULL) return NULL;
    len = Segment_get_length(self, NULL);
    if (len == NULL) {
        Py_DECREF(body);
        return NULL;
    }
    r = PyUnicode_FromFormat("hla.Segment(%U; length=%S)", body, len);
    Py_DECREF(body);
    Py_DECREF(len);
    return r;
}

static PyMethodDef Segment_methods[] = {
    {"to_bytes", (PyCFunction)Segment_to_bytes, METH_NOARGS,
     "to_bytes() -> bytes\n\nVersioned, checksummed serialization (configuration included)."},
    {"from_bytes", (PyCFunction)Segment_from_bytes, METH_O | METH_CLASS,
     "Segment.from_bytes(data) -> Segment\n\nRebuild a segment from to_bytes() output; raises\n"
     "ValueError on truncated, corrupt or foreign bytes."},
    {"__reduce__", (PyCFunction)Segment_reduce, METH_NOARGS, "Pickle support (via to_bytes)."},
    {"__copy__", (PyCFunction)Segment_identity, METH_NOARGS, "Segments are immutable."},
    {"__deepcopy__", (PyCFunction)Segment_identity, METH_O, "Segments are immutable."},
    {NULL, NULL, 0, NULL}
};

static PyGetSetDef Segment_getsets[] = {
    CFG_GETSETS,
    {"length", (getter)Segment_get_length, NULL, "Tokens summarized.", NULL},
    {"nbytes", (getter)Segment_get_nbytes, NULL, "Bytes of statistics held in memory.", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

static PyTypeObject StateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "hla.State",
    .tp_basicsize = sizeof(StateObject),
    .tp_dealloc = (destructor)State_dealloc,
    .tp_repr = (reprfunc)State_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "State(op='hla2', *, batch, heads, dk, dv, kv_heads=None, masked=True,\n"
              "      normalize=False, decay=1.0, ridge=0.0, eps=1e-6, scale=1.0, dtype='float32')\n\n"
              "Streaming state: constant-size prefix statistics of every (batch, head).",
    .tp_methods = State_methods,
    .tp_getset = State_getsets,
    .tp_new = State_new,
};

static PyTypeObject SegmentType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "hla.Segment",
    .tp_basicsize = sizeof(SegmentObject),
    .tp_dealloc = (destructor)Segment_dealloc,
    .tp_repr = (reprfunc)Segment_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Summary of a segment of a sequence (made by hla.summarize / hla.combine).",
    .tp_methods = Segment_methods,
    .tp_getset = Segment_getsets,
    .tp_new = NULL,
};

/* ------------------------------------------------------------------------------------------ */
/* Module functions                                                                            */
/* ------------------------------------------------------------------------------------------ */

static PyObject *
new_output(const hla_config *cfg, int64_t T)
{
    npy_intp dims[4];
    dims[0] = (npy_intp)cfg->batch;
    dims[1] = (npy_intp)T;
    dims[2] = (npy_intp)cfg->heads;
    dims[3] = (npy_intp)cfg->dv;
    return PyArray_SimpleNew(4, dims, dtype_typenum(cfg->dtype));
}

/* _forward(q, k, v, op, masked, normalize, decay, ridge, eps, scale, initial_state,
 *          output_final_state, chunk_size, path) -> (o, final or None) */
static PyObject *
py_forward(PyObject *m, PyObject *args)
{
    PyObject *q, *k, *v, *op, *masked, *normalize, *decay, *ridge, *eps, *scale, *initial, *ofs;
    PyObject *chunk, *pathobj;
    hla_config cfg;
    int32_t path, want_final;
    int64_t T = 0;
    array_arg a[3];
    PyObject *out = NULL, *final_obj = NULL, *result = NULL;
    StateObject *ist = NULL;
    SegmentObject *iseg = NULL;
    PyThread_type_lock held = NULL;
    hla_state *final_h = NULL, *tmp_h = NULL;
    call_result r;
    const char *failed = NULL;
    int i;

    (void)m;
    memset(a, 0, sizeof a);
    if (!PyArg_UnpackTuple(args, "_forward", 14, 14, &q, &k, &v, &op, &masked, &normalize, &decay,
                           &ridge, &eps, &scale, &initial, &ofs, &chunk, &pathobj)) {
        return NULL;
    }
    if (parse_options(&cfg, op, masked, normalize, decay, ridge, eps, scale) < 0) return NULL;
    if (parse_int(chunk, "chunk_size", 0, &cfg.chunk_size) < 0) return NULL;
    if (parse_path(pathobj, &path) < 0) return NULL;
    if (parse_bool(ofs, "output_final_state", &want_final) < 0) return NULL;
    if (get_qkv(q, k, v, &cfg, &T, a) < 0) return NULL;

    if (initial != Py_None) {
        if (State_Check(initial)) {
            ist = (StateObject *)initial;
            if (check_same_config(&cfg, &ist->cfg, "initial_state") < 0) goto done;
            held = ist->lock;
        }
        else if (Segment_Check(initial)) {
            iseg = (SegmentObject *)initial;
            if (check_same_config(&cfg, &iseg->cfg, "initial_state") < 0) goto done;
            held = iseg->lock;
        }
        else {
            PyErr_Format(PyExc_TypeError,
                         "initial_state must be a hla.State, a hla.Segment or None, got %.100s",
                         Py_TYPE(initial)->tp_name);
            goto done;
        }
    }
    out = new_output(&cfg, T);
    if (out == NULL) goto done;

    if (held) lock_acquire(held);
    Py_BEGIN_ALLOW_THREADS
    r.status = HLA_OK;
    r.message[0] = '\0';
    if (want_final) {
        capture(&r, hla_state_create(&cfg, &final_h));
        if (r.status != HLA_OK) failed = "hla_forward: creating the final state (hla_state_create)";
    }
    if (r.status == HLA_OK && iseg != NULL) {
        capture(&r, hla_state_from_segment(iseg->handle, &tmp_h));
        if (r.status != HLA_OK) failed = "hla_forward: initial_state (hla_state_from_segment)";
    }
    if (r.status == HLA_OK) {
        const hla_state *init_h = ist ? ist->handle : tmp_h;
        capture(&r, hla_forward(&cfg, T, path, DATA(a[0]), a[0].strides, DATA(a[1]), a[1].strides,
                                DATA(a[2]), a[2].strides, PyArray_DATA((PyArrayObject *)out), NULL,
                                init_h, final_h));
        if (r.status != HLA_OK) failed = "hla_forward";
    }
    if (tmp_h != NULL) {
        hla_state_destroy(tmp_h);
        tmp_h = NULL;
    }
    if (r.status != HLA_OK && final_h != NULL) {
        hla_state_destroy(final_h);
        final_h = NULL;
    }
    Py_END_ALLOW_THREADS
    if (held) lock_release(held);

    if (r.status != HLA_OK) {
        raise_status(failed ? failed : "hla_forward", &r);
        goto done;
    }
    if (final_h != NULL) {
        final_obj = state_wrap(final_h);
        final_h = NULL;
        if (final_obj == NULL) goto done;
    }
    else {
        final_obj = Py_None;
        Py_INCREF(final_obj);
    }
    result = PyTuple_Pack(2, out, final_obj);
done:
    Py_XDECREF(out);
    Py_XDECREF(final_obj);
    for (i = 0; i < 3; i++) array_arg_clear(&a[i]);
    return result;
}

/* _reference(q, k, v, op, masked, normalize, decay, ridge, eps, scale) -> o */
static PyObject *
py_reference(PyObject *m, PyObject *args)
{
    PyObject *q, *k, *v, *op, *masked, *normalize, *decay, *ridge, *eps, *scale;
    hla_config cfg;
    int64_t T = 0;
    array_arg a[3];
    PyObject *out = NULL;
    call_result r;
    int i;

    (void)m;
    memset(a, 0, sizeof a);
    if (!PyArg_UnpackTuple(args, "_reference", 10, 10, &q, &k, &v, &op, &masked, &normalize,
                           &decay, &ridge, &eps, &scale)) {
        return NULL;
    }
    if (parse_options(&cfg, op, masked, normalize, decay, ridge, eps, scale) < 0) return NULL;
    if (get_qkv(q, k, v, &cfg, &T, a) < 0) return NULL;
    out = new_output(&cfg, T);
    if (out == NULL) goto fail;
    Py_BEGIN_ALLOW_THREADS
    capture(&r, hla_reference(&cfg, T, DATA(a[0]), a[0].strides, DATA(a[1]), a[1].strides,
                              DATA(a[2]), a[2].strides, PyArray_DATA((PyArrayObject *)out), NULL));
    Py_END_ALLOW_THREADS
    if (r.status != HLA_OK) {
        raise_status("hla_reference", &r);
        goto fail;
    }
    for (i = 0; i < 3; i++) array_arg_clear(&a[i]);
    return out;
fail:
    Py_XDECREF(out);
    for (i = 0; i < 3; i++) array_arg_clear(&a[i]);
    return NULL;
}

/* _summarize(q, k, v, op, masked, normalize, decay, ridge, eps, scale, chunk_size) -> Segment */
static PyObject *
py_summarize(PyObject *m, PyObject *args)
{
    PyObject *q, *k, *v, *op, *masked, *normalize, *decay, *ridge, *eps, *scale, *chunk;
    hla_config cfg;
    int64_t T = 0;
    array_arg a[3];
    hla_segment *h = NULL;
    call_result r;
    int i;

    (void)m;
    memset(a, 0, sizeof a);
    if (!PyArg_UnpackTuple(args, "_summarize", 11, 11, &q, &k, &v, &op, &masked, &normalize,
                           &decay, &ridge, &eps, &scale, &chunk)) {
        return NULL;
    }
    if (parse_options(&cfg, op, masked, normalize, decay, ridge, eps, scale) < 0) return NULL;
    if (parse_int(chunk, "chunk_size", 0, &cfg.chunk_size) < 0) return NULL;
    if (get_qkv(q, k, v, &cfg, &T, a) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    capture(&r, hla_summarize(&cfg, T, DATA(a[0]), a[0].strides, DATA(a[1]), a[1].strides,
                              DATA(a[2]), a[2].strides, &h));
    Py_END_ALLOW_THREADS
    for (i = 0; i < 3; i++) array_arg_clear(&a[i]);
    if (r.status != HLA_OK) return raise_status("hla_summarize", &r);
    return segment_wrap(h);
}

/* combine(a, b) -> Segment */
static PyObject *
py_combine(PyObject *m, PyObject *args)
{
    PyObject *ao, *bo;
    SegmentObject *a, *b;
    hla_segment *h = NULL;
    call_result r;
    PyThread_type_lock first, second;

    (void)m;
    if (!PyArg_UnpackTuple(args, "combine", 2, 2, &ao, &bo)) return NULL;
    if (!Segment_Check(ao)) {
        PyErr_Format(PyExc_TypeError, "a must be a hla.Segment, got %.100s", Py_TYPE(ao)->tp_name);
        return NULL;
    }
    if (!Segment_Check(bo)) {
        PyErr_Format(PyExc_TypeError, "b must be a hla.Segment, got %.100s", Py_TYPE(bo)->tp_name);
        return NULL;
    }
    a = (SegmentObject *)ao;
    b = (SegmentObject *)bo;
    if (check_same_config(&a->cfg, &b->cfg, "b (compared with a)") < 0) return NULL;
    /* lock in address order; once if the same object */
    first = a->lock;
    second = b->lock;
    if (a == b) {
        second = NULL;
    }
    else if ((uintptr_t)a > (uintptr_t)b) {
        first = b->lock;
        second = a->lock;
    }
    lock_acquire(first);
    if (second) lock_acquire(second);
    Py_BEGIN_ALLOW_THREADS
    capture(&r, hla_segment_combine(a->handle, b->handle, &h));
    Py_END_ALLOW_THREADS
    if (second) lock_release(second);
    lock_release(first);
    if (r.status != HLA_OK) return raise_status("combine: hla_segment_combine", &r);
    return segment_wrap(h);
}

/* state_from_segment(s) -> State */
static PyObject *
py_state_from_segment(PyObject *m, PyObject *obj)
{
    SegmentObject *s;
    hla_state *h = NULL;
    call_result r;
    (void)m;
    if (!Segment_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "segment must be a hla.Segment, got %.100s",
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    s = (SegmentObject *)obj;
    lock_acquire(s->lock);
    Py_BEGIN_ALLOW_THREADS
    capture(&r, hla_state_from_segment(s->handle, &h));
    Py_END_ALLOW_THREADS
    lock_release(s->lock);
    if (r.status != HLA_OK) return raise_status("hla_state_from_segment", &r);
    return state_wrap(h);
}

static PyObject *
py_version(PyObject *m, PyObject *Py_UNUSED(ignored))
{
    const char *v;
    (void)m;
    v = hla_version();
    return PyUnicode_FromString(v ? v : "");
}

static PyMethodDef module_methods[] = {
    {"_forward", py_forward, METH_VARARGS, "Positional implementation of hla.forward."},
    {"_reference", py_reference, METH_VARARGS, "Positional implementation of hla.reference."},
    {"_summarize", py_summarize, METH_VARARGS, "Positional implementation of hla.summarize."},
    {"combine", py_combine, METH_VARARGS,
     "combine(a, b) -> Segment\n\nSummary of segment a followed by segment b (associative)."},
    {"state_from_segment", py_state_from_segment, METH_O,
     "state_from_segment(segment) -> State\n\nState holding the prefix statistics after the segment."},
    {"_state_from_bytes", module_state_from_bytes, METH_O, "Unpickling helper."},
    {"_segment_from_bytes", module_segment_from_bytes, METH_O, "Unpickling helper."},
    {"version", py_version, METH_NOARGS, "version() -> str\n\nVersion of the loaded libhla."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef hla_module = {
    PyModuleDef_HEAD_INIT,
    "hla._hla",
    "C extension of the hla package (libhla bindings). Use the hla package, not this module.",
    -1,
    module_methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit__hla(void)
{
    PyObject *m;
    import_array();
    if (PyType_Ready(&StateType) < 0) return NULL;
    if (PyType_Ready(&SegmentType) < 0) return NULL;
    m = PyModule_Create(&hla_module);
    if (m == NULL) return NULL;
    Py_INCREF(&StateType);
    if (PyModule_AddObject(m, "State", (PyObject *)&StateType) < 0) {
        Py_DECREF(&StateType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&SegmentType);
    if (PyModule_AddObject(m, "Segment", (PyObject *)&SegmentType) < 0) {
        Py_DECREF(&SegmentType);
        Py_DECREF(m);
        return NULL;
    }
    mod_state_from_bytes_fn = PyObject_GetAttrString(m, "_state_from_bytes");
    mod_segment_from_bytes_fn = PyObject_GetAttrString(m, "_segment_from_bytes");
    if (mod_state_from_bytes_fn == NULL || mod_segment_from_bytes_fn == NULL) {
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "OP_HLA2", HLA_OP_HLA2) < 0 ||
        PyModule_AddIntConstant(m, "OP_AHLA", HLA_OP_AHLA) < 0 ||
        PyModule_AddIntConstant(m, "OP_HLA3", HLA_OP_HLA3) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
