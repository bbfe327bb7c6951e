/* ramzswap: rendering and parsing of a stats snapshot (see stats_format.h).
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * One table drives the text form in both directions, so format and parse cannot
 * drift apart; a second lists the struct fields for the JSON form.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ramzswap/stats_format.h"

/* Width of "Key:" before the value column; the longest key is CompressionRatio. */
#define KEY_COLUMN 17

enum field_kind {
        F_SIZE,  /* bytes, printed in kB */
        F_COUNT, /* plain counter */
        F_PCT,   /* a of pages_stored, in percent */
        F_RATIO, /* a / b with two decimals */
        F_MLOCK, /* facts->mlocked */
        F_IOFL,  /* facts->io_flusher */
        F_CAPS,  /* facts->capabilities */
        F_CODEC, /* facts->compressor */
};

struct text_field {
        const char *key;
        enum field_kind kind;
        size_t a, b; /* offsets into struct rzs_stats */
};

#define OFF(f) offsetof(struct rzs_stats, f)

/* The text form, in its documented order. */
static const struct text_field text_fields[] = {
    {"DiskSize", F_SIZE, OFF(disksize), 0},
    {"MemLimit", F_SIZE, OFF(memlimit), 0},
    {"NumReads", F_COUNT, OFF(num_reads), 0},
    {"NumWrites", F_COUNT, OFF(num_writes), 0},
    {"FailedReads", F_COUNT, OFF(failed_reads), 0},
    {"FailedWrites", F_COUNT, OFF(failed_writes), 0},
    {"InvalidIO", F_COUNT, OFF(invalid_io), 0},
    {"PagesDiscard", F_COUNT, OFF(pages_discard), 0},
    {"ZeroPages", F_COUNT, OFF(zero_pages), 0},
    {"GoodCompress", F_PCT, OFF(good_compress), OFF(pages_stored)},
    {"NoCompress", F_PCT, OFF(no_compress), OFF(pages_stored)},
    {"PagesStored", F_COUNT, OFF(pages_stored), 0},
    {"PagesUsed", F_COUNT, OFF(pages_used), 0},
    {"OrigDataSize", F_SIZE, OFF(orig_data_size), 0},
    {"ComprDataSize", F_SIZE, OFF(compr_data_size), 0},
    {"MemUsedTotal", F_SIZE, OFF(mem_used_total), 0},
    {"BDevNumReads", F_COUNT, OFF(bdev_num_reads), 0},
    {"BDevNumWrites", F_COUNT, OFF(bdev_num_writes), 0},
    {"MemUsedMax", F_SIZE, OFF(mem_used_max), 0},
    {"SameFilled", F_COUNT, OFF(same_pages), 0},
    {"Fragmentation", F_RATIO, OFF(mem_used_total), OFF(compr_data_size)},
    {"CompressionRatio", F_RATIO, OFF(orig_data_size), OFF(compr_data_size)},
    {"Mlock", F_MLOCK, 0, 0},
    {"IoFlusher", F_IOFL, 0, 0},
    {"Capabilities", F_CAPS, 0, 0},
    {"Compressor", F_CODEC, 0, 0},
    /* Appended after the first release: readers skip keys they do not know. */
    {"BackingPages", F_COUNT, OFF(backing_pages), 0},
    {"PoolStock", F_SIZE, OFF(pool_stock), 0},
    {"StockEmpty", F_COUNT, OFF(stock_empty), 0},
    {"OomKillRequests", F_COUNT, OFF(oom_kill_requests), 0},
};
#define N_TEXT_FIELDS (sizeof text_fields / sizeof text_fields[0])

struct json_field {
        const char *key;
        size_t off;
};

