// wsdrain: command line and wiring only (SPEC section 4).
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include <sys/resource.h>

#include <cstring>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "app/cli.hpp"
#include "app/server.hpp"
#include "config/config.hpp"
#include "log/log.hpp"

namespace {

using namespace wsdrain;

constexpr const char* usage = R"(wsdrain - a WebSocket reverse proxy with graceful drain

Usage:
  wsdrain [--config FILE] [--listen ADDR] [--upstream HOST:PORT] [--admin ADDR]
          [--log-level LEVEL] [--log-format text|json]
      Run the proxy. Flags override the file; with --upstream alone no file is needed.
  wsdrain check --config FILE
      Validate a config file: prints "config OK", or FILE:LINE:COL: message per problem.
  wsdrain drain [--admin ADDR] [--wait] [--timeout DURATION]
      Start a drain through the admin API; with --wait show progress and exit 0 once
      drained, 1 on timeout (default 10m). Meant as a Kubernetes preStop hook.
  wsdrain drain --fraction F [--spread DURATION] [--admin ADDR] [--wait]
      A partial drain: close that share of the sessions (0 < F <= 1, evenly across
      endpoints) over DURATION (default drain.spread), then go on serving; with --wait
      until every chosen session has been asked to close.
  wsdrain status [--admin ADDR]
      The drain status in words.
  wsdrain --version
  wsdrain --help

Addresses are HOST:PORT ([::1]:PORT for IPv6); drain and status also take http://HOST:PORT
(default 127.0.0.1:9901). A bearer token for the admin API comes from WSDRAIN_ADMIN_TOKEN.
)";

struct options {
    std::optional<std::string> config_file;
    std::optional<std::string> listen, upstream, admin, log_level, log_format;
};

// Parses "--flag VALUE" and "--flag=VALUE"; returns an error message or empty.
std::string parse_flags(const std::vector<std::string>& args, std::size_t first, options& o) {
    struct flag {
        const char* name;
        std::optional<std::string> options::*field;
    };
    static const flag flags[] = {{"--config", &options::config_file}, {"--listen", &options::listen},
                                 {"--upstream", &options::upstream},  {"--admin", &options::admin},
                                 {"--log-level", &options::log_level}, {"--log-format", &options::log_format}};
    for (std::size_t i = first; i < args.size(); ++i) {
        const std::string& a = args[i];
        const auto eq = a.find('=');
        const std::string name = a.substr(0, eq);
        const flag* f = nullptr;
        for (const auto& candidate : flags)
            if (name == candidate.name) f = &candidate;
        if (!f) return "unknown option '" + a + "' (see wsdrain --help)";
        if (eq != std::string::npos) o.*(f->field) = a.substr(eq + 1);
        else if (i + 1 < args.size()) o.*(f->field) = args[++i];
        else return std::string(f->name) + " needs a value";
    }
    return {};
}

// Builds the effective config: the file (or the defaults), then the flags.
std::optional<config::proxy_config> effective_config(const options& o) {
    config::proxy_config cfg;
    bool ok = true;
    if (o.config_file) {
        auto loaded = config::load_file(*o.config_file);
        for (const auto& p : loaded.problems) std::cerr << config::format_problem(*o.config_file, p) << "\n";
        if (!loaded.ok()) return std::nullopt;
        cfg = std::move(loaded.config);
    }
    auto address_flag = [&](const std::optional<std::string>& v, const char* name, config::address& out) {
        if (!v) return;
        if (auto a = config::parse_address(*v)) out = *a;
        else std::cerr << name << ": not an address: '" << *v << "' (HOST:PORT)\n", ok = false;
    };
    address_flag(o.listen, "--listen", cfg.listen);
    address_flag(o.admin, "--admin", cfg.admin.listen);
    if (o.upstream) {
        config::address a;
        address_flag(o.upstream, "--upstream", a);
        cfg.upstreams = {{"default", {a}}};
        cfg.routes = {{"", "/", "default"}};
    }
    if (o.log_level) cfg.log.level = *o.log_level;
    if (o.log_format) {
        if (*o.log_format == "json") cfg.log.format = config::log_format::json;
        else if (*o.log_format == "text") cfg.log.format = config::log_format::text;
        else std::cerr << "--log-format: must be text or json\n", ok = false;
    }
    for (const auto& p : config::validate(cfg))
        std::cerr << (o.config_file ? *o.config_file + ": " : std::string()) << p.message << "\n", ok = false;
    if (!ok) return std::nullopt;
    return cfg;
}

// Raises the soft descriptor limit to the hard one; says how many sessions that allows.
void raise_fd_limit() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    // Two descriptors a session (client and backend), less a few for listeners and logs.
    log::info("file descriptor limit", {{"limit", static_cast<std::uint64_t>(rl.rlim_cur)},
                                        {"sessions_possible", static_cast<std::uint64_t>(rl.rlim_cur / 2 - 16)}});
}

int run(const options& o) {
    auto cfg = effective_config(o);
    if (!cfg) return 1;
    try {
        log::setup(cfg->log);
    } catch (const std::exception& e) {
        std::cerr << "log.level: " << e.what() << "\n";
        return 1;
    }
    raise_fd_limit();
    app::server server{*cfg};
    // SIGTERM and SIGINT: the first drains, a second forces (the drain controller decides).
    // Installed before the listeners open, so that no signal can find the default action.
    boost::asio::io_context signals_context;
    // SIGHUP: the TLS certificate and key are read again.
    boost::asio::signal_set signals{signals_context, SIGTERM, SIGINT, SIGHUP};
    std::function<void(const boost::system::error_code&, int)> on_signal = [&](const boost::system::error_code& ec,
                                                                               int signo) {
        if (ec) return;
        const char* name = signo == SIGTERM ? "SIGTERM" : signo == SIGINT ? "SIGINT" : "SIGHUP";
        log::info("signal received", {{"signal", name}});
        if (signo == SIGHUP) server.reload_tls();
        else server.signal();
        signals.async_wait(on_signal);
    };
    signals.async_wait(on_signal);
    server.on_exit([&] { boost::asio::post(signals_context, [&] { signals.cancel(); }); });
    try {
        server.start();
    } catch (const std::exception& e) {
        log::error("start-up failed", {{"error", e.what()}});
        return 1;
    }
    signals_context.run();
    server.stop();
    log::info("wsdrain stopped");
    return 0;
}

int check(const options& o) {
    if (!o.config_file) {
        std::cerr << "wsdrain check: --config FILE is required\n";
        return 2;
    }
    auto loaded = config::load_file(*o.config_file);
    for (const auto& p : loaded.problems) std::cerr << config::format_problem(*o.config_file, p) << "\n";
    if (!loaded.ok()) return 1;
    std::cout << "config OK\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv, argv + argc);
    if (args.size() > 1 && (args[1] == "--help" || args[1] == "-h" || args[1] == "help")) {
        std::cout << usage;
        return 0;
    }
    if (args.size() > 1 && (args[1] == "--version" || args[1] == "version")) {
        std::cout << "wsdrain " << app::version << "\n";
        return 0;
    }
    if (args.size() > 1 && (args[1] == "drain" || args[1] == "status")) {
        const std::vector<std::string> rest(args.begin() + 2, args.end());
        return args[1] == "drain" ? app::drain_command(rest) : app::status_command(rest);
    }
    const bool is_check = args.size() > 1 && args[1] == "check";
    options o;
    if (const std::string err = parse_flags(args, is_check ? 2 : 1, o); !err.empty()) {
        std::cerr << "wsdrain: " << err << "\n";
        return 2;
    }
    return is_check ? check(o) : run(o);
}
