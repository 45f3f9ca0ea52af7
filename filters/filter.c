/* The filter registry: the one list of every HTTP filter factory, looked up
 * by type URL or name, and walked by the server, workers and admin to run
 * the factories' hooks. A new filter is one line in TN_FILTERS. */
#include "filters/filter.h"

#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "filters/health_check.h"
#include "filters/router.h"
#include "api/pb/types.h"

/* Every HTTP filter tern has. Listed by hand: a static library's linker
 * would drop self-registering constructors nothing references. */
#define TN_FILTERS(X)                                                                                                  \
    X(tn_router_factory)                                                                                               \
    X(tn_health_check_factory)                                                                                         \
    X(tn_cache_factory)

static const struct tn_filter_factory *const factories[] = {
#define TN_X(f) &f,
    TN_FILTERS(TN_X)
#undef TN_X
};

#define N_FACTORIES (sizeof(factories) / sizeof(factories[0]))
_Static_assert(N_FACTORIES <= TN_FILTER_FACTORIES_MAX, "raise TN_FILTER_FACTORIES_MAX");

const struct tn_filter_factory *const *tn_filter_factories(size_t *n)
{
    *n = N_FACTORIES;
    return factories;
}

size_t tn_filter_factory_index(const struct tn_filter_factory *f)
{
    for (size_t i = 0; i < N_FACTORIES; i++)
        if (factories[i] == f)
            return i;
    abort(); /* a factory missing from TN_FILTERS: a build mistake, not input */
}

const ProtobufCMessageDescriptor *tn_filter_factory_config_type(const struct tn_filter_factory *f, const char *type_url)
{
    const char *name = tn_type_name(type_url);
    if (strcmp(f->config_type->name, name) == 0)
        return f->config_type;
    for (const ProtobufCMessageDescriptor *const *d = f->alt_config_types; d && *d; d++)
        if (strcmp((*d)->name, name) == 0)
            return *d;
    return NULL;
}

const struct tn_filter_factory *tn_filter_factory_by_type(const char *type_url)
{
    const char *name = tn_type_name(type_url);
    for (size_t i = 0; i < N_FACTORIES; i++) {
        const struct tn_filter_factory *f = factories[i];
        if (tn_filter_factory_config_type(f, name) != NULL ||
            (f->route_config_type != NULL && strcmp(f->route_config_type->name, name) == 0))
            return f;
    }
    return NULL;
}

const struct tn_filter_factory *tn_filter_factory_by_name(const char *name)
{
    for (size_t i = 0; i < N_FACTORIES; i++)
        if (strcmp(factories[i]->name, name) == 0)
            return factories[i];
    return NULL;
}
