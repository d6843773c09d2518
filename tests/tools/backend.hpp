#pragma once
// A real WebSocket and HTTP backend for the tests and the demo, built on Beast:
//  - WebSocket: echoes every message; "flood N" makes it send N binary messages of 64 KiB
//    as fast as the connection takes them; picks the first offered subprotocol it knows;
//    negotiates permessage-deflate when asked to; names itself in an X-Backend header.
//  - HTTP: GET answers "NAME PATH" (and echoes X-Forwarded-* headers back as headers);
//    GET /bytes/N answers N bytes; GET /page.html?ws=URL answers a page that opens a WebSocket
//    to URL and reports its events back as GET /report?...; POST answers "SIZE FNV1A-HASH".
// It records how every WebSocket session ended, so tests can tell a Close from a reset.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace wsdrain::testing {

struct backend_options {
    std::string name = "backend";
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;
    std::vector<std::string> subprotocols;  // accepted, in order of preference
    bool deflate = false;
};

inline backend_options named(std::string name) {
    backend_options o;
    o.name = std::move(name);
    return o;
}

struct session_end {
    bool close_frame = false;  // ended by a Close frame (else EOF or reset)
    std::uint16_t code = 0;
    std::string reason;
    std::uint64_t messages = 0;
    std::uint64_t last_sequence = 0;  // for messages "SEQ ..." : the highest SEQ received
    std::string first_message;
};

class backend {
public:
    explicit backend(backend_options o);
    ~backend();

    std::uint16_t port() const { return port_; }
    void stop();

    int sessions_open() const { return open_.load(); }
    int sessions_started() const { return started_.load(); }
    std::uint64_t bytes_flooded() const { return flooded_.load(); }
    std::vector<session_end> ended() const;
    // Targets of the plain GET requests served, in order (a browser page reports through them).
    std::vector<std::string> requests() const;

    // For the session handlers.
    struct shared;

private:
    boost::asio::io_context context_;
    std::unique_ptr<shared> shared_;
    std::uint16_t port_ = 0;
    std::thread thread_;
    std::atomic<int> open_{0}, started_{0};
    std::atomic<std::uint64_t> flooded_{0};
};

}  // namespace wsdrain::testing
