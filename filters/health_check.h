/* envoy.filters.http.health_check: answers load balancers' health check
 * requests (or passes them on in pass_through_mode), failing them while the
 * admin's POST /healthcheck/fail is in force. */
#ifndef TN_HEALTH_CHECK_H
#define TN_HEALTH_CHECK_H

#include <stdbool.h>

#include "filters/filter.h"

extern const struct tn_filter_factory tn_health_check_factory;

/* POST /healthcheck/fail (true) and /healthcheck/ok (false); any thread.
 * Workers read it without a lock. */
void tn_health_check_set_failing(bool failing);
bool tn_health_check_failing(void);

#endif
