// Reads a YAML config file into proxy_config (SPEC section 5): the only code that sees YAML.
//
// Each section's keys are listed once, in its schema<T>; that table drives both the parsing
// and the unknown-key check. No problem stops the load: all are collected with their
// position. The cross-key rules of validate() run last and point at the node they are about.
#include "config/config.hpp"

#include "config/rules.hpp"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <concepts>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>

namespace wsdrain::config {

namespace {

class reader;

// One key of a mapping and how its value is read into the struct of that mapping.
template <class T>
struct field {
    std::string_view key;
    void (*read)(reader& r, const YAML::Node& value, const std::string& path, T& out);
};

// schema<T>::fields: the keys of the mapping read into T. Specialized below for each section.
template <class T>
struct schema {};

template <class T>
concept section = requires {
    schema<T>::fields;
};

problem at(const YAML::Mark& mark, std::string message) {
    if (mark.is_null()) return {0, 0, std::move(message)};
    return {mark.line + 1, mark.column + 1, std::move(message)};  // yaml-cpp counts from 0
}

// What the file holds where something else was expected: "'abc'", "a list", ...
std::string describe(const YAML::Node& node) {
    switch (node.Type()) {
        case YAML::NodeType::Scalar: return "'" + node.Scalar() + "'";
        case YAML::NodeType::Sequence: return "a list";
        case YAML::NodeType::Map: return "a mapping";
        default: return "nothing";
    }
}

bool is_digits(std::string_view text) {
    return !text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos;
}

// Whether key path `inner` is `outer` or lies inside it: "upstreams[0].name" is in "upstreams".
bool is_within(std::string_view inner, std::string_view outer) {
    if (!inner.starts_with(outer)) return false;
    return outer.empty() || inner.size() == outer.size() || inner[outer.size()] == '.' || inner[outer.size()] == '[';
}

// Reads nodes into typed values. A bad value leaves the default in place and is reported with
// its key path; reading goes on.
class reader {
public:
    explicit reader(std::vector<problem>& problems) : problems_(problems) {}

    void read_root(const YAML::Node& root, proxy_config& out);  // after the schemas

    void read(const YAML::Node& node, const std::string& path, std::string& out) {
        read_scalar(node, path, "a string", out, [](const std::string& text) { return std::optional(text); });
    }
    void read(const YAML::Node& node, const std::string& path, duration& out) {
        read_scalar(node, path, "a duration like 5s", out,
                    [](const std::string& text) { return parse_duration(text); });
    }
    void read(const YAML::Node& node, const std::string& path, address& out) {
        read_scalar(node, path, "HOST:PORT or [IPv6]:PORT", out,
                    [](const std::string& text) { return parse_address(text); });
    }
    void read(const YAML::Node& node, const std::string& path, bool& out) {
        read_scalar(node, path, "true or false", out, [](const std::string& text) -> std::optional<bool> {
            if (text == "true") return true;
            if (text == "false") return false;
            return std::nullopt;
        });
    }
    void read(const YAML::Node& node, const std::string& path, log_format& out) {
        read_scalar(node, path, "text or json", out, [](const std::string& text) -> std::optional<log_format> {
            if (text == "text") return log_format::text;
            if (text == "json") return log_format::json;
            return std::nullopt;
        });
    }
    void read(const YAML::Node& node, const std::string& path, health_check_type& out) {
        read_scalar(node, path, "tcp or http", out, [](const std::string& text) -> std::optional<health_check_type> {
            if (text == "tcp") return health_check_type::tcp;
            if (text == "http") return health_check_type::http;
            return std::nullopt;
        });
    }
    template <std::unsigned_integral T>
    void read(const YAML::Node& node, const std::string& path, T& out);
    template <class T>
    void read(const YAML::Node& node, const std::string& path, std::vector<T>& out);
    template <class T>
    void read(const YAML::Node& node, const std::string& path, std::optional<T>& out) {
        read(node, path, out.emplace());
    }
    template <section T>
    void read(const YAML::Node& node, const std::string& path, T& out);

    // Reports each violation at the node it is about, unless it may follow from a value already
    // reported as bad (that value's default stands in for it).
    void report(std::vector<detail::rule_violation> violations) {
        for (detail::rule_violation& violation : violations) {
            if (follows_from_bad_value(violation)) continue;
            problems_.push_back(at(locate(violation.path), std::move(violation.message)));
        }
    }

private:
    template <class T, class Parse>
    void read_scalar(const YAML::Node& node, const std::string& path, std::string_view expected, T& out, Parse parse) {
        if (node.IsScalar()) {
            if (std::optional<T> value = parse(node.Scalar())) {
                out = *std::move(value);
                return;
            }
        }
        fail(node, path, "expected " + std::string(expected) + ", got " + describe(node));
    }

