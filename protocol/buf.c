/* Bounded growable byte buffer used for encoder output. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_proto.h"

void sluice_buf_init(sluice_buf *b, size_t max)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->max = max ? max : SIZE_MAX;
}

void sluice_buf_close(sluice_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int sluice_buf_reserve(sluice_buf *b, size_t extra)
{
    if (extra > b->max - b->len)
        return -ENOBUFS;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->max)
        cap = b->max;
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int sluice_buf_append(sluice_buf *b, const void *data, size_t len)
{
    int rc = sluice_buf_reserve(b, len);
    if (rc < 0)
        return rc;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

void sluice_buf_consume(sluice_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}
