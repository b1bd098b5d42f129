/* Library status -> Python exception: the one place that chooses the exception type. */
#include "ext.h"

PyObject *
hla_ext_raise(hla_status status, const char *message)
{
    PyObject *type, *exc, *name;
    const char *status_name = hla_status_string(status);

    switch (status) {
    case HLA_ERR_DTYPE:
        type = PyExc_TypeError;
        break;
    case HLA_ERR_OUT_OF_MEMORY:
        type = PyExc_MemoryError;
        break;
    default:
        type = PyExc_ValueError;
        break;
    }
    if (message == NULL || message[0] == '\0') {
        message = status_name ? status_name : "libhla call failed";
    }
    exc = PyObject_CallFunction(type, "s", message);
    if (exc == NULL) {
        return NULL;
    }
    name = PyUnicode_FromString(status_name ? status_name : "HLA_ERR_UNKNOWN");
    if (name == NULL || PyObject_SetAttrString(exc, "hla_status", name) < 0) {
        PyErr_Clear(); /* the attribute is a convenience; the exception itself matters */
    }
    Py_XDECREF(name);
    PyErr_SetObject(type, exc);
    Py_DECREF(exc);
    return NULL;
}