    // A bad value: reported at the value, or at its key when there is no value to point at.
    void fail(const YAML::Node& node, const std::string& path, const std::string& text) {
        const YAML::Mark mark = node.IsNull() ? locate(path) : node.Mark();
        problems_.push_back(at(mark, (path.empty() ? "top level" : path) + ": " + text));
        bad_paths_.insert(path);
    }

    // Where `path` is in the file, or else the nearest enclosing key that is.
    YAML::Mark locate(std::string path) const {
        for (;;) {
            if (const auto found = marks_.find(path); found != marks_.end()) return found->second;
            if (path.empty()) return YAML::Mark::null_mark();
            const std::size_t cut = path.find_last_of(".[");
            path.resize(cut == std::string::npos ? 0 : cut);
        }
    }

    bool follows_from_bad_value(const detail::rule_violation& violation) const {
        const auto touches = [this](const std::string& path) { return touches_bad_value(path); };
        return touches(violation.path) || std::ranges::any_of(violation.inputs, touches);
    }

    // Whether a bad value lies at `path`, around it or inside it. Looked up in the sorted set
    // rather than compared with every bad value: a file may hold hundreds of each (found by
    // tests/fuzz/fuzz_config, where a list of empty items made this quadratic).
    bool touches_bad_value(const std::string& path) const {
        if (bad_paths_.empty()) return false;
        // Around it: "" and every enclosing path ("upstreams", "upstreams[0]", ...), and itself.
        if (bad_paths_.contains(std::string())) return true;
        for (std::size_t cut = path.find_first_of(".[", 1); cut != std::string::npos; cut = path.find_first_of(".[", cut + 1))
            if (bad_paths_.contains(path.substr(0, cut))) return true;
        // Itself or inside it: the paths that start with it, in order right after it.
        for (auto it = bad_paths_.lower_bound(path); it != bad_paths_.end() && it->starts_with(path); ++it)
            if (is_within(*it, path)) return true;
        return false;
    }

