/* The installed hla.h is valid C99 on its own (strict warnings, -Werror), idempotent, and links. */
#include <hla.h>
#include <hla.h> /* included twice on purpose */

#include <stdio.h>
#include <string.h>

int main(void)
{
    hla_config cfg;
    hla_state *state = NULL;
    hla_segment *segment = NULL;
    hla_status st = hla_config_init(&cfg);
    enum hla_op op = HLA_OP_HLA3;
    enum hla_dtype dt = HLA_FLOAT64;
    enum hla_path path = HLA_PATH_SCAN;
    hla_segment_destroy(segment);
    hla_state_destroy(state);
    if (st != HLA_OK || hla_config_validate(&cfg) != HLA_OK) return 1;
    if (strcmp(hla_status_string(HLA_ERR_OUT_OF_MEMORY), "HLA_ERR_OUT_OF_MEMORY") != 0) return 1;
    printf("C99: libhla %s (op %d, dtype %d, path %d, sizeof(hla_config) = %u)\n", hla_version(), (int)op, (int)dt,
           (int)path, (unsigned)sizeof(hla_config));
    return 0;
}
