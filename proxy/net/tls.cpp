#include "net/tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <stdexcept>

namespace wsdrain::net {

namespace ssl = boost::asio::ssl;

namespace {

constexpr auto modern = ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                        ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use;

std::shared_ptr<ssl::context> make_server(const std::string& cert, const std::string& key) {
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
    ctx->set_options(modern);
    boost::system::error_code ec;
    ctx->use_certificate_chain_file(cert, ec);
    if (ec) throw std::runtime_error("tls.cert " + cert + ": " + ec.message());
    ctx->use_private_key_file(key, ssl::context::pem, ec);
    if (ec) throw std::runtime_error("tls.key " + key + ": " + ec.message());
    if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
        ERR_clear_error();
        throw std::runtime_error("tls.key " + key + ": does not match the certificate in " + cert);
    }
    return ctx;
}

std::unique_ptr<ssl::context> make_client() {
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
    ctx->set_options(modern);
    ctx->set_verify_mode(ssl::verify_none);
    return ctx;
}

}  // namespace

tls_contexts::tls_contexts() : client_(make_client()) {}

std::shared_ptr<ssl::context> tls_contexts::server() const {
    std::lock_guard lock(mutex_);
    return server_;
}

void tls_contexts::reload(const std::string& cert, const std::string& key) {
    auto fresh = make_server(cert, key);
    std::lock_guard lock(mutex_);
    server_ = std::move(fresh);
}

}  // namespace wsdrain::net
