/* Python object -> hla_tensor: numpy arrays of any strides (ml_dtypes bfloat16 included) through
 * numpy's C API, anything else with __dlpack__ (torch, JAX, ...) through a DLPack capsule. */
#include "ext.h"

#include <string.h>

int
hla_ext_typenum(int32_t dtype)
{
    switch (dtype) {
    case HLA_FLOAT32: return NPY_FLOAT;
    case HLA_FLOAT64: return NPY_DOUBLE;
    case HLA_FLOAT16: return NPY_HALF;
    case HLA_INT64: return NPY_INT64;
    case HLA_INT32: return NPY_INT32;
    default: return -1;
    }
}

static void
tensor_zero(hla_ext_tensor *out)
{
    memset(out, 0, sizeof *out);
}

void
hla_ext_tensor_release(hla_ext_tensor *t)
{
    if (t->managed_v != NULL) {
        DLManagedTensorVersioned *m = t->managed_v;
        t->managed_v = NULL;
        if (m->deleter != NULL) m->deleter(m);
    }
    if (t->managed != NULL) {
        DLManagedTensor *m = t->managed;
        t->managed = NULL;
        if (m->deleter != NULL) m->deleter(m);
    }
    Py_CLEAR(t->capsule);
    Py_CLEAR(t->array);
    t->present = 0;
}

/* ---- numpy ------------------------------------------------------------------------------- */

static int
is_bfloat16(PyArray_Descr *d, npy_intp itemsize)
{
    const char *name, *dot;
    if (itemsize != 2 || d->typeobj == NULL) return 0;
    name = d->typeobj->tp_name;
    dot = strrchr(name, '.');
    return strcmp(dot ? dot + 1 : name, "bfloat16") == 0;
}

int
hla_ext_is_bfloat16(PyArrayObject *a)
{
    return is_bfloat16(PyArray_DESCR(a), (npy_intp)PyArray_ITEMSIZE(a));
}

static int
numpy_dtype(PyArray_Descr *d, npy_intp itemsize, int32_t *out)
{
    if (d->kind == 'f') {
        if (itemsize == 2) { *out = HLA_FLOAT16; return 0; }
        if (itemsize == 4) { *out = HLA_FLOAT32; return 0; }
        if (itemsize == 8) { *out = HLA_FLOAT64; return 0; }
        return -1;
    }
    if (d->kind == 'i') {
        if (itemsize == 4) { *out = HLA_INT32; return 0; }
        if (itemsize == 8) { *out = HLA_INT64; return 0; }
        return -1;
    }
    if (is_bfloat16(d, itemsize)) { *out = HLA_BFLOAT16; return 0; }
    return -1;
}

static int
unsupported_dtype(const char *name, PyObject *dtype_repr_source)
{
    PyObject *s = PyObject_Str(dtype_repr_source);
    PyErr_Format(PyExc_TypeError,
                 "%s has dtype %S, which libhla does not take (float32, float64, bfloat16 or float16; "
                 "int64 or int32 for indices)", name, s ? s : Py_None);
    Py_XDECREF(s);
    return -1;
}

static int
from_numpy(PyArrayObject *arr, const char *name, int mode, hla_ext_tensor *out)
{
    PyArray_Descr *descr = PyArray_DESCR(arr);
    npy_intp itemsize = (npy_intp)PyArray_ITEMSIZE(arr);
    int nd = PyArray_NDIM(arr), i, need_copy = 0;
    int32_t dtype;

    if (numpy_dtype(descr, itemsize, &dtype) < 0) {
        return unsupported_dtype(name, (PyObject *)descr);
    }
    if (!PyArray_ISNBO(descr->byteorder) || !PyArray_ISALIGNED(arr)) {
        need_copy = 1;
    }
    for (i = 0; i < nd; i++) {
        if (PyArray_DIM(arr, i) > 1 && PyArray_STRIDE(arr, i) % itemsize != 0) {
            need_copy = 1;
        }
    }
    if (mode == HLA_EXT_WRITE) {
        if (!PyArray_ISWRITEABLE(arr)) {
            PyErr_Format(PyExc_ValueError, "%s is read-only (libhla writes it)", name);
            return -1;
        }
        if (need_copy) {
            PyErr_Format(PyExc_ValueError,
                         "%s cannot be written in place: it is misaligned, byte-swapped or has byte "
                         "strides that are not multiples of its item size", name);
            return -1;
        }
    }
    if (need_copy) {
        PyArray_Descr *native;
        if (PyArray_ISNBO(descr->byteorder)) {
            Py_INCREF(descr);
            native = descr;
        }
        else {
            native = PyArray_DescrNewByteorder(descr, NPY_NATIVE);
            if (native == NULL) return -1;
        }
        arr = (PyArrayObject *)PyArray_FromArray(
            arr, native, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_ENSURECOPY);
        if (arr == NULL) return -1;
    }
    else {
        Py_INCREF(arr);
    }
    out->array = (PyObject *)arr;
    out->t.data = PyArray_DATA(arr);
    out->t.dtype = dtype;
    out->t.ndim = nd;
    for (i = 0; i < nd && i < HLA_MAX_NDIM; i++) {
        npy_intp bs = PyArray_STRIDE(arr, i);
        out->t.shape[i] = (int64_t)PyArray_DIM(arr, i);
        out->t.strides[i] = bs % itemsize == 0 ? (int64_t)(bs / itemsize) : 0; /* size <= 1 */
    }
    out->present = 1;
    return 0;
}

