/* xDS from a file: Envoy's ConfigSource.path_config_source (and the
 * deprecated `path`).
 *
 * The file holds one envoy.service.discovery.v3.DiscoveryResponse — YAML or
 * JSON, or binary proto when it ends in ".pb" — whose resources are Any.
 * It is read at once and again whenever it changes; writers replace it
 * atomically (a temp file mv'd onto the path), so the watch is on the
 * directory, not on the file's inode: the file's own directory, reacting to
 * events naming the file, or `watched_directory` when given, reacting to any
 * event in it (Kubernetes swaps a ConfigMap's ..data symlink there). Bursts
 * are coalesced by a 50 ms timer. When the directory cannot be watched (it
 * does not exist, inotify limits) the path is stat'ed every second instead,
 * for the subscription's life.
 *
 * There is no NACK: a read that fails, does not parse or is rejected by the
 * consumer changes nothing — the last good config stays — and is logged
 * (warning, component "config") and counted. Bytes identical to the last
 * accepted read are not handed over again (editors and touch fire events
 * without changes), nor counted. A file removed while watched is logged and
 * not counted (Envoy does not react to removals); writing it again is an
 * ordinary change. */
#ifndef TN_XDS_FILESUB_H
#define TN_XDS_FILESUB_H

#include <stdint.h>
#include <uv.h>

#include "dataplane/core/err.h"
#include "xds/ads.h"

struct tn_filesub;

/* Starts watching and reads `path` before returning; every good read goes to
 * cb as a state-of-the-world update (delta false; version = version_info;
 * type_url = the response's type_url, else the first resource's, else "";
 * each resource: name and version NULL, type_url and value/len from its Any,
 * valid only during the call). cb returns 0 to accept, or -1 with err set to
 * reject (logged as a warning with the file and err's text). The initial
 * read failing (missing file, bad YAML) is logged and counted, not fatal:
 * the file is picked up when it appears. `path` and `watched_directory`
 * (may be NULL) are copied. Returns NULL with err set only when out of
 * memory (a directory that cannot be watched falls back to polling); cb has
 * not been called then, and handles already made are closing on `loop` (run
 * it before uv_loop_close). */
struct tn_filesub *tn_filesub_new(uv_loop_t *loop, const char *path, const char *watched_directory, tn_ads_update_cb cb,
                                  void *arg, struct tn_err *err);

/* Envoy's <prefix>.update_attempt / _success / _rejected / _failure:
 * attempts are reads with new bytes; failure = the file could not be read or
 * parsed; rejected = cb returned -1. version is the last accepted
 * version_info (NULL before one), owned by the subscription. */
struct tn_filesub_stats {
    uint64_t update_attempt, update_success, update_rejected, update_failure;
    char *version;
};
const struct tn_filesub_stats *tn_filesub_stats(const struct tn_filesub *f);

/* Stops watching: cb is not called again. The handles close on the loop and
 * the memory is freed in their close callbacks. NULL is a no-op. */
void tn_filesub_close(struct tn_filesub *f);

#endif
