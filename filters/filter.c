#include "filters/filter.h"

#include <string.h>

#include "cache/cache.h"
#include "filters/health_check.h"
#include "filters/router.h"
#include "xds/types.h"

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
    for (size_t i = 0; i < sizeof(factories) / sizeof(factories[0]); i++) {
        const struct tn_filter_factory *f = factories[i];
        if (tn_filter_factory_config_type(f, name) != NULL ||
            (f->route_config_type != NULL && strcmp(f->route_config_type->name, name) == 0))
            return f;
    }
    return NULL;
}

const struct tn_filter_factory *tn_filter_factory_by_name(const char *name)
{
    for (size_t i = 0; i < sizeof(factories) / sizeof(factories[0]); i++)
        if (strcmp(factories[i]->name, name) == 0)
            return factories[i];
    return NULL;
}
