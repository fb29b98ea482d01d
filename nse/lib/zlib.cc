#include "nse/lib/zlib.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <string>

#include "nse/lib/luax.h"
#include "nse/runtime.h"

namespace nse::lib {
namespace {

// Arrays, not pointers: they are template arguments of close_box.
constexpr char kInflateMeta[] = "nse.zlib.inflate";
constexpr char kDeflateMeta[] = "nse.zlib.deflate";
constexpr size_t kChunk = 16384;

Bytef* bytes(const char* p) { return reinterpret_cast<Bytef*>(const_cast<char*>(p)); }

// The stream object of the box at `idx` (metatable `name`); raises once the stream is closed.
template <class T>
T* check_open(lua_State* L, int idx, const char* name) {
    T* p = check_box<T>(L, idx, name)->p;
    if (p == nullptr) luaL_error(L, "attempt to use a closed zlib stream");
    return p;
}

// ---- checksums: results are floats, as in nmap's lzlib build

int l_version(lua_State* L) {
    lua_pushstring(L, zlibVersion());
    return 1;
}

template <uLong (*Update)(uLong, const Bytef*, uInt)>
int checksum(lua_State* L) {
    if (lua_isnoneornil(L, 1)) {
        lua_pushnumber(L, static_cast<lua_Number>(Update(0L, Z_NULL, 0)));
        return 1;
    }
    uLong sum = static_cast<uLong>(luaL_checknumber(L, 1));
    size_t len;
    const char* s = luaL_checklstring(L, 2, &len);
    while (len > 0) {  // uInt length per call
        uInt n = static_cast<uInt>(std::min<size_t>(len, 1u << 30));
        sum = Update(sum, bytes(s), n);
        s += n;
        len -= n;
    }
    lua_pushnumber(L, static_cast<lua_Number>(sum));
    return 1;
}

// ---- one-shot

// Owns an initialised z_stream for one-shot calls (inflate or deflate side).
struct OneShot {
    z_stream z{};
    bool inflating;
    bool open = false;
    explicit OneShot(bool inf) : inflating(inf) {}
    ~OneShot() {
        if (open) inflating ? inflateEnd(&z) : deflateEnd(&z);
    }
};

// compress(s[, level, method, windowBits, memLevel, strategy]) → compressed, status
int l_compress(lua_State* L) {
    size_t len;
    const char* s = luaL_checklstring(L, 1, &len);
    int level = static_cast<int>(luaL_optinteger(L, 2, Z_DEFAULT_COMPRESSION));
    int method = static_cast<int>(luaL_optinteger(L, 3, Z_DEFLATED));
    int window = static_cast<int>(luaL_optinteger(L, 4, 15));
    int mem = static_cast<int>(luaL_optinteger(L, 5, 8));
    int strategy = static_cast<int>(luaL_optinteger(L, 6, Z_DEFAULT_STRATEGY));
    OneShot zs(false);
    int ret = deflateInit2(&zs.z, level, method, window, mem, strategy);
    if (ret != Z_OK) {
        lua_pushnil(L);
        lua_pushinteger(L, ret);
        return 2;
    }
    zs.open = true;
    // The output grows in a Lua buffer: it counts against the engine's memory cap, and
    // over the cap the script gets Lua's memory error.
    luaL_Buffer out;
    luaL_buffinit(L, &out);
    zs.z.next_in = bytes(s);
    zs.z.avail_in = static_cast<uInt>(len);
    unsigned char buf[kChunk];
    do {
        zs.z.next_out = buf;
        zs.z.avail_out = sizeof buf;
        ret = deflate(&zs.z, Z_FINISH);
        luaL_addlstring(&out, reinterpret_cast<char*>(buf), sizeof buf - zs.z.avail_out);
    } while (ret == Z_OK);
    if (ret != Z_STREAM_END) {
        lua_pushnil(L);
        lua_pushinteger(L, ret);
        return 2;
    }
    luaL_pushresult(&out);
    lua_pushinteger(L, ret);
    return 2;
}

// Whether a buffer of `n` bytes is within what one buffer may take of the engine's budget.
bool fits(lua_State* L, std::size_t n) {
    MemCharge probe = nse::budget_charge(L);
    return probe.set(0) && probe.within_share(n);
}

// decompress(s[, windowBits=15]) → string; raises on any failure.
int l_decompress(lua_State* L) {
    size_t len;
    const char* s = luaL_checklstring(L, 1, &len);
    int window = static_cast<int>(luaL_optinteger(L, 2, 15));
    OneShot zs(true);
    zs.z.next_in = bytes(s);
    zs.z.avail_in = static_cast<uInt>(len);
    if (inflateInit2(&zs.z, window) != Z_OK) {
        return luaL_error(L, "failed to initialize zstream structures");
    }
    zs.open = true;
    // A Lua buffer, so a decompression bomb meets the engine's memory cap (Lua's memory
    // error for the script) instead of growing the process.
    luaL_Buffer out;
    luaL_buffinit(L, &out);
    unsigned char buf[kChunk];
    int ret;
    do {
        zs.z.next_out = buf;
        zs.z.avail_out = sizeof buf;
        ret = inflate(&zs.z, Z_NO_FLUSH);
        luaL_addlstring(&out, reinterpret_cast<char*>(buf), sizeof buf - zs.z.avail_out);
        // Like any other buffer: at most a quarter of the engine's cap.
        if (!fits(L, luaL_bufflen(&out))) {
            nse::runtime(L).note_resource_loss("memory");  // a budget exists: so does the engine
            return luaL_error(L, "%s", nse::kNotEnoughMemory);
        }
    } while (ret == Z_OK);
    if (ret != Z_STREAM_END) return luaL_error(L, "failed to process zlib stream");
    luaL_pushresult(&out);
    return 1;
}

// ---- inflate read stream

enum class SourceKind { Function, Object };

struct Inflater {
    z_stream z{};
    bool eof = false;          // no more output will ever come
    bool source_done = false;  // the source gave its last chunk
    int err = Z_OK;            // sticky zlib error
    SourceKind kind = SourceKind::Function;
    std::string in;   // chunk z.next_in points into
    std::string out;  // decoded bytes not yet read, from outpos
    size_t outpos = 0;
    std::string dict;
    MemCharge charge;  // `out` against the engine's memory budget

