/* The calling thread's packing panel for the engine's dense products (Gemm.gemm, Sources/HLA/Core/Gemm.swift): room
 * for `Gemm.kc` (128) rows of one 64-byte panel (16 float32 or 8 float64), where a product that cannot read op(B) in
 * place packs a block of it. A product writes every element of the block it packs before its tiles read it, and
 * products never nest, so one panel per thread serves every call without zeroing or allocating one per call (a
 * stack buffer had to be initialized: 4-8 KiB of memset in every product with a transposed or partial panel). */
#include "hla_private.h"

static _Thread_local _Alignas(64) unsigned char hla_panel[128 * 64];

void *hla_private_panel(void) { return hla_panel; }

/* The calling thread's count of the multiply-adds its register tiles performed (Gemm.tile and the narrow tile add to
 * it in debug builds only): what a product computes, zero padding and the known zeros a tile cannot skip included,
 * against what it must compute (Tests/HLATests/TileWorkTests.swift). */
static _Thread_local long long hla_tile_macs;

void hla_private_tile_macs_add(long long macs) { hla_tile_macs += macs; }
long long hla_private_tile_macs_take(void) { long long x = hla_tile_macs; hla_tile_macs = 0; return x; }
