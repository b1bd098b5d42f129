/* Compile-time checks that the ABI structs have the layout the header documents
 * (the Swift engine and foreign hosts both rely on it). */
#include "hla_types.h"

_Static_assert(sizeof(hla_config) == 4 * 4 + 4 * 8 + 4 * 8 + 8 + 8, "hla_config layout");
/* headers 1.0 and 1.1 ended after chunk_size: their 88-byte struct is still accepted */
_Static_assert(offsetof(hla_config, checkpoint_every) == 88, "hla_config.checkpoint_every offset");
_Static_assert(offsetof(hla_config, heads) == 16, "hla_config.heads offset");
_Static_assert(offsetof(hla_config, scale) == 48, "hla_config.scale offset");
_Static_assert(sizeof(hla_tensor) == 8 + 4 + 4 + 2 * 8 * HLA_MAX_NDIM, "hla_tensor layout");
_Static_assert(offsetof(hla_tensor, shape) == 16, "hla_tensor.shape offset");
