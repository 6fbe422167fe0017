/* Names in output: the text quoting and the lossless JSON member. */
#include "check.h"
#include "vmsync.h"

#include <stdlib.h>
#include <string.h>

typedef void (*writer)(FILE *out, const char *s);

/* What W prints for S, in a buffer the caller frees. */
static char *printed(writer w, const char *s)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    w(f, s);
    fclose(f);
    return buf;
}

static bool prints_as(writer w, const char *s, const char *want)
{
    char *got = printed(w, s);
    bool same = !strcmp(got, want);
    if (!same)
        fprintf(stderr, "printed %s, expected %s\n", got, want);
    free(got);
    return same;
}

static void member(FILE *out, const char *s) { vms_json_member(out, "path", s); }

static void test_plain_names_print_as_they_are(void)
{
    CHECK(prints_as(vms_put_name, "/etc/hosts", "/etc/hosts"));
    CHECK(prints_as(vms_put_name, "/caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "/caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
    CHECK(prints_as(vms_put_name, "a b -> c (d)", "a b -> c (d)"));
    CHECK(prints_as(vms_put_name, "", ""));
    CHECK(prints_as(vms_put_quoted, "label", "\"label\""));
}

static void test_names_are_quoted_as_git_does(void)
{
    CHECK(prints_as(vms_put_name, "/new\nD /etc/shadow", "\"/new\\nD /etc/shadow\""));
    CHECK(prints_as(vms_put_name, "\a\b\t\n\v\f\r", "\"\\a\\b\\t\\n\\v\\f\\r\""));
    CHECK(prints_as(vms_put_name, "esc\x1b[31m", "\"esc\\033[31m\""));
    CHECK(prints_as(vms_put_name, "del\x7f", "\"del\\177\""));
    CHECK(prints_as(vms_put_name, "quo\"te\\back", "\"quo\\\"te\\\\back\""));
    CHECK(prints_as(vms_put_name, "twin\xff", "\"twin\\377\""));
    CHECK(prints_as(vms_put_name, "c1\xc2\x9b", "\"c1\\302\\233\"")); /* U+009B, CSI */
    CHECK(prints_as(vms_put_name, "nbsp\xc2\xa0", "nbsp\xc2\xa0"));
}

static void test_bytes_that_are_not_utf8(void)
{
    CHECK(prints_as(vms_put_name, "\xc0\xaf", "\"\\300\\257\""));             /* overlong "/" */
    CHECK(prints_as(vms_put_name, "\xed\xa0\x80", "\"\\355\\240\\200\""));    /* a surrogate */
    CHECK(prints_as(vms_put_name, "\xf4\x90\x80\x80", "\"\\364\\220\\200\\200\"")); /* past U+10FFFF */
    CHECK(prints_as(vms_put_name, "\xe2\x82", "\"\\342\\202\""));             /* cut short */
    CHECK(!vms_utf8_valid("\xe2\x82"));
    CHECK(vms_utf8_valid("\xe2\x82\xac"));
    CHECK(vms_utf8_len("") == 0);
}

static void test_every_byte_prints_without_control_characters(void)
{
    for (int c = 1; c < 256; c++) {
        char name[4] = {'a', (char)c, 'b', 0};
        char *got = printed(vms_put_name, name);
        for (const char *p = got; *p; p++)
            CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
        CHECK(vms_utf8_valid(got));
        CHECK(vms_name_is_plain(name) == !strcmp(got, name));
        free(got);
    }
}

static void test_text_escapes_controls_only(void)
{
    CHECK(prints_as(vms_put_text, "a \"b\" c\\d\ne\x1b\xff", "a \"b\" c\\d\\ne\\033\\377"));
}

static void test_json_member_keeps_the_bytes(void)
{
    CHECK(prints_as(member, "/a\n", "\"path\":\"/a\\n\""));
    CHECK(prints_as(member, "/t\xff", "\"path\":\"/t\\ufffd\",\"path_bytes\":\"2f74ff\""));
    CHECK(prints_as(member, "/t\xfe", "\"path\":\"/t\\ufffd\",\"path_bytes\":\"2f74fe\""));
    CHECK(prints_as(member, NULL, "\"path\":null"));
}

int main(void)
{
    RUN(test_plain_names_print_as_they_are);
    RUN(test_names_are_quoted_as_git_does);
    RUN(test_bytes_that_are_not_utf8);
    RUN(test_every_byte_prints_without_control_characters);
    RUN(test_text_escapes_controls_only);
    RUN(test_json_member_keeps_the_bytes);
    return check_failures ? 1 : 0;
}
