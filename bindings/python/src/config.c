/* Options -> hla_config. Only conversions happen here (a str to an hla_op, Python numbers to C
 * numbers); the library checks every range when the configuration is used. */
#include "ext.h"

static const char *const FIELD[HLA_EXT_CONFIG_FIELDS] = {
    "op", "masked", "normalize", "heads", "kv_heads", "dk", "dv", "scale", "decay", "ridge", "eps",
    "chunk_size"};

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

int
hla_ext_path_from_py(PyObject *obj, int32_t *path)
{
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "path must be a str ('chunked', 'serial' or 'scan'), got %.100s",
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
parse_flag(PyObject *obj, const char *name, int32_t *out)
{
    int v = -1;
    if (!PyUnicode_Check(obj) && !PyBytes_Check(obj)) {
        v = PyObject_IsTrue(obj); /* arrays of several elements refuse */
    }
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
    if (PyUnicode_Check(obj) || PyBytes_Check(obj) || obj == Py_None || PyBool_Check(obj)) {
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

/* An int (None -> 0 when none_ok); floats, strings and bools are refused. */
int
hla_ext_parse_int(PyObject *obj, const char *name, int none_ok, int64_t *out)
{
    PyObject *idx;
    long long v;
    int overflow = 0;
    if (obj == Py_None && none_ok) {
        *out = 0;
        return 0;
    }
    if (PyFloat_Check(obj) || PyUnicode_Check(obj) || PyBool_Check(obj) || obj == Py_None ||
        !PyIndex_Check(obj)) {
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
        PyErr_Format(PyExc_ValueError, "%s = %R is out of the range of a 64-bit integer", name, obj);
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

/* The last configuration converted, by identity: a State passes the same (immutable) tuple on every
 * step, so a repeated call costs one pointer comparison. Touched only with the GIL held. */
static PyObject *cached_obj = NULL;
static hla_config cached_cfg;

int
hla_ext_config_from_py(PyObject *obj, hla_config *cfg)
{
    PyObject *seq, **item;
    hla_status st;
    int rc = -1;

    if (obj == cached_obj) {
        *cfg = cached_cfg;
        return 0;
    }

    seq = PySequence_Fast(obj, "the configuration must be a sequence");
    if (seq == NULL) {
        return -1;
    }
    if (PySequence_Fast_GET_SIZE(seq) != HLA_EXT_CONFIG_FIELDS) {
        PyErr_Format(PyExc_TypeError, "the configuration must have %d items, got %zd",
                     HLA_EXT_CONFIG_FIELDS, PySequence_Fast_GET_SIZE(seq));
        goto done;
    }
    st = hla_config_init(cfg, sizeof *cfg);
    if (st != HLA_OK) {
        hla_ext_raise(st, hla_last_error());
        goto done;
    }
    item = PySequence_Fast_ITEMS(seq);
    if (parse_op(item[0], &cfg->op) < 0) goto done;
    if (parse_flag(item[1], FIELD[1], &cfg->masked) < 0) goto done;
    if (parse_flag(item[2], FIELD[2], &cfg->normalize) < 0) goto done;
    if (hla_ext_parse_int(item[3], FIELD[3], 0, &cfg->heads) < 0) goto done;
    if (hla_ext_parse_int(item[4], FIELD[4], 1, &cfg->kv_heads) < 0) goto done;
    if (hla_ext_parse_int(item[5], FIELD[5], 0, &cfg->dk) < 0) goto done;
    if (hla_ext_parse_int(item[6], FIELD[6], 0, &cfg->dv) < 0) goto done;
    if (parse_double(item[7], FIELD[7], &cfg->scale) < 0) goto done;
    if (parse_double(item[8], FIELD[8], &cfg->decay) < 0) goto done;
    if (parse_double(item[9], FIELD[9], &cfg->ridge) < 0) goto done;
    if (parse_double(item[10], FIELD[10], &cfg->eps) < 0) goto done;
    if (hla_ext_parse_int(item[11], FIELD[11], 1, &cfg->chunk_size) < 0) goto done;
    rc = 0;
    if (PyTuple_Check(obj)) {            /* immutable: safe to remember by identity */
        Py_INCREF(obj);
        Py_XSETREF(cached_obj, obj);
        cached_cfg = *cfg;
    }
done:
    Py_DECREF(seq);
    return rc;
}

PyObject *
hla_ext_config_to_py(const hla_config *c)
{
    return Py_BuildValue("(sNNLLLLddddL)", op_name(c->op), PyBool_FromLong(c->masked),
                         PyBool_FromLong(c->normalize), (long long)c->heads,
                         (long long)(c->kv_heads == 0 ? c->heads : c->kv_heads), (long long)c->dk,
                         (long long)c->dv, c->scale, c->decay, c->ridge, c->eps,
                         (long long)c->chunk_size);
}
