/* A tiny strict JSON checker for the stats tests: accepts exactly one flat object
 * whose values are numbers, strings, true, false or null (RFC 8259 grammar for each;
 * no nesting, which the stats JSON never uses), with nothing but whitespace after
 * it, no duplicate keys, and records each member's key and raw value text.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef RAMZSWAP_TEST_TINY_JSON_H
#define RAMZSWAP_TEST_TINY_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TJ_MAX_MEMBERS 64
#define TJ_MAX_TEXT    160

enum tj_type { TJ_NUMBER, TJ_STRING, TJ_TRUE, TJ_FALSE, TJ_NULL };

struct tj_member {
        char key[TJ_MAX_TEXT];
        char value[TJ_MAX_TEXT]; /* number text, or the string unescaped */
        enum tj_type type;
};

struct tj_object {
        struct tj_member m[TJ_MAX_MEMBERS];
        size_t n;
};

struct tj_cursor {
        const char *p, *end;
};

static void tj_ws(struct tj_cursor *c)
{
        while (c->p < c->end &&
               (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
                c->p++;
}

static bool tj_lit(struct tj_cursor *c, const char *lit)
{
        size_t n = strlen(lit);

        if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n) != 0)
                return false;
        c->p += n;
        return true;
}

static bool tj_digit(const struct tj_cursor *c)
{
        return c->p < c->end && *c->p >= '0' && *c->p <= '9';
}

/* Only the escapes the stats use plus the simple ones; \u is accepted for ASCII. */
static bool tj_string(struct tj_cursor *c, char *dst)
{
        size_t n = 0;

        if (!tj_lit(c, "\""))
                return false;
        while (c->p < c->end && *c->p != '"') {
                char ch = *c->p++;

                if ((unsigned char)ch < 0x20)
                        return false;
                if (ch == '\\') {
                        if (c->p == c->end)
                                return false;
                        ch = *c->p++;
                        switch (ch) {
                        case '"':
                        case '\\':
                        case '/':
                                break;
                        case 'n':
                                ch = '\n';
                                break;
                        case 't':
                                ch = '\t';
                                break;
                        case 'r':
                                ch = '\r';
                                break;
                        case 'b':
                                ch = '\b';
                                break;
                        case 'f':
                                ch = '\f';
                                break;
                        default:
                                return false;
                        }
                }
                if (n + 1 >= TJ_MAX_TEXT)
                        return false;
                dst[n++] = ch;
        }
        if (!tj_lit(c, "\""))
                return false;
        dst[n] = '\0';
        return true;
}

static bool tj_number(struct tj_cursor *c, char *dst)
{
        const char *start = c->p;

        tj_lit(c, "-");
        if (tj_lit(c, "0")) {
                if (tj_digit(c))
                        return false;
        } else {
                if (!tj_digit(c))
                        return false;
                while (tj_digit(c))
                        c->p++;
        }
        if (tj_lit(c, ".")) {
                if (!tj_digit(c))
                        return false;
                while (tj_digit(c))
                        c->p++;
        }
        if (tj_lit(c, "e") || tj_lit(c, "E")) {
                if (!tj_lit(c, "+"))
                        tj_lit(c, "-");
                if (!tj_digit(c))
                        return false;
                while (tj_digit(c))
                        c->p++;
        }
        if ((size_t)(c->p - start) >= TJ_MAX_TEXT)
                return false;
        memcpy(dst, start, (size_t)(c->p - start));
        dst[c->p - start] = '\0';
        return true;
}

static bool tj_value(struct tj_cursor *c, struct tj_member *m)
{
        m->value[0] = '\0';
        if (c->p < c->end && *c->p == '"') {
                m->type = TJ_STRING;
                return tj_string(c, m->value);
        }
        if (tj_lit(c, "true")) {
                m->type = TJ_TRUE;
                return true;
        }
        if (tj_lit(c, "false")) {
                m->type = TJ_FALSE;
                return true;
        }
        if (tj_lit(c, "null")) {
                m->type = TJ_NULL;
                return true;
        }
        m->type = TJ_NUMBER;
        return tj_number(c, m->value);
}

static const struct tj_member *tj_find(const struct tj_object *o, const char *key)
{
        for (size_t i = 0; i < o->n; i++)
                if (strcmp(o->m[i].key, key) == 0)
                        return &o->m[i];
        return NULL;
}

/* Returns true when [s, s+len) is one valid flat object; fills *o. */
static bool tj_parse(const char *s, size_t len, struct tj_object *o)
{
        struct tj_cursor c = {s, s + len};

        o->n = 0;
        tj_ws(&c);
        if (!tj_lit(&c, "{"))
                return false;
        tj_ws(&c);
        if (!tj_lit(&c, "}")) {
                do {
                        struct tj_member *m;

                        if (o->n == TJ_MAX_MEMBERS)
                                return false;
                        m = &o->m[o->n];
                        tj_ws(&c);
                        if (!tj_string(&c, m->key))
                                return false;
                        if (tj_find(o, m->key))
                                return false;
                        tj_ws(&c);
                        if (!tj_lit(&c, ":"))
                                return false;
                        tj_ws(&c);
                        if (!tj_value(&c, m))
                                return false;
                        o->n++;
                        tj_ws(&c);
                } while (tj_lit(&c, ","));
                if (!tj_lit(&c, "}"))
                        return false;
        }
        tj_ws(&c);
        return c.p == c.end;
}

/* The member's value as an unsigned integer; false if absent or not an integer. */
static bool tj_u64(const struct tj_object *o, const char *key, uint64_t *v)
{
        const struct tj_member *m = tj_find(o, key);
        char *e;

        if (m == NULL || m->type != TJ_NUMBER || m->value[0] == '-' ||
            strpbrk(m->value, ".eE"))
                return false;
        *v = strtoull(m->value, &e, 10);
        return *e == '\0';
}

#endif /* RAMZSWAP_TEST_TINY_JSON_H */
