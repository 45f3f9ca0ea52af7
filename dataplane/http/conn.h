/* Downstream connections: the HTTP connection manager (Envoy's HCM,
 * conn_manager.c) that runs a listener's filters on each request, over the
 * HTTP/1.1 codec (codec_h1.c; codec.h is the interface between them). */
#ifndef TN_CONN_H
#define TN_CONN_H

#include "dataplane/server/worker.h"

/* Accepts one connection on a worker listener (from its connection
 * callback). Errors are logged and counted; nothing is returned. */
void tn_conn_accept(struct tn_wlistener *wl);

/* Serves a connected stream socket as if it had been accepted on wl (the
 * fuzz target and tests feed connections this way). 0, or a negative uv
 * error with fd left open. */
int tn_conn_adopt(struct tn_wlistener *wl, uv_os_sock_t fd);

/* Draining: idle connections close now, busy ones after their current
 * response (which carries "Connection: close"). */
void tn_conn_drain_all(struct tn_worker *w);

/* Closes every connection at once (shutdown after the drain time). */
void tn_conn_close_all(struct tn_worker *w);

/* The connections accepted by listener l: drained as tn_conn_drain_all
 * does (now: closed at once, the drain time being over). */
struct tn_listener;
void tn_conn_drain_listener(struct tn_worker *w, const struct tn_listener *l, bool now);

/* Once per loop iteration (nothing of a request is on the stack): frees the
 * streams the worker's free list holds beyond what it keeps, and returns
 * memory to the system after many connections closed. */
void tn_conn_quiescent(struct tn_worker *w);

/* Frees the worker's free list (the loop has ended). */
void tn_conn_worker_done(struct tn_worker *w);

#endif
