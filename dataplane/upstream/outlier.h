/* Outlier detection (Cluster.outlier_detection), reported by workers.
 *
 * Lock-free: each result updates the host's atomic counters; the worker whose
 * report crosses a threshold ejects the host by setting eject_until_ms
 * (base_ejection_time x number of ejections, capped at max_ejection_time),
 * unless max_ejection_percent of the set is already ejected. An ejected host
 * returns to service when its time passes.
 *
 * Envoy's rules, with split_external_local_origin_errors false: any 5xx and
 * any local-origin failure (status 0) count toward consecutive_5xx; 502, 503,
 * 504 and status 0 toward consecutive_gateway_failure, which a non-gateway
 * 5xx resets; any other status resets both. The report that reaches a
 * threshold restarts that counter and ejects with the enforcing_* percent
 * chance (gateway failures: 0% by default, so only the 5xx rule ejects out of
 * the box). max_ejection_percent never blocks the first ejection of a set
 * ("at least one host regardless"). An ejection lasts base_ejection_time x n,
 * capped at max(max_ejection_time, base_ejection_time); n drops by one per
 * `interval` the host stayed in service since its last ejection ended
 * (computed at the next ejection instead of Envoy's periodic sweep). */
#ifndef TN_OUTLIER_H
#define TN_OUTLIER_H

#include <stdint.h>

#include "dataplane/upstream/cluster.h"
#include "dataplane/upstream/host.h"

/* The result of one upstream request: an HTTP status, or 0 for a connect
 * failure, timeout or reset (a gateway failure). Does nothing when the
 * cluster has no outlier_detection. Returns 1 when this report ejected the
 * host, else 0. */
int tn_outlier_report(const struct tn_cluster *c, const struct tn_host_set *set, struct tn_host *h, int status,
                      uint64_t now_ms);

#endif
