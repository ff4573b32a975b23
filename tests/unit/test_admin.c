/* Admin listener: who may use the mutating endpoints (POST /reload,
 * POST /pools/NAME/scale). The e2e tests (tests/e2e/test_admin_orch.py)
 * cover the HTTP side; this covers the decision, including addresses the
 * test machine may not have. */
#include <criterion/criterion.h>
#include <string.h>

#include "admin/admin.h"

static admin_auth auth(const char *token, bool local, const char *header)
{
    return admin_authorize(token, local, header, header ? strlen(header) : 0);
}

Test(admin, local_addresses)
{
    cr_assert(admin_address_is_local("unix:/run/sluice/admin.sock"));
    cr_assert(admin_address_is_local("127.0.0.1:9090"));
    cr_assert(admin_address_is_local("127.1.2.3:9090"));
    cr_assert(admin_address_is_local("[::1]:9090"));
    cr_assert(admin_address_is_local("[::ffff:127.0.0.1]:9090"));
    cr_assert_not(admin_address_is_local("0.0.0.0:9090"), "every address");
    cr_assert_not(admin_address_is_local("[::]:9090"));
    cr_assert_not(admin_address_is_local("10.1.2.3:9090"));
    cr_assert_not(admin_address_is_local("192.0.2.2:9090"));
    cr_assert_not(admin_address_is_local("128.0.0.1:9090"));
    cr_assert_not(admin_address_is_local("[fd00::2]:9090"));
    cr_assert_not(admin_address_is_local("[::ffff:10.0.0.1]:9090"));
    cr_assert_not(admin_address_is_local("localhost:9090"), "not numeric: not trusted");
    cr_assert_not(admin_address_is_local("garbage"));
}

Test(admin, without_a_token)
{
    cr_assert_eq(auth(NULL, true, NULL), ADMIN_AUTH_OK, "loopback or Unix socket: open as before");
    cr_assert_eq(auth("", true, NULL), ADMIN_AUTH_OK);
    cr_assert_eq(auth("", true, "Bearer whatever"), ADMIN_AUTH_OK);
    cr_assert_eq(auth("", false, NULL), ADMIN_AUTH_NEEDS_TOKEN, "elsewhere: refused");
    cr_assert_eq(auth("", false, "Bearer whatever"), ADMIN_AUTH_NEEDS_TOKEN);
}

Test(admin, with_a_token)
{
    for (int local = 0; local < 2; local++) {
        cr_assert_eq(auth("s3cret", local, "Bearer s3cret"), ADMIN_AUTH_OK);
        cr_assert_eq(auth("s3cret", local, "bearer   s3cret  "), ADMIN_AUTH_OK, "scheme case, spaces");
        cr_assert_eq(auth("s3cret", local, "BEARER\ts3cret"), ADMIN_AUTH_OK);
        cr_assert_eq(auth("s3cret", local, NULL), ADMIN_AUTH_MISSING, "even on loopback");
        cr_assert_eq(auth("s3cret", local, ""), ADMIN_AUTH_MISSING);
        cr_assert_eq(auth("s3cret", local, "Bearer"), ADMIN_AUTH_MISSING);
        cr_assert_eq(auth("s3cret", local, "Bearer  "), ADMIN_AUTH_MISSING);
        cr_assert_eq(auth("s3cret", local, "Basic czNjcmV0"), ADMIN_AUTH_MISSING, "another scheme");
        cr_assert_eq(auth("s3cret", local, "Bearers3cret"), ADMIN_AUTH_MISSING);
        cr_assert_eq(auth("s3cret", local, "Bearer s3cre"), ADMIN_AUTH_WRONG, "a prefix");
        cr_assert_eq(auth("s3cret", local, "Bearer s3cret2"), ADMIN_AUTH_WRONG, "longer");
        cr_assert_eq(auth("s3cret", local, "Bearer S3CRET"), ADMIN_AUTH_WRONG, "tokens are case-sensitive");
        cr_assert_eq(auth("s3cret", local, "Bearer s3c ret"), ADMIN_AUTH_WRONG);
    }
    /* the length counts, not a NUL inside */
    cr_assert_eq(admin_authorize("ab", true, "Bearer ab\0", 10), ADMIN_AUTH_WRONG);
    cr_assert_eq(admin_authorize("ab", true, "Bearer abc", 9), ADMIN_AUTH_OK);
}
