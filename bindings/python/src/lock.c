/* hla._hla.Lock: the lock of one State (every call that reads or writes a State's array holds it, through
 * `with state._lock:` or, in State.step's common case, inside step_numpy). A threading.Lock did the same,
 * but step_numpy had to call its acquire and release methods by name on every step, and acquire parses
 * its arguments with keywords: 0.2-0.3 µs of a 12-20 µs step at H = 64, d = 64 (stop 38's measuring build).
 * Here step_numpy takes the lock directly (hla_ext_lock_acquire / hla_ext_lock_release).
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
} hla_ext_lock;

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

PyTypeObject hla_ext_lock_type = {
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
