/* Admin listener: GET /status (JSON), GET /metrics (Prometheus text),
 * POST /pools/NAME/scale?workers=N, POST /reload. Off unless configured. */
#ifndef SLUICE_ADMIN_H
#define SLUICE_ADMIN_H

#include "core/gateway.h"

int admin_listen(gateway *gw);
void admin_close(gateway *gw);

#endif