int
hla_ext_tensor_direct(PyObject *obj, int mode, hla_tensor *out)
{
    PyArrayObject *arr = (PyArrayObject *)obj;
    PyArray_Descr *descr;
    npy_intp itemsize;
    int nd, i;
    if (!PyArray_CheckExact(obj)) return 0;
    descr = PyArray_DESCR(arr);
    itemsize = (npy_intp)PyArray_ITEMSIZE(arr);
    nd = PyArray_NDIM(arr);
    if (nd > HLA_MAX_NDIM || numpy_dtype(descr, itemsize, &out->dtype) < 0 || !PyArray_ISNBO(descr->byteorder) ||
        !PyArray_ISALIGNED(arr) || (mode == HLA_EXT_WRITE && !PyArray_ISWRITEABLE(arr))) return 0;
    for (i = 0; i < nd; i++) {
        npy_intp bs = PyArray_STRIDE(arr, i);
        if (PyArray_DIM(arr, i) > 1 && bs % itemsize != 0) return 0;
        out->shape[i] = (int64_t)PyArray_DIM(arr, i);
        out->strides[i] = bs % itemsize == 0 ? (int64_t)(bs / itemsize) : 0; /* size <= 1 */
    }
    out->data = PyArray_DATA(arr);
    out->ndim = nd;
    return 1;
}

/* ---- DLPack ------------------------------------------------------------------------------ */

static int
dlpack_dtype(DLDataType d, int32_t *out)
{
    if (d.lanes != 1) return -1;
    if (d.code == HLA_kDLFloat) {
        if (d.bits == 16) { *out = HLA_FLOAT16; return 0; }
        if (d.bits == 32) { *out = HLA_FLOAT32; return 0; }
        if (d.bits == 64) { *out = HLA_FLOAT64; return 0; }
    }
    else if (d.code == HLA_kDLBfloat && d.bits == 16) {
        *out = HLA_BFLOAT16;
        return 0;
    }
    else if (d.code == HLA_kDLInt) {
        if (d.bits == 32) { *out = HLA_INT32; return 0; }
        if (d.bits == 64) { *out = HLA_INT64; return 0; }
    }
    return -1;
}

/* The pending exception of a failed export, raised again as a TypeError naming the argument. */
static void
restate_export_error(const char *name)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyErr_Format(PyExc_TypeError, "%s could not be exported through DLPack: %S", name, value ? value : Py_None);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
}

/* obj.__dlpack__(max_version=(1, 0)), or obj.__dlpack__() for producers without the keyword. */
static PyObject *
export_capsule(PyObject *obj, const char *name)
{
    PyObject *meth, *kwargs, *args, *capsule;
    meth = PyObject_GetAttrString(obj, "__dlpack__");
    if (meth == NULL) return NULL;
    args = PyTuple_New(0);
    kwargs = Py_BuildValue("{s(ii)}", "max_version", HLA_DLPACK_MAJOR_VERSION, HLA_DLPACK_MINOR_VERSION);
    capsule = (args && kwargs) ? PyObject_Call(meth, args, kwargs) : NULL;
    if (capsule == NULL && args && kwargs && PyErr_ExceptionMatches(PyExc_TypeError)) {
        PyErr_Clear();
        capsule = PyObject_CallNoArgs(meth);
    }
    Py_XDECREF(args);
    Py_XDECREF(kwargs);
    Py_DECREF(meth);
    if (capsule == NULL) restate_export_error(name);
    return capsule;
}

/* torch, once the host has imported it: torch.Tensor and torch.utils.dlpack.to_dlpack (looked up once; this
 * extension never imports torch itself). to_dlpack is torch's C function for the legacy capsule ("dltensor"):
 * 0.24 µs per tensor where Tensor.__dlpack__, a Python method, took 2.3 µs (torch 2.13, the 2-core AMD EPYC VM),
 * and a step converts four. It exports tensors that require grad without complaint, so those keep __dlpack__,
 * which refuses them as before. */
