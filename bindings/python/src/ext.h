/*
 * hla._hla -- CPython extension over the libhla 1.0 C ABI (plain C, Python.h + numpy's C API).
 *
 * The extension converts and forwards: Python objects become hla_tensor descriptions of their memory
 * (convert.c), option tuples become an hla_config (config.c), each entry point is a thin wrapper that
 * releases the GIL around the library call (ops.c), and one function maps a failed status to its
 * exception (errors.c). Validation of shapes, dtypes, rows and cu_seqlens is the library's.
 */
#ifndef HLA_EXT_H
#define HLA_EXT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "hla.h"
#include "dlpack_abi.h"

/* The unique symbol of numpy's C-API table lives in module.c; the other files import it. */
#define PY_ARRAY_UNIQUE_SYMBOL hla_ext_ARRAY_API
#ifndef HLA_EXT_MODULE_C
#define NO_IMPORT_ARRAY
#endif
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

/* ---- errors.c ---------------------------------------------------------------------------- */

/* Raise the exception of a failed library call: HLA_ERR_DTYPE -> TypeError, HLA_ERR_OUT_OF_MEMORY ->
 * MemoryError, every other status -> ValueError. The message is `message` (the library's
 * hla_last_error(), captured on the calling thread); the exception gets an attribute `hla_status`
 * with the status name. Returns NULL. */
PyObject *hla_ext_raise(hla_status status, const char *message);

/* ---- config.c ---------------------------------------------------------------------------- */

/* Options as the Python layer passes them: a tuple (or any sequence) of 12 items
 *   (op, masked, normalize, heads, kv_heads, dk, dv, scale, decay, ridge, eps, chunk_size)
 * op a str ('hla2', 'ahla', 'hla3'); kv_heads and chunk_size may be None (0 in C). Only conversion
 * errors are raised here (TypeError for a wrong type, ValueError for an unknown op name or an integer
 * out of int64 range); every range check is the library's. */
#define HLA_EXT_CONFIG_FIELDS 12
int hla_ext_config_from_py(PyObject *obj, hla_config *cfg);
/* The inverse (a tuple of the same 12 items; kv_heads resolved, chunk_size as stored). */
PyObject *hla_ext_config_to_py(const hla_config *cfg);
/* 'chunked', 'serial', 'scan' -> hla_path. */
int hla_ext_path_from_py(PyObject *obj, int32_t *path);
/* An int into *out (None -> 0 when none_ok; floats, strings, bools refused: TypeError naming `name`).
 * Returns 0, or -1 with an exception set. */
int hla_ext_parse_int(PyObject *obj, const char *name, int none_ok, int64_t *out);

/* ---- convert.c --------------------------------------------------------------------------- */

/* One argument converted to an hla_tensor, with what keeps its memory alive. */
typedef struct {
    hla_tensor t;
    int present;                       /* 0: the argument was None (pass NULL) */
    PyObject *array;                   /* owned: the numpy array described (the argument or a copy) */
    PyObject *capsule;                 /* owned: a consumed DLPack capsule */
    DLManagedTensor *managed;          /* its tensor ("dltensor"), deleter called on release */
    DLManagedTensorVersioned *managed_v; /* or ("dltensor_versioned") */
} hla_ext_tensor;

enum { HLA_EXT_READ = 0, HLA_EXT_WRITE = 1 };

/* Describe obj (a numpy array of any strides, or any object with __dlpack__ on the CPU; None when
 * optional) as an hla_tensor. Inputs (mode READ) whose memory element strides cannot describe
 * (misaligned, byte-swapped, byte strides not a multiple of the item size) are copied; tensors the
 * library writes (mode WRITE) are never copied and must be writable. `name` names the argument in
 * messages. Returns 0, or -1 with an exception set (nothing to release then). */
int hla_ext_tensor_from_py(PyObject *obj, const char *name, int mode, int optional, hla_ext_tensor *out);
void hla_ext_tensor_release(hla_ext_tensor *t);
/* obj as an hla_tensor over its own memory when it is an exact numpy array the library can take where it lies
 * (a dtype it reads, native byte order, aligned, element strides, ndim <= HLA_MAX_NDIM; writable for WRITE):
 * 1 with *out filled, no reference taken (the caller's keeps the array alive through the call); else 0 and
 * nothing raised (hla_ext_tensor_from_py then copies it or raises what is wrong). */
int hla_ext_tensor_direct(PyObject *obj, int mode, hla_tensor *out);
/* The hla_tensor pointer to pass (NULL when absent). */
static inline const hla_tensor *
hla_ext_ptr(const hla_ext_tensor *t)
{
    return t->present ? &t->t : NULL;
}

/* Whether obj is a torch.Tensor (exactly; torch imported by the host) that does not require grad: it is then
 * described through torch's C exporter (convert.c) and can take State.step's one-call path. No exception. */
int hla_ext_torch_tensor(PyObject *obj);
/* hla_ext_tensor_from_py for such a tensor (hla_ext_torch_tensor(obj) true), without checking that again. */
int hla_ext_tensor_from_torch(PyObject *obj, const char *name, int mode, hla_ext_tensor *out);
/* torch.empty(dims, dtype=like.dtype) (torch imported by the host); NULL with an exception set. */
PyObject *hla_ext_torch_empty(const npy_intp *dims, int nd, PyObject *like);
/* torch.from_numpy(array): a tensor over the array's memory, holding the array (torch imported by the host). */
PyObject *hla_ext_torch_from_numpy(PyObject *array);

/* A numpy typenum for an hla float dtype (float32/float64 states and summaries). */
int hla_ext_typenum(int32_t dtype);
/* Whether a's dtype is ml_dtypes' bfloat16 (2-byte items whose scalar type is named bfloat16). */
int hla_ext_is_bfloat16(PyArrayObject *a);

/* ---- pool.c ------------------------------------------------------------------------------ */

/* Add empty() and output_pool() (the pool of large outputs' memory) to the module. 0, or -1 with an
 * exception set. */
int hla_ext_pool_init(PyObject *module);

/* ---- lock.c ------------------------------------------------------------------------------ */

/* Add the Lock type (hla._hla.Lock, a State's lock) to the module. 0, or -1 with an exception set. */
int hla_ext_lock_init(PyObject *module);
/* Whether obj is a Lock. */
int hla_ext_lock_check(PyObject *obj);
/* Take the Lock obj (GIL held): 1 taken; 0 not (blocking false and held elsewhere); -1 with an exception set
 * (a signal handler raised while it waited, the GIL released). */
int hla_ext_lock_acquire(PyObject *obj, int blocking);
/* Give it back (GIL held): 0, or -1 with RuntimeError set if it was not held. */
int hla_ext_lock_release(PyObject *obj);
/* One of the Lock's kept outputs (a new reference, which the Lock gives up) that the host has dropped and
 * is a C-contiguous writable [dims] array of its own memory, dtype equivalent to descr, native byte order;
 * else NULL (no exception). GIL held. */
PyObject *hla_ext_lock_reuse_output(PyObject *obj, PyArray_Descr *descr, const npy_intp *dims);
/* Keep `out` (a numpy array a step wrote and returns) for reuse in one of the Lock's two places, dropping
 * what that place held; outputs over 1 MiB are not kept. GIL held. */
void hla_ext_lock_keep_output(PyObject *obj, PyObject *out);

/* ---- ops.c ------------------------------------------------------------------------------- */

extern PyMethodDef hla_ext_ops_methods[];

#endif
