/* hla._hla: module definition and initialisation. */
#define HLA_EXT_MODULE_C
#include "ext.h"

#include <stdlib.h>

static struct PyModuleDef hla_module = {
    PyModuleDef_HEAD_INIT,
    "hla._hla",
    "C extension of the hla package (libhla 1.0 bindings). Use the hla package, not this module.",
    -1,
    hla_ext_ops_methods,
    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC
PyInit__hla(void)
{
    PyObject *m;
    const char *lib = hla_version();
    import_array();
    if (lib == NULL || atoi(lib) != HLA_VERSION_MAJOR) {
        PyErr_Format(PyExc_ImportError,
                     "libhla %s is loaded, but hla._hla was built against the %d.%d.%d header "
                     "(major versions must agree)", lib ? lib : "?", HLA_VERSION_MAJOR,
                     HLA_VERSION_MINOR, HLA_VERSION_PATCH);
        return NULL;
    }
    m = PyModule_Create(&hla_module);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "VERSION_MAJOR", HLA_VERSION_MAJOR) < 0 ||
        PyModule_AddIntConstant(m, "VERSION_MINOR", HLA_VERSION_MINOR) < 0 ||
        PyModule_AddIntConstant(m, "VERSION_PATCH", HLA_VERSION_PATCH) < 0 ||
        PyModule_AddIntConstant(m, "MAX_NDIM", HLA_MAX_NDIM) < 0 || hla_ext_pool_init(m) < 0 ||
        hla_ext_lock_init(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
