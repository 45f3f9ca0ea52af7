/* envoy.filters.http.health_check: answers load balancers' health check
 * requests (or passes them on in pass_through_mode), failing them while the
 * admin's POST /healthcheck/fail is in force (tn_server_health_failing). */
#ifndef TN_HEALTH_CHECK_H
#define TN_HEALTH_CHECK_H

#include "filters/filter.h"

extern const struct tn_filter_factory tn_health_check_factory;

#endif
