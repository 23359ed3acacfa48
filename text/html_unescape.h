// html_unescape: Python's html.unescape() on arrays of Unicode code points.
//
// Replaces every character reference the way Python does: all 2,231 HTML5 named references (with
// and without the trailing ';', longest known prefix first), decimal and hex numeric references
// with the HTML5 parser's fix-ups (Windows-1252 remaps, U+FFFD for surrogates and out-of-range
// numbers, nothing for forbidden code points). The tables are generated from Python's own html
// module by scripts/gen_html_entities.py.
#ifndef CLIPC_TEXT_HTML_UNESCAPE_H
#define CLIPC_TEXT_HTML_UNESCAPE_H

#include <stddef.h>
#include <stdint.h>

// Unescapes in[0..n) into out (room for n code points: the result is never longer). Returns the
// number of code points written. in and out must not overlap.
size_t html_unescape(const uint32_t *in, size_t n, uint32_t *out);

#endif
