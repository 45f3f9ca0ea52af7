#include "dataplane/http/h1.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

void tn_h1_head_init(struct tn_h1_head *hd, size_t limit)
{
    memset(hd, 0, sizeof(*hd));
    hd->limit = limit;
}

void tn_h1_head_dispose(struct tn_h1_head *hd)
{
    free(hd->buf);
    free(hd->h);
    free(hd->e);
    memset(hd, 0, sizeof(*hd));
}

void tn_h1_head_reset(struct tn_h1_head *hd)
{
    hd->len = 0;
    hd->n = 0;
    hd->state = 0;
    hd->url_off = hd->url_len = 0;
}

static int append(struct tn_h1_head *hd, const char *p, size_t n, bool lower)
{
    if (hd->len + n > hd->limit)
        return TN_H1_TOO_LARGE;
    if (hd->len + n > hd->cap) {
        size_t cap = hd->cap ? hd->cap : 1024;
        while (cap < hd->len + n)
            cap *= 2;
        char *b = realloc(hd->buf, cap);
        if (b == NULL)
            return -1;
        hd->buf = b;
        hd->cap = cap;
    }
    char *d = hd->buf + hd->len;
    if (lower)
        for (size_t i = 0; i < n; i++)
            d[i] = (p[i] >= 'A' && p[i] <= 'Z') ? (char)(p[i] | 0x20) : p[i];
    else
        memcpy(d, p, n);
    hd->len += n;
    return 0;
}

int tn_h1_head_url(struct tn_h1_head *hd, const char *p, size_t n)
{
    if (hd->url_len == 0)
        hd->url_off = hd->len;
    hd->url_len += n;
    return append(hd, p, n, false);
}

int tn_h1_head_field(struct tn_h1_head *hd, const char *p, size_t n)
{
    if (hd->state != 1) {
        if (hd->max_headers && hd->n >= hd->max_headers)
            return TN_H1_TOO_MANY;
        if (hd->n == hd->ecap) {
            size_t cap = hd->ecap ? hd->ecap * 2 : 32;
            void *e = realloc(hd->e, cap * sizeof(*hd->e));
            if (e == NULL)
                return TN_H1_TOO_LARGE;
            hd->e = e;
            hd->ecap = cap;
        }
        hd->e[hd->n].no = hd->len;
        hd->e[hd->n].nl = 0;
        hd->e[hd->n].vo = 0;
        hd->e[hd->n].vl = 0;
        hd->n++;
        hd->state = 1;
    }
    hd->e[hd->n - 1].nl += n;
    return append(hd, p, n, true);
}

int tn_h1_head_value(struct tn_h1_head *hd, const char *p, size_t n)
{
    if (hd->n == 0)
        return TN_H1_TOO_LARGE;
    if (hd->state != 2) {
        hd->e[hd->n - 1].vo = hd->len;
        hd->state = 2;
    }
    hd->e[hd->n - 1].vl += n;
    return append(hd, p, n, false);
}

int tn_h1_head_finish(struct tn_h1_head *hd)
{
    if (hd->hcap < hd->n || hd->h == NULL) {
        size_t cap = hd->ecap ? hd->ecap : 1;
        struct tn_header *h = realloc(hd->h, cap * sizeof(*h));
        if (h == NULL)
            return -1;
        hd->h = h;
        hd->hcap = cap;
    }
    struct tn_header *h = hd->h;
    for (size_t i = 0; i < hd->n; i++) {
        const char *v = hd->buf + hd->e[i].vo;
        uint32_t vl = hd->e[i].vl;
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            vl--;
        h[i] = (struct tn_header){.name = hd->buf + hd->e[i].no, .name_len = hd->e[i].nl, .value = v, .value_len = vl};
    }
    return 0;
}

bool tn_h1_has_token(const char *v, size_t vl, const char *token)
{
    size_t tl = strlen(token), i = 0;
    while (i < vl) {
        while (i < vl && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < vl && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, token, tl) == 0)
            return true;
    }
    return false;
}

