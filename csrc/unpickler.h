/* The allowlisting unpickler: a pickle VM with CPython's semantics for every
 * opcode of protocols 0-5 that resolves globals only from a table prepared
 * in Python, calls only the objects that table marks callable, and refuses
 * everything else with an exception naming the opcode and byte offset.
 *
 * Arguments are decoded by pk_decode() (opcodes.c), the same decoder the
 * scanner uses, so what the scan judged is what gets loaded. */
#ifndef AISB_UNPICKLER_H
#define AISB_UNPICKLER_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "opcodes.h"

typedef struct {
    PyObject *globals;          /* dict: "module.qualname" -> object (borrowed) */
    PyObject *calls;            /* dict: id(obj) -> (obj, impl): REDUCE/OBJ/INST on obj call impl */
    PyObject *newobjs;          /* dict: id(cls) -> impl(*args, **kwargs) for NEWOBJ(_EX) */
    PyObject *builds;           /* dict: id(type) -> impl(inst, state) for BUILD */
    PyObject *persistent_load;  /* callable, or NULL when the stream may not use persistent ids */
    const char *encoding;       /* for STRING/BINSTRING: "ASCII", "utf-8", "latin1", "bytes", ... */
    const char *errors;
    Py_ssize_t max_stack;       /* items on the stack, marks included */
    Py_ssize_t max_memo;        /* memo entries */
} vm_policy;

/* Load one pickle from buf[start:len]. Returns a new reference, and sets
 * *end just past its STOP; NULL with an exception set on refusal or error
 * (aisbom.errors.UnsafeModelError / MalformedModelError / LimitExceededError). */
PyObject *vm_load(const vm_policy *pol, const uint8_t *buf, size_t len, size_t start, size_t *end);

#endif
