/* Unit tests of the error convention: every error kind named. */
#include "check.h"
#include "vmsync.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void test_error_kind_names(void)
{
    const char *names[VMS_EK_END];
    size_t n = 0;
    for (int k = -1; k < VMS_EK_END + 2; k++) {
        const char *name = vms_error_kind_name(k);
        bool is_kind = (k >= 0 && k < FSP_EK_END) || (k >= FSP_EK_LIBRARY && k < VMS_EK_END);
        CHECK(is_kind == (name != NULL));
        if (!name)
            continue;
        CHECK(*name);
        for (size_t i = 0; i < n; i++)
            CHECK(strcmp(names[i], name) != 0);
        names[n++] = name;
    }
    CHECK(n == FSP_EK_END + (VMS_EK_END - FSP_EK_LIBRARY));
    CHECK(FSP_EK_END <= FSP_EK_LIBRARY); /* the two lists never meet */
    CHECK(!strcmp(vms_error_kind_name(VMS_EK_CONFLICT), "conflict"));
    CHECK(!strcmp(vms_error_kind_name(FSP_EK_NOMEM), "out of memory"));
}

int main(void)
{
    RUN(test_error_kind_names);
    return check_failures;
}
