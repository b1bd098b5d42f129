/* hla._hla.Lock: the lock of one State (every call that reads or writes a State's array holds it, through
 * `with state._lock:` or, in State.step's common case, inside step_numpy). A threading.Lock did the same,
 * but step_numpy had to call its acquire and release methods by name on every step, and acquire parses
 * its arguments with keywords. Here step_numpy takes the lock directly (hla_ext_lock_acquire /
 * hla_ext_lock_release): per State.step at H = 1, d = 8, 1.31 -> 1.24 µs.
 *
 * The Lock also keeps the output arrays of the State's last two steps (up to 1 MiB each;
 * hla_ext_lock_reuse_output / hla_ext_lock_keep_output): when the host has dropped one (the Lock holds its
 * only reference) the next step writes its output into it and returns it, instead of making and freeing an
 * array per token. Two, because a loop that assigns each step's output to one variable (`o = st.step(...)`)
 * still holds the previous output while it calls the next step. Nothing can tell the difference: nobody
 * else refers to the array, and a step writes every element of its output.
 *
 * Semantics are threading.Lock's for what the package uses: not reentrant, any thread may release it,
 * acquire(blocking=True) waits with the GIL released and stays interruptible (signal handlers run while it
 * waits; an exception from one ends the wait), release() of an unlocked lock raises RuntimeError. */
#include "ext.h"

#include "pythread.h"

typedef struct {
    PyObject_HEAD
    PyThread_type_lock lock;
    volatile char held;   /* set by the thread that acquired it, cleared before its release */
    PyObject *last[2];    /* the last steps' outputs (strong references; changed with the GIL held), or NULL */
} hla_ext_lock;

/* Outputs larger than this are not kept (their allocation is small against their step, and a State should
 * not hold large memory the host has dropped). */
#define HLA_EXT_KEEP_BYTES (1 << 20)

static PyTypeObject hla_ext_lock_type;

