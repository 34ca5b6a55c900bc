/* libFuzzer target: the scanner and every container walker, on any bytes.
 * No Python: the scan engine is plain C. Leaks are errors here. */
#include "container.h"
#include "report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    aisb_report rep;
    aisb_report_init(&rep);
    /* Small caps keep each execution fast; the walkers' limits are what is tested. */
    aisb_limits lim = {1 << 22, 4};
    aisb_scan_file(&rep, data, size, &lim);
    aisb_report_free(&rep);
    return 0;
}
