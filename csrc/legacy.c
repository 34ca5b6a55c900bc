/* torch's legacy formats.
 *
 * The stacked-pickle stream (torch.save(..., _use_new_zipfile_serialization=False)):
 *   magic number, protocol version, sys_info, the object (with persistent ids
 *   for storages), the list of storage keys, then for each key the raw
 *   storage: an int64 element count and count * element_size bytes.
 * The tar format (torch < 0.4) keeps the same parts in members; see
 * legacy_scan_storages() and legacy_scan_tensors().
 *
 * The raw storage bytes are never unpickled by torch, but a verdict of clean
 * needs every byte accounted for, so the walk reads the sizes exactly as
 * torch does and refuses anything left over. */
#include "formats.h"

#include <stdio.h>
#include <stdlib.h>

#define LEGACY_PROTOCOL_VERSION 1001

/* 0x1950A86A20F9469CFC6C, torch.serialization.MAGIC_NUMBER */
int
legacy_is_magic(scanner *sc, sv v)
{
    __int128 x;
    const __int128 magic = ((__int128)0x1950 << 64) | (__int128)0xA86A20F9469CFC6CULL;
    return sv_int128(sc, v, &x) == 0 && x == magic;
}

typedef struct {
    const char *name;
    int size;
} storage_type;

/* The typed storage classes torch pickles by name, and their element sizes. */
static const storage_type STORAGE_TYPES[] = {
    {"DoubleStorage", 8}, {"FloatStorage", 4}, {"HalfStorage", 2}, {"BFloat16Storage", 2},
    {"LongStorage", 8}, {"IntStorage", 4}, {"ShortStorage", 2}, {"CharStorage", 1},
    {"ByteStorage", 1}, {"BoolStorage", 1}, {"ComplexDoubleStorage", 16},
    {"ComplexFloatStorage", 8}, {"QUInt8Storage", 1}, {"QInt8Storage", 1},
    {"QInt32Storage", 4}, {"QUInt4x2Storage", 1}, {"QUInt2x4Storage", 1},
    {"UntypedStorage", 1},
};

int
legacy_storage_element_size(aisb_slice type_name)
{
    for (size_t i = 0; i < sizeof STORAGE_TYPES / sizeof STORAGE_TYPES[0]; i++)
        if (aisb_slice_eq(type_name, STORAGE_TYPES[i].name))
            return STORAGE_TYPES[i].size;
    return 0;
}

/* The element size of a storage class named by a global, or 0. */
static int
element_size_of(scanner *sc, aisb_report *rep, sv type)
{
    int g = sv_global(sc, type);
    if (sv_kind(sc, type) != SV_GLOBAL || g < 0)
        return 0;
    aisb_global *gl = &AISB_VEC_AT(&rep->globals, aisb_global, g);
    return legacy_storage_element_size(aisb_report_str(rep, gl->name_off, gl->name_len));
}

static void
layout_error(aisb_report *rep, int member, size_t offset, const char *what)
{
    aisb_report_finding(rep, "legacy-layout", SEV_ERROR, member, -1, offset,
                        "torch legacy file: %s at offset %zu, so the bytes that follow cannot be accounted for",
                        what, offset);
}

/* Read torch's raw storage record at *pos: int64 element count, then data. */
static int
skip_storage(aisb_report *rep, int member, const uint8_t *buf, size_t len, size_t *pos, int elsize,
             int64_t expect_count)
{
    if (len - *pos < 8) {
        layout_error(rep, member, *pos, "a storage record is truncated");
        return -1;
    }
    int64_t count = (int64_t)aisb_le(buf + *pos, 8);
    if (count < 0 || (expect_count >= 0 && count != expect_count)) {
        layout_error(rep, member, *pos, "a storage's element count disagrees with its declaration");
        return -1;
    }
    uint64_t nbytes = (uint64_t)count * (uint64_t)elsize;
    if ((uint64_t)count > UINT64_MAX / (uint64_t)elsize || nbytes > len - *pos - 8) {
        layout_error(rep, member, *pos, "a storage runs past the end of the file");
        return -1;
    }
    *pos += 8 + (size_t)nbytes;
    return 0;
}

typedef struct {
    aisb_slice key;
    int elsize;
    int64_t numel;
} root_storage;

/* Persistent ids ('storage', type, root_key, location, numel, view_metadata). */
static int
collect_roots(aisb_report *rep, scanner *sc, aisb_vec *roots)
{
    const sv *ids;
    size_t n = scanner_persids(sc, &ids);
    for (size_t i = 0; i < n; i++) {
        sv item[6];
        size_t k = sv_items(sc, ids[i], item, 6);
        aisb_slice tag, key;
        if (k < 1 || sv_text(sc, item[0], &tag) < 0)
            return -1;
        if (aisb_slice_eq(tag, "module"))
            continue;  /* a module's source check: no data */
        if (!aisb_slice_eq(tag, "storage") || k != 6 || sv_text(sc, item[2], &key) < 0)
            return -1;
        root_storage *r = aisb_vec_push(roots, 1);
        if (r == NULL)
            return -1;
        r->key = key;
        r->elsize = element_size_of(sc, rep, item[1]);
        if (r->elsize == 0 || sv_int(sc, item[4], &r->numel) < 0 || r->numel < 0)
            return -1;
    }
    return 0;
}

static root_storage *
find_root(aisb_vec *roots, aisb_slice key)
{
    for (size_t i = 0; i < roots->len; i++) {
        root_storage *r = &AISB_VEC_AT(roots, root_storage, i);
        if (r->key.n == key.n && memcmp(r->key.p, key.p, key.n) == 0)
            return r;
    }
    return NULL;
}

