#pragma once
// Text transformations shared by the output writers: screen-safe script text
// (docs/runtime-contract.md "Normal output"), XML escaping ("XML output"), JSON strings, and
// Lua-style rendering of scalar Values.
#include <string>
#include <string_view>

#include "common/value.h"

namespace coordinator::output {

// Bytes other than tab, newline and 0x20-0x7E become "\xHH" (uppercase hex); "\r" included.
std::string screen_safe(std::string_view s);

// Bytes other than tab, CR, LF and 0x20-0x7E become the literal text "\xHH" (nmap's
// protect_xml); the result is still raw text that needs xml_escape's entity step.
std::string protect_xml(std::string_view s);

// protect_xml, then entity escaping safe for both attribute values and element text:
// < > & " ' as named entities, remaining control characters (tab, CR, LF) as "&#xN;" with
// lowercase hex ("&#xa;").
std::string xml_escape(std::string_view s);

// xml_escape, plus every '-' that follows a '-' written as "&#45;", so the text may also sit
// inside an XML comment (nmap does this to the command line in both places).
std::string xml_escape_args(std::string_view s);

// A double-quoted JSON string. Valid UTF-8 passes through; every byte that is not part of a
// valid UTF-8 sequence becomes "\u00XX" (its Latin-1 reading), control characters are
// escaped, so the result is always valid JSON and valid UTF-8.
std::string json_string(std::string_view s);

// The nmap normal-output block for one script result (docs/runtime-contract.md "Normal output"):
// screen-safe text split into "| " / "|_" lines, the first carrying "<id>: ". Each line ends in
// '\n'. Empty text gives "".
std::string script_block(std::string_view id, std::string_view text);

// tostring() of a non-table Value as Lua 5.4 prints it ("42", "1.5", "1.0", "true", "nil").
// Tables give "".
std::string scalar_text(const common::Value& v);

}  // namespace coordinator::output
