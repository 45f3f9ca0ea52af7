/* Outlier detection (Cluster.outlier_detection), reported by workers.
 *
 * Lock-free: each result updates the host's atomic counters; the worker whose
 * report crosses a threshold ejects the host by setting eject_until_ms
 * (base_ejection_time x number of ejections, capped at max_ejection_time),
 * unless max_ejection_percent of the set is already ejected. An ejected host
 * returns to service when its time passes. */
#ifndef TN_OUTLIER_H
#define TN_OUTLIER_H

#include <stdint.h>

#include "dataplane/cluster.h"
#include "dataplane/host.h"

/* The result of one upstream request: an HTTP status, or 0 for a connect
 * failure, timeout or reset (a gateway failure). Does nothing when the
 * cluster has no outlier_detection. Returns 1 when this report ejected the
 * host, else 0. */
int tn_outlier_report(const struct tn_cluster *c, const struct tn_host_set *set, struct tn_host *h, int status,
                      uint64_t now_ms);

#endif
