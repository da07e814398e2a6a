// safetensors header: a small strict JSON parser (no dependency) and the reference's checks.
#include "safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <set>
#include <sstream>

#include "geoedit/geoedit.h"

namespace geoedit {

size_t st_dtype_bits(const std::string& d) {
  static const std::pair<const char*, size_t> kTable[] = {
      {"BOOL", 8}, {"U8", 8}, {"I8", 8}, {"F8_E5M2", 8}, {"F8_E4M3", 8}, {"F8_E8M0", 8},
      {"I16", 16}, {"U16", 16}, {"F16", 16}, {"BF16", 16}, {"I32", 32}, {"U32", 32}, {"F32", 32},
      {"F64", 64}, {"I64", 64}, {"U64", 64}, {"C64", 64},
      {"F4", 4}, {"F6_E2M3", 6}, {"F6_E3M2", 6},  // sub-byte types (safetensors >= 0.6)
  };
  for (const auto& e : kTable)
    if (d == e.first) return e.second;
  return 0;
}

size_t st_dtype_size(const std::string& d) {
  const size_t b = st_dtype_bits(d);
  return b % 8 == 0 ? b / 8 : 0;
}

namespace {

[[noreturn]] void fail(const std::string& file, const std::string& msg) {
  throw Error(ErrorCode::BadSafetensors, file + ": " + msg, file_details(file));
}

std::string quote(const std::string& s) {
  std::string o = "'";
  for (unsigned char c : s.size() > 120 ? s.substr(0, 120) : s) {
    if (c < 0x20 || c == 0x7f) {
      char b[8];
      snprintf(b, sizeof b, "\\x%02x", c);
      o += b;
    } else {
      o += char(c);
    }
  }
  if (s.size() > 120) o += "...";
  return o + "'";
}

// ---- strict UTF-8 check (no overlongs, no surrogates, <= U+10FFFF) ---------------------------
bool valid_utf8(const unsigned char* s, size_t n, size_t* bad) {
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) { ++i; continue; }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else { *bad = i; return false; }
    if (i + len > n) { *bad = i; return false; }
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) { *bad = i; return false; }
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) { *bad = i; return false; }
    i += len;
  }
  return true;
}

// ---- a minimal JSON DOM -----------------------------------------------------------------------
struct JVal {
  enum Type { Null, Bool, Num, Str, Arr, Obj } type = Null;
  bool b = false;
  bool is_uint = false;   // a non-negative integer literal that fits in uint64
  uint64_t u = 0;
  std::string s;
  std::vector<JVal> arr;
  std::vector<std::pair<std::string, JVal>> obj;
};

class Parser {
 public:
  Parser(const char* p, size_t n, const std::string& file) : p_(p), n_(n), file_(file) {}
  JVal parse_document() {
    ws();
    JVal v;
    value(&v, 0);
    ws();
    if (i_ != n_) err("unexpected data after the JSON value");
    return v;
  }

 private:
  const char* p_;
  size_t n_, i_ = 0;
  const std::string& file_;