static PyObject *
lock_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {NULL};
    hla_ext_lock *self;
    if (!PyArg_ParseTupleAndKeywords(args, kw, ":Lock", kwlist)) return NULL;
    self = (hla_ext_lock *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->lock = PyThread_allocate_lock();
    if (self->lock == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static void
lock_dealloc(hla_ext_lock *self)
{
    Py_CLEAR(self->last[0]);
    Py_CLEAR(self->last[1]);
    if (self->lock != NULL) {
        if (self->held) PyThread_release_lock(self->lock);   /* freeing a held lock is undefined on some platforms */
        PyThread_free_lock(self->lock);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

int
hla_ext_lock_acquire(PyObject *obj, int blocking)
{
    hla_ext_lock *self = (hla_ext_lock *)obj;
    PyLockStatus r = PyThread_acquire_lock_timed(self->lock, 0, 0);
    while (r == PY_LOCK_FAILURE && blocking) {
        Py_BEGIN_ALLOW_THREADS
        r = PyThread_acquire_lock_timed(self->lock, -1, 1);
        Py_END_ALLOW_THREADS
        if (r == PY_LOCK_INTR) {
            if (Py_MakePendingCalls() < 0) return -1;   /* a signal handler raised (KeyboardInterrupt) */
            r = PY_LOCK_FAILURE;
        }
    }
    if (r != PY_LOCK_ACQUIRED) return 0;
    self->held = 1;
    return 1;
}

int
hla_ext_lock_release(PyObject *obj)
{
    hla_ext_lock *self = (hla_ext_lock *)obj;
    if (!self->held) {
        PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
        return -1;
    }
    self->held = 0;
    PyThread_release_lock(self->lock);
    return 0;
}

PyObject *
hla_ext_lock_reuse_output(PyObject *obj, PyArray_Descr *descr, const npy_intp *dims)
{
    hla_ext_lock *self = (hla_ext_lock *)obj;
    for (int i = 0; i < 2; i++) {
        PyObject *o = self->last[i];
        PyArrayObject *a = (PyArrayObject *)o;
        if (o == NULL || Py_REFCNT(o) != 1 || !PyArray_CheckExact(o) || PyArray_NDIM(a) != 3 ||
            PyArray_DIM(a, 0) != dims[0] || PyArray_DIM(a, 1) != dims[1] || PyArray_DIM(a, 2) != dims[2] ||
            !PyArray_CHKFLAGS(a, NPY_ARRAY_CARRAY | NPY_ARRAY_OWNDATA) || PyArray_BASE(a) != NULL ||
            !PyArray_EquivTypes(PyArray_DESCR(a), descr) || PyArray_ISBYTESWAPPED(a))
            continue;
        self->last[i] = NULL;   /* the caller's reference now */
        return o;
    }
    return NULL;
}

void
hla_ext_lock_keep_output(PyObject *obj, PyObject *out)
{
    hla_ext_lock *self = (hla_ext_lock *)obj;
    PyObject *old;
    int i;
    if (self->last[0] == out || self->last[1] == out ||
        PyArray_NBYTES((PyArrayObject *)out) > HLA_EXT_KEEP_BYTES)
        return;
    /* an empty slot, else the one the host still holds (its array cannot be reused soon), else the first */
    i = self->last[0] == NULL ? 0 : self->last[1] == NULL ? 1 : Py_REFCNT(self->last[0]) > 1 ? 0 :
        Py_REFCNT(self->last[1]) > 1 ? 1 : 0;
    old = self->last[i];
    Py_INCREF(out);
    self->last[i] = out;
    Py_XDECREF(old);
}

int
hla_ext_lock_check(PyObject *obj)
{
    return Py_TYPE(obj) == &hla_ext_lock_type;
}

static PyObject *
lock_acquire(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"blocking", NULL};
    int blocking = 1, r;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|p:acquire", kwlist, &blocking)) return NULL;
    r = hla_ext_lock_acquire(self, blocking);
    if (r < 0) return NULL;
    return PyBool_FromLong(r);
}

static PyObject *
lock_enter(PyObject *self, PyObject *unused)
{
    (void)unused;
    if (hla_ext_lock_acquire(self, 1) < 0) return NULL;
    Py_RETURN_TRUE;
}

static PyObject *
lock_release(PyObject *self, PyObject *unused)
{
    (void)unused;
    if (hla_ext_lock_release(self) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *
lock_exit(PyObject *self, PyObject *args)
{
    (void)args;
    if (hla_ext_lock_release(self) < 0) return NULL;
    Py_RETURN_FALSE;
}

static PyObject *
lock_locked(PyObject *self, PyObject *unused)
{
    (void)unused;
    return PyBool_FromLong(((hla_ext_lock *)self)->held);
}

static PyMethodDef lock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))lock_acquire, METH_VARARGS | METH_KEYWORDS,
     "acquire(blocking=True) -> bool: take the lock (waiting for it unless blocking is false)"},
    {"release", lock_release, METH_NOARGS, "release(): give the lock back (RuntimeError if it is not held)"},
    {"locked", lock_locked, METH_NOARGS, "locked() -> bool: whether some thread holds it"},
    {"__enter__", lock_enter, METH_NOARGS, "acquire()"},
    {"__exit__", lock_exit, METH_VARARGS, "release()"},
    {NULL, NULL, 0, NULL}};

static PyTypeObject hla_ext_lock_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    "hla._hla.Lock",                 /* tp_name */
    sizeof(hla_ext_lock),            /* tp_basicsize */
    0,                               /* tp_itemsize */
    (destructor)lock_dealloc,        /* tp_dealloc */
};

int
hla_ext_lock_init(PyObject *module)
{
    hla_ext_lock_type.tp_flags = Py_TPFLAGS_DEFAULT;
    hla_ext_lock_type.tp_doc = "Lock(): a State's lock (threading.Lock's acquire, release, locked and with)";
    hla_ext_lock_type.tp_methods = lock_methods;
    hla_ext_lock_type.tp_new = lock_new;
    if (PyType_Ready(&hla_ext_lock_type) < 0) return -1;
    Py_INCREF(&hla_ext_lock_type);
    if (PyModule_AddObject(module, "Lock", (PyObject *)&hla_ext_lock_type) < 0) {
        Py_DECREF(&hla_ext_lock_type);
        return -1;
    }
    return 0;
}
