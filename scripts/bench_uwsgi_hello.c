/* "Hello, world!\n" as a uWSGI request handler written in C, for the `c`
 * section of scripts/bench (nginx -> uWSGI over a Unix socket). Loaded with
 *   uwsgi --plugin symcall --dlopen ./bench_uwsgi_hello.so --symcall sluice_bench_hello
 * and reached with `uwsgi_modifier1 18` (the symcall plugin). Debian ships no
 * uwsgi.h, so the four API functions used are declared here; the request
 * stays an opaque pointer. */
#include <stddef.h>
#include <stdint.h>

struct wsgi_request;
int uwsgi_response_prepare_headers(struct wsgi_request *, char *, uint16_t);
int uwsgi_response_add_header(struct wsgi_request *, char *, uint16_t, char *, uint16_t);
int uwsgi_response_write_body_do(struct wsgi_request *, char *, size_t);

int sluice_bench_hello(struct wsgi_request *r);

int sluice_bench_hello(struct wsgi_request *r)
{
	uwsgi_response_prepare_headers(r, "200 OK", 6);
	uwsgi_response_add_header(r, "Content-Type", 12, "text/plain", 10);
	uwsgi_response_add_header(r, "Content-Length", 14, "14", 2);
	uwsgi_response_write_body_do(r, "Hello, world!\n", 14);
	return 0; /* UWSGI_OK */
}
