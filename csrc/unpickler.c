/* The allowlisting unpickler. One opcode, one small load_* function, one
 * dispatch switch, as in CPython's Modules/_pickle.c, whose semantics each
 * function follows; the differences are all refusals:
 *   - globals come only from the policy table, never from an import;
 *   - REDUCE/OBJ/INST call only objects the policy marks callable, NEWOBJ
 *     and BUILD use only the policy's implementations for exact types;
 *   - APPEND(S)/SETITEM(S)/ADDITEMS only add to the builtin containers;
 *   - EXT codes, out-of-band buffers and frame violations are refused.
 * Nothing half-built is returned: on any error the stack and memo are
 * released and an exception names the opcode and byte offset. */
#include "unpickler.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>

typedef struct {
    const vm_policy *pol;
    pk_reader rd;
    const pk_op *op;          /* the opcode being executed, for messages */
    PyObject **stack;
    Py_ssize_t len, cap;
    Py_ssize_t *marks;
    Py_ssize_t nmarks, mcap;
    PyObject **dense;         /* memo indices below dense_cap */
    Py_ssize_t dense_cap;
    PyObject *sparse;         /* dict for the others */
    Py_ssize_t memo_count;
    int proto;
} vm;

/* ---- errors ---- */

static PyObject *
error_class(const char *name)
{
    PyObject *mod = PyImport_ImportModule("aisbom.errors");
    if (mod == NULL)
        return NULL;
    PyObject *cls = PyObject_GetAttrString(mod, name);
    Py_DECREF(mod);
    return cls;
}

/* Raise aisbom.errors.<cls>(message, opcode=..., offset=..., global_name=...),
 * chaining any exception already set as its cause. */