  [[noreturn]] void err(const std::string& m) {
    std::ostringstream os;
    os << "header is not valid JSON: " << m << " at byte " << i_ << " of the header";
    fail(file_, os.str());
  }
  void ws() {
    while (i_ < n_ && (p_[i_] == ' ' || p_[i_] == '\t' || p_[i_] == '\n' || p_[i_] == '\r')) ++i_;
  }
  bool lit(const char* w) {
    size_t l = std::strlen(w);
    if (n_ - i_ >= l && std::memcmp(p_ + i_, w, l) == 0) { i_ += l; return true; }
    return false;
  }
  void value(JVal* v, int depth) {
    if (depth > 64) err("nesting deeper than 64");
    if (i_ >= n_) err("unexpected end");
    char c = p_[i_];
    if (c == '{') { object(v, depth); return; }
    if (c == '[') { array(v, depth); return; }
    if (c == '"') { v->type = JVal::Str; string(&v->s); return; }
    if (c == 't') { if (!lit("true")) err("invalid literal"); v->type = JVal::Bool; v->b = true; return; }
    if (c == 'f') { if (!lit("false")) err("invalid literal"); v->type = JVal::Bool; return; }
    if (c == 'n') { if (!lit("null")) err("invalid literal"); v->type = JVal::Null; return; }
    if (c == '-' || (c >= '0' && c <= '9')) { number(v); return; }
    err("unexpected character");
  }
  void object(JVal* v, int depth) {
    v->type = JVal::Obj;
    ++i_;  // {
    ws();
    if (i_ < n_ && p_[i_] == '}') { ++i_; return; }
    for (;;) {
      ws();
      if (i_ >= n_ || p_[i_] != '"') err("expected a string key");
      std::string key;
      string(&key);
      ws();
      if (i_ >= n_ || p_[i_] != ':') err("expected ':'");
      ++i_;
      ws();
      v->obj.emplace_back(std::move(key), JVal());
      value(&v->obj.back().second, depth + 1);
      ws();
      if (i_ >= n_) err("unexpected end in an object");
      if (p_[i_] == ',') { ++i_; continue; }
      if (p_[i_] == '}') { ++i_; return; }
      err("expected ',' or '}'");
    }
  }
  void array(JVal* v, int depth) {
    v->type = JVal::Arr;
    ++i_;
    ws();
    if (i_ < n_ && p_[i_] == ']') { ++i_; return; }
    for (;;) {
      ws();
      v->arr.emplace_back();
      value(&v->arr.back(), depth + 1);
      ws();
      if (i_ >= n_) err("unexpected end in an array");
      if (p_[i_] == ',') { ++i_; continue; }
      if (p_[i_] == ']') { ++i_; return; }
      err("expected ',' or ']'");
    }
  }
  static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  uint32_t hex4() {
    if (n_ - i_ < 4) err("truncated \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      int h = hexval(p_[i_ + k]);
      if (h < 0) err("invalid \\u escape");
      v = (v << 4) | uint32_t(h);
    }
    i_ += 4;
    return v;
  }
  static void put_utf8(std::string* o, uint32_t cp) {
    if (cp < 0x80) o->push_back(char(cp));
    else if (cp < 0x800) { o->push_back(char(0xC0 | (cp >> 6))); o->push_back(char(0x80 | (cp & 0x3F))); }
    else if (cp < 0x10000) {
      o->push_back(char(0xE0 | (cp >> 12))); o->push_back(char(0x80 | ((cp >> 6) & 0x3F))); o->push_back(char(0x80 | (cp & 0x3F)));
    } else {
      o->push_back(char(0xF0 | (cp >> 18))); o->push_back(char(0x80 | ((cp >> 12) & 0x3F)));
      o->push_back(char(0x80 | ((cp >> 6) & 0x3F))); o->push_back(char(0x80 | (cp & 0x3F)));
    }
  }
  void string(std::string* out) {
    ++i_;  // "
    for (;;) {
      if (i_ >= n_) err("unterminated string");
      unsigned char c = static_cast<unsigned char>(p_[i_]);
      if (c == '"') { ++i_; return; }
      if (c < 0x20) err("control character in a string");
      if (c != '\\') { out->push_back(char(c)); ++i_; continue; }
      ++i_;
      if (i_ >= n_) err("unterminated escape");
      char e = p_[i_++];
      switch (e) {
        case '"': out->push_back('"'); break;
        case '\\': out->push_back('\\'); break;
        case '/': out->push_back('/'); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xDC00 && cp <= 0xDFFF) err("lone trailing surrogate in a \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (!(n_ - i_ >= 2 && p_[i_] == '\\' && p_[i_ + 1] == 'u')) err("lone leading surrogate in a \\u escape");
            i_ += 2;
            uint32_t lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) err("invalid surrogate pair");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          put_utf8(out, cp);
          break;
        }
        default: err("invalid escape");
      }
    }
  }
  void number(JVal* v) {
    v->type = JVal::Num;
    size_t start = i_;
    bool neg = false, frac = false;
    if (p_[i_] == '-') { neg = true; ++i_; }
    if (i_ >= n_) err("invalid number");
    if (p_[i_] == '0') {
      ++i_;
    } else if (p_[i_] >= '1' && p_[i_] <= '9') {
      while (i_ < n_ && p_[i_] >= '0' && p_[i_] <= '9') ++i_;
    } else {
      err("invalid number");
    }
    size_t int_end = i_;
    if (i_ < n_ && p_[i_] == '.') {
      frac = true;
      ++i_;
      if (i_ >= n_ || !(p_[i_] >= '0' && p_[i_] <= '9')) err("invalid number");
      while (i_ < n_ && p_[i_] >= '0' && p_[i_] <= '9') ++i_;
    }
    if (i_ < n_ && (p_[i_] == 'e' || p_[i_] == 'E')) {
      frac = true;
      ++i_;
      if (i_ < n_ && (p_[i_] == '+' || p_[i_] == '-')) ++i_;
      if (i_ >= n_ || !(p_[i_] >= '0' && p_[i_] <= '9')) err("invalid number");
      while (i_ < n_ && p_[i_] >= '0' && p_[i_] <= '9') ++i_;
    }
    if (neg || frac) return;
    uint64_t u = 0;
    for (size_t k = start; k < int_end; ++k) {
      const uint64_t d = uint64_t(p_[k] - '0');
      if (u > (std::numeric_limits<uint64_t>::max() - d) / 10) return;  // too large: not is_uint
      u = u * 10 + d;
    }
    v->is_uint = true;
    v->u = u;
  }
};

