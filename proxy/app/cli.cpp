#include "app/cli.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "drain/partial.hpp"

namespace wsdrain::app {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

struct reply {
    unsigned status = 0;
    std::string body;
};

// One request to the admin listener, bounded by `timeout`; nullopt when it cannot be reached.
std::optional<reply> call(const config::address& admin, bhttp::verb method, const std::string& target,
                          std::chrono::milliseconds timeout, std::string* error) {
    asio::io_context ctx;
    beast::tcp_stream stream{ctx};
    beast::flat_buffer buffer;
    bhttp::request<bhttp::empty_body> req{method, target, 11};
    req.set(bhttp::field::host, admin.to_string());
    req.set(bhttp::field::user_agent, "wsdrain-cli");
    if (const char* token = std::getenv("WSDRAIN_ADMIN_TOKEN"); token && *token)
        req.set(bhttp::field::authorization, std::string("Bearer ") + token);
    bhttp::response<bhttp::string_body> res;
    beast::error_code result;
    stream.expires_after(timeout);
    tcp::resolver resolver{ctx};
    resolver.async_resolve(admin.host, std::to_string(admin.port), [&](beast::error_code ec, tcp::resolver::results_type r) {
        if (ec) return void(result = ec);
        stream.async_connect(r, [&](beast::error_code cec, const tcp::endpoint&) {
            if (cec) return void(result = cec);
            bhttp::async_write(stream, req, [&](beast::error_code wec, std::size_t) {
                if (wec) return void(result = wec);
                bhttp::async_read(stream, buffer, res, [&](beast::error_code rec, std::size_t) { result = rec; });
            });
        });
    });
    ctx.run();
    if (result) {
        if (error) *error = result.message();
        return std::nullopt;
    }
    return reply{res.result_int(), res.body()};
}

// The value of "key" in our own flat JSON status object ("" when absent).
std::string field(const std::string& json, std::string_view key) {
    const std::string needle = "\"" + std::string(key) + "\":";
    auto pos = json.find(needle);
    if (pos == std::string::npos) return {};
    pos += needle.size();
    if (json[pos] == '"') return json.substr(pos + 1, json.find('"', pos + 1) - pos - 1);
    return json.substr(pos, json.find_first_of(",}", pos) - pos);
}

double number(const std::string& json, std::string_view key) { return std::atof(field(json, key).c_str()); }

// The "partial_drain" object of the status ("" when there is none).
std::string partial_object(const std::string& json) {
    const std::string needle = "\"partial_drain\":{";
    const auto pos = json.find(needle);
    if (pos == std::string::npos) return {};
    return json.substr(pos + needle.size() - 1, json.find('}', pos) - pos - needle.size() + 2);
}

struct options {
    config::address admin{"127.0.0.1", 9901};
    bool wait = false;
    std::chrono::milliseconds timeout = 10min;
    std::string fraction, spread;  // a partial drain, as given on the command line
    std::string upstream, endpoint;  // the drain of an upstream or one of its endpoints
};

std::optional<options> parse(const std::vector<std::string>& args, bool allow_wait, const char* command) {
    options o;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        auto value = [&]() -> std::optional<std::string> {
            if (const auto eq = a.find('='); eq != std::string::npos) return a.substr(eq + 1);
            if (i + 1 < args.size()) return args[++i];
            return std::nullopt;
        };
        const std::string name = a.substr(0, a.find('='));
        if (name == "--admin") {
            const auto v = value();
            const auto parsed = v ? config::parse_address(*v, true) : std::nullopt;
            if (!parsed) {
                std::cerr << "wsdrain " << command << ": --admin needs HOST:PORT or http://HOST:PORT\n";
                return std::nullopt;
            }
            o.admin = *parsed;
        } else if (allow_wait && a == "--wait") {
            o.wait = true;
        } else if (allow_wait && name == "--timeout") {
            const auto v = value();
            const auto d = v ? config::parse_duration(*v) : std::nullopt;
            if (!d) {
                std::cerr << "wsdrain " << command << ": --timeout needs a duration like 90s\n";
                return std::nullopt;
            }
            o.timeout = *d;
        } else if (allow_wait && name == "--fraction") {
            const auto v = value();
            if (!v || !drain::parse_fraction(*v)) {
                std::cerr << "wsdrain " << command << ": --fraction needs a decimal above 0 and at most 1, like 0.25\n";
                return std::nullopt;
            }
            o.fraction = *v;
        } else if (allow_wait && (name == "--upstream" || name == "--endpoint")) {
            const auto v = value();
            if (!v || v->empty()) {
                std::cerr << "wsdrain " << command << ": " << name << " needs a value\n";
                return std::nullopt;
            }
            (name == "--upstream" ? o.upstream : o.endpoint) = *v;
        } else if (allow_wait && name == "--spread") {
            const auto v = value();
            if (!v || !config::parse_duration(*v)) {
                std::cerr << "wsdrain " << command << ": --spread needs a duration like 5s\n";
                return std::nullopt;
            }
            o.spread = *v;
        } else {
            std::cerr << "wsdrain " << command << ": unknown option '" << a << "'\n";
            return std::nullopt;
        }
    }
    if (!o.endpoint.empty() && o.upstream.empty()) {
        std::cerr << "wsdrain " << command << ": --endpoint goes with --upstream NAME\n";
        return std::nullopt;
    }
    if (!o.upstream.empty() && !o.fraction.empty()) {
        std::cerr << "wsdrain " << command << ": --fraction drains a share of every upstream; it does not go with --upstream\n";
        return std::nullopt;
    }
    if (!o.spread.empty() && o.fraction.empty()) {
        std::cerr << "wsdrain " << command << ": --spread goes with --fraction (a full drain uses drain.spread)\n";
        return std::nullopt;
    }
    return o;
}