static int
vm_raise(vm *v, const char *cls_name, PyObject *global, const char *fmt, ...)
{
    PyObject *cause = NULL, *ctype = NULL, *ctb = NULL;
    if (PyErr_Occurred()) {
        PyErr_Fetch(&ctype, &cause, &ctb);
        PyErr_NormalizeException(&ctype, &cause, &ctb);
        if (cause && ctb)
            PyException_SetTraceback(cause, ctb);
        Py_XDECREF(ctype);
        Py_XDECREF(ctb);
    }
    va_list ap;
    va_start(ap, fmt);
    PyObject *msg = PyUnicode_FromFormatV(fmt, ap);
    va_end(ap);
    PyObject *cls = error_class(cls_name);
    PyObject *exc = NULL, *args = NULL, *kw = NULL;
    if (msg && cls && (args = PyTuple_Pack(1, msg)) && (kw = PyDict_New())) {
        const char *opname = v->op ? pk_opcode_name(v->op->code) : NULL;
        PyObject *o = opname ? PyUnicode_FromString(opname) : Py_NewRef(Py_None);
        PyObject *off = v->op ? PyLong_FromSize_t(v->op->offset) : Py_NewRef(Py_None);
        if (o && off && PyDict_SetItemString(kw, "opcode", o) == 0 && PyDict_SetItemString(kw, "offset", off) == 0 &&
            (global == NULL || PyDict_SetItemString(kw, "global_name", global) == 0))
            exc = PyObject_Call(cls, args, kw);
        Py_XDECREF(o);
        Py_XDECREF(off);
    }
    if (exc) {
        if (cause)
            PyException_SetCause(exc, cause);  /* steals cause */
        else
            Py_XDECREF(cause);
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    else
        Py_XDECREF(cause);
    Py_XDECREF(msg);
    Py_XDECREF(cls);
    Py_XDECREF(args);
    Py_XDECREF(kw);
    return -1;
}

#define OPNAME(v) (pk_opcode_name((v)->op->code))
#define OFFSET(v) ((v)->op->offset)

static int
malformed(vm *v, const char *what)
{
    return vm_raise(v, "MalformedModelError", NULL, "%s at offset %zu: %s", OPNAME(v), OFFSET(v), what);
}

static int
underflow(vm *v)
{
    return malformed(v, v->nmarks ? "could not find MARK" : "unpickling stack underflow");
}

/* Exceptions from the policy's own implementations already say what is
 * wrong (aisbom errors); anything else becomes a MalformedModelError. */
static int
call_failed(vm *v, const char *what)
{
    /* Look at the pending exception without importing anything while it is set. */
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *base = error_class("AisbomError");
    int ours = base && type && PyErr_GivenExceptionMatches(type, base);
    if (base == NULL)
        PyErr_Clear();
    Py_XDECREF(base);
    if (ours && value) {
        /* Refusals from the policy's functions learn where they happened. */
        PyErr_NormalizeException(&type, &value, &tb);
        PyObject *have = PyObject_GetAttrString(value, "offset");
        if (have == Py_None) {
            PyObject *off = PyLong_FromSize_t(OFFSET(v));
            PyObject *op = PyUnicode_FromString(OPNAME(v));
            if (off && op) {
                PyObject_SetAttrString(value, "offset", off);
                PyObject_SetAttrString(value, "opcode", op);
            }
            Py_XDECREF(off);
            Py_XDECREF(op);
        }
        Py_XDECREF(have);
        PyErr_Clear();
    }
    PyErr_Restore(type, value, tb);
    if (ours)
        return -1;
    return vm_raise(v, "MalformedModelError", NULL, "%s at offset %zu: %s failed", OPNAME(v), OFFSET(v), what);
}

/* ---- the stack, with CPython's mark fence ---- */

static Py_ssize_t
fence(const vm *v)
{
    return v->nmarks ? v->marks[v->nmarks - 1] : 0;
}

/* Steals `o`. */
static int
push(vm *v, PyObject *o)
{
    if (o == NULL)
        return -1;
    if (v->len == v->cap) {
        if (v->cap >= v->pol->max_stack) {
            Py_DECREF(o);
            return vm_raise(v, "LimitExceededError", NULL, "%s at offset %zu: the stack grew past %zd items",
                            OPNAME(v), OFFSET(v), v->pol->max_stack);
        }
        Py_ssize_t cap = v->cap ? v->cap * 2 : 64;
        if (cap > v->pol->max_stack)
            cap = v->pol->max_stack;
        PyObject **s = PyMem_Realloc(v->stack, (size_t)cap * sizeof *s);
        if (s == NULL) {
            Py_DECREF(o);
            PyErr_NoMemory();
            return -1;
        }
        v->stack = s;
        v->cap = cap;
    }
    v->stack[v->len++] = o;
    return 0;
}

/* Returns a new reference (the stack's). */
static PyObject *
pop(vm *v)
{
    if (v->len <= fence(v)) {
        underflow(v);
        return NULL;
    }
    return v->stack[--v->len];
}

static PyObject *
top(vm *v)
{
    if (v->len <= fence(v)) {
        underflow(v);
        return NULL;
    }
    return v->stack[v->len - 1];
}

static void
clear_to(vm *v, Py_ssize_t n)
{
    while (v->len > n)
        Py_DECREF(v->stack[--v->len]);
}

static int
marker(vm *v, Py_ssize_t *mark)
{
    if (v->nmarks < 1) {
        malformed(v, "could not find MARK");
        return -1;
    }
    *mark = v->marks[--v->nmarks];
    return 0;
}

/* stack[start:] as a new tuple, popped. */
static PyObject *
pop_tuple(vm *v, Py_ssize_t start)
{
    if (start < fence(v) || start > v->len) {
        underflow(v);
        return NULL;
    }
    Py_ssize_t n = v->len - start;
    PyObject *t = PyTuple_New(n);
    if (t == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        PyTuple_SET_ITEM(t, i, v->stack[start + i]);
    v->len = start;
    return t;
}

static PyObject *
pop_list(vm *v, Py_ssize_t start)
{
    if (start < fence(v) || start > v->len) {
        underflow(v);
        return NULL;
    }
    Py_ssize_t n = v->len - start;
    PyObject *l = PyList_New(n);
    if (l == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        PyList_SET_ITEM(l, i, v->stack[start + i]);
    v->len = start;
    return l;
}

/* ---- the memo ---- */

static PyObject *
memo_get(vm *v, int64_t idx)
{
    if (idx < 0)
        return NULL;
    if (idx < v->dense_cap)
        return v->dense[idx];
    if (v->sparse == NULL)
        return NULL;
    PyObject *key = PyLong_FromLongLong(idx);
    PyObject *o = key ? PyDict_GetItemWithError(v->sparse, key) : NULL;
    Py_XDECREF(key);
    return o;
}

static int
memo_put(vm *v, int64_t idx, PyObject *o)
{
    if (idx < 0)
        return malformed(v, "negative memo index");
    if (memo_get(v, idx) == NULL) {
        if (PyErr_Occurred())
            return -1;
        if (v->memo_count >= v->pol->max_memo)
            return vm_raise(v, "LimitExceededError", NULL, "%s at offset %zu: the memo grew past %zd entries",
                            OPNAME(v), OFFSET(v), v->pol->max_memo);
        v->memo_count++;
    }
    if (idx >= v->dense_cap && idx < 2 * (int64_t)v->memo_count + 1024) {
        Py_ssize_t cap = v->dense_cap ? v->dense_cap : 1024;
        while (cap <= idx)
            cap *= 2;
        PyObject **d = PyMem_Realloc(v->dense, (size_t)cap * sizeof *d);
        if (d == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memset(d + v->dense_cap, 0, (size_t)(cap - v->dense_cap) * sizeof *d);
        v->dense = d;
        /* move sparse entries that now fit */
        if (v->sparse) {
            PyObject *k, *val;
            Py_ssize_t pos = 0;
            PyObject *moved = PyList_New(0);
            if (moved == NULL)
                return -1;
            while (PyDict_Next(v->sparse, &pos, &k, &val)) {
                long long ki = PyLong_AsLongLong(k);
                if (ki >= v->dense_cap && ki < cap) {
                    d[ki] = Py_NewRef(val);
                    if (PyList_Append(moved, k) < 0) {
                        Py_DECREF(moved);
                        return -1;
                    }
                }
            }
            for (Py_ssize_t i = 0; i < PyList_GET_SIZE(moved); i++)
                if (PyDict_DelItem(v->sparse, PyList_GET_ITEM(moved, i)) < 0) {
                    Py_DECREF(moved);
                    return -1;
                }
            Py_DECREF(moved);
        }
        v->dense_cap = cap;
    }
    if (idx < v->dense_cap) {
        Py_XSETREF(v->dense[idx], Py_NewRef(o));
        return 0;
    }
    if (v->sparse == NULL && (v->sparse = PyDict_New()) == NULL)
        return -1;
    PyObject *key = PyLong_FromLongLong(idx);
    int rc = key ? PyDict_SetItem(v->sparse, key, o) : -1;
    Py_XDECREF(key);
    return rc;
}

/* ---- the policy ---- */

static PyObject *
id_key(PyObject *o)
{
    return PyLong_FromVoidPtr(o);
}

/* The implementation the policy pairs with `o` in an id-keyed table of
 * (object, implementation), the object verified to be `o` itself (an id
 * alone could be reused), or NULL without an exception. */
static PyObject *
policy_entry(PyObject *table, PyObject *o, int pair)
{
    if (table == NULL || table == Py_None)
        return NULL;
    PyObject *key = id_key(o);
    if (key == NULL)
        return NULL;
    PyObject *hit = PyDict_GetItemWithError(table, key);
    Py_DECREF(key);
    if (hit == NULL)
        return NULL;
    (void)pair;
    if (!PyTuple_Check(hit) || PyTuple_GET_SIZE(hit) != 2 || PyTuple_GET_ITEM(hit, 0) != o)
        return NULL;
    return PyTuple_GET_ITEM(hit, 1);
}

static PyObject *
type_name(PyObject *o)
{
    return PyUnicode_FromString(Py_TYPE(o)->tp_name);
}

/* find_class, from the table: the name as this protocol spells it, then
 * the other reading CPython or torch would use (Python 2 names mapped). */
static PyObject *
resolve(vm *v, PyObject *module, PyObject *name)
{
    static PyObject *name_mapping, *import_mapping;
    if (name_mapping == NULL) {
        PyObject *compat = PyImport_ImportModule("_compat_pickle");
        if (compat == NULL)
            return NULL;
        name_mapping = PyObject_GetAttrString(compat, "NAME_MAPPING");
        import_mapping = PyObject_GetAttrString(compat, "IMPORT_MAPPING");
        Py_DECREF(compat);
        if (name_mapping == NULL || import_mapping == NULL)
            return NULL;
    }
    PyObject *raw = PyUnicode_FromFormat("%U.%U", module, name);
    if (raw == NULL)
        return NULL;
    PyObject *mapped = NULL;
    PyObject *pair = PyTuple_Pack(2, module, name);
    PyObject *hit = pair ? PyDict_GetItemWithError(name_mapping, pair) : NULL;
    Py_XDECREF(pair);
    if (hit && PyTuple_Check(hit) && PyTuple_GET_SIZE(hit) == 2)
        mapped = PyUnicode_FromFormat("%S.%S", PyTuple_GET_ITEM(hit, 0), PyTuple_GET_ITEM(hit, 1));
    else if (!PyErr_Occurred() && (hit = PyDict_GetItemWithError(import_mapping, module)) != NULL)
        mapped = PyUnicode_FromFormat("%S.%U", hit, name);
    if (PyErr_Occurred()) {
        Py_DECREF(raw);
        Py_XDECREF(mapped);
        return NULL;
    }
    PyObject *first = (v->proto < 3 && mapped) ? mapped : raw;
    PyObject *second = first == raw ? mapped : raw;
    PyObject *obj = PyDict_GetItemWithError(v->pol->globals, first);
    if (obj == NULL && !PyErr_Occurred() && second)
        obj = PyDict_GetItemWithError(v->pol->globals, second);
    if (obj == NULL && !PyErr_Occurred())
        vm_raise(v, "DisallowedGlobalError", first,
                 "%s at offset %zu names the global %U, which is not on the allowlist", OPNAME(v), OFFSET(v), first);
    Py_XINCREF(obj);
    Py_DECREF(raw);
    Py_XDECREF(mapped);
    return obj;
}

/* Call `callable` through the implementation the policy gives it. Steals args. */
static int
call_allowed(vm *v, PyObject *callable, PyObject *args)
{
    if (args == NULL)
        return -1;
    PyObject *impl = policy_entry(v->pol->calls, callable, 1);
    if (impl == NULL) {
        Py_DECREF(args);
        if (PyErr_Occurred())
            return -1;
        PyObject *t = type_name(callable);
        vm_raise(v, "UnsafeModelError", NULL, "%s at offset %zu calls a %U object the policy does not allow calling",
                 OPNAME(v), OFFSET(v), t ? t : Py_None);
        Py_XDECREF(t);
        return -1;
    }
    if (!PyTuple_Check(args)) {
        Py_DECREF(args);
        return malformed(v, "the argument list is not a tuple");
    }
    PyObject *res = PyObject_Call(impl, args, NULL);
    Py_DECREF(args);
    if (res == NULL)
        return call_failed(v, "the call");
    return push(v, res);
}

/* ---- numbers and strings ---- */

/* A NUL-terminated copy of an opcode's text argument, for the C routines. */
static char *
line_copy(const pk_op *op, char *small, size_t cap)
{
    size_t n = op->s.n;
    char *s = n < cap ? small : PyMem_Malloc(n + 1);
    if (s == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(s, op->s.p, n);
    s[n] = '\0';
    return s;
}

static void
line_free(char *s, char *small)
{
    if (s != small)
        PyMem_Free(s);
}

static int
load_int(vm *v, const pk_op *op)
{
    char small[64], *end;
    char *s = line_copy(op, small, sizeof small);
    if (s == NULL)
        return -1;
    size_t len = op->s.n;
    PyObject *value;
    errno = 0;
    long x = strtol(s, &end, 0);
    if (errno || (*end != '\n' && *end != 'L') || (size_t)(end - s) != len - 1) {
        value = PyLong_FromString(s, NULL, 0);
        if (value == NULL) {
            line_free(s, small);
            return malformed(v, "could not convert the argument to int");
        }
    }
    else if (len == 3 && (x == 0 || x == 1))
        value = PyBool_FromLong(x);
    else
        value = PyLong_FromLong(x);
    line_free(s, small);
    return push(v, value);
}

static int
load_long(vm *v, const pk_op *op)
{
    char small[64];
    char *s = line_copy(op, small, sizeof small);
    if (s == NULL)
        return -1;
    if (op->s.n >= 2 && s[op->s.n - 2] == 'L')
        s[op->s.n - 2] = '\0';
    PyObject *value = PyLong_FromString(s, NULL, 0);
    line_free(s, small);
    if (value == NULL)
        return malformed(v, "could not convert the argument to int");
    return push(v, value);
}

static int
load_float(vm *v, const pk_op *op)
{
    char small[64], *end;
    char *s = line_copy(op, small, sizeof small);
    if (s == NULL)
        return -1;
    double d = PyOS_string_to_double(s, &end, PyExc_OverflowError);
    int bad = (d == -1.0 && PyErr_Occurred()) || (end[0] != '\n' && end[0] != '\0');
    line_free(s, small);
    if (bad)
        return malformed(v, "could not convert the argument to float");
    return push(v, PyFloat_FromDouble(d));
}

static int
load_binfloat(vm *v, const pk_op *op)
{
#if PY_VERSION_HEX >= 0x030B0000
    double d = PyFloat_Unpack8((const char *)op->s.p, 0);
#else
    double d = _PyFloat_Unpack8((const unsigned char *)op->s.p, 0);
#endif
    if (d == -1.0 && PyErr_Occurred())
        return -1;
    return push(v, PyFloat_FromDouble(d));
}

static int
load_binlong(vm *v, const pk_op *op)
{
    if (op->s.n == 0)
        return push(v, PyLong_FromLong(0));
    return push(v, _PyLong_FromByteArray(op->s.p, op->s.n, 1, 1));
}

/* Python 2 strings: bytes, or str in the unpickler's encoding. */
static PyObject *
decode_8bit(vm *v, PyObject *bytes)
{
    if (bytes == NULL || strcmp(v->pol->encoding, "bytes") == 0)
        return bytes;
    PyObject *s = PyUnicode_FromEncodedObject(bytes, v->pol->encoding, v->pol->errors);
    Py_DECREF(bytes);
    return s;
}

static int
load_text(vm *v, const pk_op *op)
{
    PyObject *o;
    const char *p = (const char *)op->s.p;
    Py_ssize_t n = (Py_ssize_t)op->s.n;
    switch (op->text) {
    case PK_TEXT_UTF8:
        o = PyUnicode_DecodeUTF8(p, n, "surrogatepass");
        break;
    case PK_TEXT_RAWESC:
        o = PyUnicode_DecodeRawUnicodeEscape(p, n, NULL);
        break;
    case PK_TEXT_ESCAPED:
        o = decode_8bit(v, PyBytes_DecodeEscape(p, n, NULL, 0, NULL));
        break;
    default:
        o = decode_8bit(v, PyBytes_FromStringAndSize(p, n));
        break;
    }
    if (o == NULL)
        return malformed(v, "the string cannot be decoded");
    return push(v, o);
}

/* ---- containers ---- */

/* The collections types whose items the pickle may add to (exact types only:
 * a subclass could run anything in __setitem__ or extend). */
static PyObject *odict_type, *counter_type, *ddict_type, *deque_type;

static int
load_collections(void)
{
    if (deque_type)
        return 0;
    PyObject *c = PyImport_ImportModule("collections");
    if (c == NULL)
        return -1;
    odict_type = PyObject_GetAttrString(c, "OrderedDict");
    counter_type = PyObject_GetAttrString(c, "Counter");
    ddict_type = PyObject_GetAttrString(c, "defaultdict");
    deque_type = PyObject_GetAttrString(c, "deque");
    Py_DECREF(c);
    return (odict_type && counter_type && ddict_type && deque_type) ? 0 : -1;
}

static int
is_dict_like(PyObject *o)
{
    if (PyDict_CheckExact(o))
        return 1;
    if (load_collections() < 0) {
        PyErr_Clear();
        return 0;
    }
    PyObject *t = (PyObject *)Py_TYPE(o);
    return t == odict_type || t == counter_type || t == ddict_type;
}

static int
is_deque(PyObject *o)
{
    if (load_collections() < 0) {
        PyErr_Clear();
        return 0;
    }
    return (PyObject *)Py_TYPE(o) == deque_type;
}

static int
refuse_target(vm *v, PyObject *target, const char *kind)
{
    PyObject *t = type_name(target);
    vm_raise(v, "UnsafeModelError", NULL, "%s at offset %zu adds items to a %U: only %s made by the pickle accept them",
             OPNAME(v), OFFSET(v), t ? t : Py_None, kind);
    Py_XDECREF(t);
    return -1;
}

/* APPEND/APPENDS: items stack[x:] go into the list at stack[x-1]. */
static int
do_append(vm *v, Py_ssize_t x)
{
    if (x > v->len || x <= fence(v))
        return underflow(v);
    if (x == v->len)
        return 0;
    PyObject *list = v->stack[x - 1];
    if (PyList_CheckExact(list)) {
        for (Py_ssize_t i = x; i < v->len; i++)
            if (PyList_Append(list, v->stack[i]) < 0)
                return -1;
    }
    else if (is_deque(list)) {
        /* deque pickles its items as APPENDS; CPython calls its extend(). */
        static PyObject *append;
        if (append == NULL && (append = PyUnicode_InternFromString("append")) == NULL)
            return -1;
        for (Py_ssize_t i = x; i < v->len; i++) {
            PyObject *r = PyObject_CallMethodOneArg(list, append, v->stack[i]);
            if (r == NULL)
                return call_failed(v, "appending to a deque");
            Py_DECREF(r);
        }
    }
    else
        return refuse_target(v, list, "lists and deques");
    clear_to(v, x);
    return 0;
}

static int
do_setitems(vm *v, Py_ssize_t x)
{
    if (x > v->len || x <= fence(v))
        return underflow(v);
    if (x == v->len)
        return 0;
    if ((v->len - x) % 2)
        return malformed(v, "odd number of items for SETITEMS");
    PyObject *dict = v->stack[x - 1];
    if (!is_dict_like(dict))
        return refuse_target(v, dict, "dicts");
    for (Py_ssize_t i = x + 1; i < v->len; i += 2) {
        int rc = PyDict_CheckExact(dict) ? PyDict_SetItem(dict, v->stack[i - 1], v->stack[i])
                                         : PyObject_SetItem(dict, v->stack[i - 1], v->stack[i]);
        if (rc < 0)
            return call_failed(v, "setting an item");
    }
    clear_to(v, x);
    return 0;
}

static int
load_additems(vm *v)
{
    Py_ssize_t mark;
    if (marker(v, &mark) < 0)
        return -1;
    if (mark > v->len || mark <= fence(v))
        return underflow(v);
    if (mark == v->len)
        return 0;
    PyObject *set = v->stack[mark - 1];
    if (!PySet_CheckExact(set))
        return refuse_target(v, set, "sets");
    for (Py_ssize_t i = mark; i < v->len; i++)
        if (PySet_Add(set, v->stack[i]) < 0)
            return call_failed(v, "adding an item");
    clear_to(v, mark);
    return 0;
}

static int
load_dict(vm *v)
{
    Py_ssize_t mark;
    if (marker(v, &mark) < 0)
        return -1;
    if ((v->len - mark) % 2)
        return malformed(v, "odd number of items for DICT");
    PyObject *d = PyDict_New();
    if (d == NULL)
        return -1;
    for (Py_ssize_t i = mark + 1; i < v->len; i += 2)
        if (PyDict_SetItem(d, v->stack[i - 1], v->stack[i]) < 0) {
            Py_DECREF(d);
            return call_failed(v, "building a dict");
        }
    clear_to(v, mark);
    return push(v, d);
}

static int
load_frozenset(vm *v)
{
    Py_ssize_t mark;
    if (marker(v, &mark) < 0)
        return -1;
    PyObject *items = pop_tuple(v, mark);
    if (items == NULL)
        return -1;
    PyObject *fs = PyFrozenSet_New(items);
    Py_DECREF(items);
    if (fs == NULL)
        return call_failed(v, "building a frozenset");
    return push(v, fs);
}

static int
load_counted_tuple(vm *v, Py_ssize_t n)
{
    if (v->len < n)
        return underflow(v);
    return push(v, pop_tuple(v, v->len - n));
}

/* ---- globals and calls ---- */

static int
load_global(vm *v, const pk_op *op)
{
    PyObject *module = PyUnicode_DecodeUTF8((const char *)op->s.p, (Py_ssize_t)op->s.n, "strict");
    PyObject *name = module ? PyUnicode_DecodeUTF8((const char *)op->s2.p, (Py_ssize_t)op->s2.n, "strict") : NULL;
    PyObject *obj = name ? resolve(v, module, name) : NULL;
    Py_XDECREF(module);
    Py_XDECREF(name);
    return obj ? push(v, obj) : -1;
}

static int
load_stack_global(vm *v)
{
    PyObject *name = pop(v);
    PyObject *module = name ? pop(v) : NULL;
    int rc;
    if (module == NULL)
        rc = -1;
    else if (!PyUnicode_CheckExact(module) || !PyUnicode_CheckExact(name))
        rc = malformed(v, "STACK_GLOBAL requires str");
    else {
        PyObject *obj = resolve(v, module, name);
        rc = obj ? push(v, obj) : -1;
    }
    Py_XDECREF(name);
    Py_XDECREF(module);
    return rc;
}

static int
load_reduce(vm *v)
{
    PyObject *args = pop(v);
    PyObject *callable = args ? pop(v) : NULL;
    if (callable == NULL) {
        Py_XDECREF(args);
        return -1;
    }
    int rc = call_allowed(v, callable, args);
    Py_DECREF(callable);
    return rc;
}

static int
load_newobj(vm *v, int with_kwargs)
{
    PyObject *kwargs = NULL, *args = NULL, *cls = NULL;
    int rc = -1;
    if (with_kwargs && (kwargs = pop(v)) == NULL)
        goto done;
    if ((args = pop(v)) == NULL || (cls = pop(v)) == NULL)
        goto done;
    PyObject *impl = policy_entry(v->pol->newobjs, cls, 1);
    if (impl == NULL) {
        if (!PyErr_Occurred()) {
            PyObject *t = PyType_Check(cls) ? PyUnicode_FromString(((PyTypeObject *)cls)->tp_name) : type_name(cls);
            vm_raise(v, "UnsafeModelError", NULL, "%s at offset %zu creates a %U, which the policy does not allow",
                     OPNAME(v), OFFSET(v), t ? t : Py_None);
            Py_XDECREF(t);
        }
        goto done;
    }
    if (!PyTuple_Check(args) || (kwargs && !PyDict_Check(kwargs))) {
        malformed(v, "its arguments are not a tuple (and a dict)");
        goto done;
    }
    PyObject *obj = PyObject_Call(impl, args, kwargs);
    if (obj == NULL) {
        call_failed(v, "creating the object");
        goto done;
    }
    rc = push(v, obj);
done:
    Py_XDECREF(kwargs);
    Py_XDECREF(args);
    Py_XDECREF(cls);
    return rc;
}

static int
load_obj(vm *v)
{
    Py_ssize_t mark;
    if (marker(v, &mark) < 0)
        return -1;
    if (v->len - mark < 1)
        return underflow(v);
    PyObject *args = pop_tuple(v, mark + 1);
    PyObject *cls = args ? pop(v) : NULL;
    if (cls == NULL) {
        Py_XDECREF(args);
        return -1;
    }
    int rc = call_allowed(v, cls, args);
    Py_DECREF(cls);
    return rc;
}

static int
load_inst(vm *v, const pk_op *op)
{
    Py_ssize_t mark;
    if (marker(v, &mark) < 0)
        return -1;
    PyObject *module = PyUnicode_DecodeASCII((const char *)op->s.p, (Py_ssize_t)op->s.n, "strict");
    PyObject *name = module ? PyUnicode_DecodeASCII((const char *)op->s2.p, (Py_ssize_t)op->s2.n, "strict") : NULL;
    PyObject *cls = name ? resolve(v, module, name) : NULL;
    Py_XDECREF(module);
    Py_XDECREF(name);
    if (cls == NULL)
        return -1;
    int rc = call_allowed(v, cls, pop_tuple(v, mark));
    Py_DECREF(cls);
    return rc;
}

static int
load_build(vm *v)
{
    if (v->len - 2 < fence(v))
        return underflow(v);
    PyObject *state = pop(v);
    if (state == NULL)
        return -1;
    PyObject *inst = v->stack[v->len - 1];
    PyObject *impl = policy_entry(v->pol->builds, (PyObject *)Py_TYPE(inst), 1);
    int rc;
    if (impl == NULL) {
        if (!PyErr_Occurred()) {
            PyObject *t = type_name(inst);
            vm_raise(v, "UnsafeModelError", NULL,
                     "BUILD at offset %zu sets the state of a %U, which the policy does not allow "
                     "(only objects of allowlisted classes with a registered state handler)",
                     OFFSET(v), t ? t : Py_None);
            Py_XDECREF(t);
        }
        rc = -1;
    }
    else {
        PyObject *res = PyObject_CallFunctionObjArgs(impl, inst, state, NULL);
        rc = res ? 0 : call_failed(v, "setting the object's state");
        Py_XDECREF(res);
    }
    Py_DECREF(state);
    return rc;
}

static int
persistent(vm *v, PyObject *pid)
{
    if (pid == NULL)
        return -1;
    if (v->pol->persistent_load == NULL) {
        Py_DECREF(pid);
        return malformed(v, "a persistent id, but this kind of file has no persistent objects");
    }
    PyObject *o = PyObject_CallOneArg(v->pol->persistent_load, pid);
    Py_DECREF(pid);
    if (o == NULL)
        return call_failed(v, "loading the persistent object");
    return push(v, o);
}

static int
load_readonly_buffer(vm *v)
{
    PyObject *obj = top(v);
    if (obj == NULL)
        return -1;
    PyObject *view = PyMemoryView_FromObject(obj);
    if (view == NULL)
        return call_failed(v, "making a buffer");
    if (!PyMemoryView_GET_BUFFER(view)->readonly) {
        PyMemoryView_GET_BUFFER(view)->readonly = 1;
        v->stack[v->len - 1] = view;
        Py_DECREF(obj);
    }
    else
        Py_DECREF(view);
    return 0;
}

static int
load_pop(vm *v)
{
    if (v->nmarks > 0 && v->marks[v->nmarks - 1] == v->len) {
        v->nmarks--;
        return 0;
    }
    if (v->len <= fence(v))
        return underflow(v);
    Py_DECREF(v->stack[--v->len]);
    return 0;
}

static int
load_mark(vm *v)
{
    if (v->nmarks == v->mcap) {
        if (v->mcap >= v->pol->max_stack)
            return vm_raise(v, "LimitExceededError", NULL, "MARK at offset %zu: more than %zd open marks", OFFSET(v),
                            v->pol->max_stack);
        Py_ssize_t cap = v->mcap ? v->mcap * 2 : 16;
        Py_ssize_t *m = PyMem_Realloc(v->marks, (size_t)cap * sizeof *m);
        if (m == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        v->marks = m;
        v->mcap = cap;
    }
    v->marks[v->nmarks++] = v->len;
    return 0;
}

static int
load_put(vm *v, int64_t idx)
{
    PyObject *o = top(v);
    return o ? memo_put(v, idx, o) : -1;
}

static int
load_get(vm *v, int64_t idx)
{
    PyObject *o = memo_get(v, idx);
    if (o == NULL) {
        if (!PyErr_Occurred())
            vm_raise(v, "MalformedModelError", NULL, "%s at offset %zu: memo value not found at index %lld", OPNAME(v),
                     OFFSET(v), (long long)idx);
        return -1;
    }
    return push(v, Py_NewRef(o));
}

/* ---- dispatch ---- */

static int
step(vm *v, const pk_op *op)
{
    Py_ssize_t mark;
    switch (op->code) {
    case PK_MARK: return load_mark(v);
    case PK_POP: return load_pop(v);
    case PK_POP_MARK:
        if (marker(v, &mark) < 0)
            return -1;
        clear_to(v, mark);
        return 0;
    case PK_DUP: {
        PyObject *o = top(v);
        return o ? push(v, Py_NewRef(o)) : -1;
    }
    case PK_FLOAT: return load_float(v, op);
    case PK_BINFLOAT: return load_binfloat(v, op);
    case PK_INT: return load_int(v, op);
    case PK_LONG: return load_long(v, op);
    case PK_BININT:
    case PK_BININT1:
    case PK_BININT2: return push(v, PyLong_FromLongLong(op->n));
    case PK_LONG1:
    case PK_LONG4: return load_binlong(v, op);
    case PK_NONE: return push(v, Py_NewRef(Py_None));
    case PK_NEWTRUE: return push(v, Py_NewRef(Py_True));
    case PK_NEWFALSE: return push(v, Py_NewRef(Py_False));
    case PK_STRING:
    case PK_BINSTRING:
    case PK_SHORT_BINSTRING:
    case PK_UNICODE:
    case PK_BINUNICODE:
    case PK_SHORT_BINUNICODE:
    case PK_BINUNICODE8: return load_text(v, op);
    case PK_BINBYTES:
    case PK_SHORT_BINBYTES:
    case PK_BINBYTES8: return push(v, PyBytes_FromStringAndSize((const char *)op->s.p, (Py_ssize_t)op->s.n));
    case PK_BYTEARRAY8: return push(v, PyByteArray_FromStringAndSize((const char *)op->s.p, (Py_ssize_t)op->s.n));
    case PK_EMPTY_TUPLE: return push(v, PyTuple_New(0));
    case PK_EMPTY_LIST: return push(v, PyList_New(0));
    case PK_EMPTY_DICT: return push(v, PyDict_New());
    case PK_EMPTY_SET: return push(v, PySet_New(NULL));
    case PK_TUPLE:
        if (marker(v, &mark) < 0)
            return -1;
        return push(v, pop_tuple(v, mark));
    case PK_TUPLE1: return load_counted_tuple(v, 1);
    case PK_TUPLE2: return load_counted_tuple(v, 2);
    case PK_TUPLE3: return load_counted_tuple(v, 3);
    case PK_LIST:
        if (marker(v, &mark) < 0)
            return -1;
        return push(v, pop_list(v, mark));
    case PK_DICT: return load_dict(v);
    case PK_FROZENSET: return load_frozenset(v);
    case PK_APPEND: return do_append(v, v->len - 1);
    case PK_APPENDS:
        if (marker(v, &mark) < 0)
            return -1;
        return do_append(v, mark);
    case PK_SETITEM: return do_setitems(v, v->len - 2);
    case PK_SETITEMS:
        if (marker(v, &mark) < 0)
            return -1;
        return do_setitems(v, mark);
    case PK_ADDITEMS: return load_additems(v);
    case PK_GLOBAL: return load_global(v, op);
    case PK_STACK_GLOBAL: return load_stack_global(v);
    case PK_INST: return load_inst(v, op);
    case PK_OBJ: return load_obj(v);
    case PK_REDUCE: return load_reduce(v);
    case PK_NEWOBJ: return load_newobj(v, 0);
    case PK_NEWOBJ_EX: return load_newobj(v, 1);
    case PK_BUILD: return load_build(v);
    case PK_PERSID: return persistent(v, PyUnicode_DecodeASCII((const char *)op->s.p, (Py_ssize_t)op->s.n, "strict"));
    case PK_BINPERSID: return persistent(v, pop(v));
    case PK_GET:
    case PK_BINGET:
    case PK_LONG_BINGET: return load_get(v, op->n);
    case PK_PUT:
    case PK_BINPUT:
    case PK_LONG_BINPUT: return load_put(v, op->n);
    case PK_MEMOIZE: return load_put(v, (int64_t)v->memo_count);
    case PK_EXT1:
    case PK_EXT2:
    case PK_EXT4:
        return vm_raise(v, "UnsafeModelError", NULL,
                        "%s at offset %zu fetches global number %lld from copyreg's extension registry; "
                        "aisbom never resolves extension codes",
                        OPNAME(v), OFFSET(v), (long long)op->n);
    case PK_PROTO:
        v->proto = (int)op->n;
        return 0;
    case PK_FRAME: return 0;
    case PK_NEXT_BUFFER: return malformed(v, "out-of-band buffers are not supported");
    case PK_READONLY_BUFFER: return load_readonly_buffer(v);
    default: return malformed(v, "unknown opcode");
    }
}

static void
release(vm *v)
{
    clear_to(v, 0);
    PyMem_Free(v->stack);
    PyMem_Free(v->marks);
    for (Py_ssize_t i = 0; i < v->dense_cap; i++)
        Py_XDECREF(v->dense[i]);
    PyMem_Free(v->dense);
    Py_XDECREF(v->sparse);
}

PyObject *
vm_load(const vm_policy *pol, const uint8_t *buf, size_t len, size_t start, size_t *end)
{
    vm v;
    memset(&v, 0, sizeof v);
    v.pol = pol;
    pk_reader_init(&v.rd, buf, len, start);
    PyObject *result = NULL;
    for (;;) {
        pk_op op;
        pk_error err;
        v.op = &op;
        if (pk_decode(&v.rd, &op, &err) < 0) {
            op.code = err.code;
            op.offset = err.offset;
            vm_raise(&v, "MalformedModelError", NULL, "%s", err.message);
            break;
        }
        if (op.frame_flags & (PK_FRAME_STRADDLE | PK_FRAME_OVERLAP)) {
            malformed(&v, "the opcode runs past the end of its frame, or a frame begins inside another "
                          "(CPython gh-154848); aisbom refuses such streams");
            break;
        }
        if (op.code == PK_STOP) {
            result = pop(&v);
            if (result)
                *end = v.rd.pos;
            break;
        }
        if (step(&v, &op) < 0)
            break;
    }
    release(&v);
    return result;
}
