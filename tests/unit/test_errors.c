/* Unit tests of the error convention: parsers that name the bad text, every
 * error kind named, and out of memory reported instead of aborting. */
#include "check.h"
#include "base/codec.h"
#include "vmsync.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Each bad size fails with -EXPECT, names its text, and leaves *OUT alone. */
static void bad_size(const char *s, int expect)
{
    uint64_t v = 77;
    fsp_error err = {0};
    CHECK(vms_parse_size(s, 10, &v, &err) == -expect);
    CHECK(err.kind == FSP_EK_USAGE && v == 77);
    char quoted[128];
    snprintf(quoted, sizeof quoted, "'%s'", s);
    CHECK(strstr(err.msg, quoted) != NULL);
}

static void test_parse_size(void)
{
    uint64_t v = 0;
    fsp_error err = {0};
    CHECK(vms_parse_size("0", 10, &v, &err) == 0 && v == 0);
    CHECK(vms_parse_size("500", 10, &v, &err) == 0 && v == 500 << 10);
    CHECK(vms_parse_size("500", 0, &v, &err) == 0 && v == 500);
    CHECK(vms_parse_size("2M", 10, &v, &err) == 0 && v == 2 << 20);
    CHECK(vms_parse_size("3g", 0, &v, &err) == 0 && v == 3ull << 30);
    CHECK(vms_parse_size("7k", 0, &v, &err) == 0 && v == 7 << 10);
    const char *const invalid[] = {"", "K", "-1", "+1", " 1", "1KB", "1.5M", "12 ", "x", "0x10"};
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++)
        bad_size(invalid[i], EINVAL);
    bad_size("18446744073709551616", ERANGE);
    bad_size("17179869184G", ERANGE);
    bad_size("18014398509481984", ERANGE); /* a bare number in KiB */
}

static void test_parse_ref(void)
{
    char name[16];
    uint32_t version = 9;
    fsp_error err = {0};
    CHECK(vms_parse_ref("win11@3", name, sizeof name, &version, &err) == 0);
    CHECK(!strcmp(name, "win11") && version == 3);
    CHECK(vms_parse_ref("win11", name, sizeof name, &version, &err) == 0 && version == 0);
    const char *const bad[] = {"", "@3", "win11@", "win11@0", "win11@x", "win11@-1",
                               "a-name-too-long-for-16"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&err, 0, sizeof err);
        char quoted[64];
        snprintf(quoted, sizeof quoted, "'%s'", bad[i]);
        CHECK(vms_parse_ref(bad[i], name, sizeof name, &version, &err) == -EINVAL);
        CHECK(err.kind == FSP_EK_USAGE && strstr(err.msg, quoted));
    }
}

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

/* A buffer that cannot grow drops every later put and says so once. */
static void test_wbuf_cannot_grow(void)
{
    struct vms_wbuf b = {0};
    vms_put_str(&b, "kept");
    size_t len = b.len;
    CHECK(!b.failed && len == 5);
    vms_put_raw(&b, "x", SIZE_MAX / 2); /* never read: the buffer cannot grow that far */
    CHECK(b.failed && b.len == len);
    vms_put_u8(&b, 1);
    CHECK(b.failed && b.len == len && !memcmp(b.p + 1, "kept", 4));
    vms_wbuf_free(&b);
    CHECK(!b.failed && !b.p && !b.len);
}

static void test_json_new(void)
{
    vms_json *j = (void *)1;
    fsp_error err = {0};
    CHECK(vms_json_new(stdout, 0, &j, &err) == 0 && j && vms_json_sink(j)->entry);
    vms_json_free(j);
}

int main(void)
{
    RUN(test_parse_size);
    RUN(test_parse_ref);
    RUN(test_error_kind_names);
    RUN(test_wbuf_cannot_grow);
    RUN(test_json_new);
    return check_failures;
}