void print_partial(const std::string& p) {
    std::printf("partial drain: %s, %llu of %llu sessions chosen, %llu asked to close, %llu closed cleanly, "
                "%llu forced\n",
                field(p, "state").c_str(), static_cast<unsigned long long>(number(p, "chosen")),
                static_cast<unsigned long long>(number(p, "sessions_at_start")),
                static_cast<unsigned long long>(number(p, "asked")),
                static_cast<unsigned long long>(number(p, "closed_clean")),
                static_cast<unsigned long long>(number(p, "closed_forced")));
    std::fflush(stdout);
}

// `wsdrain drain --fraction F [--spread D] [--wait]`: closes that share of the sessions and
// goes on serving; with --wait, until every chosen session has been asked to close.
int partial_drain_command(const options& o) {
    std::string error;
    std::string target = "/drain?fraction=" + o.fraction;
    if (!o.spread.empty()) target += "&spread=" + o.spread;
    const auto started = call(o.admin, bhttp::verb::post, target, 30s, &error);
    if (!started) {
        std::cerr << "wsdrain drain: cannot reach the admin API at " << o.admin.to_string() << ": " << error << "\n";
        return 1;
    }
    if (started->status != 202) {
        std::cerr << "wsdrain drain: the admin API answered " << started->status << ": " << started->body;
        return 1;
    }
    std::string p = partial_object(started->body);
    if (!o.wait) {
        std::printf("partial drain started: fraction %g over %g s, %llu of %llu sessions chosen\n",
                    number(p, "fraction"), number(p, "spread_seconds"),
                    static_cast<unsigned long long>(number(p, "chosen")),
                    static_cast<unsigned long long>(number(p, "sessions_at_start")));
        return 0;
    }
    const auto deadline = std::chrono::steady_clock::now() + o.timeout;
    auto last_line = std::chrono::steady_clock::now() - 1h;
    for (;;) {
        const auto now = std::chrono::steady_clock::now();
        if (auto r = call(o.admin, bhttp::verb::get, "/drain", 5s, &error); r && r->status == 200)
            if (auto q = partial_object(r->body); !q.empty()) p = q;
        const bool done = field(p, "state") != "closing";
        if (done || now - last_line >= 1s) {
            print_partial(p);
            last_line = now;
        }
        if (done) return 0;
        if (now >= deadline) {
            std::cerr << "wsdrain drain: the partial drain did not end within "
                      << std::chrono::duration<double>(o.timeout).count() << " s\n";
            return 1;
        }
        std::this_thread::sleep_for(250ms);
    }
}

