// The installed hla.h is valid C++17 (strict warnings, -Werror) with C linkage: this links and runs.
#include <hla.h>
#include <hla.h> // included twice on purpose

#include <cstdio>
#include <cstring>
#include <memory>

namespace {
struct state_deleter {
    void operator()(hla_state *s) const noexcept { hla_state_destroy(s); }
};
} // namespace

int main()
{
    hla_config cfg{};
    if (hla_config_init(&cfg) != HLA_OK) return 1;
    cfg.dtype = HLA_FLOAT64;
    cfg.dk = 4;
    cfg.dv = 2;
    hla_state *raw = nullptr;
    if (hla_state_create(&cfg, &raw) != HLA_OK) return 1;
    std::unique_ptr<hla_state, state_deleter> state(raw);
    const double q[4] = {1, 0, 0, 0}, k[4] = {1, 0, 0, 0}, v[2] = {3, 4};
    double out[2] = {0, 0};
    if (hla_state_step(state.get(), q, nullptr, k, nullptr, v, nullptr, out, nullptr) != HLA_OK) return 1;
    // one token, masked hla2: (q.k)(k.q) v = v
    if (out[0] != 3.0 || out[1] != 4.0) return 1;
    const hla_status st = hla_state_step(nullptr, q, nullptr, k, nullptr, v, nullptr, out, nullptr);
    if (st != HLA_ERR_NULL_POINTER || std::strlen(hla_last_error()) == 0) return 1;
    std::printf("C++17: libhla %s, %s\n", hla_version(), hla_status_string(st));
    return 0;
}
