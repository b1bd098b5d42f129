/* The installed hla.h is valid C99 on its own (strict warnings, -Werror), idempotent, and links. */
#include <hla.h>
#include <hla.h> /* included twice on purpose */

#include <stdio.h>
#include <string.h>

int main(void)
{
    hla_config cfg;
    hla_tensor q, k, v, o, s;
    const int64_t sh[3] = {1, 1, 2}, shv[3] = {1, 1, 1};
    double qd[2] = {1, 0}, kd[2] = {1, 0}, vd[1] = {3}, od[1] = {0}, state[64];
    int64_t n = 0, shs[2];
    char want[32];
    hla_status st = hla_config_init(&cfg, sizeof cfg);
    enum hla_op op = HLA_OP_HLA3;
    enum hla_dtype dt = HLA_BFLOAT16;
    enum hla_path path = HLA_PATH_SCAN;
    if (st != HLA_OK || hla_config_validate(&cfg) != HLA_OK) return 1;
    if (strcmp(hla_status_string(HLA_ERR_DTYPE), "HLA_ERR_DTYPE") != 0) return 1;
    snprintf(want, sizeof want, "%d.%d.%d", HLA_VERSION_MAJOR, HLA_VERSION_MINOR, HLA_VERSION_PATCH);
    if (strcmp(hla_version(), want) != 0) return 1;
    /* one step of masked hla2, dk = 2, dv = 1: (q.k)(k.q) v = v */
    cfg.dk = 2;
    cfg.dv = 1;
    if (hla_state_elements(&cfg, &n) != HLA_OK || n > 64) return 1;
    shs[0] = 1, shs[1] = n;
    hla_tensor_init(&q, qd, HLA_FLOAT64, 3, sh, NULL);
    hla_tensor_init(&k, kd, HLA_FLOAT64, 3, sh, NULL);
    hla_tensor_init(&v, vd, HLA_FLOAT64, 3, shv, NULL);
    hla_tensor_init(&o, od, HLA_FLOAT64, 3, shv, NULL);
    hla_tensor_init(&s, state, HLA_FLOAT64, 2, shs, NULL);
    if (hla_state_reset_rows(&cfg, &s, NULL) != HLA_OK) return 1;
    if (hla_step(&cfg, &q, &k, &v, &o, &s, NULL) != HLA_OK || od[0] != 3.0) return 1;
    printf("C99: libhla %s (op %d, dtype %d, path %d, sizeof(hla_config) = %u, sizeof(hla_tensor) = %u)\n",
           hla_version(), (int)op, (int)dt, (int)path, (unsigned)sizeof(hla_config), (unsigned)sizeof(hla_tensor));
    return 0;
}