// The endpoint objects of an upstream's status, those named `only` (all when empty).
std::vector<std::string> endpoint_objects(const std::string& json, const std::string& only) {
    std::vector<std::string> out;
    for (std::size_t pos = 0; (pos = json.find("{\"endpoint\":", pos)) != std::string::npos;) {
        const std::size_t end = json.find('}', pos);
        std::string object = json.substr(pos, end - pos + 1);
        if (only.empty() || field(object, "endpoint") == only) out.push_back(std::move(object));
        pos = end;
    }
    return out;
}

std::string upstream_target(const options& o) {
    std::string t = "/upstreams/" + o.upstream;
    if (!o.endpoint.empty()) t += "/endpoints/" + o.endpoint;
    return t;
}

void print_endpoints(const std::vector<std::string>& endpoints) {
    for (const auto& e : endpoints)
        std::printf("  %s: %s, %s, %llu sessions\n", field(e, "endpoint").c_str(),
                    field(e, "up") == "true" ? "up" : "down", field(e, "drained") == "true" ? "drained" : "serving",
                    static_cast<unsigned long long>(number(e, "sessions")));
    std::fflush(stdout);
}

// `wsdrain drain|undrain --upstream NAME [--endpoint HOST:PORT] [--wait]`. With --wait, drain
// returns once no session is left on those endpoints, undrain once they are up.
int upstream_command(const options& o, bool drain) {
    const char* command = drain ? "drain" : "undrain";
    std::string error;
    const auto r = call(o.admin, bhttp::verb::post, upstream_target(o) + (drain ? "/drain" : "/undrain"), 30s, &error);
    if (!r) {
        std::cerr << "wsdrain " << command << ": cannot reach the admin API at " << o.admin.to_string() << ": " << error
                  << "\n";
        return 1;
    }
    if (r->status != 202) {
        std::cerr << "wsdrain " << command << ": the admin API answered " << r->status << ": " << r->body;
        return 1;
    }
    std::vector<std::string> endpoints = endpoint_objects(r->body, o.endpoint);
    std::printf("%s %s%s:\n", drain ? "drained" : "undrained", o.upstream.c_str(),
                o.endpoint.empty() ? "" : (" endpoint " + o.endpoint).c_str());
    print_endpoints(endpoints);
    if (!o.wait) return 0;
    const auto done = [drain](const std::vector<std::string>& list) {
        for (const auto& e : list)
            if (drain ? number(e, "sessions") > 0 : field(e, "up") != "true") return false;
        return true;
    };
    const auto deadline = std::chrono::steady_clock::now() + o.timeout;
    auto last_line = std::chrono::steady_clock::now();
    for (;;) {
        if (done(endpoints)) {
            std::printf(drain ? "no session left on them\n" : "up\n");
            return 0;
        }
        const auto now = std::chrono::steady_clock::now();
        if (now >= deadline) {
            std::cerr << "wsdrain " << command << ": " << (drain ? "sessions still open" : "still down") << " after "
                      << std::chrono::duration<double>(o.timeout).count() << " s\n";
            return 1;
        }
        std::this_thread::sleep_for(200ms);
        if (auto s = call(o.admin, bhttp::verb::get, "/upstreams/" + o.upstream, 5s, &error); s && s->status == 200)
            endpoints = endpoint_objects(s->body, o.endpoint);
        if (now - last_line >= 1s) {
            print_endpoints(endpoints);
            last_line = now;
        }
    }
}

void print_bar(const std::string& json, bool final) {
    const double p = number(json, "progress");
    const int width = 30, filled = static_cast<int>(p * width + 0.5);
    std::printf("\r  %-8s [%s%s] %3d%%  %llu/%llu closed, %llu forced  %.1fs%s", field(json, "state").c_str(),
                std::string(static_cast<std::size_t>(filled), '#').c_str(),
                std::string(static_cast<std::size_t>(width - filled), '.').c_str(), static_cast<int>(p * 100 + 0.5),
                static_cast<unsigned long long>(number(json, "closed_clean") + number(json, "closed_forced")),
                static_cast<unsigned long long>(number(json, "sessions_at_start")),
                static_cast<unsigned long long>(number(json, "closed_forced")), number(json, "elapsed_seconds"),
                final ? "\n" : "");
    std::fflush(stdout);
}

