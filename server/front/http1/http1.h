/* The HTTP/1.1 front end (llhttp): client connections, requests turned into
 * streams, responses written back. */
#ifndef SLUICE_HTTP1_H
#define SLUICE_HTTP1_H

#include <stdint.h>

#include "core/gateway.h"

int http_listen(gateway *gw);
void http_stop_accepting(gateway *gw);
void http_close_idle(gateway *gw);
uint32_t http_active_requests(gateway *gw);
void http_close_all(gateway *gw);

#endif