/* Every struct rzs_stats field, raw, in struct order. */
static const struct json_field json_fields[] = {
    {"disksize", OFF(disksize)},
    {"memlimit", OFF(memlimit)},
    {"num_reads", OFF(num_reads)},
    {"num_writes", OFF(num_writes)},
    {"failed_reads", OFF(failed_reads)},
    {"failed_writes", OFF(failed_writes)},
    {"invalid_io", OFF(invalid_io)},
    {"pages_discard", OFF(pages_discard)},
    {"zero_pages", OFF(zero_pages)},
    {"same_pages", OFF(same_pages)},
    {"good_compress", OFF(good_compress)},
    {"no_compress", OFF(no_compress)},
    {"pages_stored", OFF(pages_stored)},
    {"pages_used", OFF(pages_used)},
    {"orig_data_size", OFF(orig_data_size)},
    {"compr_data_size", OFF(compr_data_size)},
    {"mem_used_total", OFF(mem_used_total)},
    {"mem_used_max", OFF(mem_used_max)},
    {"pool_block_bytes", OFF(pool_block_bytes)},
    {"bdev_num_reads", OFF(bdev_num_reads)},
    {"bdev_num_writes", OFF(bdev_num_writes)},
    {"backing_pages", OFF(backing_pages)},
    {"pool_stock", OFF(pool_stock)},
    {"stock_empty", OFF(stock_empty)},
    {"oom_kill_requests", OFF(oom_kill_requests)},
};
#define N_JSON_FIELDS (sizeof json_fields / sizeof json_fields[0])

_Static_assert(N_JSON_FIELDS * sizeof(uint64_t) == sizeof(struct rzs_stats),
               "json_fields must list every struct rzs_stats field");

static uint64_t field_at(const struct rzs_stats *st, size_t off)
{
        uint64_t v;

        memcpy(&v, (const char *)st + off, sizeof v);
        return v;
}

static void field_set(struct rzs_stats *st, size_t off, uint64_t v)
{
        memcpy((char *)st + off, &v, sizeof v);
}

/* At most 100: counters read one by one can show a part above the whole. */
unsigned rzs_stats_percent(uint64_t part, uint64_t pages_stored)
{
        if (pages_stored == 0)
                return 0;
        if (part > pages_stored)
                return 100;
        return (unsigned)((unsigned __int128)part * 100 / pages_stored);
}

uint64_t rzs_stats_ratio_x100(uint64_t num, uint64_t den)
{
        unsigned __int128 r;

        if (den == 0)
                return 0;
        r = ((unsigned __int128)num * 100 + den / 2) / den;
        return r > UINT64_MAX ? UINT64_MAX : (uint64_t)r;
}

/* An output cursor: appends with vsnprintf and remembers overflow, so callers check
 * once at the end. */
struct out {
        char *buf;
        size_t size;
        size_t len;
        bool overflow;
};

__attribute__((format(printf, 2, 3))) static void put(struct out *o, const char *fmt, ...)
{
        va_list ap;
        size_t room = o->len < o->size ? o->size - o->len : 0;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(room ? o->buf + o->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= room) {
                o->overflow = true;
                o->len = o->size;
                return;
        }
        o->len += (size_t)n;
}

static int out_result(const struct out *o)
{
        if (o->overflow)
                return -ENOSPC;
        return (int)o->len;
}

static bool fact_ok(const char *s)
{
        for (; s && *s; s++)
                if ((unsigned char)*s < 0x20 || *s == 0x7f)
                        return false;
        return true;
}

static const char *fact_str(const char *s)
{
        return s ? s : "none";
}

static const char *yes_no(bool b)
{
        return b ? "yes" : "no";
}

static void put_text_value(struct out *o, const struct text_field *f,
                           const struct rzs_stats *st, const struct rzs_stats_facts *fa)
{
        uint64_t r;

        switch (f->kind) {
        case F_SIZE:
                put(o, "%8" PRIu64 " kB\n", field_at(st, f->a) / 1024);
                break;
        case F_COUNT:
                put(o, "%8" PRIu64 "\n", field_at(st, f->a));
                break;
        case F_PCT:
                put(o, "%8u %%\n",
                    rzs_stats_percent(field_at(st, f->a), field_at(st, f->b)));
                break;
        case F_RATIO:
                r = rzs_stats_ratio_x100(field_at(st, f->a), field_at(st, f->b));
                put(o, "%5" PRIu64 ".%02" PRIu64 "\n", r / 100, r % 100);
                break;
        case F_MLOCK:
                put(o, "%8s\n", yes_no(fa->mlocked));
                break;
        case F_IOFL:
                put(o, "%8s\n", yes_no(fa->io_flusher));
                break;
        case F_CAPS:
                put(o, "%8s\n", fact_str(fa->capabilities));
                break;
        case F_CODEC:
                put(o, "%8s\n", fact_str(fa->compressor));
                break;
        }
}