static PyObject *torch_tensor_type, *torch_to_dlpack, *torch_empty, *torch_from_numpy;
/* attribute names, interned: a lookup by an interned name hits the type's attribute cache */
static PyObject *name_requires_grad, *name_dtype;
static int torch_unusable;

static int
torch_ready(void)
{
    PyObject *torch, *dl;
    if (torch_tensor_type != NULL) return 1;
    if (torch_unusable) return 0;
    torch = PyDict_GetItemString(PyImport_GetModuleDict(), "torch");     /* borrowed */
    if (torch == NULL) return 0;
    torch_tensor_type = PyObject_GetAttrString(torch, "Tensor");
    torch_empty = torch_tensor_type ? PyObject_GetAttrString(torch, "empty") : NULL;
    torch_from_numpy = torch_empty ? PyObject_GetAttrString(torch, "from_numpy") : NULL;
    name_requires_grad = torch_from_numpy ? PyUnicode_InternFromString("requires_grad") : NULL;
    name_dtype = name_requires_grad ? PyUnicode_InternFromString("dtype") : NULL;
    dl = name_dtype ? PyImport_ImportModule("torch.utils.dlpack") : NULL;
    torch_to_dlpack = dl ? PyObject_GetAttrString(dl, "to_dlpack") : NULL;
    Py_XDECREF(dl);
    if (torch_to_dlpack == NULL || !PyType_Check(torch_tensor_type)) {
        PyErr_Clear();
        Py_CLEAR(torch_tensor_type);
        Py_CLEAR(torch_empty);
        Py_CLEAR(torch_from_numpy);
        Py_CLEAR(torch_to_dlpack);
        Py_CLEAR(name_requires_grad);
        Py_CLEAR(name_dtype);
        torch_unusable = 1;
        return 0;
    }
    return 1;
}

int
hla_ext_torch_tensor(PyObject *obj)
{
    PyObject *grad;
    int no_grad;
    if (!torch_ready() || Py_TYPE(obj) != (PyTypeObject *)torch_tensor_type) return 0;
    grad = PyObject_GetAttr(obj, name_requires_grad);
    if (grad == NULL) {
        PyErr_Clear();
        return 0;
    }
    no_grad = grad == Py_False;
    Py_DECREF(grad);
    return no_grad;
}

PyObject *
hla_ext_torch_empty(const npy_intp *dims, int nd, PyObject *like)
{
    PyObject *shape, *dtype, *args, *kw, *res = NULL;
    int i;
    if (!torch_ready()) {
        PyErr_SetString(PyExc_RuntimeError, "torch is not imported");
        return NULL;
    }
    shape = PyTuple_New(nd);
    if (shape == NULL) return NULL;
    for (i = 0; i < nd; i++) {
        PyObject *n = PyLong_FromSsize_t((Py_ssize_t)dims[i]);
        if (n == NULL) {
            Py_DECREF(shape);
            return NULL;
        }
        PyTuple_SET_ITEM(shape, i, n);
    }
    dtype = PyObject_GetAttr(like, name_dtype);
    args = dtype ? PyTuple_Pack(1, shape) : NULL;
    kw = args ? Py_BuildValue("{sO}", "dtype", dtype) : NULL;
    if (kw) res = PyObject_Call(torch_empty, args, kw);
    Py_XDECREF(kw);
    Py_XDECREF(args);
    Py_XDECREF(dtype);
    Py_DECREF(shape);
    return res;
}

PyObject *
hla_ext_torch_from_numpy(PyObject *array)
{
    if (!torch_ready()) {
        PyErr_SetString(PyExc_RuntimeError, "torch is not imported");
        return NULL;
    }
    return PyObject_CallOneArg(torch_from_numpy, array);
}

static int from_capsule(PyObject *capsule, const char *name, int mode, hla_ext_tensor *out);

static int
from_dlpack(PyObject *obj, const char *name, int mode, hla_ext_tensor *out)
{
    return from_capsule(export_capsule(obj, name), name, mode, out);
}

