/* Types of the libhla C ABI. This block is copied verbatim into include/hla.h by
 * .ci/genheader.py; the function declarations there are generated from the Swift sources. */
#ifndef HLA_TYPES_H
#define HLA_TYPES_H

#include <stddef.h>
#include <stdint.h>

/* Status of every entry point (0 = success). hla_status_string() names it and
 * hla_last_error() gives the message of the calling thread's most recent failure. */
typedef enum hla_status {
    HLA_OK = 0,
    HLA_ERR_NULL_POINTER = 1,     /* a required pointer argument was NULL */
    HLA_ERR_INVALID_ARGUMENT = 2, /* a size, option or parameter is out of range or not finite */
    HLA_ERR_OVERFLOW = 3,         /* a size product or stride extent does not fit in 64 bits */
    HLA_ERR_MISMATCH = 4,         /* a state or segment of another configuration or dtype */
    HLA_ERR_CORRUPT = 5,          /* serialized bytes truncated, corrupt, or of another version */
    HLA_ERR_BUFFER_TOO_SMALL = 6, /* the caller's buffer is smaller than the required size */
    HLA_ERR_OUT_OF_MEMORY = 7     /* an allocation failed */
} hla_status;

/* Operators (SPEC.md section 2). */
typedef enum hla_op {
    HLA_OP_HLA2 = 0, /* second order, A A^T V (ridge allowed) */
    HLA_OP_AHLA = 1, /* asymmetric second order, A A V */
    HLA_OP_HLA3 = 2  /* third order, A A^T A V */
} hla_op;

/* Element type of inputs, outputs and state of one call. */
typedef enum hla_dtype {
    HLA_FLOAT32 = 0,
    HLA_FLOAT64 = 1
} hla_dtype;

/* Execution path of hla_forward (SPEC.md section 4); all give the same result. */
typedef enum hla_path {
    HLA_PATH_CHUNKED = 0, /* dense intra-chunk products, carry between chunks (default) */
    HLA_PATH_SERIAL = 1,  /* one token at a time through the streaming recurrence */
    HLA_PATH_SCAN = 2     /* chunk summaries in parallel, exclusive scan of combine, then chunks */
} hla_path;

/* Configuration of a state, segment or call. Always start from hla_config_init(),
 * which fills the defaults below, then set the fields you need. */
typedef struct hla_config {
    int32_t op;         /* hla_op; default HLA_OP_HLA2 */
    int32_t dtype;      /* hla_dtype; default HLA_FLOAT32 */
    int32_t masked;     /* 1 = strictly causal (default), 0 = unmasked */
    int32_t normalize;  /* 1 = divide by the value-free sum plus eps; default 0 */
    int64_t batch;      /* B >= 1; default 1 */
    int64_t heads;      /* H >= 1 query heads; default 1 */
    int64_t kv_heads;   /* Hkv >= 1 dividing H, or 0 meaning H (default 0) */
    int64_t dk;         /* query/key features >= 1; default 64 */
    int64_t dv;         /* value features >= 1; default 64 */
    double scale;       /* multiplies every query; finite; default 1.0 */
    double decay;       /* gamma in (0, 1]; default 1.0 */
    double ridge;       /* lambda >= 0, hla2 only; default 0.0 */
    double eps;         /* > 0, used when normalize = 1; default 1e-6 */
    int64_t chunk_size; /* >= 0: chunk length of hla_forward/hla_summarize, 0 = automatic
                           (default); values above 1024 act as 1024; states ignore it */
} hla_config;

/* Streaming state: constant-size prefix statistics of every (batch, head). A handle made by
 * hla_state_create / _clone / _deserialize / _from_segment and freed by hla_state_destroy.
 * Its fields are private to the library: never read, write or copy them. */
typedef struct hla_state { uint64_t private_tag; void *private_impl; } hla_state;
/* Summary of one segment of a sequence (hla_summarize), combinable with hla_segment_combine().
 * A handle freed by hla_segment_destroy; its fields are private to the library. */
typedef struct hla_segment { uint64_t private_tag; void *private_impl; } hla_segment;

#endif /* HLA_TYPES_H */
