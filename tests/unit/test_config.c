/* Gateway command line: sizes, durations, flags, errors. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"

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
    if (rc != 0)
        sluice_config_free(c);
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
    cr_assert_eq(c.n_pools, 1);
    const sluice_pool_config *p = &c.pools[0];
    cr_assert_str_eq(p->name, "default");
    cr_assert_eq(p->min_workers, 3);
    cr_assert_eq(p->max_workers, 3);
    cr_assert_eq(p->max_streams, 8);
    cr_assert_eq(p->max_body, 2ull << 30);
    cr_assert_eq(p->response_timeout_ms, 250);
    cr_assert_str_eq(c.access_log, "off");
    cr_assert_eq(c.log_level, LOG_DEBUG);
    cr_assert_str_eq(p->command[0], "/bin/worker");
    cr_assert_str_eq(p->command[1], "--flag");
    cr_assert_null(p->command[2]);
    sluice_config_free(&c);
}

Test(config, defaults_and_errors)
{
    sluice_config c;
    char *ok[] = {"sluice", "--", "w", NULL};
    cr_assert_eq(parse(&c, ok), 0);
    cr_assert_str_eq(c.listen_host, "127.0.0.1");
    cr_assert_eq(c.listen_port, 8080);
    cr_assert_eq(c.max_header_bytes, 32768);
    cr_assert_eq(c.pools[0].max_body, 100u << 20);
    sluice_config_free(&c);
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
    /* workers 0: only workers that attach by themselves serve the pool */
    char *zero[] = {"sluice", "--workers", "0", "--", "w", NULL};
    cr_assert_eq(parse(&c, zero), 0);
    cr_assert_eq(c.pools[0].max_workers, 0);
    sluice_config_free(&c);
}

/* Write `text` to a temporary config file; returns its path (static). */
static const char *write_conf(const char *text)
{
    static char path[64];
    strcpy(path, "/tmp/sluice-test-XXXXXX.ini");
    int fd = mkstemps(path, 4);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

Test(config_file, pools_routes_and_server)
{
    const char *path = write_conf(
        "# a comment\n"
        "[server]\n"
        "listen = 0.0.0.0:9000\n"
        "admin = 127.0.0.1:9001\n"
        "max_header_bytes = 16k\n"
        "\n"
        "[pool:app]\n"
        "command = python3 -m sluice.asgi 'my app:app'\n"
        "min_workers = 1\n"
        "max_workers = 4\n"
        "env = A=1\n"
        "env = B=two words\n"
        "max_requests = 1000\n"
        "max_requests_jitter = 100\n"
        "memory_limit = 512m\n"
        "response_timeout = 5s\n"
        "\n"
        "[pool:static]\n"
        "command = /bin/worker\n"
        "workers = 2\n"
        "\n"
        "[route:api]\n"
        "host = api.example.com\n"
        "path = /v1/\n"
        "pool = app\n");
    sluice_config c;
    char *argv[] = {"sluice", "--config", (char *)path, NULL};
    cr_assert_eq(parse(&c, argv), 0);
    cr_assert_eq(c.listen_port, 9000);
    cr_assert_str_eq(c.listen_host, "0.0.0.0");
    cr_assert_str_eq(c.admin, "127.0.0.1:9001");
    cr_assert_eq(c.max_header_bytes, 16384);
    cr_assert_eq(c.n_pools, 2);
    const sluice_pool_config *app = sluice_config_pool(&c, "app");
    cr_assert_not_null(app);
    cr_assert_str_eq(app->command[0], "python3");
    cr_assert_str_eq(app->command[3], "my app:app", "quotes group words");
    cr_assert_null(app->command[4]);
    cr_assert_eq(app->min_workers, 1);
    cr_assert_eq(app->max_workers, 4);
    cr_assert_eq(app->n_env, 2);
    cr_assert_str_eq(app->env[1], "B=two words");
    cr_assert_eq(app->max_requests, 1000);
    cr_assert_eq(app->memory_limit, 512u << 20);
    cr_assert_eq(app->response_timeout_ms, 5000);
    cr_assert_eq(sluice_config_pool(&c, "static")->min_workers, 2);
    cr_assert_eq(c.n_routes, 1);
    cr_assert_str_eq(c.routes[0].host, "api.example.com");
    cr_assert_str_eq(c.routes[0].pool, "app");
    sluice_config_free(&c);
    unlink(path);
}

/* Each broken file must fail with its line number. */
Test(config_file, errors_have_line_numbers)
{
    struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"[pool:a]\ncommand = w\nworkers = many\n", ":3: invalid value for 'workers'"},
        {"[pool:a]\ncommand = w\n\nfrobnicate = 1\n", ":4: unknown key 'frobnicate'"},
        {"[server]\nlisten = 1.2.3.4\n", ":2: invalid value for 'listen'"},
        {"[pools:a]\ncommand = w\n", ":2: unknown section [pools:a]"},
        {"[pool:a]\ncommand = w\nmin_workers = 3\nmax_workers = 2\n", "max_workers (2) must be at least min_workers (3)"},
        {"[pool:a]\ncommand = w\n[route:r]\npool = nope\n", "route 'r' names unknown pool 'nope'"},
        {"[pool:a]\nworkers = 1\n", "pool 'a' has no command"},
        {"[pool:a]\ncommand = w $(reboot)\n", ":2: invalid value for 'command'"},
        {"[pool:a]\ncommand = w\nenv = SLUICE_SOCKET=/tmp/x\n", ":3: invalid value for 'env'"},
        {"[pool:a]\ncommand = w\nenv = SLUICE_WORKER_ID=7\n", ":3: invalid value for 'env'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = write_conf(cases[i].text);
        char *msg = NULL;
        size_t len = 0;
        FILE *err = open_memstream(&msg, &len);
        sluice_config c;
        char *argv[] = {"sluice", "--check-config", (char *)path, NULL};
        sluice_config_defaults(&c);
        FILE *null = fopen("/dev/null", "w");
        int rc = sluice_config_parse(&c, 3, argv, null, err);
        fclose(null);
        fclose(err);
        cr_expect_lt(rc, 0, "case %zu should fail", i);
        cr_expect(msg && strstr(msg, cases[i].want), "case %zu: got '%s', want '%s'", i, msg ? msg : "",
                  cases[i].want);
        free(msg);
        sluice_config_free(&c);
        unlink(path);
    }
}

