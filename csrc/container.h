/* Containers: recognise a file by its bytes (never by its name) and find
 * every pickle stream inside it — torch zips, torch's legacy stream and tar
 * formats, numpy .npy/.npz, joblib's embedded arrays — then hand each stream
 * to the scanner. */
#ifndef AISB_CONTAINER_H
#define AISB_CONTAINER_H

#include "report.h"

typedef struct {
    uint64_t max_inflate;    /* largest member this layer will decompress */
    int max_depth;           /* containers inside containers */
} aisb_limits;

/* Format names reported for members (and the file itself: member 0). */
#define FMT_PICKLE "pickle"
#define FMT_TORCH_ZIP "torch-zip"
#define FMT_TORCHSCRIPT "torchscript"
#define FMT_TORCH_LEGACY "torch-legacy"
#define FMT_TORCH_TAR "torch-tar"
#define FMT_NPY "npy"
#define FMT_NPZ "npz"
#define FMT_ZIP "zip"
#define FMT_TAR "tar"
#define FMT_JOBLIB "joblib"

/* What the first bytes say. Compressed wrappers (gzip, zlib, bz2, xz, lzma,
 * joblib's ZF) and safetensors are handled by the Python layer, which feeds
 * the decompressed bytes back in. */
const char *aisb_sniff(const uint8_t *buf, size_t len);

/* Scan one file's bytes. Member 0 of the report is the file itself. */
void aisb_scan_file(aisb_report *rep, const uint8_t *buf, size_t len, const aisb_limits *lim);

/* Scan bytes as the content of a member (used by the Python layer for the
 * output of decompressors, with the member already recorded). */
void aisb_scan_member(aisb_report *rep, int member, const uint8_t *buf, size_t len, const aisb_limits *lim,
                      int depth);

#endif
