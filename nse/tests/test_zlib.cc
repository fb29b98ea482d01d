// Tests of the `zlib` Lua module (lzlib API, docs/runtime-contract.md "zlib"), driven from Lua.
#include <doctest/doctest.h>
#include <zlib.h>

#include <lua.hpp>
#include <string>

#include "nse/lib/zlib.h"
#include "nse/tests/lua_harness.h"

namespace {

// A harness state with the module loaded as global `zlib` and in package.loaded.
struct ZlibLua : nse::test::LuaHarness {
    ZlibLua() { require("zlib", nse::lib::luaopen_zlib); }
};

// gzip-wrapped deflate of `s`, made with zlib's gzip mode (windowBits 15 + 16).
std::string gzip(const std::string& s) {
    z_stream z{};
    REQUIRE(deflateInit2(&z, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    std::string out(deflateBound(&z, s.size()) + 32, '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(s.data()));
    z.avail_in = static_cast<uInt>(s.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
    out.resize(z.total_out);
    deflateEnd(&z);
    return out;
}

// `printf 'line one\nline two\n' | gzip -n`
const unsigned char kGzipCommandOutput[] = {0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                            0x03, 0xcb, 0xc9, 0xcc, 0x4b, 0x55, 0xc8, 0xcf, 0x4b,
                                            0xe5, 0xca, 0x01, 0x31, 0x4a, 0xca, 0xf3, 0xb9, 0x00,
                                            0x8b, 0xd7, 0xf4, 0x75, 0x12, 0x00, 0x00, 0x00};

}  // namespace

TEST_CASE("zlib: version and checksums (floats, as nmap's lzlib)") {
    ZlibLua lua;
    lua.set_string("zv", zlibVersion());
    CHECK(lua.run(R"lua(
        assert(zlib.version() == zv)
        assert(zlib.crc32() == 0 and math.type(zlib.crc32()) == "float")
        assert(zlib.adler32() == 1 and math.type(zlib.adler32()) == "float")
        local c = zlib.crc32(zlib.crc32(), "hello")
        assert(c == 907060870 and math.type(c) == "float", c)
        assert(zlib.adler32(zlib.adler32(), "Wikipedia") == 300286872)
        -- incremental update equals one-shot
        assert(zlib.crc32(zlib.crc32(0, "hel"), "lo") == c)
    )lua") == "");
}

TEST_CASE("zlib: compress/decompress") {
    ZlibLua lua;
    CHECK(lua.run(R"lua(
        local data = ("The quick brown fox. "):rep(200)
        local c, status = zlib.compress(data)
        assert(type(c) == "string" and #c < #data / 10)
        assert(status == 1, status) -- Z_STREAM_END
        assert(c:byte(1) == 0x78, "zlib header")
        assert(zlib.decompress(c) == data)
        assert(zlib.decompress((zlib.compress(data, 1))) == data)
        assert(zlib.decompress((zlib.compress(""))) == "")
        -- raw deflate both ways
        assert(zlib.decompress((zlib.compress(data, 9, 8, -15)), -15) == data)
        local ok, e = pcall(zlib.decompress, "not zlib at all")
        assert(not ok and e == "failed to process zlib stream", e)
        ok, e = pcall(zlib.decompress, c:sub(1, #c - 6)) -- truncated
        assert(not ok and e == "failed to process zlib stream", e)
        local r, st = zlib.compress("x", 99) -- bad level: init fails
        assert(r == nil and st == -2, st)
    )lua") == "");
}

TEST_CASE("zlib: inflate(gzip body):read('*a') as http.lua does") {
    ZlibLua lua;
    std::string body;
    for (int i = 0; i < 2000; ++i)
        body += "<p>line " + std::to_string(i) + "</p>\n";
    lua.set_string("expected", body);
    lua.set_string("gz", gzip(body));
    lua.set_string("gzcmd", std::string(reinterpret_cast<const char*>(kGzipCommandOutput),
                                        sizeof kGzipCommandOutput));
    CHECK(lua.run(R"lua(
        assert(gz:byte(1) == 0x1f and gz:byte(2) == 0x8b)
        local stream = zlib.inflate(gz)
        local ok, out = pcall(stream.read, stream, "*a")
        stream:close()
        assert(ok and out == expected, "gzip body mismatch")
        -- http.lua with a size limit reads maxlen + 1
        stream = zlib.inflate(gz)
        out = stream:read(101)
        assert(out == expected:sub(1, 101))
        stream:close()
        -- output of the gzip command
        assert(zlib.inflate(gzcmd):read("*a") == "line one\nline two\n")
        -- and zlib-wrapped data through the same door
        assert(zlib.inflate((zlib.compress(expected))):read("*a") == expected)
        -- "*a" at end gives "", a count gives nil
        stream = zlib.inflate(gzcmd)
        assert(stream:read("*a") == "line one\nline two\n")
        assert(stream:read("*a") == "")
        assert(stream:read(1) == nil)
    )lua") == "");
}

TEST_CASE("zlib: inflate read formats, lines and streaming sources") {
    ZlibLua lua;
    CHECK(lua.run(R"lua(
        local text = "alpha\nbeta\r\ngamma\rdelta\n\nlast"
        local c = (zlib.compress(text))
        local s = zlib.inflate(c)
        local a, b, n = s:read("*l", "l", 3)
        assert(a == "alpha" and b == "beta" and n == "gam", tostring(a) .. tostring(b) .. tostring(n))
        assert(s:read() == "ma")
        assert(s:read("*l") == "delta")
        assert(s:read("*l") == "")
        assert(s:read("*l") == "last")
        assert(s:read("*l") == nil)
        s:close()
        local ok, e = pcall(s.read, s)
        assert(not ok and e:find("closed"), e)

        -- lines() iterator
        local got = {}
        for l in zlib.inflate(c):lines() do got[#got + 1] = l end
        assert(table.concat(got, "|") == "alpha|beta|gamma|delta||last", table.concat(got, "|"))

        -- a function source fed one byte at a time; CRLF split across chunks
        local crlf = (zlib.compress("one\r\ntwo\r\n"))
        local pos = 0
        local s2 = zlib.inflate(function()
            pos = pos + 1
            if pos <= #crlf then return crlf:sub(pos, pos) end
        end)
        assert(s2:read("*l") == "one")
        assert(s2:read("*l") == "two")
        assert(s2:read("*l") == nil)

        -- an object source with :read
        local src = {data = c, read = function(self, n)
            local chunk = self.data:sub(1, 5); self.data = self.data:sub(6)
            if chunk ~= "" then return chunk end
        end}
        assert(zlib.inflate(src):read("*a") == text)

        -- windowBits: raw deflate with a negative value
        assert(zlib.inflate((zlib.compress(text, 6, 8, -15)), -15):read("*a") == text)
    )lua") == "");
}

TEST_CASE("zlib: inflate raises on corrupt data (http.lua relies on pcall to see it)") {
    ZlibLua lua;
    CHECK(lua.run(R"lua(
        local s = zlib.inflate("\120\156 this is not deflate data at all")
        local ok, msg = pcall(s.read, s, "*a")
        assert(not ok and msg:find("^zlib error: .*%(%-3%)$"), tostring(msg))
        -- http.lua's corrupted-gzip case: bad magic byte
        s = zlib.inflate("\47\139\8\0\0\0\0\0\0\0\243\72\205\201\201\215\81\8")
        ok, msg = pcall(s.read, s, 14)
        assert(not ok and msg == "zlib error: incorrect header check (-3)", tostring(msg))
        assert(not pcall(zlib.inflate, 42))
        assert(not pcall(zlib.inflate("x").read, zlib.inflate("x"), "*x"))
    )lua") == "");
}

TEST_CASE("zlib: deflate write stream into a sink") {
    ZlibLua lua;
    CHECK(lua.run(R"lua(
        local parts = {}
        local d = zlib.deflate(function(chunk) parts[#parts + 1] = chunk end)
        assert(d:write("hello ", "world") == d)
        d:flush()                       -- sync flush: everything so far decodable
        local sofar = table.concat(parts)
        assert(zlib.inflate(sofar):read(11) == "hello world")
        d:write((" more"):rep(1000))
        d:close()
        local all = table.concat(parts)
        assert(zlib.decompress(all) == "hello world" .. (" more"):rep(1000))
        assert(not pcall(d.write, d, "x"))

        -- object sink, gzip framing, explicit finish
        local sink = {buf = {}, write = function(self, s) self.buf[#self.buf + 1] = s end}
        local g = zlib.deflate(sink, 9, 8, 31)
        g:write("gzipped")
        g:flush("finish")
        g:close()
        local gz = table.concat(sink.buf)
        assert(gz:byte(1) == 0x1f and zlib.inflate(gz):read("*a") == "gzipped")

        -- dictionary on both sides
        local dict = "common words common words"
        local out = {}
        local dd = zlib.deflate(function(s) out[#out + 1] = s end, 9, 8, 15, 8, 0, dict)
        dd:write("common words here")
        dd:close()
        assert(zlib.inflate(table.concat(out), 15, dict):read("*a") == "common words here")
        local st = zlib.inflate(table.concat(out))
        local ok, msg = pcall(st.read, st, "*a")
        assert(not ok and msg:find("(2)", 1, true), tostring(msg)) -- Z_NEED_DICT
    )lua") == "");
}

// http.lua's own test suite, which decodes gzip Content-Encoding (plain, stacked, corrupted,
// with maxlen) through this module.
TEST_CASE("zlib: stock http.lua test suite passes") {
    if (!nse::test::have_stock_file("/usr/share/nmap/nselib/http.lua")) return;
    ZlibLua lua;
    CHECK(lua.run(nse::test::nmap_stub(nse::test::kUnittestArgs)) == "");
    CHECK(lua.run(R"lua(
        local http = require "http"
        local failed, total = http.test_suite()
        assert(failed == 0 and total >= 85, ("http %d/%d failed"):format(failed, total))
    )lua") == "");
}