Test(config_file, pool_flags_rejected_with_config)
{
    const char *path = write_conf("[pool:a]\ncommand = w\n");
    sluice_config c;
    char *argv[] = {"sluice", "--config", (char *)path, "--workers", "3", NULL};
    cr_assert_lt(parse(&c, argv), 0);
    char *ok[] = {"sluice", "--config", (char *)path, "--listen", "127.0.0.1:7000", NULL};
    cr_assert_eq(parse(&c, ok), 0);
    cr_assert_eq(c.listen_port, 7000, "server flags override the file");
    sluice_config_free(&c);
    unlink(path);
}

Test(config, admin_token_and_shutdown_delay_flags)
{
    sluice_config c;
    char *dflt[] = {"sluice", "--", "w", NULL};
    cr_assert_eq(parse(&c, dflt), 0);
    cr_assert_str_eq(c.admin_token, "", "no token by default");
    cr_assert_eq(c.shutdown_delay_ms, 0, "no shutdown delay by default");
    sluice_config_free(&c);
    char *argv[] = {"sluice", "--admin", "127.0.0.1:9001", "--admin-token", "s3cr3t-T0ken_~+/=",
                    "--shutdown-delay", "5s", "--", "w", NULL};
    cr_assert_eq(parse(&c, argv), 0);
    cr_assert_str_eq(c.admin_token, "s3cr3t-T0ken_~+/=");
    cr_assert_eq(c.shutdown_delay_ms, 5000);
    sluice_config_free(&c);
    char *ms[] = {"sluice", "--shutdown-delay", "250ms", "--", "w", NULL};
    cr_assert_eq(parse(&c, ms), 0);
    cr_assert_eq(c.shutdown_delay_ms, 250);
    sluice_config_free(&c);
    char *baddelay[] = {"sluice", "--shutdown-delay", "soon", "--", "w", NULL};
    cr_assert_lt(parse(&c, baddelay), 0);
    char *empty[] = {"sluice", "--admin-token", "", "--", "w", NULL};
    cr_assert_lt(parse(&c, empty), 0);
}

