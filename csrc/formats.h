/* The individual container formats, each in its own file. Every walker
 * records what it finds in the report and hands pickle streams to the
 * scanner; none of them returns a verdict. */
#ifndef AISB_FORMATS_H
#define AISB_FORMATS_H

#include "container.h"
#include "scanner.h"

/* container.c */
void aisb_scan_content(aisb_report *rep, int member, const char *fmt, const uint8_t *buf, size_t len,
                       const aisb_limits *lim, int depth);
void aisb_probe_as_pickle(aisb_report *rep, int member, const uint8_t *buf, size_t len, const char *what);
int aisb_is_complete_pickle(const uint8_t *buf, size_t len);
int aisb_looks_like_pickle(const uint8_t *buf, size_t len);

/* archive.c: zip archives (torch checkpoints, TorchScript, npz, plain zips) */
void aisb_scan_zip(aisb_report *rep, int member, const uint8_t *buf, size_t len, const aisb_limits *lim,
                   int depth);

/* npy.c: numpy .npy; the body is a pickle only for object dtypes */
void aisb_scan_npy(aisb_report *rep, int member, const uint8_t *buf, size_t len, const aisb_limits *lim,
                   int strict_tail);

/* tar.c: tar archives, torch's oldest format among them */
int aisb_tar_header_valid(const uint8_t *buf, size_t len);
void aisb_scan_tar(aisb_report *rep, int member, const uint8_t *buf, size_t len, const aisb_limits *lim,
                   int depth);

/* legacy.c: torch's stacked-pickle format and the members of its tar format */
int legacy_is_magic(scanner *sc, sv v);
void legacy_scan_stream(aisb_report *rep, int member, scanner *sc, size_t pos);
int legacy_storage_element_size(aisb_slice type_name);
void legacy_scan_storages(aisb_report *rep, int member, const uint8_t *buf, size_t len);
void legacy_scan_tensors(aisb_report *rep, int member, const uint8_t *buf, size_t len);

/* joblib.c: arrays joblib writes into the pickle stream itself */
typedef struct {
    aisb_report *rep;
    int member;
    const aisb_limits *lim;
    size_t arrays;
} joblib_state;
void joblib_init(joblib_state *jb, aisb_report *rep, int member, const aisb_limits *lim);
int joblib_on_build(void *ud, scanner *sc, sv inst, sv state, size_t *pos);

#endif