// Checked multiply; false on overflow.
bool mul_ok(uint64_t a, uint64_t b, uint64_t* r) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return false;
  *r = a * b;
  return true;
}

}  // namespace

StHeader parse_st_header(const char* json, size_t n, uint64_t file_size, const std::string& file) {
  StHeader h;
  h.file_size = file_size;
  h.header_len = n;
  h.data_offset = 8 + uint64_t(n);
  size_t bad = 0;
  if (!valid_utf8(reinterpret_cast<const unsigned char*>(json), n, &bad)) {
    std::ostringstream os;
    os << "header is not valid UTF-8 (byte " << bad << " of the header)";
    fail(file, os.str());
  }
  Parser parser(json, n, file);
  JVal root = parser.parse_document();
  if (root.type != JVal::Obj) fail(file, "header is not a JSON object (not a safetensors file?)");
  const uint64_t data_size = file_size - h.data_offset;
  std::set<std::string> seen;
  for (auto& kv : root.obj) {
    const std::string& name = kv.first;
    if (!seen.insert(name).second) fail(file, "duplicate tensor name " + quote(name) + " in the header");
    JVal& v = kv.second;
    if (name == "__metadata__") {
      if (v.type == JVal::Null) continue;  // as the reference: null means no metadata
      if (v.type != JVal::Obj) fail(file, "__metadata__ is not an object of strings");
      std::set<std::string> mkeys;
      for (auto& m : v.obj) {
        if (m.second.type != JVal::Str) fail(file, "__metadata__ value for " + quote(m.first) + " is not a string");
        if (!mkeys.insert(m.first).second) fail(file, "duplicate key " + quote(m.first) + " in __metadata__");
        h.metadata.emplace_back(m.first, std::move(m.second.s));
      }
      h.has_metadata = true;
      continue;
    }
    const std::string where = "tensor " + quote(name) + ": ";
    if (v.type != JVal::Obj) fail(file, where + "entry is not an object");
    const JVal *dt = nullptr, *sh = nullptr, *off = nullptr;
    for (auto& f : v.obj) {
      const JVal** slot = f.first == "dtype" ? &dt : f.first == "shape" ? &sh : f.first == "data_offsets" ? &off : nullptr;
      if (!slot) continue;  // unknown fields are ignored, as the reference does
      if (*slot) fail(file, where + "duplicate field " + quote(f.first));
      *slot = &f.second;
    }
    if (!dt || dt->type != JVal::Str) fail(file, where + "missing or non-string 'dtype'");
    if (!sh || sh->type != JVal::Arr) fail(file, where + "missing or non-array 'shape'");
    if (!off || off->type != JVal::Arr || off->arr.size() != 2 || !off->arr[0].is_uint || !off->arr[1].is_uint)
      fail(file, where + "'data_offsets' must be two non-negative integers");
    StTensor t;
    t.name = name;
    t.dtype = dt->s;
    const size_t bits = st_dtype_bits(t.dtype);
    if (bits == 0) fail(file, where + "unknown dtype " + quote(t.dtype));
    uint64_t numel = 1;
    for (const JVal& d : sh->arr) {
      if (!d.is_uint || d.u > uint64_t(std::numeric_limits<int64_t>::max()))
        fail(file, where + "shape entries must be non-negative integers");
      if (!mul_ok(numel, d.u, &numel)) fail(file, where + "shape element count overflows");
      t.shape.push_back(int64_t(d.u));
    }
    t.begin = off->arr[0].u;
    t.end = off->arr[1].u;
    if (t.end < t.begin) fail(file, where + "data_offsets end < begin");
    uint64_t nbits;
    if (!mul_ok(numel, bits, &nbits)) fail(file, where + "byte size overflows");
    if (nbits % 8 != 0) {
      std::ostringstream os;
      os << where << numel << " elements of " << t.dtype << " (" << bits << " bits) are not a whole number of bytes";
      fail(file, os.str());
    }
    const uint64_t bytes = nbits / 8;
    if (t.end - t.begin != bytes) {
      std::ostringstream os;
      os << where << "data_offsets span " << (t.end - t.begin) << " bytes but shape [";
      for (size_t k = 0; k < t.shape.size(); ++k) os << (k ? ", " : "") << t.shape[k];
      os << "] x " << t.dtype << " (" << bits << " bits) needs " << bytes;
      fail(file, os.str());
    }
    h.tensors.push_back(std::move(t));
  }
  std::stable_sort(h.tensors.begin(), h.tensors.end(), [](const StTensor& a, const StTensor& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  for (const StTensor& t : h.tensors) {
    std::ostringstream os;
    if (t.begin < pos) {
      os << "tensor " << quote(t.name) << ": data_offsets [" << t.begin << ", " << t.end
         << "] overlap the previous tensor (which ends at " << pos << ")";
      fail(file, os.str());
    }
    if (t.begin > pos) {
      os << "tensor " << quote(t.name) << ": data_offsets [" << t.begin << ", " << t.end << "] leave a gap of "
         << (t.begin - pos) << " bytes after offset " << pos;
      fail(file, os.str());
    }
    pos = t.end;
  }
  if (pos != data_size) {
    std::ostringstream os;
    os << "the tensors cover " << pos << " bytes but the data section holds " << data_size;
    if (!h.tensors.empty()) os << " (last tensor " << quote(h.tensors.back().name) << ")";
    fail(file, os.str());
  }
  return h;
}

StHeader parse_st_bytes(const uint8_t* bytes, size_t size, const std::string& file) {
  if (size < 8) fail(file, "file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = (n << 8) | bytes[k];
  if (n > kMaxHeaderBytes)
    fail(file, "header length " + std::to_string(n) + " exceeds the 100 MB limit");
  if (n > size - 8)
    fail(file, "header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(size) + " bytes)");
  return parse_st_header(reinterpret_cast<const char*>(bytes) + 8, size_t(n), size, file);
}

StHeader read_st_header(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    throw Error(e == ENOENT ? ErrorCode::Io : ErrorCode::Io, path + ": cannot open: " + std::strerror(e), file_details(path));
  }
  struct Closer { int fd; ~Closer() { ::close(fd); } } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) throw Error(ErrorCode::Io, path + ": cannot stat: " + std::strerror(errno), file_details(path));
  if (!S_ISREG(st.st_mode)) throw Error(ErrorCode::Io, path + ": not a regular file", file_details(path));
  const uint64_t size = uint64_t(st.st_size);
  auto pread_all = [&](void* buf, size_t len, uint64_t off) {
    size_t got = 0;
    while (got < len) {
      ssize_t r = ::pread(fd, static_cast<char*>(buf) + got, len - got, off_t(off + got));
      if (r < 0) {
        if (errno == EINTR) continue;
        throw Error(ErrorCode::Io, path + ": read failed: " + std::strerror(errno), file_details(path));
      }
      if (r == 0) fail(path, "file shrank while being read");
      got += size_t(r);
    }
  };
  if (size < 8) fail(path, "file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  uint8_t lb[8];
  pread_all(lb, 8, 0);
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = (n << 8) | lb[k];
  if (n > kMaxHeaderBytes) fail(path, "header length " + std::to_string(n) + " exceeds the 100 MB limit");
  if (n > size - 8)
    fail(path, "header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(size) + " bytes)");
  std::unique_ptr<char[]> buf(new char[size_t(n) + 1]);
  pread_all(buf.get(), size_t(n), 8);
  return parse_st_header(buf.get(), size_t(n), size, path);
}

}  // namespace geoedit