/* An invalid token is refused without being echoed (it is a secret). */
Test(config, admin_token_invalid_is_not_printed)
{
    char longtok[300];
    memset(longtok, 'a', sizeof longtok - 1);
    longtok[sizeof longtok - 1] = 0;
    const char *bad[] = {"has space-SECRET", "tab\tSECRET", "SECRET\x7f", longtok};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *msg = NULL;
        size_t len = 0;
        FILE *err = open_memstream(&msg, &len);
        sluice_config c;
        char *argv[] = {"sluice", "--admin-token", (char *)bad[i], "--", "w", NULL};
        FILE *null = fopen("/dev/null", "w");
        int rc = sluice_config_parse(&c, 5, argv, null, err);
        fclose(null);
        fclose(err);
        cr_expect_lt(rc, 0, "token %zu should be refused", i);
        cr_expect(msg && strstr(msg, "--admin-token"), "got '%s'", msg ? msg : "");
        cr_expect(msg && !strstr(msg, "SECRET") && !strstr(msg, "aaaa"), "the token is echoed: '%s'", msg);
        free(msg);
        sluice_config_free(&c);
    }
}

Test(config_file, admin_token_and_shutdown_delay_keys)
{
    const char *path = write_conf("[server]\nadmin = 0.0.0.0:9001\nadmin_token = from-file\n"
                                  "shutdown_delay = 2.5s\ngraceful_timeout = 20s\n"
                                  "[pool:a]\ncommand = w\n");
    sluice_config c;
    char *argv[] = {"sluice", "--config", (char *)path, NULL};
    cr_assert_eq(parse(&c, argv), 0);
    cr_assert_str_eq(c.admin_token, "from-file");
    cr_assert_eq(c.shutdown_delay_ms, 2500);
    sluice_config_free(&c);
    char *over[] = {"sluice", "--config", (char *)path, "--admin-token", "from-flag", "--shutdown-delay", "0",
                    NULL};
    cr_assert_eq(parse(&c, over), 0);
    cr_assert_str_eq(c.admin_token, "from-flag", "the flag overrides the file");
    cr_assert_eq(c.shutdown_delay_ms, 0);
    sluice_config_free(&c);
    unlink(path);

    /* a bad token in the file: the line, not the token */
    path = write_conf("[server]\nadmin_token = two SECRET words\n[pool:a]\ncommand = w\n");
    char *msg = NULL;
    size_t len = 0;
    FILE *err = open_memstream(&msg, &len);
    char *check[] = {"sluice", "--check-config", (char *)path, NULL};
    sluice_config_defaults(&c);
    FILE *null = fopen("/dev/null", "w");
    cr_expect_lt(sluice_config_parse(&c, 3, check, null, err), 0);
    fclose(null);
    fclose(err);
    cr_expect(msg && strstr(msg, ":2: invalid value for 'admin_token'"), "got '%s'", msg ? msg : "");
    cr_expect(msg && !strstr(msg, "SECRET"), "the token is echoed: '%s'", msg);
    free(msg);
    sluice_config_free(&c);
    unlink(path);
}

/* SLUICE_ADMIN_TOKEN applies when neither the file nor --admin-token
 * sets a token. (Criterion runs each test in its own process.) */
Test(config_file, admin_token_from_the_environment)
{
    setenv("SLUICE_ADMIN_TOKEN", "from-env", 1);
    sluice_config c;
    char *cli[] = {"sluice", "--", "w", NULL};
    cr_assert_eq(parse(&c, cli), 0);
    cr_assert_str_eq(c.admin_token, "from-env");
    sluice_config_free(&c);
    char *flag[] = {"sluice", "--admin-token", "from-flag", "--", "w", NULL};
    cr_assert_eq(parse(&c, flag), 0);
    cr_assert_str_eq(c.admin_token, "from-flag");
    sluice_config_free(&c);
    const char *path = write_conf("[server]\nadmin_token = from-file\n[pool:a]\ncommand = w\n");
    char *file[] = {"sluice", "--config", (char *)path, NULL};
    cr_assert_eq(parse(&c, file), 0);
    cr_assert_str_eq(c.admin_token, "from-file");
    sluice_config_free(&c);
    unlink(path);
    path = write_conf("[pool:a]\ncommand = w\n");
    char *file2[] = {"sluice", "--config", (char *)path, NULL};
    cr_assert_eq(parse(&c, file2), 0);
    cr_assert_str_eq(c.admin_token, "from-env", "a file without a token: the environment's");
    sluice_config_free(&c);
    unlink(path);
    setenv("SLUICE_ADMIN_TOKEN", "", 1);
    cr_assert_eq(parse(&c, cli), 0);
    cr_assert_str_eq(c.admin_token, "", "an empty variable sets none");
    sluice_config_free(&c);
    setenv("SLUICE_ADMIN_TOKEN", "bad token", 1);
    cr_assert_lt(parse(&c, cli), 0);
    unsetenv("SLUICE_ADMIN_TOKEN");
}