void
legacy_scan_stream(aisb_report *rep, int member, scanner *sc, size_t pos)
{
    size_t len, end;
    const uint8_t *buf = scanner_buffer(sc, &len);
    sv version, sys_info, object, keys;
    int64_t v;

    if (scanner_run(sc, pos, &end, &version) < 0)
        return;
    if (sv_int(sc, version, &v) < 0 || v != LEGACY_PROTOCOL_VERSION)
        layout_error(rep, member, pos, "the protocol version is not 1001");
    if (scanner_run(sc, pos = end, &end, &sys_info) < 0)
        return;
    (void)sys_info;
    scanner_set_persistent_load(sc, 1);
    scanner_set_module_persids(sc, 1);
    int rc = scanner_run(sc, pos = end, &end, &object);
    scanner_set_persistent_load(sc, 0);
    scanner_set_module_persids(sc, 0);
    if (rc < 0)
        return;
    if (scanner_run(sc, pos = end, &end, &keys) < 0)
        return;
    pos = end;

    aisb_vec roots;
    aisb_vec_init(&roots, sizeof(root_storage));
    sv *items = NULL;
    size_t nkeys = sv_items(sc, keys, NULL, 0);
    if (sv_kind(sc, keys) != SV_LIST || collect_roots(rep, sc, &roots) < 0 ||
        (nkeys && (items = calloc(nkeys, sizeof *items)) == NULL)) {
        layout_error(rep, member, pos, "the storage keys or persistent ids are not what torch writes");
        goto done;
    }
    sv_items(sc, keys, items, nkeys);
    for (size_t i = 0; i < nkeys; i++) {
        aisb_slice key;
        root_storage *r = sv_text(sc, items[i], &key) == 0 ? find_root(&roots, key) : NULL;
        if (r == NULL) {
            layout_error(rep, member, pos, "a storage key has no storage declared for it");
            goto done;
        }
        if (skip_storage(rep, member, buf, len, &pos, r->elsize, r->numel) < 0)
            goto done;
    }
    if (pos != len)
        aisb_report_finding(rep, "trailing-data", SEV_ERROR, member, -1, pos,
                            "%zu bytes follow the last storage of a torch legacy file", len - pos);
done:
    free(items);
    aisb_vec_free(&roots);
}

/* The tar format's 'storages' member: a count, then per storage a pickle
 * (key, location, storage_type) and its raw record, then the views. */
void
legacy_scan_storages(aisb_report *rep, int member, const uint8_t *buf, size_t len)
{
    scan_ctx ctx = {.member = member};
    scanner *sc = scanner_new(rep, buf, len, &ctx);
    size_t pos = 0, end;
    sv count_v, desc, views;
    int64_t count;
    if (sc == NULL)
        return;
    if (scanner_run(sc, pos, &end, &count_v) < 0)
        goto done;
    pos = end;
    if (sv_int(sc, count_v, &count) < 0 || count < 0) {
        layout_error(rep, member, pos, "the storage count is not an integer");
        goto done;
    }
    for (int64_t i = 0; i < count; i++) {
        sv item[3];
        if (scanner_run(sc, pos, &end, &desc) < 0)
            goto done;
        pos = end;
        int elsize = sv_items(sc, desc, item, 3) == 3 ? element_size_of(sc, rep, item[2]) : 0;
        if (elsize == 0) {
            layout_error(rep, member, pos, "a storage description is not (key, location, type)");
            goto done;
        }
        if (skip_storage(rep, member, buf, len, &pos, elsize, -1) < 0)
            goto done;
    }
    if (scanner_run(sc, pos, &end, &views) < 0)
        goto done;
    if (end != len)
        aisb_report_finding(rep, "trailing-data", SEV_ERROR, member, -1, end,
                            "%zu bytes follow the storage views", len - end);
done:
    scanner_free(sc);
}

/* The tar format's 'tensors' member: a count, then per tensor a pickle
 * (key, storage_id, type) and raw int32 ndim, 4 pad bytes, int64 sizes,
 * int64 strides and an int64 storage offset. */
void
legacy_scan_tensors(aisb_report *rep, int member, const uint8_t *buf, size_t len)
{
    scan_ctx ctx = {.member = member};
    scanner *sc = scanner_new(rep, buf, len, &ctx);
    size_t pos = 0, end;
    sv count_v, desc;
    int64_t count;
    if (sc == NULL)
        return;
    if (scanner_run(sc, pos, &end, &count_v) < 0)
        goto done;
    pos = end;
    if (sv_int(sc, count_v, &count) < 0 || count < 0) {
        layout_error(rep, member, pos, "the tensor count is not an integer");
        goto done;
    }
    for (int64_t i = 0; i < count; i++) {
        if (scanner_run(sc, pos, &end, &desc) < 0)
            goto done;
        pos = end;
        if (len - pos < 8) {
            layout_error(rep, member, pos, "a tensor record is truncated");
            goto done;
        }
        int32_t ndim = (int32_t)(uint32_t)aisb_le(buf + pos, 4);
        uint64_t need = 8 + (uint64_t)(ndim < 0 ? 0 : ndim) * 16 + 8;
        if (ndim < 0 || need > len - pos) {
            layout_error(rep, member, pos, "a tensor record is truncated or has a negative rank");
            goto done;
        }
        pos += (size_t)need;
    }
    if (pos != len)
        aisb_report_finding(rep, "trailing-data", SEV_ERROR, member, -1, pos,
                            "%zu bytes follow the last tensor record", len - pos);
done:
    scanner_free(sc);
}
