/* Gateway command line: sizes, durations, flags, errors. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>

#include "config.h"

Test(config, sizes)
{
    uint64_t v;
    cr_assert_eq(sluice_parse_size("123", &v), 0);
    cr_assert_eq(v, 123);
    cr_assert_eq(sluice_parse_size("64k", &v), 0);
    cr_assert_eq(v, 65536);
    cr_assert_eq(sluice_parse_size("10M", &v), 0);
    cr_assert_eq(v, 10u << 20);
    cr_assert_eq(sluice_parse_size("2g", &v), 0);
    cr_assert_eq(v, 2ull << 30);
    cr_assert_eq(sluice_parse_size("1KiB", &v), -EINVAL);
    cr_assert_eq(sluice_parse_size("1kb", &v), 0);
    cr_assert_eq(sluice_parse_size("-1", &v), -EINVAL);
    cr_assert_eq(sluice_parse_size("", &v), -EINVAL);
    cr_assert_eq(sluice_parse_size("12x", &v), -EINVAL);
    cr_assert_eq(sluice_parse_size("99999999999999999999g", &v), -EINVAL);
}

Test(config, durations)
{
    uint64_t ms;
    cr_assert_eq(sluice_parse_duration("500ms", &ms), 0);
    cr_assert_eq(ms, 500);
    cr_assert_eq(sluice_parse_duration("10s", &ms), 0);
    cr_assert_eq(ms, 10000);
    cr_assert_eq(sluice_parse_duration("30", &ms), 0);
    cr_assert_eq(ms, 30000);
    cr_assert_eq(sluice_parse_duration("1.5", &ms), 0);
    cr_assert_eq(ms, 1500);
    cr_assert_eq(sluice_parse_duration("2m", &ms), 0);
    cr_assert_eq(ms, 120000);
    cr_assert_eq(sluice_parse_duration("fast", &ms), -EINVAL);
    cr_assert_eq(sluice_parse_duration("-3s", &ms), -EINVAL);
}

static int parse(sluice_config *c, char **argv)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    sluice_config_defaults(c);
    FILE *null = fopen("/dev/null", "w");
    int rc = sluice_config_parse(c, argc, argv, null, null);
    fclose(null);
    return rc;
}

Test(config, full_command_line)
{
    sluice_config c;
    char *argv[] = {"sluice", "--listen", "[::1]:9000", "-w", "3", "--max-streams", "8",
                    "--max-body", "2g", "--response-timeout", "250ms", "--access-log", "off",
                    "--log-level", "debug", "--", "/bin/worker", "--flag", NULL};
    cr_assert_eq(parse(&c, argv), 0);
    cr_assert_str_eq(c.listen_host, "::1");
    cr_assert_eq(c.listen_port, 9000);
    cr_assert_eq(c.workers, 3);
    cr_assert_eq(c.max_streams, 8);
    cr_assert_eq(c.max_body, 2ull << 30);
    cr_assert_eq(c.response_timeout_ms, 250);
    cr_assert_str_eq(c.access_log, "off");
    cr_assert_eq(c.log_level, LOG_DEBUG);
    cr_assert_str_eq(c.command[0], "/bin/worker");
    cr_assert_str_eq(c.command[1], "--flag");
    cr_assert_null(c.command[2]);
}

Test(config, defaults_and_errors)
{
    sluice_config c;
    char *ok[] = {"sluice", "--", "w", NULL};
    cr_assert_eq(parse(&c, ok), 0);
    cr_assert_str_eq(c.listen_host, "127.0.0.1");
    cr_assert_eq(c.listen_port, 8080);
    cr_assert_eq(c.max_header_bytes, 32768);
    cr_assert_eq(c.max_body, 100u << 20);
    char *help[] = {"sluice", "--help", NULL};
    cr_assert_eq(parse(&c, help), 1);
    char *version[] = {"sluice", "-V", NULL};
    cr_assert_eq(parse(&c, version), 1);
    char *unknown[] = {"sluice", "--frobnicate", "--", "w", NULL};
    cr_assert_lt(parse(&c, unknown), 0);
    char *nocmd[] = {"sluice", "--workers", "2", NULL};
    cr_assert_lt(parse(&c, nocmd), 0);
    char *badport[] = {"sluice", "--listen", "localhost:99999", "--", "w", NULL};
    cr_assert_lt(parse(&c, badport), 0);
    char *zero[] = {"sluice", "--workers", "0", "--", "w", NULL};
    cr_assert_lt(parse(&c, zero), 0);
}
