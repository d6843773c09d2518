#pragma once
// A connection's byte stream, plain TCP or TLS over it, chosen at run time. The HTTP front
// uses one type for both, so each Beast operation is compiled once; a tunnel takes what it
// holds (a bare socket, or the TLS stream) when the connection upgrades.

#include <boost/asio/async_result.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <array>
#include <memory>

namespace wsdrain::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

// A named type (not an alias) so that headers can declare it without including OpenSSL's.
struct tls_stream : asio::ssl::stream<beast::tcp_stream> {
    using asio::ssl::stream<beast::tcp_stream>::stream;
};

// What a tunnel leg is made of: a plain socket, or a TLS stream that owns its socket.
struct leg_transport {
    tcp::socket socket;
    std::unique_ptr<tls_stream> tls;
};

class stream {
public:
    using executor_type = beast::tcp_stream::executor_type;

    explicit stream(tcp::socket socket) : plain_(std::move(socket)) {}
    explicit stream(const executor_type& ex) : plain_(ex) {}

    // Wraps the (connected) TCP stream in TLS; the handshake is the caller's next step.
    // `plain_` keeps its (now closed) place, so the executor and socket() stay valid.
    void wrap_tls(asio::ssl::context& ctx) {
        tls_ = std::make_unique<tls_stream>(beast::tcp_stream(plain_.release_socket()), ctx);
    }
    tls_stream* tls() { return tls_.get(); }

    beast::tcp_stream& tcp_layer() { return tls_ ? tls_->next_layer() : plain_; }
    tcp::socket& socket() { return tcp_layer().socket(); }
    executor_type get_executor() { return plain_.get_executor(); }
    template <class Duration>
    void expires_after(Duration d) { tcp_layer().expires_after(d); }
    void expires_never() { tcp_layer().expires_never(); }
    void close() { tcp_layer().close(); }

    // The stream for a tunnel leg; this object is left empty.
    leg_transport release() {
        if (tls_) {
            tls_->next_layer().expires_never();
            return {tcp::socket(get_executor()), std::move(tls_)};
        }
        return {plain_.release_socket(), nullptr};
    }

    // A move-only void(error_code, std::size_t), type-erased. The composed operations of Beast
    // call these with handlers of many types; erasing them here means the TLS machinery is
    // compiled once (in stream.cpp), not once per Beast operation, at the cost of one small
    // allocation per HTTP read or write step (never per WebSocket frame: tunnels do not use this).
    class io_handler {
    public:
        template <class H>
        explicit io_handler(H&& h) : impl_(std::make_unique<holder<std::decay_t<H>>>(std::forward<H>(h))) {}
        void operator()(boost::system::error_code ec, std::size_t n) {
            const std::unique_ptr<base> impl = std::move(impl_);
            impl->call(ec, n);
        }

    private:
        struct base {
            virtual ~base() = default;
            virtual void call(boost::system::error_code, std::size_t) = 0;
        };
        template <class H>
        struct holder final : base {
            explicit holder(H&& x) : h(std::move(x)) {}
            void call(boost::system::error_code ec, std::size_t n) override { std::move(h)(ec, n); }
            H h;
        };
        std::unique_ptr<base> impl_;
    };
    static constexpr std::size_t max_write_buffers = 16;
    using write_buffers = std::array<asio::const_buffer, max_write_buffers>;

    template <class MutableBuffers, class Token>
    auto async_read_some(const MutableBuffers& buffers, Token&& token) {
        return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
            [this](auto handler, const MutableBuffers& b) {
                asio::mutable_buffer first;  // read_some may fill less than offered: the first one will do
                for (auto it = asio::buffer_sequence_begin(b); it != asio::buffer_sequence_end(b); ++it) {
                    if (asio::mutable_buffer(*it).size() == 0) continue;
                    first = *it;
                    break;
                }
                start_read(first, io_handler(std::move(handler)));
            },
            token, buffers);
    }

    template <class ConstBuffers, class Token>
    auto async_write_some(const ConstBuffers& buffers, Token&& token) {
        return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
            [this](auto handler, const ConstBuffers& b) {
                write_buffers gathered{};  // write_some may take less than offered: the first 16 will do
                std::size_t n = 0;
                for (auto it = asio::buffer_sequence_begin(b); it != asio::buffer_sequence_end(b) && n < gathered.size();
                     ++it)
                    gathered[n++] = *it;
                start_write(gathered, io_handler(std::move(handler)));
            },
            token, buffers);
    }

private:
    void start_read(asio::mutable_buffer b, io_handler h);
    void start_write(const write_buffers& b, io_handler h);

    beast::tcp_stream plain_;  // without a socket once wrapped in TLS
    std::unique_ptr<tls_stream> tls_;
};

}  // namespace wsdrain::net
