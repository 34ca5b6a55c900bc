/* libFuzzer target: the allowlisting unpickler with aisbom's default table
 * (builtins, numpy, torch names as numpy stand-ins), inside an embedded
 * Python. Every input must end in an object or an exception, never a crash. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "unpickler.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static vm_policy policy;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    Py_Initialize();
    PyObject *restore = PyImport_ImportModule("aisbom.restore");
    PyObject *table = restore ? PyObject_CallMethod(restore, "build_table", "s", "numpy") : NULL;
    if (table == NULL) {
        PyErr_Print();
        abort();
    }
    policy.globals = PyObject_GetAttrString(table, "globals");
    policy.calls = PyObject_GetAttrString(table, "calls");
    policy.newobjs = PyObject_GetAttrString(table, "newobjs");
    policy.builds = PyObject_GetAttrString(table, "builds");
    policy.persistent_load = NULL;
    policy.encoding = "ASCII";
    policy.errors = "strict";
    policy.max_stack = 1 << 16;
    policy.max_memo = 1 << 16;
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t end;
    PyObject *obj = vm_load(&policy, data, size, 0, &end);
    if (obj == NULL) {
        if (!PyErr_Occurred())
            abort();  /* a failure must always say why */
        PyErr_Clear();
    }
    else {
        if (end > size)
            abort();
        Py_DECREF(obj);
    }
    return 0;
}
