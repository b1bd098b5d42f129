/*
 * The parts of the DLPack ABI (https://github.com/dmlc/dlpack, include/dlpack/dlpack.h, v1.x) the
 * extension reads: DLTensor, the managed tensors of the "dltensor" and "dltensor_versioned" capsule
 * protocols, and the constants used. Layouts are DLPack's (stable across its 0.x and 1.x releases).
 */
#ifndef HLA_DLPACK_ABI_H
#define HLA_DLPACK_ABI_H

#include <stdint.h>

#define HLA_DLPACK_MAJOR_VERSION 1
#define HLA_DLPACK_MINOR_VERSION 0

enum { HLA_kDLCPU = 1 };                                              /* DLDeviceType */
enum { HLA_kDLInt = 0, HLA_kDLUInt = 1, HLA_kDLFloat = 2, HLA_kDLBfloat = 4 }; /* DLDataTypeCode */

#define HLA_DLPACK_FLAG_BITMASK_READ_ONLY (UINT64_C(1) << 0)

typedef struct {
    uint32_t major;
    uint32_t minor;
} DLPackVersion;

typedef struct {
    int32_t device_type;
    int32_t device_id;
} DLDevice;

typedef struct {
    uint8_t code;
    uint8_t bits;
    uint16_t lanes;
} DLDataType;

typedef struct {
    void *data;
    DLDevice device;
    int32_t ndim;
    DLDataType dtype;
    int64_t *shape;
    int64_t *strides; /* in elements; NULL = compact row-major */
    uint64_t byte_offset;
} DLTensor;

typedef struct DLManagedTensor {
    DLTensor dl_tensor;
    void *manager_ctx;
    void (*deleter)(struct DLManagedTensor *self);
} DLManagedTensor;

typedef struct DLManagedTensorVersioned {
    DLPackVersion version;
    void *manager_ctx;
    void (*deleter)(struct DLManagedTensorVersioned *self);
    uint64_t flags;
    DLTensor dl_tensor;
} DLManagedTensorVersioned;

#endif
