// The installed hla.h is valid C++17 (strict warnings, -Werror) with C linkage: this links and runs.
#include <hla.h>
#include <hla.h> // included twice on purpose

#include <array>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

static_assert(sizeof(hla_tensor) == 8 + 4 + 4 + 8 * HLA_MAX_NDIM * 2, "hla_tensor layout");
static_assert(HLA_VERSION_MAJOR == 1, "this check is written for the 1.x ABI");

int main()
{
    hla_config cfg{};
    if (hla_config_init(&cfg, sizeof cfg) != HLA_OK) return 1;
    cfg.dk = 4;
    cfg.dv = 2;
    std::int64_t n = 0;
    if (hla_state_elements(&cfg, &n) != HLA_OK || n <= 0) return 1;
    // the host owns its cache: a [2, n] float32 buffer; step row 1 only
    std::vector<float> cache(static_cast<std::size_t>(2 * n), 0.0f);
    std::array<float, 4> q{1, 0, 0, 0}, k{1, 0, 0, 0};
    std::array<float, 2> v{3, 4}, out{0, 0};
    const std::int64_t sq[3] = {1, 1, 4}, sv[3] = {1, 1, 2}, ss[2] = {2, n}, sr[1] = {1};
    const std::int64_t row = 1;
    hla_tensor tq{}, tk{}, tv{}, to{}, ts{}, tr{};
    hla_tensor_init(&tq, q.data(), HLA_FLOAT32, 3, sq, nullptr);
    hla_tensor_init(&tk, k.data(), HLA_FLOAT32, 3, sq, nullptr);
    hla_tensor_init(&tv, v.data(), HLA_FLOAT32, 3, sv, nullptr);
    hla_tensor_init(&to, out.data(), HLA_FLOAT32, 3, sv, nullptr);
    hla_tensor_init(&ts, cache.data(), HLA_FLOAT32, 2, ss, nullptr);
    hla_tensor_init(&tr, const_cast<std::int64_t *>(&row), HLA_INT64, 1, sr, nullptr);
    if (hla_step(&cfg, &tq, &tk, &tv, &to, &ts, &tr) != HLA_OK) return 1;
    // one token, masked hla2: (q.k)(k.q) v = v
    if (out[0] != 3.0f || out[1] != 4.0f) return 1;
    for (std::int64_t i = 0; i < n; i++)
        if (cache[static_cast<std::size_t>(i)] != 0.0f) return 1; // row 0 untouched
    const hla_status st = hla_step(nullptr, &tq, &tk, &tv, &to, &ts, &tr);
    if (st != HLA_ERR_NULL_POINTER || std::strlen(hla_last_error()) == 0) return 1;
    const std::string want = std::to_string(HLA_VERSION_MAJOR) + "." + std::to_string(HLA_VERSION_MINOR) + "." +
                             std::to_string(HLA_VERSION_PATCH);
    if (want != hla_version()) return 1;
    std::printf("C++17: libhla %s, %s\n", hla_version(), hla_status_string(st));
    return 0;
}