    std::vector<problem>& problems_;
    // Key path -> where to point: a scalar value itself; a mapping, a list or an empty value at
    // its key (a block mapping's own mark would be its first inner key, an empty value's the
    // next token).
    std::map<std::string, YAML::Mark> marks_;
    std::set<std::string> bad_paths_;          // key paths of values reported as bad
};

template <std::unsigned_integral T>
void reader::read(const YAML::Node& node, const std::string& path, T& out) {
    if (!node.IsScalar()) {
        fail(node, path, "expected a whole number, got " + describe(node));
        return;
    }
    const std::string& text = node.Scalar();
    const char* const end = text.data() + text.size();
    const auto [parsed_to, error] = std::from_chars(text.data(), end, out);
    if (error == std::errc{} && parsed_to == end) return;
    if (error == std::errc::result_out_of_range && parsed_to == end) {
        fail(node, path,
             "must be at most " + std::to_string(std::numeric_limits<T>::max()) + ", got " + describe(node));
    } else if (text.starts_with('-') && is_digits(std::string_view(text).substr(1))) {
        fail(node, path, "must not be negative, got " + describe(node));
    } else {
        fail(node, path, "expected a whole number, got " + describe(node));
    }
}

// A list given in the file replaces the default list entirely.
template <class T>
void reader::read(const YAML::Node& node, const std::string& path, std::vector<T>& out) {
    if (!node.IsSequence()) {
        fail(node, path, "expected a list, got " + describe(node));
        return;
    }
    out.assign(node.size(), T{});
    std::size_t index = 0;
    for (const YAML::Node& element : node) {
        const std::string element_path = path + "[" + std::to_string(index) + "]";
        marks_[element_path] = element.Mark();
        read(element, element_path, out[index++]);
    }
}

template <section T>
void reader::read(const YAML::Node& node, const std::string& path, T& out) {
    if (!node.IsMap()) {
        fail(node, path, "expected a mapping, got " + describe(node));
        return;
    }
    const std::span<const field<T>> fields = schema<T>::fields;
    const std::string where = path.empty() ? "at the top level" : "in " + path;
    std::set<std::string> seen;
    for (const auto& entry : node) {
        const YAML::Node& key = entry.first;
        const YAML::Node& value = entry.second;
        const std::string name = key.IsScalar() ? key.Scalar() : std::string();
        const auto known = std::ranges::find(fields, name, &field<T>::key);
        if (!key.IsScalar() || known == fields.end()) {
            problems_.push_back(at(key.Mark(), "unknown key " + describe(key) + " " + where));
        } else if (!seen.insert(name).second) {
            problems_.push_back(at(key.Mark(), "duplicate key '" + name + "' " + where));
        } else {
            const std::string child = path.empty() ? name : path + "." + name;
            marks_[child] = value.IsScalar() ? value.Mark() : key.Mark();
            known->read(*this, value, child, out);
        }
    }
}

template <class M>
struct member_of;
template <class C, class V>
struct member_of<V C::*> {
    using owner = C;
};

// The field::read of a key whose value goes straight into the struct member `member`.
template <auto member>
void read_member(reader& r, const YAML::Node& value, const std::string& path,
                 typename member_of<decltype(member)>::owner& out) {
    r.read(value, path, out.*member);
}

// The keys of SPEC section 5. A section's schema comes before the sections that hold it.
template <>
struct schema<tls_config> {
    static constexpr field<tls_config> fields[] = {
        {"cert", read_member<&tls_config::cert>},
        {"key", read_member<&tls_config::key>},
    };
};

template <>
struct schema<admin_config> {
    static constexpr field<admin_config> fields[] = {
        {"listen", read_member<&admin_config::listen>},
        {"token", read_member<&admin_config::token>},
        {"allow_remote_without_token", read_member<&admin_config::allow_remote_without_token>},
    };
};

template <>
struct schema<health_check_config> {
    static constexpr field<health_check_config> fields[] = {
        {"type", read_member<&health_check_config::type>},
        {"path", read_member<&health_check_config::path>},
        {"interval", read_member<&health_check_config::interval>},
        {"timeout", read_member<&health_check_config::timeout>},
        {"healthy_threshold", read_member<&health_check_config::healthy_threshold>},
        {"unhealthy_threshold", read_member<&health_check_config::unhealthy_threshold>},
    };
};

template <>
struct schema<upstream_config> {
    static constexpr field<upstream_config> fields[] = {
        {"name", read_member<&upstream_config::name>},
        {"endpoints", read_member<&upstream_config::endpoints>},
        {"tls", read_member<&upstream_config::tls>},
        {"connect_timeout", read_member<&upstream_config::connect_timeout>},
        {"hold_timeout", read_member<&upstream_config::hold_timeout>},
        {"hold_max", read_member<&upstream_config::hold_max>},
        {"health_check", read_member<&upstream_config::health_check>},
    };
};

template <>
struct schema<route_config> {
    static constexpr field<route_config> fields[] = {
        {"host", read_member<&route_config::host>},
        {"path_prefix", read_member<&route_config::path_prefix>},
        {"upstream", read_member<&route_config::upstream>},
    };
};

template <>
struct schema<reconnect_hint_config> {
    static constexpr field<reconnect_hint_config> fields[] = {
        {"min", read_member<&reconnect_hint_config::min>},
        {"max", read_member<&reconnect_hint_config::max>},
    };
};

template <>
struct schema<drain_config> {
    static constexpr field<drain_config> fields[] = {
        {"pre_delay", read_member<&drain_config::pre_delay>},
        {"spread", read_member<&drain_config::spread>},
        {"timeout", read_member<&drain_config::timeout>},
        {"close_timeout", read_member<&drain_config::close_timeout>},
        {"close_code", read_member<&drain_config::close_code>},
        {"close_reason", read_member<&drain_config::close_reason>},
        {"reconnect_hint", read_member<&drain_config::reconnect_hint>},
    };
};

template <>
struct schema<limits_config> {
    static constexpr field<limits_config> fields[] = {
        {"max_sessions", read_member<&limits_config::max_sessions>},
        {"max_header_bytes", read_member<&limits_config::max_header_bytes>},
        {"header_timeout", read_member<&limits_config::header_timeout>},
        {"max_frame_bytes", read_member<&limits_config::max_frame_bytes>},
        {"max_sessions_per_client", read_member<&limits_config::max_sessions_per_client>},
        {"max_body_bytes", read_member<&limits_config::max_body_bytes>},
        {"session_buffer_bytes", read_member<&limits_config::session_buffer_bytes>},
    };
};

template <>
struct schema<keepalive_config> {
    static constexpr field<keepalive_config> fields[] = {
        {"ping_interval", read_member<&keepalive_config::ping_interval>},
        {"timeout", read_member<&keepalive_config::timeout>},
    };
};

template <>
struct schema<log_config> {
    static constexpr field<log_config> fields[] = {
        {"level", read_member<&log_config::level>},
        {"format", read_member<&log_config::format>},
    };
};

template <>
struct schema<proxy_config> {
    static constexpr field<proxy_config> fields[] = {
        {"listen", read_member<&proxy_config::listen>},
        {"threads", read_member<&proxy_config::threads>},
        {"tls", read_member<&proxy_config::tls>},
        {"admin", read_member<&proxy_config::admin>},
        {"upstreams", read_member<&proxy_config::upstreams>},
        {"routes", read_member<&proxy_config::routes>},
        {"drain", read_member<&proxy_config::drain>},
        {"limits", read_member<&proxy_config::limits>},
        {"keepalive", read_member<&proxy_config::keepalive>},
        {"log", read_member<&proxy_config::log>},
    };
};

void reader::read_root(const YAML::Node& root, proxy_config& out) {
    marks_[""] = root.Mark();
    read(root, "", out);
}

// Where the first documents of a YAML stream begin, and their root nodes, without building them.
struct document_marks final : YAML::EventHandler {
    std::vector<YAML::Mark> starts;
    std::vector<YAML::Mark> roots;