/* A capsule obj.__dlpack__() or torch's to_dlpack made (NULL: the export failed, its exception set). */
static int
from_capsule(PyObject *capsule, const char *name, int mode, hla_ext_tensor *out)
{
    const DLTensor *dl;
    uint64_t flags = 0;
    int32_t dtype;
    int i, nd;

    if (capsule == NULL) return -1;
    if (PyCapsule_IsValid(capsule, "dltensor_versioned")) {
        DLManagedTensorVersioned *m = PyCapsule_GetPointer(capsule, "dltensor_versioned");
        if (m == NULL || PyCapsule_SetName(capsule, "used_dltensor_versioned") < 0) {
            Py_DECREF(capsule);
            return -1;
        }
        out->capsule = capsule;
        out->managed_v = m; /* ours now: released (deleter called) by hla_ext_tensor_release */
        if (m->version.major != HLA_DLPACK_MAJOR_VERSION) {
            PyErr_Format(PyExc_TypeError, "%s was exported with DLPack %u.%u; this extension reads %d.x",
                         name, m->version.major, m->version.minor, HLA_DLPACK_MAJOR_VERSION);
            goto fail;
        }
        dl = &m->dl_tensor;
        flags = m->flags;
    }
    else if (PyCapsule_IsValid(capsule, "dltensor")) {
        DLManagedTensor *m = PyCapsule_GetPointer(capsule, "dltensor");
        if (m == NULL || PyCapsule_SetName(capsule, "used_dltensor") < 0) {
            Py_DECREF(capsule);
            return -1;
        }
        out->capsule = capsule;
        out->managed = m;
        dl = &m->dl_tensor;
    }
    else {
        PyErr_Format(PyExc_TypeError, "%s.__dlpack__() returned %.100s, not an unused DLPack capsule",
                     name, Py_TYPE(capsule)->tp_name);
        Py_DECREF(capsule);
        return -1;
    }

    if (dl->device.device_type != HLA_kDLCPU) {
        PyErr_Format(PyExc_ValueError,
                     "%s is on DLPack device type %d (id %d); libhla reads CPU memory only", name,
                     (int)dl->device.device_type, (int)dl->device.device_id);
        goto fail;
    }
    if (dlpack_dtype(dl->dtype, &dtype) < 0) {
        PyErr_Format(PyExc_TypeError,
                     "%s has DLPack dtype (code %d, bits %d, lanes %d), which libhla does not take "
                     "(float32, float64, bfloat16 or float16; int64 or int32 for indices)", name,
                     (int)dl->dtype.code, (int)dl->dtype.bits, (int)dl->dtype.lanes);
        goto fail;
    }
    if (mode == HLA_EXT_WRITE && (flags & HLA_DLPACK_FLAG_BITMASK_READ_ONLY)) {
        PyErr_Format(PyExc_ValueError, "%s is read-only (libhla writes it)", name);
        goto fail;
    }
    nd = (int)dl->ndim;
    if (nd < 0 || (nd > 0 && dl->shape == NULL)) {
        PyErr_Format(PyExc_ValueError, "%s: DLPack tensor with ndim %d and no shape", name, nd);
        goto fail;
    }
    out->t.data = dl->data == NULL ? NULL : (void *)((char *)dl->data + dl->byte_offset);
    out->t.dtype = dtype;
    out->t.ndim = nd;
    for (i = 0; i < nd && i < HLA_MAX_NDIM; i++) {
        out->t.shape[i] = dl->shape[i];
    }
    if (dl->strides != NULL) {
        for (i = 0; i < nd && i < HLA_MAX_NDIM; i++) out->t.strides[i] = dl->strides[i];
    }
    else if (nd <= HLA_MAX_NDIM) {
        int64_t run = 1;
        for (i = nd - 1; i >= 0; i--) {
            out->t.strides[i] = run;
            if (dl->shape[i] > 1 && run <= INT64_MAX / dl->shape[i]) {
                run *= dl->shape[i];
            }
        }
    }
    out->present = 1;
    return 0;
fail:
    hla_ext_tensor_release(out);
    return -1;
}

int
hla_ext_tensor_from_py(PyObject *obj, const char *name, int mode, int optional, hla_ext_tensor *out)
{
    tensor_zero(out);
    if (obj == Py_None && optional) {
        return 0;
    }
    if (PyArray_Check(obj)) {
        return from_numpy((PyArrayObject *)obj, name, mode, out);
    }
    if (hla_ext_torch_tensor(obj)) return hla_ext_tensor_from_torch(obj, name, mode, out);
    if (obj != Py_None && !PyType_Check(obj) && PyObject_HasAttrString(obj, "__dlpack__")) {
        return from_dlpack(obj, name, mode, out);
    }
    PyErr_Format(PyExc_TypeError,
                 "%s must be an array (a numpy array or a CPU tensor with __dlpack__: torch, JAX, ...), "
                 "got %.100s", name, Py_TYPE(obj)->tp_name);
    return -1;
}

int
hla_ext_tensor_from_torch(PyObject *obj, const char *name, int mode, hla_ext_tensor *out)
{
    PyObject *capsule;
    tensor_zero(out);
    capsule = PyObject_CallOneArg(torch_to_dlpack, obj);
    if (capsule == NULL) restate_export_error(name);
    return from_capsule(capsule, name, mode, out);
}