typedef void emit_fn(struct out *o, const struct rzs_stats *st,
                     const struct rzs_stats_facts *facts);

/* The frame both forms share: buf is a string even on failure, facts are checked
 * before anything is written, and overflow is reported once. */
static int format_with(emit_fn *emit, const struct rzs_stats *st,
                       const struct rzs_stats_facts *facts, char *buf, size_t size)
{
        struct out o = {buf, size, 0, false};

        if (size > 0)
                buf[0] = '\0';
        if (!fact_ok(facts->capabilities) || !fact_ok(facts->compressor))
                return -EINVAL;
        emit(&o, st, facts);
        return out_result(&o);
}

static void emit_text(struct out *o, const struct rzs_stats *st,
                      const struct rzs_stats_facts *facts)
{
        for (size_t i = 0; i < N_TEXT_FIELDS; i++) {
                const struct text_field *f = &text_fields[i];

                put(o, "%s:%*s ", f->key, (int)(KEY_COLUMN - strlen(f->key) - 1), "");
                put_text_value(o, f, st, facts);
        }
}

int rzs_stats_format_text(const struct rzs_stats *st, const struct rzs_stats_facts *facts,
                          char *buf, size_t size)
{
        return format_with(emit_text, st, facts, buf, size);
}

/* A JSON string; fact_ok() already refused control characters. */
static void put_json_string(struct out *o, const char *key, const char *s, bool last)
{
        put(o, "  \"%s\": \"", key);
        for (; *s; s++) {
                if (*s == '"' || *s == '\\')
                        put(o, "\\%c", *s);
                else
                        put(o, "%c", *s);
        }
        put(o, "\"%s\n", last ? "" : ",");
}

static void put_json_x100(struct out *o, const char *key, uint64_t v)
{
        put(o, "  \"%s\": %" PRIu64 ".%02" PRIu64 ",\n", key, v / 100, v % 100);
}

static void emit_json(struct out *o, const struct rzs_stats *st,
                      const struct rzs_stats_facts *facts)
{
        put(o, "{\n");
        for (size_t i = 0; i < N_JSON_FIELDS; i++)
                put(o, "  \"%s\": %" PRIu64 ",\n", json_fields[i].key,
                    field_at(st, json_fields[i].off));
        put(o, "  \"good_compress_pct\": %u,\n",
            rzs_stats_percent(st->good_compress, st->pages_stored));
        put(o, "  \"no_compress_pct\": %u,\n",
            rzs_stats_percent(st->no_compress, st->pages_stored));
        put_json_x100(o, "fragmentation",
                      rzs_stats_ratio_x100(st->mem_used_total, st->compr_data_size));
        put_json_x100(o, "compression_ratio",
                      rzs_stats_ratio_x100(st->orig_data_size, st->compr_data_size));
        put(o, "  \"mlock\": %s,\n", facts->mlocked ? "true" : "false");
        put(o, "  \"io_flusher\": %s,\n", facts->io_flusher ? "true" : "false");
        put_json_string(o, "capabilities", fact_str(facts->capabilities), false);
        put_json_string(o, "compressor", fact_str(facts->compressor), true);
        put(o, "}\n");
}

int rzs_stats_format_json(const struct rzs_stats *st, const struct rzs_stats_facts *facts,
                          char *buf, size_t size)
{
        return format_with(emit_json, st, facts, buf, size);
}

/* ---- parsing ---- */

/* Decimal digits only, no sign, no overflow. Advances *p. */
static bool parse_u64(const char **p, const char *end, uint64_t *v)
{
        const char *s = *p;
        uint64_t x = 0;

        if (s == end || *s < '0' || *s > '9')
                return false;
        for (; s < end && *s >= '0' && *s <= '9'; s++) {
                if (__builtin_mul_overflow(x, 10, &x) ||
                    __builtin_add_overflow(x, (uint64_t)(*s - '0'), &x))
                        return false;
        }
        *p = s;
        *v = x;
        return true;
}

