// Python's html.unescape, which OpenCLIP's tokenizer applies twice before anything else.
// Internal to text/; docs/TOKENIZER.md lists which named entities it knows.
#pragma once

#include <string>

namespace sparo::text {

// Replaces &name; and &#NNN; / &#xHHH; as html.unescape does, legacy names without ';'
// included; numeric references are exact, named ones cover 290 entities.
std::u32string html_unescape(const std::u32string& s);

}  // namespace sparo::text
