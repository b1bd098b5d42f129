/* The calling thread's prefetch plan: the rows of the inputs the engine packs next (IO.pack fills it), whose
 * cache lines the dense products (Gemm) request a few at a time between register tiles, so the memory reads
 * overlap the arithmetic instead of stalling in one burst. Hints only: an address never touched, a stale or
 * a truncated plan changes no result. */
#include "hla_private.h"

#define HLA_PLAN_STREAMS 64

static _Thread_local struct {
    hla_private_plan cursor;
    const char *base[HLA_PLAN_STREAMS];
    ptrdiff_t stride[HLA_PLAN_STREAMS], rows[HLA_PLAN_STREAMS], lines[HLA_PLAN_STREAMS];
    int count, next;
} plan;

hla_private_plan *hla_private_plan_get(void) { return &plan.cursor; }

void hla_private_plan_reset(void) {
    plan.count = 0; plan.next = 0;
    plan.cursor.line = 0; plan.cursor.row = 0; plan.cursor.rows_left = 0; plan.cursor.lines = 0; plan.cursor.stride = 0;
}

void hla_private_plan_rows(const void *first, ptrdiff_t stride, ptrdiff_t rows, ptrdiff_t bytes) {
    if (plan.count == HLA_PLAN_STREAMS || rows <= 0 || bytes <= 0) return;
    uintptr_t a = (uintptr_t)first & ~(uintptr_t)63, e = ((uintptr_t)first + (uintptr_t)bytes + 63) & ~(uintptr_t)63;
    plan.base[plan.count] = (const char *)a;
    plan.stride[plan.count] = stride;
    plan.rows[plan.count] = rows;
    plan.lines[plan.count] = (ptrdiff_t)((e - a) >> 6);
    plan.count++;
    if (plan.cursor.row == 0) hla_private_plan_next(&plan.cursor);
}

void hla_private_plan_next(hla_private_plan *c) {
    c->line = 0;
    if (plan.next == plan.count) { c->row = 0; c->rows_left = 0; return; }
    int s = plan.next++;
    c->row = plan.base[s]; c->stride = plan.stride[s]; c->rows_left = plan.rows[s]; c->lines = plan.lines[s];
}
