/* The HTTP/1.1 front end (llhttp): client connections, requests turned into
 * streams, responses written back. */
#ifndef SLUICE_HTTP1_H
#define SLUICE_HTTP1_H

#include "core/gateway.h"

/* For listener_start (front/listener.h). */
extern const front_end http1_front_end;

#endif
