/* aisbom._core: the Python face of the C engine. Bindings only; the work is
 * elsewhere. Scans run without the GIL on a buffer the caller keeps alive
 * (bytes or an mmap), so threads scan in parallel and nothing is copied. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "container.h"
#include "inflate.h"
#include "opcodes.h"
#include "report.h"
#include "scanner.h"
#include "unpickler.h"
#include "zip.h"

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
"scan(data, max_inflate=2**31, max_depth=4) -> dict\n\n"
"Scan the bytes of one file (any buffer: bytes, mmap, memoryview). Returns\n"
"{'members': [(name, format, file_offset, size, parent)],\n"
" 'globals': [(member, module, name, first_offset, opcode, count, uses)],\n"
" 'findings': [(rule, severity, member, global, offset, message)],\n"
" 'dropped': int, 'dropped_worst': int, 'incomplete': bool}: dropped counts\n"
"findings past the report's cap, dropped_worst the worst severity among them.\n"
"Severities: 0 info, 1 suspicious,\n"
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
    PyObject *out = Py_BuildValue("{s:N,s:N,s:N,s:n,s:i,s:O}", "members", report_members(&rep), "globals",
                                  report_globals(&rep), "findings", report_findings(&rep), "dropped",
                                  (Py_ssize_t)rep.dropped_findings, "dropped_worst", rep.dropped_worst,
                                  "incomplete", rep.oom ? Py_True : Py_False);
    aisb_report_free(&rep);
    return out;
}

PyDoc_STRVAR(pickle_end_doc,
"pickle_end(data, start=0, /) -> int | None\n\n"
"One past the STOP of the pickle at data[start:], read as pickle.load reads\n"
"it (nothing runs); None when the bytes break off first or are no pickle.");

static PyObject *
core_pickle_end(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer view;
    Py_ssize_t start = 0;
    if (!PyArg_ParseTuple(args, "y*|n:pickle_end", &view, &start))
        return NULL;
    if (start < 0 || start > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "start is outside the data");
        return NULL;
    }
    size_t end = 0;
    int verdict;
    Py_BEGIN_ALLOW_THREADS
    verdict = scanner_probe(view.buf, (size_t)view.len, (size_t)start, 0, &end);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (verdict != PROBE_COMPLETE)
        Py_RETURN_NONE;
    return PyLong_FromSize_t(end);
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

PyDoc_STRVAR(unpickle_doc,
"unpickle(data, globals, /, *, start=0, calls=None, newobjs=None, builds=None,\n"
"         persistent_load=None, encoding='ASCII', errors='strict',\n"
"         max_stack=2**24, max_memo=2**26) -> (object, end)\n\n"
"Run the allowlisting unpickler on data[start:] up to its STOP. globals maps\n"
"'module.qualname' to the object to use; calls maps id(obj) to (obj, impl)\n"
"for objects REDUCE/OBJ/INST may call; newobjs maps id(cls) to (cls, impl) for\n"
"NEWOBJ; builds maps id(type) to (type, impl) for BUILD. Refusals raise\n"
"aisbom.errors exceptions naming the opcode and byte offset. aisbom.loader\n"
"prepares the tables; use aisbom.safe_load rather than this.");

static PyObject *
core_unpickle(PyObject *self, PyObject *args, PyObject *kw)
{
    (void)self;
    static char *kwlist[] = {"data", "globals", "start", "calls", "newobjs", "builds", "persistent_load",
                             "encoding", "errors", "max_stack", "max_memo", NULL};
    Py_buffer view;
    PyObject *globals, *calls = Py_None, *newobjs = Py_None, *builds = Py_None, *persistent = Py_None;
    Py_ssize_t start = 0, max_stack = (Py_ssize_t)1 << 24, max_memo = (Py_ssize_t)1 << 26;
    const char *encoding = "ASCII", *errors = "strict";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*O!|$nOOOOssnn:unpickle", kwlist, &view, &PyDict_Type, &globals,
                                     &start, &calls, &newobjs, &builds, &persistent, &encoding, &errors, &max_stack,
                                     &max_memo))
        return NULL;
    if (start < 0 || start > view.len || max_stack < 1 || max_memo < 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "start, max_stack or max_memo out of range");
        return NULL;
    }
    vm_policy pol = {
        .globals = globals,
        .calls = calls,
        .newobjs = newobjs,
        .builds = builds,
        .persistent_load = persistent == Py_None ? NULL : persistent,
        .encoding = encoding,
        .errors = errors,
        .max_stack = max_stack,
        .max_memo = max_memo,
    };
    size_t end = 0;
    PyObject *obj = vm_load(&pol, view.buf, (size_t)view.len, (size_t)start, &end);
    PyBuffer_Release(&view);
    if (obj == NULL)
        return NULL;
    return Py_BuildValue("(Nn)", obj, (Py_ssize_t)end);
}

PyDoc_STRVAR(zip_entries_doc,
"zip_entries(data, /) -> list\n\n"
"The members of a zip archive as the scanner reads them, in central-directory\n"
"order and then any local entries the directory does not list:\n"
"(name: bytes, method, flags, crc, comp_size, size, data_offset, anomalies).\n"
"The loader picks records from this list, so it never reads a zip differently\n"
"from the scan. ValueError when there is no usable central directory.");

static PyObject *
core_zip_entries(PyObject *self, PyObject *arg)
{
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    zip_archive z;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = zip_open(&z, view.buf, (size_t)view.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (rc < 0) {
        PyErr_Format(PyExc_ValueError, "zip archive cannot be read: %s", z.error);
        zip_close(&z);
        return NULL;
    }
    PyObject *list = PyList_New((Py_ssize_t)z.count);
    for (size_t i = 0; list && i < z.count; i++) {
        const zip_entry *e = &z.entries[i];
        PyObject *t = Py_BuildValue("(y#HHkKKKi)", (const char *)e->name.p, (Py_ssize_t)e->name.n, e->method,
                                    e->flags, (unsigned long)e->crc, (unsigned long long)e->comp_size,
                                    (unsigned long long)e->size, (unsigned long long)e->data_offset, e->anomalies);
        if (t == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, t);
    }
    zip_close(&z);
    return list;
}

static PyMethodDef core_methods[] = {
    {"zip_entries", core_zip_entries, METH_O, zip_entries_doc},
    {"unpickle", (PyCFunction)(void (*)(void))core_unpickle, METH_VARARGS | METH_KEYWORDS, unpickle_doc},
    {"scan", (PyCFunction)(void (*)(void))core_scan, METH_VARARGS | METH_KEYWORDS, scan_doc},
    {"sniff", core_sniff, METH_O, sniff_doc},
    {"pickle_end", core_pickle_end, METH_VARARGS, pickle_end_doc},
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
        PyModule_AddIntConstant(m, "USE_PROTO_GE3", USE_PROTO_GE3) < 0 ||
        PyModule_AddIntConstant(m, "ZIP_ORPHAN", ZIP_ORPHAN) < 0 ||
        PyModule_AddIntConstant(m, "ZIP_ALTERNATE", ZIP_ALTERNATE) < 0 ||
        PyModule_AddIntConstant(m, "ZIP_DUPLICATE", ZIP_DUPLICATE) < 0 ||
        PyModule_AddIntConstant(m, "ZIP_DIRECTORY", ZIP_DIRECTORY) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
