/* libFuzzer target: FLEET.json bytes in.  The reader must refuse or accept
 * without crashing or leaking; a small fleet it accepts that needs no
 * repository (every laptop given as bytes) is planned too, and the plan must
 * hold: never worse than everyone at once, every laptop ready by the end. */
#include "vmsync.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_plan(const struct vms_fleet_report *r)
{
    if (r->makespan > r->makespan_all_at_once * (1 + 1e-9) + 1e-6)
        abort();
    for (size_t i = 0; i < r->n_laptops; i++)
        if (r->laptops[i].ready > r->makespan + 1e-6 || !r->laptops[i].order ||
            r->laptops[i].order > r->n_laptops)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vms_fleet *f = NULL;
    const struct vms_fleet_report *r = NULL;
    fsp_error err = {0};
    if (vms_fleet_parse((const char *)data, size, "fuzz.json", NULL, &f, &err) == 0 && size < 2048 &&
        !vms_fleet_needs_repository(f) && vms_fleet_plan(f, &r, &err) == 0)
        check_plan(r);
    vms_fleet_free(f);
    return 0;
}