    ~Inflater() { inflateEnd(&z); }
    size_t avail() const { return out.size() - outpos; }
    std::string take(size_t n) {
        std::string r = out.substr(outpos, n);
        outpos += r.size();
        if (outpos > kChunk && outpos * 2 > out.size()) {  // keep the buffer from growing
            out.erase(0, outpos);
            outpos = 0;
        }
        return r;
    }
};

Inflater* check_inflater(lua_State* L, int idx) {
    return check_open<Inflater>(L, idx, kInflateMeta);
}

// Asks the source (uservalue 1 of the stream at `idx`) for the next chunk. [-0, +0]
void next_chunk(lua_State* L, int idx, Inflater& s) {
    lua_getiuservalue(L, idx, 1);  // [src]
    if (s.kind == SourceKind::Function) {
        lua_call(L, 0, 1);  // [chunk]
    } else {
        lua_getfield(L, -1, "read");  // [src, read]
        lua_insert(L, -2);            // [read, src]
        lua_pushinteger(L, static_cast<lua_Integer>(kChunk));
        lua_call(L, 2, 1);  // [chunk]
    }
    size_t len = 0;
    const char* chunk = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : nullptr;
    if (chunk == nullptr || len == 0) {
        s.source_done = true;
    } else {
        s.in.assign(chunk, len);
        s.z.next_in = bytes(s.in.data());
        s.z.avail_in = static_cast<uInt>(len);
    }
    lua_pop(L, 1);
}

// Decodes until `want` bytes are buffered, the stream ends or an error sticks.
void fill(lua_State* L, int idx, Inflater& s, size_t want) {
    unsigned char buf[kChunk];
    while (s.avail() < want && !s.eof && s.err == Z_OK) {
        if (s.z.avail_in == 0) {
            if (s.source_done) {  // truncated stream: deliver what we have
                s.eof = true;
                break;
            }
            next_chunk(L, idx, s);
            continue;
        }
        s.z.next_out = buf;
        s.z.avail_out = sizeof buf;
        int ret = inflate(&s.z, Z_NO_FLUSH);
        s.out.append(reinterpret_cast<char*>(buf), sizeof buf - s.z.avail_out);
        if (!s.charge.set(s.out.capacity())) {
            s.out.clear();
            s.out.shrink_to_fit();
            s.outpos = 0;
            s.charge.reset();
            nse::runtime(L).note_resource_loss("memory");  // charged: the engine exists
            luaL_error(L, "%s", nse::kNotEnoughMemory);
        }
        if (ret == Z_STREAM_END) {
            s.eof = true;
        } else if (ret == Z_NEED_DICT) {
            if (s.dict.empty() || inflateSetDictionary(&s.z, bytes(s.dict.data()),
                                                       static_cast<uInt>(s.dict.size())) != Z_OK) {
                s.err = Z_NEED_DICT;
            }
        } else if (ret != Z_OK && ret != Z_BUF_ERROR) {
            s.err = ret;
        }
    }
}

// Corrupt data raises rather than returning nil, msg: http.lua (and its test_suite) detect a
// corrupt gzip body only through pcall(stream.read, ...).
[[noreturn]] void raise_stream_error(lua_State* L, const Inflater& s) {
    luaL_error(L, "zlib error: %s (%d)", s.z.msg ? s.z.msg : zError(s.err), s.err);
    std::terminate();  // luaL_error never returns
}

// Reads one line ending in LF, CR or CRLF; pushes it without the terminator, or nil. [-0, +1]
bool read_line(lua_State* L, int idx, Inflater& s) {
    size_t scanned = 0;
    for (;;) {
        const char* base = s.out.data() + s.outpos;
        const size_t n = s.avail();
        const char* hit = nullptr;
        for (size_t i = scanned; i < n; ++i) {
            if (base[i] == '\n' || base[i] == '\r') {
                hit = base + i;
                break;
            }
        }
        if (hit != nullptr) {
            size_t linelen = static_cast<size_t>(hit - base);
            if (*hit == '\r' && linelen + 1 == n && !s.eof && s.err == Z_OK) {
                fill(L, idx, s, n + 1);  // is it CRLF? need one more byte
                if (s.avail() > n) continue;
            }
            std::string line = s.take(linelen);
            const char* term = s.out.data() + s.outpos;
            size_t skip = (term[0] == '\r' && s.avail() > 1 && term[1] == '\n') ? 2 : 1;
            s.take(skip);
            lua_pushlstring(L, line.data(), line.size());
            return true;
        }
        scanned = n;
        if (s.eof || s.err != Z_OK) break;
        fill(L, idx, s, n + 1);
        if (s.avail() == n) break;
    }
    if (s.avail() == 0) {
        lua_pushnil(L);
        return false;
    }
    std::string rest = s.take(s.avail());
    lua_pushlstring(L, rest.data(), rest.size());
    return true;
}

// read(fmt...): formats are a byte count, "*l"/"l" (line) or "*a"/"a" (all); default "*l".
// Returns one value per format, nil at end; raises "zlib error: <text> (<code>)" on corrupt data.
int inflate_read(lua_State* L) {
    Inflater& s = *check_inflater(L, 1);
    int nargs = lua_gettop(L) - 1;
    if (nargs == 0) {
        lua_pushliteral(L, "*l");
        nargs = 1;
    }
    luaL_checkstack(L, nargs + 3, "too many arguments");
    int pushed = 0;
    for (int i = 2; i < 2 + nargs; ++i) {
        bool ok = true;
        if (lua_type(L, i) == LUA_TNUMBER) {
            lua_Integer n = luaL_checkinteger(L, i);
            luaL_argcheck(L, n >= 0, i, "byte count must not be negative");
            size_t want = static_cast<size_t>(n);
            fill(L, 1, s, std::max<size_t>(want, 1));
            if (s.err != Z_OK) break;
            if (s.avail() == 0) {
                lua_pushnil(L);
                ok = false;
            } else {
                std::string r = s.take(want);
                lua_pushlstring(L, r.data(), r.size());
            }
        } else {
            const char* fmt = luaL_checkstring(L, i);
            if (*fmt == '*') ++fmt;
            if (*fmt == 'l') {
                ok = read_line(L, 1, s);
                if (s.err != Z_OK && !ok) {
                    lua_pop(L, 1);
                    break;
                }
            } else if (*fmt == 'a') {
                fill(L, 1, s, static_cast<size_t>(-1));
                if (s.err != Z_OK) break;
                std::string r = s.take(s.avail());
                lua_pushlstring(L, r.data(), r.size());
            } else {
                return luaL_argerror(L, i, "invalid format");
            }
        }
        ++pushed;
        if (!ok) break;
    }
    if (s.err != Z_OK) raise_stream_error(L, s);
    return pushed;
}

int inflate_lines_step(lua_State* L) {
    lua_settop(L, 0);
    lua_pushvalue(L, lua_upvalueindex(1));  // [stream]
    Inflater& s = *check_inflater(L, 1);
    read_line(L, 1, s);
    if (s.err != Z_OK) raise_stream_error(L, s);
    return 1;
}

int inflate_lines(lua_State* L) {
    check_inflater(L, 1);
    lua_settop(L, 1);
    lua_pushcclosure(L, nse::guard<inflate_lines_step>, 1);
    return 1;
}

constexpr lua_CFunction inflate_gc = close_box<Inflater, kInflateMeta, destroy<Inflater>>;

int inflate_close(lua_State* L) {
    check_inflater(L, 1);
    inflate_gc(L);
    lua_pushboolean(L, 1);
    return 1;
}

const luaL_Reg kInflateMethods[] = {
    {"read", nse::guard<inflate_read>},
    {"lines", nse::guard<inflate_lines>},
    {"close", nse::guard<inflate_close>},
    {"__gc", inflate_gc},
    {"__close", inflate_gc},
    {nullptr, nullptr},
};

// inflate(source[, windowBits=15, dictionary]) → read stream
int l_inflate(lua_State* L) {
    int window = static_cast<int>(luaL_optinteger(L, 2, 15));
    if (window > 0 && window < 16) window += 32;  // accept zlib or gzip headers
    size_t dlen = 0;
    const char* dict = luaL_optlstring(L, 3, nullptr, &dlen);
    const int t = lua_type(L, 1);
    luaL_argexpected(
        L, t == LUA_TSTRING || t == LUA_TFUNCTION || t == LUA_TTABLE || t == LUA_TUSERDATA, 1,
        "string, function or object with read");

    Box<Inflater>* box =
        new_box<Inflater>(L, 1, kInflateMeta, kInflateMethods);  // [.., ud], closed
    auto* s = new Inflater();
    if (inflateInit2(&s->z, window) != Z_OK) {
        // Never initialised: skip inflateEnd's work (it tolerates a zeroed stream anyway).
        delete s;
        return luaL_error(L, "failed to initialize zstream structures");
    }
    box->p = s;
    s->charge = nse::budget_charge(L);
    if (dict) s->dict.assign(dict, dlen);
    if (t == LUA_TSTRING) {
        size_t len;
        const char* src = lua_tolstring(L, 1, &len);
        s->in.assign(src, len);
        s->z.next_in = bytes(s->in.data());
        s->z.avail_in = static_cast<uInt>(len);
        s->source_done = true;
    } else {
        s->kind = t == LUA_TFUNCTION ? SourceKind::Function : SourceKind::Object;
        if (s->kind == SourceKind::Object) {
            lua_getfield(L, 1, "read");
            luaL_argexpected(L, !lua_isnil(L, -1), 1, "string, function or object with read");
            lua_pop(L, 1);
        }
        lua_pushvalue(L, 1);
        lua_setiuservalue(L, -2, 1);  // ud.uv1 = source
    }
    return 1;
}

// ---- deflate write stream

struct Deflater {
    z_stream z{};
    ~Deflater() { deflateEnd(&z); }
};

Deflater* check_deflater(lua_State* L, int idx) {
    return check_open<Deflater>(L, idx, kDeflateMeta);
}

// Hands `data` to the sink (uservalue 1 of the stream at `idx`). [-0, +0]
void to_sink(lua_State* L, int idx, const std::string& data) {
    if (data.empty()) return;
    lua_getiuservalue(L, idx, 1);  // [sink]
    if (lua_type(L, -1) == LUA_TFUNCTION) {
        lua_pushlstring(L, data.data(), data.size());
        lua_call(L, 1, 0);
    } else {
        lua_getfield(L, -1, "write");  // [sink, write]
        lua_insert(L, -2);             // [write, sink]
        lua_pushlstring(L, data.data(), data.size());
        lua_call(L, 2, 0);
    }
}

// Runs deflate over `in` with `flush`, sending all output to the sink.
void pump(lua_State* L, int idx, Deflater& d, const char* in, size_t len, int flush) {
    d.z.next_in = bytes(in);
    d.z.avail_in = static_cast<uInt>(len);
    std::string out;
    unsigned char buf[kChunk];
    for (;;) {
        d.z.next_out = buf;
        d.z.avail_out = sizeof buf;
        int ret = deflate(&d.z, flush);
        out.append(reinterpret_cast<char*>(buf), sizeof buf - d.z.avail_out);
        if (ret == Z_STREAM_END) break;
        if (ret != Z_OK && ret != Z_BUF_ERROR) luaL_error(L, "zlib error: %s", zError(ret));
        // Done once zlib had room left over and consumed all input.
        if (d.z.avail_out != 0 && d.z.avail_in == 0) break;
    }
    to_sink(L, idx, out);
}

int deflate_write(lua_State* L) {
    Deflater& d = *check_deflater(L, 1);
    const int top = lua_gettop(L);
    for (int i = 2; i <= top; ++i) {
        size_t len;
        const char* s = luaL_checklstring(L, i, &len);
        pump(L, 1, d, s, len, Z_NO_FLUSH);
    }
    lua_settop(L, 1);
    return 1;
}

int deflate_flush(lua_State* L) {
    Deflater& d = *check_deflater(L, 1);
    static const char* const modes[] = {"sync", "full", "finish", nullptr};
    static const int flushes[] = {Z_SYNC_FLUSH, Z_FULL_FLUSH, Z_FINISH};
    int mode = luaL_checkoption(L, 2, "sync", modes);
    pump(L, 1, d, "", 0, flushes[mode]);
    lua_settop(L, 1);
    return 1;
}

constexpr lua_CFunction deflate_gc = close_box<Deflater, kDeflateMeta, destroy<Deflater>>;

// close(): finishes the stream into the sink, then frees it.
int deflate_close(lua_State* L) {
    Deflater& d = *check_deflater(L, 1);
    pump(L, 1, d, "", 0, Z_FINISH);
    deflate_gc(L);
    lua_pushboolean(L, 1);
    return 1;
}

const luaL_Reg kDeflateMethods[] = {
    {"write", nse::guard<deflate_write>},
    {"flush", nse::guard<deflate_flush>},
    {"close", nse::guard<deflate_close>},
    {"__gc", deflate_gc},
    {"__close", deflate_gc},
    {nullptr, nullptr},
};

// deflate(sink[, level, method, windowBits, memLevel, strategy, dictionary]) → write stream
int l_deflate(lua_State* L) {
    const int t = lua_type(L, 1);
    luaL_argexpected(L, t == LUA_TFUNCTION || t == LUA_TTABLE || t == LUA_TUSERDATA, 1,
                     "function or object with write");
    if (t != LUA_TFUNCTION) {
        lua_getfield(L, 1, "write");
        luaL_argexpected(L, !lua_isnil(L, -1), 1, "function or object with write");
        lua_pop(L, 1);
    }
    int level = static_cast<int>(luaL_optinteger(L, 2, Z_DEFAULT_COMPRESSION));
    int method = static_cast<int>(luaL_optinteger(L, 3, Z_DEFLATED));
    int window = static_cast<int>(luaL_optinteger(L, 4, 15));
    int mem = static_cast<int>(luaL_optinteger(L, 5, 8));
    int strategy = static_cast<int>(luaL_optinteger(L, 6, Z_DEFAULT_STRATEGY));
    size_t dlen = 0;
    const char* dict = luaL_optlstring(L, 7, nullptr, &dlen);

    Box<Deflater>* box =
        new_box<Deflater>(L, 1, kDeflateMeta, kDeflateMethods);  // [.., ud], closed
    auto* d = new Deflater();
    if (deflateInit2(&d->z, level, method, window, mem, strategy) != Z_OK) {
        delete d;
        return luaL_error(L, "failed to initialize zstream structures");
    }
    box->p = d;
    if (dict && deflateSetDictionary(&d->z, bytes(dict), static_cast<uInt>(dlen)) != Z_OK) {
        return luaL_error(L, "failed to set zlib dictionary");
    }
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);  // ud.uv1 = sink
    return 1;
}

const luaL_Reg kFunctions[] = {
    {"version", l_version},
    {"adler32", checksum<adler32>},
    {"crc32", checksum<crc32>},
    {"compress", nse::guard<l_compress>},
    {"decompress", nse::guard<l_decompress>},
    {"inflate", nse::guard<l_inflate>},
    {"deflate", nse::guard<l_deflate>},
    {nullptr, nullptr},
};

}  // namespace

int luaopen_zlib(lua_State* L) {
    push_metatable(L, kInflateMeta, kInflateMethods);
    push_metatable(L, kDeflateMeta, kDeflateMethods);
    lua_pop(L, 2);
    luaL_newlib(L, kFunctions);
    return 1;
}

}  // namespace nse::lib
