/* libFuzzer harness: bytes -> hla_state_deserialize and hla_summary_deserialize.
 *
 * Input: [mode byte][dest byte][serialized bytes...].
 *   mode bit 0: recompute the trailing checksum before the call (lets mutations reach the checks after it)
 *   mode bit 1: the config struct is 16 bytes larger than sizeof(hla_config) (zero tail)
 *   mode bit 2: also try the other kind (state bytes as a summary and vice versa) first
 *   mode bit 3: the config struct is the 88-byte one of headers 1.0 and 1.1 (up to chunk_size), in an
 *               allocation of exactly 88 bytes: the library must write only those (ASan)
 *   dest byte:  extra destination rows (bits 0-1), row padding (bits 2-3), negative row stride (bit 4),
 *               an invalid destination first (bits 5-7: 0 none, else wrong dtype / too few rows / bad
 *               columns / lengths int32 / overlapping rows / data of lengths NULL ...)
 * For every accepted input: the description (data NULL) is checked, the rows are copied into a buffer of
 * exactly the described size (then into a strided destination), and re-serializing them must reproduce
 * the input byte for byte. A rejected call must leave *cfg and the destination untouched.
 */
#include <stddef.h>
#include "fuzz_common.h"

/* Size of the hla_config of headers 1.0 and 1.1, which the library still accepts. */
#define OLD_CONFIG_SIZE ((size_t)offsetof(hla_config, checkpoint_every))

typedef struct {
    uint8_t *mem;       /* the allocation (exact size) */
    size_t bytes;
    hla_tensor t;
} dest_t;

static hla_config *new_config(uint8_t mode, size_t *size) {
    *size = (mode & 8) ? OLD_CONFIG_SIZE : sizeof(hla_config) + ((mode & 2) ? 16 : 0);
    hla_config *c = (hla_config *)xmalloc(*size);
    memset(c, 0x5a, *size);
    if (hla_config_init(c, *size) != HLA_OK) FUZZ_FAIL("hla_config_init(%zu)", *size);
    return c;
}

/* A destination of `slots` rows of n elements with row stride +-(n + pad), element size es. */
static void make_dest(dest_t *d, int32_t dtype, int64_t slots, int64_t n, int64_t pad, int neg) {
    size_t es = dtype == HLA_FLOAT64 || dtype == HLA_INT64 ? 8 : dtype == HLA_FLOAT32 || dtype == HLA_INT32 ? 4 : 2;
    int64_t stride = n + pad;
    size_t elems = slots > 0 ? (size_t)((slots - 1) * stride + n) : 0;
    d->bytes = elems * es;
    d->mem = (uint8_t *)xmalloc(d->bytes);
    memset(d->mem, 0xA5, d->bytes);
    memset(&d->t, 0, sizeof d->t);
    d->t.dtype = dtype;
    d->t.ndim = 2;
    d->t.shape[0] = slots;
    d->t.shape[1] = n;
    d->t.strides[0] = neg ? -stride : stride;
    d->t.strides[1] = 1;
    d->t.data = neg && slots > 0 ? d->mem + (size_t)((slots - 1) * stride) * es : d->mem;
}

static void check_untouched(const uint8_t *mem, size_t bytes, const char *what) {
    for (size_t i = 0; i < bytes; i++)
        if (mem[i] != 0xA5) FUZZ_FAIL("%s: byte %zu written by a call that failed", what, i);
}

