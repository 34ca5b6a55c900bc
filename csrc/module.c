/* aisbom._core: the Python face of the C engine. Bindings only; the work is
 * elsewhere. Scans run without the GIL on a buffer the caller keeps alive
 * (bytes or an mmap), so threads scan in parallel and nothing is copied. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "container.h"
#include "inflate.h"
#include "opcodes.h"
#include "report.h"

static PyObject *
str_or_bytes(const char *p, size_t n)
{
    PyObject *s = PyUnicode_DecodeUTF8(p, (Py_ssize_t)n, "surrogateescape");
    if (s == NULL) {
        PyErr_Clear();
        s = PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
    }
    return s;
}

static PyObject *
report_members(const aisb_report *rep)
{
    PyObject *list = PyList_New((Py_ssize_t)rep->members.len);
    for (size_t i = 0; list && i < rep->members.len; i++) {
        const aisb_member *m = &AISB_VEC_AT(&rep->members, aisb_member, i);
        PyObject *t = Py_BuildValue("(NNKKi)", str_or_bytes(rep->strings.data + m->name_off, m->name_len),
                                    str_or_bytes(rep->strings.data + m->format_off, m->format_len),
                                    (unsigned long long)m->file_offset, (unsigned long long)m->size, m->parent);
        if (t == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, t);
    }
    return list;
}

static PyObject *
report_globals(const aisb_report *rep)
{
    PyObject *list = PyList_New((Py_ssize_t)rep->globals.len);
    for (size_t i = 0; list && i < rep->globals.len; i++) {
        const aisb_global *g = &AISB_VEC_AT(&rep->globals, aisb_global, i);
        const char *op = pk_opcode_name(g->first_opcode);
        PyObject *t = Py_BuildValue("(iNNKsII)", g->member,
                                    str_or_bytes(rep->strings.data + g->module_off, g->module_len),
                                    str_or_bytes(rep->strings.data + g->name_off, g->name_len),
                                    (unsigned long long)g->first_offset, op ? op : "?", g->count, g->uses);
        if (t == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, t);
    }
    return list;
}

static PyObject *
report_findings(const aisb_report *rep)
{
    PyObject *list = PyList_New((Py_ssize_t)rep->findings.len);
    for (size_t i = 0; list && i < rep->findings.len; i++) {
        const aisb_finding *f = &AISB_VEC_AT(&rep->findings, aisb_finding, i);
        PyObject *t = Py_BuildValue("(siiiKN)", f->rule, f->severity, f->member, f->global,
                                    (unsigned long long)f->offset,
                                    str_or_bytes(rep->strings.data + f->msg_off, f->msg_len));
        if (t == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, t);
    }
    return list;
}

PyDoc_STRVAR(scan_doc,
"scan(data, /, max_inflate=2**31, max_depth=4) -> dict\n\n"
"Scan the bytes of one file (any buffer: bytes, mmap, memoryview). Returns\n"
"{'members': [(name, format, file_offset, size, parent)],\n"
" 'globals': [(member, module, name, first_offset, opcode, count, uses)],\n"
" 'findings': [(rule, severity, member, global, offset, message)],\n"
" 'dropped': int, 'incomplete': bool}. Severities: 0 info, 1 suspicious,\n"
"2 error, 3 malicious. The aisbom.scan() wrapper turns this into a report.");

static PyObject *
core_scan(PyObject *self, PyObject *args, PyObject *kw)
{
    (void)self;
    static char *kwlist[] = {"data", "max_inflate", "max_depth", NULL};
    Py_buffer view;
    unsigned long long max_inflate = 1ULL << 31;
    int max_depth = 4;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*|Ki:scan", kwlist, &view, &max_inflate, &max_depth))
        return NULL;
    aisb_report rep;
    aisb_report_init(&rep);
    aisb_limits lim = {max_inflate, max_depth};
    Py_BEGIN_ALLOW_THREADS
    aisb_scan_file(&rep, view.buf, (size_t)view.len, &lim);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    PyObject *out = Py_BuildValue("{s:N,s:N,s:N,s:n,s:O}", "members", report_members(&rep), "globals",
                                  report_globals(&rep), "findings", report_findings(&rep), "dropped",
                                  (Py_ssize_t)rep.dropped_findings, "incomplete", rep.oom ? Py_True : Py_False);
    aisb_report_free(&rep);
    return out;
}

PyDoc_STRVAR(sniff_doc, "sniff(data, /) -> str\n\nThe format the first bytes of data announce.");

static PyObject *
core_sniff(PyObject *self, PyObject *arg)
{
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const char *fmt = aisb_sniff(view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyUnicode_FromString(fmt);
}

PyDoc_STRVAR(inflate_doc,
"inflate_raw(data, max_out, /) -> bytes\n\n"
"Decode one raw DEFLATE stream with aisbom's own decoder. ValueError on a\n"
"truncated or corrupt stream, OverflowError when the output exceeds max_out.");

static PyObject *
core_inflate_raw(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer view;
    Py_ssize_t max_out;
    if (!PyArg_ParseTuple(args, "y*n:inflate_raw", &view, &max_out))
        return NULL;
    if (max_out < 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "max_out must not be negative");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, max_out);
    if (out == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    size_t got = 0, used = 0;
    aisb_inflate_status st;
    Py_BEGIN_ALLOW_THREADS
    st = aisb_inflate(view.buf, (size_t)view.len, (uint8_t *)PyBytes_AS_STRING(out), (size_t)max_out, &got, &used);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (st != AISB_INFLATE_OK) {
        Py_DECREF(out);
        PyErr_SetString(st == AISB_INFLATE_TOO_BIG ? PyExc_OverflowError : PyExc_ValueError,
                        aisb_inflate_strerror(st));
        return NULL;
    }
    if (_PyBytes_Resize(&out, (Py_ssize_t)got) < 0)
        return NULL;
    return out;
}

static PyMethodDef core_methods[] = {
    {"scan", (PyCFunction)(void (*)(void))core_scan, METH_VARARGS | METH_KEYWORDS, scan_doc},
    {"sniff", core_sniff, METH_O, sniff_doc},
    {"inflate_raw", core_inflate_raw, METH_VARARGS, inflate_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef core_module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "aisbom._core",
    .m_doc = "aisbom's C engine: the opcode scanner, containers and unpickler.",
    .m_size = -1,
    .m_methods = core_methods,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    PyObject *m = PyModule_Create(&core_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "SEV_INFO", SEV_INFO) < 0 ||
        PyModule_AddIntConstant(m, "SEV_SUSPICIOUS", SEV_SUSPICIOUS) < 0 ||
        PyModule_AddIntConstant(m, "SEV_ERROR", SEV_ERROR) < 0 ||
        PyModule_AddIntConstant(m, "SEV_MALICIOUS", SEV_MALICIOUS) < 0 ||
        PyModule_AddIntConstant(m, "USE_REDUCE", USE_REDUCE) < 0 ||
        PyModule_AddIntConstant(m, "USE_NEWOBJ", USE_NEWOBJ) < 0 ||
        PyModule_AddIntConstant(m, "USE_NEWOBJ_EX", USE_NEWOBJ_EX) < 0 ||
        PyModule_AddIntConstant(m, "USE_OBJ", USE_OBJ) < 0 ||
        PyModule_AddIntConstant(m, "USE_INST", USE_INST) < 0 ||
        PyModule_AddIntConstant(m, "USE_BUILD", USE_BUILD) < 0 ||
        PyModule_AddIntConstant(m, "USE_METHOD", USE_METHOD) < 0 ||
        PyModule_AddIntConstant(m, "USE_STACK_GLOBAL", USE_STACK_GLOBAL) < 0 ||
        PyModule_AddIntConstant(m, "USE_PROTO_LT3", USE_PROTO_LT3) < 0 ||
        PyModule_AddIntConstant(m, "USE_PROTO_GE3", USE_PROTO_GE3) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
