/* Compile-time checks that the ABI structs have the layout the header documents
 * (the Swift engine and foreign hosts both rely on it). */
#include "hla_types.h"

_Static_assert(sizeof(hla_config) == 4 * 4 + 5 * 8 + 4 * 8 + 8, "hla_config layout");
_Static_assert(offsetof(hla_config, batch) == 16, "hla_config.batch offset");
_Static_assert(offsetof(hla_config, scale) == 56, "hla_config.scale offset");
_Static_assert(sizeof(hla_state) == 16 && sizeof(hla_segment) == 16, "handle layout");