void print_line(const std::string& json) {
    std::printf("%s: %d%% (%llu of %llu sessions closed, %llu forced, %llu open), %.1f s\n",
                field(json, "state").c_str(), static_cast<int>(number(json, "progress") * 100 + 0.5),
                static_cast<unsigned long long>(number(json, "closed_clean") + number(json, "closed_forced")),
                static_cast<unsigned long long>(number(json, "sessions_at_start")),
                static_cast<unsigned long long>(number(json, "closed_forced")),
                static_cast<unsigned long long>(number(json, "sessions_active")), number(json, "elapsed_seconds"));
    std::fflush(stdout);
}

}  // namespace

int drain_command(const std::vector<std::string>& args) {
    const auto o = parse(args, true, "drain");
    if (!o) return 2;
    if (!o->fraction.empty()) return partial_drain_command(*o);
    if (!o->upstream.empty()) return upstream_command(*o, true);
    std::string error;
    const auto started = call(o->admin, bhttp::verb::post, "/drain", 10s, &error);
    if (!started) {
        std::cerr << "wsdrain drain: cannot reach the admin API at " << o->admin.to_string() << ": " << error << "\n";
        return 1;
    }
    if (started->status != 202) {
        std::cerr << "wsdrain drain: the admin API answered " << started->status << ": " << started->body;
        return 1;
    }
    if (!o->wait) {
        std::cout << "drain started: " << started->body;
        return 0;
    }
    const bool terminal = ::isatty(STDOUT_FILENO);
    const auto deadline = std::chrono::steady_clock::now() + o->timeout;
    auto last_line = std::chrono::steady_clock::now() - 1h;
    std::string json = started->body;
    for (;;) {
        const auto now = std::chrono::steady_clock::now();
        if (auto r = call(o->admin, bhttp::verb::get, "/drain", 5s, &error); r && r->status == 200) json = r->body;
        const bool drained = field(json, "state") == "drained";
        if (terminal) {
            print_bar(json, drained);
        } else if (drained || now - last_line >= 1s) {
            print_line(json);
            last_line = now;
        }
        if (drained) return 0;
        if (now >= deadline) {
            if (terminal) std::printf("\n");
            std::cerr << "wsdrain drain: not drained within " << std::chrono::duration<double>(o->timeout).count()
                      << " s\n";
            return 1;
        }
        std::this_thread::sleep_for(terminal ? 200ms : 250ms);
    }
}

int undrain_command(const std::vector<std::string>& args) {
    const auto o = parse(args, true, "undrain");
    if (!o) return 2;
    if (o->upstream.empty() || !o->fraction.empty()) {
        std::cerr << "wsdrain undrain: needs --upstream NAME [--endpoint HOST:PORT]\n";
        return 2;
    }
    return upstream_command(*o, false);
}

int status_command(const std::vector<std::string>& args) {
    const auto o = parse(args, false, "status");
    if (!o) return 2;
    std::string error;
    const auto r = call(o->admin, bhttp::verb::get, "/drain", 10s, &error);
    if (!r || r->status != 200) {
        std::cerr << "wsdrain status: cannot read " << o->admin.to_string() << "/drain: "
                  << (r ? std::to_string(r->status) : error) << "\n";
        return 1;
    }
    const std::string& j = r->body;
    const std::string state = field(j, "state");
    const auto open = static_cast<unsigned long long>(number(j, "sessions_active"));
    if (state == "serving") {
        std::printf("serving: %llu WebSocket sessions open\n", open);
    } else {
        std::printf("%s: started %s, %.1f s %s\n", state.c_str(), field(j, "started_at").c_str(),
                    number(j, "elapsed_seconds"), state == "drained" ? "to drain" : "ago");
        std::printf("sessions: %llu at the start, %llu still open; %llu closed cleanly, %llu forced\n",
                    static_cast<unsigned long long>(number(j, "sessions_at_start")), open,
                    static_cast<unsigned long long>(number(j, "closed_clean")),
                    static_cast<unsigned long long>(number(j, "closed_forced")));
        std::printf("progress: %d%%\n", static_cast<int>(number(j, "progress") * 100 + 0.5));
    }
    if (const std::string p = partial_object(j); !p.empty()) print_partial(p);
    return 0;
}

}  // namespace wsdrain::app