    void OnDocumentStart(const YAML::Mark& mark) override { starts.push_back(mark); }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { node(mark); }
    void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { node(mark); }
    void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t, const std::string&) override {
        node(mark);
    }
    void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
        node(mark);
    }
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
        node(mark);
    }
    void OnMapEnd() override {}

private:
    void node(const YAML::Mark& mark) {
        if (roots.size() < starts.size()) roots.push_back(mark);
    }
};

// YAML::LoadAll is not used: for a ',' where a document should start, yaml-cpp 0.7 reports an
// empty document without consuming the ',', again and again (yaml-cpp issue #1040), and
// LoadAll collects them until memory runs out. So at most three documents are looked at, and
// one that starts where the previous one did is a syntax error.
void read_documents(const std::string& text, load_result& result) {
    std::istringstream in(text);
    YAML::Parser parser(in);
    document_marks documents;
    while (documents.starts.size() < 3 && parser.HandleNextDocument(documents)) {}
    for (std::size_t i = 1; i < documents.starts.size(); ++i) {
        const YAML::Mark& start = documents.starts[i];
        if (start.pos == documents.starts[i - 1].pos) {
            const bool printable = start.pos >= 0 && static_cast<std::size_t>(start.pos) < text.size() &&
                                   text[start.pos] > ' ' && text[start.pos] < 0x7f;
            result.problems.push_back(
                at(start, printable ? "invalid YAML: unexpected '" + text.substr(start.pos, 1) + "'"
                                    : std::string("invalid YAML: unexpected text")));
            return;
        }
    }
    if (documents.starts.size() > 1) {
        result.problems.push_back(at(documents.roots.size() > 1 ? documents.roots[1] : documents.starts[1],
                                     "a config file holds one YAML document, found more"));
    }
    const YAML::Node root = YAML::Load(text);  // the first document
    if (root.IsNull()) return;                  // an empty file: all defaults
    reader r(result.problems);
    r.read_root(root, result.config);
    r.report(detail::check_rules(result.config));
}

// yaml-cpp's scanner counts the characters it asked for past the end of the input, so a
// syntax error at the very end ("\x4<EOF>") may point beyond its line; it is pointed just past
// the line's last character instead.
void clamp_to_line(std::string_view text, problem& p) {
    if (p.line < 1) return;
    std::size_t start = 0;
    for (int line = 1; line < p.line; ++line) {
        const std::size_t end = text.find('\n', start);
        if (end == std::string_view::npos) return;
        start = end + 1;
    }
    const std::size_t length = std::min(text.find('\n', start), text.size()) - start;
    if (static_cast<std::size_t>(p.column) > length + 1) p.column = static_cast<int>(length + 1);
}

struct file_closer {
    void operator()(std::FILE* file) const { std::fclose(file); }
};

// Appends the whole file to `out`; the OS error that stopped it, if any.
std::error_code read_file(const std::string& path, std::string& out) {
    const std::unique_ptr<std::FILE, file_closer> file(std::fopen(path.c_str(), "rb"));
    if (!file) return {errno, std::generic_category()};
    char buffer[8192];
    while (const std::size_t n = std::fread(buffer, 1, sizeof buffer, file.get())) out.append(buffer, n);
    if (std::ferror(file.get())) return {errno, std::generic_category()};
    return {};
}

}  // namespace

load_result load_string(std::string_view yaml_text) {
    load_result result;
    try {
        read_documents(std::string(yaml_text), result);
    } catch (const YAML::Exception& e) {
        problem p = at(e.mark, "invalid YAML: " + e.msg);
        clamp_to_line(yaml_text, p);
        result.problems.push_back(std::move(p));
    } catch (const std::exception& e) {
        result.problems.push_back({0, 0, std::string("cannot load the config: ") + e.what()});
    }
    std::ranges::stable_sort(result.problems, {}, [](const problem& p) { return std::pair(p.line, p.column); });
    return result;
}

load_result load_file(const std::string& path) {
    std::string text;
    if (const std::error_code error = read_file(path, text)) {
        load_result result;
        result.problems.push_back({0, 0, "cannot read the config file: " + error.message()});
        return result;
    }
    return load_string(text);
}

}  // namespace wsdrain::config