static void run(const uint8_t *buf, size_t size, int summary, uint8_t mode, uint8_t dsel) {
    size_t cfg_size;
    hla_config *cfg = new_config(mode, &cfg_size);
    const size_t known = cfg_size < sizeof(hla_config) ? cfg_size : sizeof(hla_config);   /* bytes of *cfg's fields */
    uint8_t *cfg_before = (uint8_t *)xmalloc(cfg_size);
    memcpy(cfg_before, cfg, cfg_size);

    /* 1. describe */
    hla_tensor st, ln;
    memset(&st, 0x33, sizeof st);
    st.data = NULL;
    memset(&ln, 0x44, sizeof ln);
    ln.data = NULL;
    hla_tensor st0 = st, ln0 = ln;
    hla_status s = summary ? hla_summary_deserialize(buf, size, cfg, &st, &ln) : hla_state_deserialize(buf, size, cfg, &st);
    if (s != HLA_OK) {
        FUZZ_CHECK(memcmp(cfg, cfg_before, cfg_size) == 0, "rejected input changed *cfg");
        FUZZ_CHECK(memcmp(&st, &st0, sizeof st) == 0 && memcmp(&ln, &ln0, sizeof ln) == 0,
                   "rejected input changed the destination descriptor");
        FUZZ_CHECK(s == HLA_ERR_CORRUPT, "deserialize of bytes failed with %s, not HLA_ERR_CORRUPT", hla_status_string(s));
        goto out;
    }
    /* accepted: the description and configuration must be consistent */
    FUZZ_CHECK(size >= 120, "accepted %zu bytes", size);
    hla_config described;   /* the fields of *cfg (an 88-byte struct is no hla_config to C) */
    memset(&described, 0, sizeof described);
    memcpy(&described, cfg, known);
    FUZZ_CHECK(described.struct_size == cfg_size, "struct_size changed to %u", described.struct_size);
    for (size_t i = sizeof(hla_config); i < cfg_size; i++)
        FUZZ_CHECK(((uint8_t *)cfg)[i] == 0, "tail byte %zu of *cfg not zero", i);
    FUZZ_CHECK(hla_config_validate(cfg) == HLA_OK, "deserialized configuration does not validate");
    FUZZ_CHECK(described.chunk_size == 0, "deserialized chunk_size %lld", (long long)described.chunk_size);
    int64_t n = -1;
    FUZZ_CHECK((summary ? hla_summary_elements(cfg, &n) : hla_state_elements(cfg, &n)) == HLA_OK, "elements");
    FUZZ_CHECK(st.ndim == 2 && (st.dtype == HLA_FLOAT32 || st.dtype == HLA_FLOAT64), "described dtype/ndim");
    FUZZ_CHECK(st.shape[1] == n && st.strides[0] == n && st.strides[1] == 1 && st.shape[0] >= 0, "described shape");
    int64_t R = st.shape[0];
    size_t es = st.dtype == HLA_FLOAT64 ? 8 : 4;
    size_t expect = 120 + (size_t)R * (size_t)n * es + (summary ? 8 * (size_t)R : 0);
    FUZZ_CHECK(expect == size, "size %zu, description gives %zu", size, expect);
    if (summary)
        FUZZ_CHECK(ln.ndim == 1 && ln.dtype == HLA_INT64 && ln.shape[0] == R && ln.strides[0] == 1, "described lengths");

    /* 2. an invalid destination first: must fail and write nothing */
    int bad = dsel >> 5;
    if (bad) {
        dest_t d;
        int32_t dt = st.dtype;
        int64_t slots = R, cols = n, pad = 0;
        switch (bad) {
        case 1: dt = st.dtype == HLA_FLOAT64 ? HLA_FLOAT32 : HLA_FLOAT64; break;
        case 2: slots = R - 1; break;
        case 3: cols = n + 1; break;
        case 4: dt = HLA_INT64; break;
        case 5: pad = -1; break;
        default: break;
        }
        if (slots >= 0 && !(pad < 0 && (slots < 2 || n < 2))) {
            make_dest(&d, dt, slots, cols, pad, 0);
            if (bad == 7 && d.bytes) d.t.strides[1] = 2; /* non-contiguous rows */
            int64_t *lens = (int64_t *)xmalloc(8 * (size_t)(R > 0 ? R : 0));
            memset(lens, 0xA5, 8 * (size_t)(R > 0 ? R : 0));
            hla_tensor lt;
            hla_tensor_init(&lt, lens, bad == 6 ? HLA_INT32 : HLA_INT64, 1, &R, NULL);
            if (bad == 6 && !summary) pad = 0;
            int expect_fail = bad <= 5 || (bad == 6 && summary) || (bad == 7 && d.bytes && n > 1);
            memcpy(cfg_before, cfg, cfg_size);
            s = summary ? hla_summary_deserialize(buf, size, cfg, &d.t, &lt) : hla_state_deserialize(buf, size, cfg, &d.t);
            if (expect_fail) {
                FUZZ_CHECK(s != HLA_OK, "invalid destination (case %d) accepted", bad);
                check_untouched(d.mem, d.bytes, "invalid destination");
                check_untouched((uint8_t *)lens, 8 * (size_t)(R > 0 ? R : 0), "lengths of an invalid destination");
                FUZZ_CHECK(memcmp(cfg, cfg_before, cfg_size) == 0, "failed call changed *cfg");
            }
            free(lens);
            free(d.mem);
        }
    }

    /* 3. copy into a destination of exactly the described size */
    {
        dest_t d;
        make_dest(&d, st.dtype, R, n, 0, 0);
        int64_t *lens = (int64_t *)xmalloc(8 * (size_t)R);
        hla_tensor lt = ln;
        lt.data = lens;
        memset(cfg, 0, cfg_size);
        hla_config_init(cfg, cfg_size);
        s = summary ? hla_summary_deserialize(buf, size, cfg, &d.t, &lt) : hla_state_deserialize(buf, size, cfg, &d.t);
        FUZZ_CHECK(s == HLA_OK, "copy after a successful describe failed: %s", hla_status_string(s));
        FUZZ_CHECK(memcmp(cfg, &described, known) == 0, "copy gave another configuration than describe");
        /* re-serialize: byte-identical */
        size_t need = 0;
        s = summary ? hla_summary_serialize(cfg, &d.t, &lt, NULL, 0, &need) : hla_state_serialize(cfg, &d.t, NULL, NULL, 0, &need);
        FUZZ_CHECK(s == HLA_OK && need == size, "size query: %s, %zu bytes for %zu", hla_status_string(s), need, size);
        uint8_t *again = (uint8_t *)xmalloc(need);
        size_t written = 0;
        if (need > 0) {
            s = summary ? hla_summary_serialize(cfg, &d.t, &lt, again, need - 1, &written)
                        : hla_state_serialize(cfg, &d.t, NULL, again, need - 1, &written);
            FUZZ_CHECK(s == HLA_ERR_BUFFER_TOO_SMALL && written == need, "capacity - 1: %s", hla_status_string(s));
        }
        s = summary ? hla_summary_serialize(cfg, &d.t, &lt, again, need, &written)
                    : hla_state_serialize(cfg, &d.t, NULL, again, need, &written);
        FUZZ_CHECK(s == HLA_OK && written == size, "re-serialize: %s", hla_status_string(s));
        for (size_t i = 0; i < size; i++)
            if (again[i] != buf[i]) FUZZ_FAIL("re-serialized bytes differ from the accepted input at byte %zu (of %zu)", i, size);
        free(again);

        /* 4. a strided destination (extra rows, padding, negative stride): rows 0..R-1 receive the same
         * numbers, everything else is untouched. */
        int64_t extra = dsel & 3, pad = (dsel >> 2) & 3;
        int neg = (dsel >> 4) & 1;
        if (extra || pad || neg) {
            dest_t e;
            make_dest(&e, st.dtype, R + extra, n, pad, neg);
            s = summary ? hla_summary_deserialize(buf, size, cfg, &e.t, &lt) : hla_state_deserialize(buf, size, cfg, &e.t);
            FUZZ_CHECK(s == HLA_OK, "strided destination: %s", hla_status_string(s));
            size_t rb = (size_t)n * es;
            uint8_t *seen = (uint8_t *)calloc(e.bytes ? e.bytes : 1, 1);
            for (int64_t r = 0; r < R; r++) {
                uint8_t *row = (uint8_t *)e.t.data + r * e.t.strides[0] * (int64_t)es;
                FUZZ_CHECK(memcmp(row, d.mem + (size_t)r * rb, rb) == 0, "strided destination row %lld differs", (long long)r);
                memset(seen + (row - e.mem), 1, rb);
            }
            for (size_t i = 0; i < e.bytes; i++)
                if (!seen[i] && e.mem[i] != 0xA5) FUZZ_FAIL("byte %zu outside rows 0..R-1 written", i);
            free(seen);
            free(e.mem);
        }
        free(lens);
        free(d.mem);
    }
out:
    free(cfg_before);
    free(cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    uint8_t mode = data[0], dsel = data[1];
    size_t n = size - 2;
    uint8_t *buf = (uint8_t *)xmalloc(n);   /* exact size: ASan catches any read past the end */
    memcpy(buf, data + 2, n);
    if ((mode & 1) && n >= 8) {
        uint64_t h = hla_fuzz_checksum(buf, n - 8);
        memcpy(buf + n - 8, &h, 8);
    }
    int summary = n >= 8 && memcmp(buf, "HLASUMRY", 8) == 0;
    if (mode & 4) run(buf, n, !summary, mode, dsel);
    run(buf, n, summary, mode, dsel);
    free(buf);
    return 0;
}