static bool expect(const char **p, const char *end, const char *lit)
{
        size_t n = strlen(lit);

        if ((size_t)(end - *p) < n || memcmp(*p, lit, n) != 0)
                return false;
        *p += n;
        return true;
}

static bool parse_yes_no(const char *s, const char *end, bool *b)
{
        if (expect(&s, end, "yes") && s == end) {
                *b = true;
                return true;
        }
        if (expect(&s, end, "no") && s == end) {
                *b = false;
                return true;
        }
        return false;
}

static bool parse_string(const char *s, const char *end, char *dst)
{
        size_t n = (size_t)(end - s);

        if (n == 0 || n >= RZS_STATS_FACT_MAX)
                return false;
        memcpy(dst, s, n);
        dst[n] = '\0';
        return true;
}

/* Parse one value [s, end) (blanks trimmed) of field f into out. */
static bool parse_value(const struct text_field *f, const char *s, const char *end,
                        struct rzs_stats_report *out)
{
        uint64_t v, frac;

        switch (f->kind) {
        case F_SIZE:
                if (!parse_u64(&s, end, &v) || !expect(&s, end, " kB") || s != end ||
                    __builtin_mul_overflow(v, 1024, &v))
                        return false;
                field_set(&out->stats, f->a, v);
                return true;
        case F_COUNT:
                if (!parse_u64(&s, end, &v) || s != end)
                        return false;
                field_set(&out->stats, f->a, v);
                return true;
        case F_PCT:
                if (!parse_u64(&s, end, &v) || !expect(&s, end, " %") || s != end)
                        return false;
                /* Servers before the clamp printed torn snapshots above 100. */
                *(f->a == OFF(good_compress) ? &out->good_compress_pct
                                             : &out->no_compress_pct) =
                    v > 100 ? 100 : (unsigned)v;
                return true;
        case F_RATIO:
                if (!parse_u64(&s, end, &v) || !expect(&s, end, ".") || end - s != 2 ||
                    !parse_u64(&s, end, &frac) || s != end ||
                    __builtin_mul_overflow(v, 100, &v))
                        return false;
                *(f->a == OFF(mem_used_total) ? &out->fragmentation_x100
                                              : &out->compression_ratio_x100) = v + frac;
                return true;
        case F_MLOCK:
                return parse_yes_no(s, end, &out->mlocked);
        case F_IOFL:
                return parse_yes_no(s, end, &out->io_flusher);
        case F_CAPS:
                return parse_string(s, end, out->capabilities);
        case F_CODEC:
                return parse_string(s, end, out->compressor);
        }
        return false;
}

static const struct text_field *find_field(const char *key, size_t n)
{
        for (size_t i = 0; i < N_TEXT_FIELDS; i++)
                if (strlen(text_fields[i].key) == n &&
                    memcmp(text_fields[i].key, key, n) == 0)
                        return &text_fields[i];
        return NULL;
}

/* One line [s, end) without its newline. Sets the bit of a known key in *seen. */
static bool parse_line(const char *s, const char *end, struct rzs_stats_report *out,
                       uint64_t *seen)
{
        const char *colon = memchr(s, ':', (size_t)(end - s));
        const struct text_field *f;

        if (colon == NULL || colon == s)
                return false;
        f = find_field(s, (size_t)(colon - s));
        if (f == NULL)
                return true; /* a key from a newer server */
        s = colon + 1;
        while (s < end && *s == ' ')
                s++;
        while (end > s && end[-1] == ' ')
                end--;
        if (!parse_value(f, s, end, out))
                return false;
        *seen |= 1ull << (f - text_fields);
        return true;
}

_Static_assert(N_TEXT_FIELDS < 64, "the parser tracks keys in a 64-bit mask");

int rzs_stats_parse_text(const char *text, size_t len, struct rzs_stats_report *out)
{
        const char *p = text, *end = text + len;
        uint64_t seen = 0;

        memset(out, 0, sizeof *out);
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                const char *eol = nl ? nl : end;

                if (!parse_line(p, eol, out, &seen))
                        goto bad;
                p = nl ? nl + 1 : end;
        }
        if (seen != (1ull << N_TEXT_FIELDS) - 1)
                goto bad;
        return 0;
bad:
        memset(out, 0, sizeof *out);
        return -EBADMSG;
}
