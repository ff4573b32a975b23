/* Admin listener: GET /status (JSON), GET /metrics (Prometheus text),
 * POST /pools/NAME/scale?workers=N, POST /reload. Off unless configured. */
#ifndef SLUICE_ADMIN_H
#define SLUICE_ADMIN_H

#include "core/gateway.h"

/* Start the admin listener on gw->cfg->admin (its state: gw->admin). */
int admin_listen(gateway *gw);
/* Stop it; its memory is freed once the loop ran the close callback. */
void admin_close(gateway *gw);

#endif
