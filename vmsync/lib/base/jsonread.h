/* A strict JSON reader for small documents people write (FLEET.json): the
 * whole text becomes a tree of values.  Hostile input is bounded: the text's
 * size, the nesting depth, a string's length, an object's members and the
 * tree's values; a duplicate key, a control character or NUL in a string,
 * bytes that are not UTF-8, a lone surrogate, a number JSON does not allow
 * and trailing bytes are refused, the message naming the line and column.
 * Private to libvmsync. */
#ifndef VMS_JSONREAD_H
#define VMS_JSONREAD_H

#include "fsparse.h"

#include <stddef.h>

#define VMS_JR_TEXT_MAX (16u << 20)
#define VMS_JR_DEPTH_MAX 32
#define VMS_JR_STRING_MAX 4096
#define VMS_JR_MEMBERS_MAX 256   /* members of one object */
#define VMS_JR_VALUES_MAX 1000000

enum vms_jr_type { VMS_JR_NULL, VMS_JR_BOOL, VMS_JR_NUMBER, VMS_JR_STRING, VMS_JR_ARRAY, VMS_JR_OBJECT };

struct vms_jr {
    enum vms_jr_type type;
    const char *key;       /* a member's key; NULL in an array and at the top */
    const char *str;       /* STRING */
    double num;            /* NUMBER */
    int flag;              /* BOOL */
    struct vms_jr *kids;   /* ARRAY items or OBJECT members, in order */
    size_t n_kids;
    unsigned line, column; /* where the value starts, for messages */
};

/* Parses TEXT (LEN bytes) into *OUT, freed with vms_jr_free; WHERE names the
 * input in messages (FSP_EK_FORMAT). */
int vms_jr_parse(const char *text, size_t len, const char *where, struct vms_jr **out, fsp_error *err);
void vms_jr_free(struct vms_jr *root);
/* OBJ's member KEY, or NULL. */
const struct vms_jr *vms_jr_get(const struct vms_jr *obj, const char *key);
/* "null", "a boolean", "a number", "a string", "an array", "an object". */
const char *vms_jr_type_name(enum vms_jr_type type);

#endif
