/* ramzswap: rendering and parsing of a stats snapshot.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Purpose: turn a struct rzs_stats (the device's counters) plus a few facts about the
 * server process (struct rzs_stats_facts) into the two forms the stats socket serves,
 * and read the text form back (for ramzswap-stat and tests).
 *
 * Text form: one "Key: value" line per field, key and colon padded to a column so
 * the values line up, in the seed compcache /proc/compcache order, then ours:
 *
 *   DiskSize MemLimit NumReads NumWrites FailedReads FailedWrites InvalidIO
 *   PagesDiscard ZeroPages GoodCompress NoCompress PagesStored PagesUsed
 *   OrigDataSize ComprDataSize MemUsedTotal BDevNumReads BDevNumWrites
 *   MemUsedMax SameFilled Fragmentation CompressionRatio Mlock IoFlusher
 *   Capabilities Compressor BackingPages PoolStock StockEmpty OomKillRequests
 *
 * Sizes print as "%8llu kB" (bytes / 1024, rounded down, like the seed); counts as
 * "%8llu"; GoodCompress and NoCompress as a percentage of PagesStored ("%8u %%",
 * 0 when nothing is stored, at most 100); Fragmentation = MemUsedTotal /
 * ComprDataSize and CompressionRatio = OrigDataSize / ComprDataSize with two decimals
 * (0.00 when nothing is stored); Mlock and IoFlusher as yes/no; Capabilities and
 * Compressor as strings. Readers must ignore keys they do not know: new keys are only
 * appended.
 *
 * JSON form: one object, one member per line, keys = the struct rzs_stats field
 * names (raw byte counts and raw counters, every field), then good_compress_pct,
 * no_compress_pct, fragmentation, compression_ratio (numbers with two decimals),
 * mlock, io_flusher (booleans), capabilities, compressor (strings).
 *
 * Everything here is pure: no globals, no allocation, thread-safe.
 */
#ifndef RAMZSWAP_STATS_FORMAT_H
#define RAMZSWAP_STATS_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ramzswap/device.h"

/* A buffer of this size always holds either form (with facts strings that fit in
 * RZS_STATS_FACT_MAX). */
#define RZS_STATS_TEXT_MAX 4096
/* Longest fact string (with its NUL) the parser keeps. */
#define RZS_STATS_FACT_MAX 128

/* Facts about the serving process that are not device counters. The strings are
 * borrowed for the duration of one format call; NULL prints as "none". They must
 * not contain control characters (a newline would break the text form). */
struct rzs_stats_facts {
        const char *compressor;   /* codec name, e.g. "lzo" */
        const char *capabilities; /* capabilities kept, cap_to_text form or "none" */
        bool mlocked;             /* mlockall took: the process is locked in RAM */
        bool io_flusher;          /* prctl(PR_SET_IO_FLUSHER) took */
};

/* The text form read back. Sizes are the printed kB * 1024 (so rounded down to a
 * KiB); good_compress, no_compress and pool_block_bytes are not in the text form
 * and read as 0; the derived values are kept as printed, percentages above 100
 * (older servers) as 100. */
struct rzs_stats_report {
        struct rzs_stats stats;
        unsigned good_compress_pct;
        unsigned no_compress_pct;
        uint64_t fragmentation_x100;     /* Fragmentation * 100 */
        uint64_t compression_ratio_x100; /* CompressionRatio * 100 */
        bool mlocked;
        bool io_flusher;
        char capabilities[RZS_STATS_FACT_MAX];
        char compressor[RZS_STATS_FACT_MAX];
};

/* Render the text form into buf (NUL-terminated). Returns its length (without the
 * NUL), -ENOSPC when buf is too small (buf then holds a truncated, NUL-terminated
 * prefix if size > 0), -EINVAL when a fact string holds a control character.
 * O(number of fields). */
int rzs_stats_format_text(const struct rzs_stats *st, const struct rzs_stats_facts *facts,
                          char *buf, size_t size);

/* Render the JSON form into buf, as rzs_stats_format_text. Strings are escaped. */
int rzs_stats_format_json(const struct rzs_stats *st, const struct rzs_stats_facts *facts,
                          char *buf, size_t size);

/* Percent of pages_stored, rounded down, at most 100; 0 when pages_stored is 0. */
unsigned rzs_stats_percent(uint64_t part, uint64_t pages_stored);

/* num / den * 100, rounded to nearest; 0 when den is 0; saturates at UINT64_MAX. */
uint64_t rzs_stats_ratio_x100(uint64_t num, uint64_t den);

/* Parse len bytes of text form (need not be NUL-terminated) into *out. Every key of
 * the list above must be present with a well-formed value; unknown keys are
 * ignored; a later duplicate wins. Returns 0, or -EBADMSG when the text is not a
 * ramzswap stats snapshot (a key missing, a malformed line or value). *out is zeroed
 * first on every path. O(len). */
int rzs_stats_parse_text(const char *text, size_t len, struct rzs_stats_report *out);

#endif /* RAMZSWAP_STATS_FORMAT_H */