bool tn_h1_te_is_chunked(const char *v, size_t vl)
{
    while (vl && (*v == ' ' || *v == '\t'))
        v++, vl--;
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        vl--;
    return vl == 7 && strncasecmp(v, "chunked", 7) == 0;
}

/* RFC 3986: unreserved / sub-delims / pct-encoded, the reg-name alphabet. */
static bool regname_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           strchr("-._~!$&'()*+,;=%", ch) != NULL;
}

bool tn_h1_authority_ok(const char *v, size_t vl)
{
    size_t i = 0;
    if (vl == 0)
        return false;
    if (v[0] == '[') {
        /* IP-literal: hex digits, ':' and '.' (IPv4-mapped tail) inside brackets */
        for (i = 1; i < vl && v[i] != ']'; i++)
            if (!((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f') || (v[i] >= 'A' && v[i] <= 'F') ||
                  v[i] == ':' || v[i] == '.'))
                return false;
        if (i == vl || i == 1)
            return false;
        i++;
    } else {
        for (; i < vl && v[i] != ':'; i++)
            if (v[i] == '\0' || !regname_char((unsigned char)v[i]))
                return false;
        if (i == 0)
            return false;
    }
    if (i == vl)
        return true;
    if (v[i] != ':')
        return false;
    for (i++; i < vl; i++)
        if (v[i] < '0' || v[i] > '9')
            return false;
    return true;
}

int tn_h1_split_absolute(const char *u, size_t n, const char **auth, size_t *auth_len, const char **path,
                         size_t *path_len)
{
    size_t i;
    if (n > 7 && strncasecmp(u, "http://", 7) == 0)
        i = 7;
    else if (n > 8 && strncasecmp(u, "https://", 8) == 0)
        i = 8;
    else
        return -1;
    size_t a = i;
    while (i < n && u[i] != '/' && u[i] != '?' && u[i] != '#')
        i++;
    if (!tn_h1_authority_ok(u + a, i - a))
        return -1; /* '@' (userinfo) is outside the alphabet too */
    *auth = u + a;
    *auth_len = i - a;
    *path = u + i;
    *path_len = n - i;
    return 0;
}

static bool name_is(const struct tn_header *h, const char *s, size_t n)
{
    return h->name_len == n && memcmp(h->name, s, n) == 0;
}
#define NAME_IS(h, lit) name_is((h), lit, sizeof(lit) - 1)

bool tn_h1_hop_by_hop(const struct tn_header *h, const struct tn_header *conn)
{
    if (NAME_IS(h, "connection") || NAME_IS(h, "keep-alive") || NAME_IS(h, "proxy-connection") ||
        NAME_IS(h, "transfer-encoding") || NAME_IS(h, "upgrade") || NAME_IS(h, "te") ||
        NAME_IS(h, "proxy-authenticate") || NAME_IS(h, "trailer"))
        return true;
    if (conn == NULL || h->name_len > 64)
        return false;
    char name[65];
    memcpy(name, h->name, h->name_len);
    name[h->name_len] = '\0';
    return tn_h1_has_token(conn->value, conn->value_len, name);
}

const char *tn_h1_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 102: return "Processing";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

int tn_h1_put_header(char *out, size_t cap, size_t *pos, const char *name, size_t nl, const char *value, size_t vl)
{
    if (*pos + nl + vl + 4 > cap)
        return -1;
    char *d = out + *pos;
    memcpy(d, name, nl);
    d += nl;
    *d++ = ':';
    *d++ = ' ';
    memcpy(d, value, vl);
    d += vl;
    *d++ = '\r';
    *d++ = '\n';
    *pos = (size_t)(d - out);
    return 0;
}

size_t tn_h1_u64(char *out, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

size_t tn_h1_chunk_size(char *out, uint64_t v)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = hex[v & 15];
        v >>= 4;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n++] = '\r';
    out[n++] = '\n';
    return n;
}