/* worker_listen: the schemes, the older tcp_listen spelling, repetition,
 * and what each needs. */
Test(config_file, worker_listen)
{
    const char *path = write_conf("[pool:a]\nworkers = 0\ntoken = t\n"
                                  "worker_listen = tls:0.0.0.0:7001\nworker_listen = tcp:[::1]:7002\n"
                                  "worker_listen = 127.0.0.1:7003\ntcp_listen = 127.0.0.1:7004\n"
                                  "worker_listen = unix:/run/sluice/w.sock\n"
                                  "tls_cert = c.pem\ntls_key = k.pem\nclient_ca = ca.pem\n");
    sluice_config c;
    char *argv[] = {"sluice", "--config", (char *)path, NULL};
    cr_assert_eq(parse(&c, argv), 0);
    const sluice_pool_config *p = &c.pools[0];
    cr_assert_eq(p->n_worker_listen, 5);
    cr_assert_str_eq(p->worker_listen[0], "tls:0.0.0.0:7001");
    cr_assert_str_eq(p->worker_listen[1], "tcp:[::1]:7002");
    cr_assert_str_eq(p->worker_listen[2], "tcp:127.0.0.1:7003");
    cr_assert_str_eq(p->worker_listen[3], "tcp:127.0.0.1:7004");
    cr_assert_str_eq(p->worker_listen[4], "unix:/run/sluice/w.sock");
    cr_assert_str_eq(p->client_ca, "ca.pem");
    cr_assert_null(p->command, "workers = 0 needs no command");
    sluice_config_free(&c);
    unlink(path);

    static const char *bad[] = {
        "[pool:a]\nworkers = 0\nworker_listen = tcp:127.0.0.1:7001\n",            /* clear TCP, no token */
        "[pool:a]\nworkers = 0\nworker_listen = tls:127.0.0.1:7001\ntoken = t\n", /* no certificate */
        "[pool:a]\nworkers = 0\nworker_listen = tls:127.0.0.1:7001\ntls_cert = c\ntls_key = k\n", /* no credential */
        "[pool:a]\nworkers = 0\nworker_listen = udp:127.0.0.1:7001\ntoken = t\n",
        "[pool:a]\nworkers = 0\nworker_listen = tcp:127.0.0.1\ntoken = t\n",
        "[pool:a]\nworkers = 0\nworker_listen = unix:\n",
        "[pool:a]\nworkers = 0\ntls_cert = c\ntls_key = k\n", /* certificate without a tls: listener */
        "[pool:a]\nworkers = 1\n",                              /* spawned workers need a command */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        path = write_conf(bad[i]);
        char *a[] = {"sluice", "--config", (char *)path, NULL};
        cr_expect_lt(parse(&c, a), 0, "accepted: %s", bad[i]);
        unlink(path);
    }
}

Test(config, worker_listen_flags)
{
    sluice_config c;
    char *argv[] = {"sluice", "--workers", "0", "--worker-listen", "tls:127.0.0.1:7001", "--worker-listen",
                    "unix:/tmp/w.sock", "--worker-tls-cert", "c.pem", "--worker-tls-key", "k.pem",
                    "--worker-client-ca", "ca.pem", "--", "w", NULL};
    cr_assert_eq(parse(&c, argv), 0);
    cr_assert_eq(c.pools[0].n_worker_listen, 2);
    cr_assert_str_eq(c.pools[0].tls_key, "k.pem");
    cr_assert_str_eq(c.pools[0].token, "");
    sluice_config_free(&c);
    setenv("SLUICE_WORKER_TOKEN", "from-env", 1);
    char *tcp[] = {"sluice", "--worker-listen", "tcp:127.0.0.1:7001", "--", "w", NULL};
    cr_assert_eq(parse(&c, tcp), 0, "the token comes from SLUICE_WORKER_TOKEN");
    cr_assert_str_eq(c.pools[0].token, "from-env");
    sluice_config_free(&c);
    char *flag[] = {"sluice", "--worker-listen", "tcp:127.0.0.1:7001", "--worker-token", "f", "--", "w", NULL};
    cr_assert_eq(parse(&c, flag), 0);
    cr_assert_str_eq(c.pools[0].token, "f");
    sluice_config_free(&c);
    const char *path = write_conf("[pool:a]\ncommand = w\n");
    char *mixed[] = {"sluice", "--config", (char *)path, "--worker-listen", "tcp:127.0.0.1:7001", NULL};
    cr_assert_lt(parse(&c, mixed), 0, "a pool flag with a config file");
    unlink(path);
}
