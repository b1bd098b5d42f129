/* Types of the libhla C ABI. This block is copied verbatim into include/hla.h by
 * .ci/genheader.py; the function declarations there are generated from the Swift sources. */
#ifndef HLA_TYPES_H
#define HLA_TYPES_H

#include <stddef.h>
#include <stdint.h>

/* Version of this header and of the library built with it (hla_version() returns the library's).
 * These three lines are the single source of truth: the library and the Python package read them.
 * A change of MAJOR means an incompatible ABI or state layout (the serialized format carries its own
 * format version, docs/state-layout.md); a change of MINOR adds entry points or config fields (1.1: checkpoints; 1.2: checkpoint_every). */
#define HLA_VERSION_MAJOR 1
#define HLA_VERSION_MINOR 2
#define HLA_VERSION_PATCH 0

/* Largest number of dimensions of an hla_tensor. */
#define HLA_MAX_NDIM 4

/* Status of every entry point (0 = success). hla_status_string() names it and
 * hla_last_error() gives the message of the calling thread's most recent failure.
 * Codes are only ever added at the end. */
typedef enum hla_status {
    HLA_OK = 0,
    HLA_ERR_NULL_POINTER = 1,     /* a required pointer argument was NULL */
    HLA_ERR_INVALID_ARGUMENT = 2, /* a size, shape, option or parameter is out of range or not finite */
    HLA_ERR_OVERFLOW = 3,         /* a size product or stride extent does not fit in 64 bits */
    HLA_ERR_MISMATCH = 4,         /* tensors or serialized bytes of another configuration or shape */
    HLA_ERR_CORRUPT = 5,          /* serialized bytes truncated, corrupt, or of another version */
    HLA_ERR_BUFFER_TOO_SMALL = 6, /* the caller's buffer is smaller than the required size */
    HLA_ERR_OUT_OF_MEMORY = 7,    /* an allocation failed */
    HLA_ERR_DTYPE = 8             /* an element type the argument does not accept, or mixed types */
} hla_status;

/* Operators (docs/spec.md section 2). */
typedef enum hla_op {
    HLA_OP_HLA2 = 0, /* second order, A A^T V (ridge allowed) */
    HLA_OP_AHLA = 1, /* asymmetric second order, A A V */
    HLA_OP_HLA3 = 2  /* third order, A A^T A V */
} hla_op;

/* Element type of a tensor. q, k, v and output share one of the four floating types; states and
 * summaries are float64 for float64 inputs and float32 otherwise (bfloat16/float16 inputs are widened
 * on load, accumulated in float32 and rounded once on store). Index tensors (cu_seqlens, rows,
 * lengths) are int64, or int32 where documented. Values are only ever added at the end. */
typedef enum hla_dtype {
    HLA_FLOAT32 = 0,
    HLA_FLOAT64 = 1,
    HLA_BFLOAT16 = 2,
    HLA_FLOAT16 = 3,
    HLA_INT64 = 4,
    HLA_INT32 = 5
} hla_dtype;

/* Execution path of hla_forward (docs/spec.md section 4); all give the same result. */
typedef enum hla_path {
    HLA_PATH_CHUNKED = 0, /* dense intra-chunk products, carry between chunks (default) */
    HLA_PATH_SERIAL = 1,  /* one token at a time through the streaming recurrence */
    HLA_PATH_SCAN = 2     /* chunk summaries, exclusive scan of combine, then chunks from their carry-in */
} hla_path;

/* A strided view of caller memory, after DLPack's DLTensor: the element at index (i0, i1, ...) is
 * data[i0 * strides[0] + i1 * strides[1] + ...] (strides in elements, may be zero or negative for
 * inputs; outputs must not write one element twice). Entries at and past ndim are ignored.
 * hla_tensor_init fills one from a shape and optional strides. The library never keeps a pointer to a
 * tensor or its data after a call returns. */
typedef struct hla_tensor {
    void *data;                      /* element [0, 0, ...]; never NULL for a tensor that is read or written */
    int32_t dtype;                   /* hla_dtype */
    int32_t ndim;                    /* 1 <= ndim <= HLA_MAX_NDIM */
    int64_t shape[HLA_MAX_NDIM];     /* sizes, >= 0 */
    int64_t strides[HLA_MAX_NDIM];   /* element strides */
} hla_tensor;

/* Configuration of an operator: everything but the shapes and element types, which the tensors carry.
 * Always start from hla_config_init(&cfg, sizeof cfg), which fills the defaults below and records the
 * struct size the caller was compiled with, then set the fields you need. New fields are only ever
 * added at the end; a library given a larger struct accepts it when the fields it does not know are 0,
 * and one given the smaller struct of an older header (1.0 and 1.1: up to chunk_size) takes the fields
 * that struct lacks as 0. */
typedef struct hla_config {
    uint32_t struct_size; /* sizeof(hla_config) as compiled by the caller; set by hla_config_init */
    int32_t op;           /* hla_op; default HLA_OP_HLA2 */
    int32_t masked;       /* 1 = strictly causal (default), 0 = unmasked */
    int32_t normalize;    /* 1 = divide by the value-free sum plus eps; default 0 */
    int64_t heads;        /* H >= 1 query heads; default 1 */
    int64_t kv_heads;     /* Hkv >= 1 dividing H, or 0 meaning H (default 0) */
    int64_t dk;           /* query/key features >= 1; default 64 */
    int64_t dv;           /* value features >= 1; default 64 */
    double scale;         /* multiplies every query; finite; default 1.0 */
    double decay;         /* gamma in (0, 1]; default 1.0 */
    double ridge;         /* lambda >= 0, hla2 only; default 0.0 */
    double eps;           /* > 0, used when normalize = 1; default 1e-6 */
    int64_t chunk_size;   /* >= 0: chunk length of the chunked and scan paths, 0 = automatic (default);
                             values above 1024 act as 1024 */
    /* 1.2: */
    int64_t checkpoint_every; /* >= 0: chunks k between the carries the chunked backward keeps (its own and
                             hla_forward_checkpoints'): 0 = automatic, ceil(sqrt(chunks)) (default); 1 = every
                             chunk (fastest backward). Memory per sequence: chunks/k checkpoints plus, in the
                             backward, k chunks' carries and products, so both 1 and large k cost O(chunks)
                             states; values above the chunk count act as the chunk count. Results do not
                             depend on it. */
} hla_config;

#endif /* HLA_TYPES_H */
